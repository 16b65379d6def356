//! Training an image flow: dequantised batches, the density (bits/dim) or hybrid loss with
//! gradient accumulation, bits/dim ± standard error and accuracy on test images, sample grids
//! through the fixed-point inverse, atomic checkpoints and resume.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{images, ImageSet, Splits};
use crate::flow::FlowCtx;
use crate::gpu::Gpu;
use crate::nn::{Binder, ParamId, ParamStore, PowerIters};
use crate::ops::{Dist, Reduce, TensorOps};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use crate::train::checkpoint::{put_training_state, take_training_state, Checkpoint};
use crate::train::optim::{Adam, AdamConfig, Ema};
use crate::train::plot::Image;
use crate::train::seed::step_seed;

use super::{ImageConfig, ImageError, ModelSpec, MultiScaleFlow};

/// What the model needs to know about its data (stored in checkpoints, so sampling needs no
/// dataset on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFormat {
    pub shape: [usize; 3],
    pub levels: usize,
    pub classes: usize,
}

impl ImageFormat {
    pub fn of(set: &ImageSet) -> Self {
        ImageFormat { shape: set.shape(), levels: set.levels, classes: set.classes }
    }
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }
    /// Bits/dim of the discrete data from log p of the dequantised x ∈ [0, 1]^D (nats):
    /// −(log p(x) − D ln L)/(D ln 2) for L quantisation levels.
    pub fn bits_per_dim(&self, log_prob: f64) -> f64 {
        let d = self.dim() as f64;
        -(log_prob - d * (self.levels as f64).ln()) / (d * std::f64::consts::LN_2)
    }
}

/// The figures of one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The loss that was minimised (bits/dim for a density model).
    pub loss: f64,
    /// Training bits/dim of the batch (the estimator's value).
    pub bpd: f64,
    /// Cross-entropy and accuracy of the hybrid model's classifier.
    pub ce: Option<f64>,
}

/// Test figures: bits/dim mean ± standard error over images, and accuracy for hybrids.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub bpd: f64,
    pub bpd_se: f64,
    pub accuracy: Option<f64>,
    pub images: usize,
}

/// One row of `log.csv` (also kept in the checkpoint, so a resumed run continues its log).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImageLogRow {
    pub step: usize,
    pub loss: f64,
    pub train_bpd: f64,
    pub ema: Option<Evaluation>,
    pub raw: Option<Evaluation>,
    pub seconds: f64,
}

pub struct ImageRun {
    pub gpu: Gpu,
    pub config: ImageConfig,
    pub format: ImageFormat,
    pub spec: ModelSpec,
    pub store: ParamStore<Tensor>,
    pub model: MultiScaleFlow<Tensor>,
    pub adam: Adam<Tensor>,
    pub ema: Ema<Tensor>,
    pub log: Vec<ImageLogRow>,
    pub initialized: bool,
    /// λ of the hybrid loss (None: a density model).
    pub lambda: Option<f32>,
    data: Option<Splits>,
}

impl ImageRun {
    /// A new run on the configured dataset (loaded now: a missing dataset is an error here).
    pub fn new(gpu: &Gpu, config: ImageConfig) -> Result<ImageRun, ImageError> {
        config.validate()?;
        let data = images::load(&config.dataset, &config.data_dir)?;
        Self::with_data(gpu, config, data)
    }

    /// A new run on data already in memory (benchmarks, synthetic data).
    pub fn with_data(gpu: &Gpu, config: ImageConfig, data: Splits) -> Result<ImageRun, ImageError> {
        let mut run = Self::build(gpu, config, ImageFormat::of(&data.train))?;
        run.data = Some(data);
        Ok(run)
    }

    fn build(gpu: &Gpu, config: ImageConfig, format: ImageFormat) -> Result<ImageRun, ImageError> {
        config.validate()?;
        let spec = config.model_spec(format.shape, format.classes)?;
        let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), config.seed);
        let model = MultiScaleFlow::new(&mut store, &spec)?;
        let adam = Adam::new(AdamConfig::residual_flows(config.lr, config.warmup, config.clip, config.cosine_steps()));
        let ema = Ema::new(&store, config.ema);
        let lambda = config.hybrid_lambda(format.dim())?;
        Ok(ImageRun {
            gpu: gpu.clone(),
            config,
            format,
            spec,
            store,
            model,
            adam,
            ema,
            log: Vec::new(),
            initialized: false,
            lambda,
            data: None,
        })
    }

    pub fn step(&self) -> usize {
        self.adam.step
    }

    /// The dataset, loaded on first use (sampling from a checkpoint never needs it).
    pub fn data(&mut self) -> Result<&Splits, ImageError> {
        if self.data.is_none() {
            let data = images::load(&self.config.dataset, &self.config.data_dir)?;
            if ImageFormat::of(&data.train) != self.format {
                return Err(ImageError(format!(
                    "the {} data on disk ({:?}) does not match the checkpoint's images ({:?})",
                    self.config.dataset,
                    ImageFormat::of(&data.train),
                    self.format
                )));
            }
            self.data = Some(data);
        }
        Ok(self.data.as_ref().expect("loaded above"))
    }

    fn tensor(&self, values: &[f32], n: usize) -> Tensor {
        let [c, h, w] = self.format.shape;
        Tensor::from_slice(&self.gpu, values, &[n, c, h, w]).expect("image batch shape")
    }

    fn one_hot(&self, labels: &[u8]) -> Tensor {
        let k = self.format.classes;
        let hot: Vec<f32> = labels.iter().flat_map(|&l| (0..k).map(move |c| (c == l as usize) as u8 as f32)).collect();
        Tensor::from_slice(&self.gpu, &hot, &[labels.len(), k]).expect("one-hot shape")
    }

    /// One optimisation step over `batch` images in `accumulate` micro-batches. A non-finite
    /// loss is an error and leaves the parameters untouched.
    pub fn train_step(&mut self) -> Result<StepStats, ImageError> {
        let t = self.step();
        let (batch, micro) = (self.config.batch, self.config.batch / self.config.accumulate);
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, t, 0));
        let train = &self.data()?.train;
        let indices: Vec<usize> = (0..batch).map(|_| rng.random_range(0..train.len())).collect();
        let pixels = train.dequantize(&indices, &mut rng);
        let labels: Vec<u8> = indices.iter().map(|&i| train.labels[i]).collect();
        let d = self.format.dim();
        if !self.initialized {
            let first = self.tensor(&pixels[..micro * d], micro);
            self.model.initialize(&mut self.store, &first);
            self.ema = Ema::new(&self.store, self.config.ema);
            self.initialized = true;
        }
        let tol = self.config.power_tol;
        self.model.power_iterate(&mut self.store, PowerIters::Tolerance { atol: tol, rtol: tol, max: 100 });
        let mut total: Option<Vec<(ParamId, Tensor)>> = None;
        let mut stats = StepStats { loss: 0.0, bpd: 0.0, ce: self.lambda.map(|_| 0.0) };
        let share = 1.0 / self.config.accumulate as f32;
        for m in 0..self.config.accumulate {
            let x = self.tensor(&pixels[m * micro * d..(m + 1) * micro * d], micro);
            let tape = Tape::new();
            let b = Binder::new(&self.store, &tape);
            let ctx = FlowCtx::new(&b, step_seed(self.config.seed, t, 1 + m as u64), false);
            let out = self.model.forward(&ctx, &Var::constant(x));
            let nll = tape.affine(&tape.mean(&self.model.log_prob(&out, &ctx)), -1.0, 0.0);
            let nll_value = nll.value.item() as f64;
            let bpd = self.format.bits_per_dim(-nll_value);
            // The loss value follows from the values already read back (no third readback).
            let (loss, ce, loss_value) = match (self.lambda, &out.logits) {
                (Some(lambda), Some(logits)) => {
                    let ce = cross_entropy(&tape, logits, &self.one_hot(&labels[m * micro..(m + 1) * micro]));
                    let ce_value = ce.value.item() as f64;
                    let loss = tape.add(&tape.affine(&nll, lambda, 0.0), &ce);
                    (loss, Some(ce_value), lambda as f64 * nll_value + ce_value)
                }
                // Bits/dim: nats per image scaled by 1/(D ln 2); the reported value adds the
                // constant of the quantisation (no gradient), so it reads as the training bits/dim.
                _ => (tape.affine(&nll, 1.0 / (d as f32 * std::f32::consts::LN_2), 0.0), None, bpd),
            };
            if !loss_value.is_finite() || !bpd.is_finite() {
                return Err(ImageError(format!(
                    "the loss became {loss_value} at step {t}; training stopped (the last checkpoint is kept). \
                     Try a lower --lr, a smaller --coeff or a larger --alpha"
                )));
            }
            let grads = b.gradients(&tape.backward(&tape.affine(&loss, share, 0.0)));
            total = Some(match total {
                None => grads,
                Some(acc) => acc.into_iter().zip(grads).map(|((id, a), (_, g))| (id, a.add(&g))).collect(),
            });
            stats.loss += loss_value * share as f64;
            stats.bpd += bpd * share as f64;
            if let (Some(c), Some(v)) = (stats.ce.as_mut(), ce) {
                *c += v * share as f64;
            }
        }
        self.adam.step(&mut self.store, total.expect("at least one micro-batch"));
        self.ema.update(&self.store);
        Ok(stats)
    }

    /// The EMA weights (or the raw ones), power-iterated to convergence for evaluation.
    pub fn eval_store(&self, ema: bool) -> ParamStore<Tensor> {
        let mut s = if ema { self.ema.apply_to(&self.store) } else { self.store.clone() };
        self.model.power_iterate(&mut s, PowerIters::Tolerance { atol: 1e-4, rtol: 1e-4, max: 500 });
        s
    }

    /// Bits/dim (evaluation estimator: 20 exact terms + the unbiased rest) of the first
    /// `images` test images, its standard error over images, and the accuracy of hybrids.
    pub fn evaluate(&mut self, store: &ParamStore<Tensor>, images: usize) -> Result<Evaluation, ImageError> {
        let test = self.data()?.test.take(images);
        let n = test.len();
        let chunk = (self.config.batch / self.config.accumulate).max(1);
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, usize::MAX, 3));
        let (mut bpds, mut correct) = (Vec::with_capacity(n), 0usize);
        for (k, start) in (0..n).step_by(chunk).enumerate() {
            let idx: Vec<usize> = (start..(start + chunk).min(n)).collect();
            let x = self.tensor(&test.dequantize(&idx, &mut rng), idx.len());
            let tape = Tape::no_grad();
            let b = Binder::new(store, &tape);
            let ctx = FlowCtx::new(&b, step_seed(self.config.seed, usize::MAX, 100 + k as u64), true);
            let out = self.model.forward(&ctx, &Var::constant(x));
            let lp = self.model.log_prob(&out, &ctx).value.to_host();
            bpds.extend(lp.iter().map(|&l| self.format.bits_per_dim(l)));
            if let Some(logits) = &out.logits {
                let k = self.format.classes;
                let values = logits.value.to_host();
                for (row, &i) in values.chunks_exact(k).zip(&idx) {
                    let best = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).expect("classes");
                    correct += (best == test.labels[i] as usize) as usize;
                }
            }
        }
        if let Some(bad) = bpds.iter().find(|v| !v.is_finite()) {
            return Err(ImageError(format!("evaluation produced a non-finite bits/dim ({bad}); the model diverged")));
        }
        let mean = bpds.iter().sum::<f64>() / n as f64;
        let var = bpds.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Ok(Evaluation {
            bpd: mean,
            bpd_se: (var / n as f64).sqrt(),
            accuracy: self.lambda.map(|_| correct as f64 / n as f64),
            images: n,
        })
    }

    /// `n` samples through the fixed-point inverse of every scale (values in [0, 1],
    /// [n, C, H, W]) and the iterations each residual block took.
    pub fn sample(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
    ) -> Result<(Vec<f32>, Vec<usize>), ImageError> {
        let parts: Vec<Tensor> = self
            .model
            .latent_shapes()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut shape = vec![n];
                shape.extend(s);
                Tensor::random(&self.gpu, &shape, Dist::Normal { mean: 0.0, std: 1.0 }, seed, i as u64)
            })
            .collect();
        let (x, iters) = self.model.inverse(store, &parts)?;
        Ok((x.to_vec(), iters))
    }

    /// A PNG grid of `n` samples; returns the iterations per residual block.
    pub fn sample_grid(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
        path: &Path,
    ) -> Result<Vec<usize>, ImageError> {
        let (x, iters) = self.sample(store, n, seed)?;
        let cols = (n as f64).sqrt().ceil() as usize;
        let scale = (96 / self.format.shape[1]).max(1);
        Image::grid(&x, self.format.shape, cols, scale)
            .save_png(path)
            .map_err(|e| ImageError(format!("cannot write {}: {e}", path.display())))?;
        Ok(iters)
    }
}

/// Mean cross-entropy of logits [B, K] against one-hot labels: lse(logits) − ⟨logits, y⟩.
fn cross_entropy(tape: &Tape<Tensor>, logits: &Var<Tensor>, one_hot: &Tensor) -> Var<Tensor> {
    let lse = tape.reduce(logits, Reduce::LogSumExp, Some(1), false);
    let picked = tape.reduce(&tape.mul(logits, &Var::constant(one_hot.clone())), Reduce::Sum, Some(1), false);
    tape.mean(&tape.sub(&lse, &picked))
}

const FORMAT: &str = "resflow-image-1";

/// Whether a checkpoint file holds an image model (rather than a toy one); reads the header only.
pub fn is_image_checkpoint(path: &Path) -> Result<bool, ImageError> {
    Ok(Checkpoint::read_metadata(path)?.get("format").is_some_and(|f| f == FORMAT))
}

impl ImageRun {
    pub fn to_checkpoint(&self) -> Checkpoint {
        let mut ck = Checkpoint::default();
        put_training_state(&mut ck, &self.store, &self.adam, &self.ema);
        let f = &self.format;
        let meta = [
            ("format", FORMAT.to_string()),
            ("config", serde_json::to_string(&self.config).expect("config serialises")),
            ("step", self.step().to_string()),
            ("initialized", self.initialized.to_string()),
            ("image", format!("{},{},{}", f.shape[0], f.shape[1], f.shape[2])),
            ("levels", f.levels.to_string()),
            ("classes", f.classes.to_string()),
            ("log", serde_json::to_string(&self.log).expect("log serialises")),
        ];
        ck.metadata.extend(meta.into_iter().map(|(k, v)| (k.to_string(), v)));
        ck
    }

    /// Rebuilds a run from a checkpoint (its config and image format), validating every tensor.
    pub fn from_checkpoint(gpu: &Gpu, path: &Path) -> Result<ImageRun, ImageError> {
        let ck = Checkpoint::load(path)?;
        let bad = |why: String| ImageError(format!("{} does not match this model: {why}", path.display()));
        if ck.meta("format")? != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", ck.meta("format")?)));
        }
        let config: ImageConfig = serde_json::from_str(ck.meta("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let number =
            |key: &str| -> Result<usize, ImageError> { ck.meta(key)?.parse().map_err(|e| bad(format!("{key}: {e}"))) };
        let dims: Vec<usize> = ck
            .meta("image")?
            .split(',')
            .map(|v| v.parse().map_err(|e| bad(format!("image: {e}"))))
            .collect::<Result<_, _>>()?;
        let shape: [usize; 3] = dims.try_into().map_err(|_| bad("image needs 3 dimensions".into()))?;
        let format = ImageFormat { shape, levels: number("levels")?, classes: number("classes")? };
        let mut run = Self::build(gpu, config, format)?;
        take_training_state(&ck, &mut run.store, &mut run.adam, &mut run.ema, bad)?;
        run.adam.step = number("step")?;
        run.initialized = ck.metadata.get("initialized").is_some_and(|v| v == "true");
        if let Some(log) = ck.metadata.get("log") {
            run.log = serde_json::from_str(log).map_err(|e| bad(format!("log: {e}")))?;
        }
        Ok(run)
    }
}

/// log.csv of an image run.
pub fn write_log(rows: &[ImageLogRow], path: &Path) -> std::io::Result<()> {
    let mut s = String::from(
        "step,loss,train_bpd,test_bpd_ema,test_bpd_ema_se,test_bpd_raw,test_bpd_raw_se,accuracy_ema,seconds\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.5}")).unwrap_or_default();
    for r in rows {
        s.push_str(&format!(
            "{},{:.5},{:.5},{},{},{},{},{},{:.2}\n",
            r.step,
            r.loss,
            r.train_bpd,
            opt(r.ema.map(|e| e.bpd)),
            opt(r.ema.map(|e| e.bpd_se)),
            opt(r.raw.map(|e| e.bpd)),
            opt(r.raw.map(|e| e.bpd_se)),
            opt(r.ema.and_then(|e| e.accuracy)),
            r.seconds
        ));
    }
    crate::train::checkpoint::write_atomically(path, s.as_bytes())
}

/// Where `resflow train` on images put its results.
pub struct ImageTrainOutputs {
    pub dir: PathBuf,
    pub last: Option<ImageLogRow>,
}

fn describe(e: &Evaluation) -> String {
    let acc = e.accuracy.map(|a| format!(", accuracy {:.2} %", 100.0 * a)).unwrap_or_default();
    format!("{:.4} ± {:.4} bits/dim{acc}", e.bpd, e.bpd_se)
}

/// The whole training job: steps with a progress bar; every `eval_every` steps bits/dim on the
/// EMA and the raw weights, a sample grid, log.csv, the loss curve and the checkpoint.
pub fn train(run: &mut ImageRun, out: &Path, quiet: bool) -> Result<ImageTrainOutputs, ImageError> {
    std::fs::create_dir_all(out).map_err(|e| ImageError(format!("cannot create {}: {e}", out.display())))?;
    let io = |e: std::io::Error| ImageError(format!("cannot write to {}: {e}", out.display()));
    {
        let shape = run.format.shape;
        let test = &run.data()?.test;
        let idx: Vec<usize> = (0..test.len().min(64)).collect();
        Image::grid(&test.unit(&idx), shape, 8, (96 / shape[1]).max(1)).save_png(&out.join("data.png")).map_err(io)?;
    }
    let total = run.config.iters;
    let bar = crate::train::progress::step_bar(total, run.step(), quiet);
    let say = |line: String| if quiet || bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let start = Instant::now();
    let offset = run.log.last().map_or(0.0, |r| r.seconds);
    let first = run.step();
    let mut recent = Vec::new();
    while run.step() < total {
        let stats = run.train_step().inspect_err(|_| bar.abandon())?;
        recent.push(stats.bpd);
        let step = run.step();
        let elapsed = offset + start.elapsed().as_secs_f64();
        let rate = (step - first) as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let avg = recent.iter().rev().take(20).sum::<f64>() / recent.len().min(20) as f64;
        let ce = stats.ce.map(|c| format!("  CE {c:.3}")).unwrap_or_default();
        bar.set_message(format!("{avg:.3} bits/dim{ce}  {:.2} s/step", 1.0 / rate.max(1e-9)));
        bar.set_position(step as u64);
        let mut row =
            ImageLogRow { step, loss: stats.loss, train_bpd: stats.bpd, ema: None, raw: None, seconds: elapsed };
        if step.is_multiple_of(run.config.eval_every.max(1)) || step == total {
            let images = run.config.eval_images;
            let ema_store = run.eval_store(true);
            let ema = run.evaluate(&ema_store, images)?;
            let raw = run.evaluate(&run.eval_store(false), images)?;
            say(format!(
                "step {step}: test {} (EMA), {} (raw) on {} images",
                describe(&ema),
                describe(&raw),
                ema.images
            ));
            (row.ema, row.raw) = (Some(ema), Some(raw));
            run.log.push(row);
            let iters =
                run.sample_grid(&ema_store, run.config.samples, run.config.seed ^ 0x5A, &out.join("samples.png"))?;
            say(format!("  samples.png: fixed-point iterations per block {iters:?}"));
            write_log(&run.log, &out.join("log.csv")).map_err(io)?;
            let curve: Vec<(f64, f64)> = run.log.iter().map(|r| (r.step as f64, r.train_bpd)).collect();
            let test: Vec<(f64, f64)> = run.log.iter().filter_map(|r| r.ema.map(|e| (r.step as f64, e.bpd))).collect();
            Image::plot(&[&curve, &test], 600, 300).save_png(&out.join("loss.png")).map_err(io)?;
            run.to_checkpoint().save(&out.join("checkpoint.safetensors"))?;
        } else {
            run.log.push(row);
        }
    }
    bar.finish();
    Ok(ImageTrainOutputs { dir: out.to_path_buf(), last: run.log.last().copied() })
}
