//! Toy 2-D density estimation: the model, its training loop, evaluation with the exact 2×2
//! log-det, pictures, checkpoints and resume.
//!
//! Every random number of step t comes from `seed::step_seed`, so a resumed run continues
//! exactly as an uninterrupted one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::ToyDataset;
use crate::flow::{
    ActNorm, Estimator, Flow, FlowCtx, FlowLayer, GradMode, InverseError, LipschitzNet, NetSpec, ResidualBlock,
    Roulette,
};
use crate::gpu::Gpu;
use crate::nn::{Binder, ParamStore, PowerIters};
use crate::ops::{Activation, Dist, TensorOps};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use crate::train::checkpoint::{Checkpoint, CheckpointError};
use crate::train::optim::{Adam, AdamConfig, Ema};
use crate::train::plot::Image;
use crate::train::seed::step_seed;

/// Everything that defines a toy run; stored in the checkpoint's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyConfig {
    /// A dataset name, or `file:<path>` for a CSV of points.
    pub dataset: String,
    pub blocks: usize,
    pub hidden: Vec<usize>,
    pub activation: String,
    pub coeff: f32,
    pub power_iters: usize,
    /// `exact`, `unbiased` or `truncated`.
    pub estimator: String,
    /// Terms of the truncated estimator, or exact terms of the unbiased one.
    pub terms: usize,
    pub grad_mode: String,
    pub actnorm: bool,
    pub lr: f32,
    /// `constant` or `cosine` (decay to zero at the last step); checkpoints without it are constant.
    #[serde(default = "constant_schedule")]
    pub lr_schedule: String,
    pub warmup: usize,
    pub clip: f32,
    pub ema: f32,
    pub batch: usize,
    pub iters: usize,
    pub seed: u64,
    pub eval_every: usize,
    pub eval_samples: usize,
}

impl Default for ToyConfig {
    /// The default run: sized to finish within minutes on a CPU adapter (lavapipe).
    fn default() -> Self {
        ToyConfig {
            dataset: "checkerboard".into(),
            blocks: 10,
            hidden: vec![64, 64],
            activation: "lipswish".into(),
            coeff: 0.99,
            power_iters: 5,
            estimator: "exact".into(),
            terms: 2,
            grad_mode: "neumann".into(),
            actnorm: true,
            lr: 1e-2,
            lr_schedule: "constant".into(),
            warmup: 100,
            clip: 10.0,
            ema: 0.99,
            batch: 256,
            iters: 1400,
            seed: 1,
            eval_every: 700,
            eval_samples: 10_000,
        }
    }
}

/// A configuration or run error, printed as one line.
#[derive(Debug)]
pub struct ToyError(pub String);

impl std::fmt::Display for ToyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ToyError {}
impl From<CheckpointError> for ToyError {
    fn from(e: CheckpointError) -> Self {
        ToyError(e.0)
    }
}
impl From<InverseError> for ToyError {
    fn from(e: InverseError) -> Self {
        ToyError(e.to_string())
    }
}

/// The learning-rate schedule of checkpoints written before schedules existed.
pub fn constant_schedule() -> String {
    "constant".into()
}

impl ToyConfig {
    /// The step at which the cosine schedule reaches zero (0: constant learning rate).
    pub fn cosine_steps(&self) -> usize {
        crate::train::optim::cosine_steps(&self.lr_schedule, self.iters).unwrap_or(0)
    }
    pub fn activation(&self) -> Result<Activation, ToyError> {
        match self.activation.as_str() {
            "lipswish" => Ok(Activation::LipSwish),
            "elu" => Ok(Activation::Elu),
            "softplus" => Ok(Activation::Softplus),
            other => Err(ToyError(format!("unknown activation {other:?}; choose lipswish, elu, softplus"))),
        }
    }
    pub fn estimator(&self) -> Result<Estimator, ToyError> {
        match self.estimator.as_str() {
            "exact" => Ok(Estimator::Exact),
            "truncated" => Ok(Estimator::Truncated(self.terms.max(1))),
            "unbiased" => Ok(Estimator::Unbiased { roulette: Roulette::Geometric(0.5), exact_terms: self.terms }),
            other => Err(ToyError(format!("unknown estimator {other:?}; choose exact, unbiased, truncated"))),
        }
    }
    pub fn grad_mode(&self) -> Result<GradMode, ToyError> {
        match self.grad_mode.as_str() {
            "naive" => Ok(GradMode::Naive),
            "neumann" => Ok(GradMode::Neumann),
            "neumann-bif" => Ok(GradMode::NeumannBif),
            other => Err(ToyError(format!("unknown gradient mode {other:?}; choose naive, neumann, neumann-bif"))),
        }
    }
    pub fn validate(&self) -> Result<(), ToyError> {
        self.activation()?;
        self.estimator()?;
        self.grad_mode()?;
        crate::train::optim::cosine_steps(&self.lr_schedule, self.iters).map_err(ToyError)?;
        if self.blocks == 0 || self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(ToyError("the model needs at least one block and non-zero hidden widths".into()));
        }
        if !(self.coeff > 0.0 && self.coeff < 1.0) {
            return Err(ToyError(format!("--coeff must be in (0, 1) for an invertible flow, got {}", self.coeff)));
        }
        if !(0.0..1.0).contains(&self.ema) {
            return Err(ToyError(format!("--ema must be in [0, 1), got {}", self.ema)));
        }
        if self.batch == 0 || self.eval_samples == 0 {
            return Err(ToyError("--batch and the evaluation sample count must be positive".into()));
        }
        Ok(())
    }
}

/// Where training points come from.
#[derive(Debug, Clone)]
pub enum Source {
    Toy(ToyDataset),
    /// A user's points; batches are drawn from them with replacement.
    Points(Vec<f32>),
}

impl Source {
    pub fn from_config(config: &ToyConfig) -> Result<Source, ToyError> {
        match config.dataset.strip_prefix("file:") {
            Some(path) => Ok(Source::Points(crate::data::load_csv(Path::new(path)).map_err(|e| ToyError(e.0))?)),
            None => Ok(Source::Toy(ToyDataset::parse(&config.dataset).map_err(ToyError)?)),
        }
    }
    pub fn sample(&self, n: usize, rng: &mut StdRng) -> Vec<f32> {
        match self {
            Source::Toy(d) => d.sample(n, rng),
            Source::Points(p) => {
                use rand::Rng;
                let count = p.len() / 2;
                (0..n)
                    .flat_map(|_| {
                        let i = rng.random_range(0..count);
                        [p[2 * i], p[2 * i + 1]]
                    })
                    .collect()
            }
        }
    }
    pub fn entropy(&self) -> Option<f64> {
        match self {
            Source::Toy(d) => d.entropy(),
            Source::Points(_) => None,
        }
    }
}

/// The flow of a toy run: blocks of `2 → hidden… → 2` MLPs, optionally with ActNorm after each.
pub fn build_model(store: &mut ParamStore<Tensor>, config: &ToyConfig) -> Result<Flow<Tensor>, ToyError> {
    config.validate()?;
    let spec = NetSpec {
        activation: config.activation()?,
        coeff: config.coeff,
        leading_activation: false,
        gain: 1.0,
        // The last layer starts near zero, so every block starts near the identity.
        last_gain: 1e-3,
    };
    let mut widths = vec![2];
    widths.extend(&config.hidden);
    widths.push(2);
    let mut layers: Vec<Box<dyn FlowLayer<Tensor>>> = Vec::new();
    for i in 0..config.blocks {
        let g = LipschitzNet::mlp(store, &format!("block{i}.g"), &widths, &spec);
        layers.push(Box::new(ResidualBlock::new(&format!("block{i}"), g, config.estimator()?, config.grad_mode()?)));
        if config.actnorm {
            layers.push(Box::new(ActNorm::new(store, &format!("actnorm{i}"), 2)));
        }
    }
    Ok(Flow::new(layers))
}

/// One row of `log.csv` (also kept in the checkpoint, so a resumed run continues its log).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: usize,
    pub loss: f64,
    pub test_nll: Option<f64>,
    pub seconds: f64,
}

/// The state of a toy run.
pub struct ToyRun {
    pub gpu: Gpu,
    pub config: ToyConfig,
    pub source: Source,
    pub store: ParamStore<Tensor>,
    pub flow: Flow<Tensor>,
    pub adam: Adam<Tensor>,
    pub ema: Ema<Tensor>,
    pub log: Vec<LogRow>,
    /// Whether ActNorm has been initialised from data.
    pub initialized: bool,
}

impl ToyRun {
    pub fn new(gpu: &Gpu, config: ToyConfig) -> Result<ToyRun, ToyError> {
        config.validate()?;
        let source = Source::from_config(&config)?;
        let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), config.seed);
        let flow = build_model(&mut store, &config)?;
        let adam = Adam::new(AdamConfig::residual_flows(config.lr, config.warmup, config.clip, config.cosine_steps()));
        let ema = Ema::new(&store, config.ema);
        Ok(ToyRun { gpu: gpu.clone(), config, source, store, flow, adam, ema, log: Vec::new(), initialized: false })
    }

    pub fn step(&self) -> usize {
        self.adam.step
    }

    fn batch(&self, n: usize, step: usize, which: u64) -> Tensor {
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, step, which));
        let pts = self.source.sample(n, &mut rng);
        Tensor::from_slice(&self.gpu, &pts, &[n, 2]).expect("2-D points")
    }

    /// One training step; returns the loss (mean NLL in nats). A non-finite loss is an error
    /// and leaves the parameters untouched.
    pub fn train_step(&mut self) -> Result<f64, ToyError> {
        let t = self.step();
        let x = self.batch(self.config.batch, t, 0);
        if !self.initialized {
            if self.config.actnorm {
                self.flow.initialize(&mut self.store, &x);
                self.ema = Ema::new(&self.store, self.config.ema);
            }
            self.initialized = true;
        }
        self.flow.power_iterate(&mut self.store, PowerIters::Fixed(self.config.power_iters));
        let (loss, grads) = {
            let tape = Tape::new();
            let b = Binder::new(&self.store, &tape);
            let ctx = FlowCtx::new(&b, step_seed(self.config.seed, t, 1), false);
            let lp = self.flow.log_prob(&ctx, &Var::constant(x));
            let nll = tape.affine(&tape.mean(&lp), -1.0, 0.0);
            let loss = nll.value.item() as f64;
            if !loss.is_finite() {
                return Err(ToyError(format!(
                    "the loss became {loss} at step {t}; training stopped (the last checkpoint is kept). \
                     Try a lower --lr or a smaller --coeff"
                )));
            }
            let g = tape.backward(&nll);
            (loss, b.gradients(&g))
        };
        self.adam.step(&mut self.store, grads);
        self.ema.update(&self.store);
        Ok(loss)
    }

    /// The EMA weights, power-iterated to convergence for evaluation.
    pub fn eval_store(&self) -> ParamStore<Tensor> {
        let mut s = self.ema.apply_to(&self.store);
        self.flow.power_iterate(&mut s, PowerIters::Fixed(200));
        s
    }

    /// Test NLL (nats) on fresh samples with the exact 2×2 log-det, on the given weights.
    pub fn test_nll(&self, store: &ParamStore<Tensor>, source: &Source, samples: usize) -> f64 {
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, usize::MAX, 7));
        let pts = source.sample(samples, &mut rng);
        let lp = log_density(&self.gpu, &self.flow, store, &pts);
        -lp.iter().sum::<f64>() / lp.len() as f64
    }
}

/// log p(x) of 2-D points under the flow (exact log-det), in chunks.
pub fn log_density(gpu: &Gpu, flow: &Flow<Tensor>, store: &ParamStore<Tensor>, pts: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(pts.len() / 2);
    for chunk in pts.chunks(2 * 10_000) {
        let x = Tensor::from_slice(gpu, chunk, &[chunk.len() / 2, 2]).expect("2-D points");
        let tape = Tape::no_grad();
        let b = Binder::new(store, &tape);
        let ctx = FlowCtx::new(&b, 0, true).with_estimator(Estimator::Exact);
        out.extend(flow.log_prob(&ctx, &Var::constant(x)).value.to_host());
    }
    out
}

/// `n` samples through the fixed-point inverse, with the iterations per block.
pub fn sample(
    gpu: &Gpu,
    flow: &Flow<Tensor>,
    store: &ParamStore<Tensor>,
    n: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<usize>), ToyError> {
    let z = Tensor::random(gpu, &[n, 2], Dist::Normal { mean: 0.0, std: 1.0 }, seed, 0);
    let (x, iters) = flow.inverse(store, &z)?;
    Ok((x.to_vec(), iters))
}

/// The pictures of a run: data histogram, model density on [-4, 4]², samples.
pub fn pictures(run: &ToyRun, store: &ParamStore<Tensor>, out: &Path) -> Result<(), ToyError> {
    let io = |e: std::io::Error| ToyError(format!("cannot write pictures to {}: {e}", out.display()));
    let res = 200;
    let mut rng = StdRng::seed_from_u64(step_seed(run.config.seed, usize::MAX, 11));
    // 100 bins a side (shown at 2×) keep the sampled histograms from looking like noise.
    let data = Image::histogram(&run.source.sample(100_000, &mut rng), 4.0, res / 2).upscale(2);
    let grid: Vec<f32> = (0..res * res)
        .flat_map(|i| {
            let (row, col) = (i / res, i % res);
            let x = -4.0 + 8.0 * (col as f32 + 0.5) / res as f32;
            let y = 4.0 - 8.0 * (row as f32 + 0.5) / res as f32;
            [x, y]
        })
        .collect();
    let density: Vec<f64> = log_density(&run.gpu, &run.flow, store, &grid).iter().map(|lp| lp.exp()).collect();
    let density = Image::heatmap(&density, res);
    let (pts, _) = sample(&run.gpu, &run.flow, store, 10_000, run.config.seed ^ 0x5A)?;
    let samples = Image::histogram(&pts, 4.0, res / 2).upscale(2);
    data.save_png(&out.join("data.png")).map_err(io)?;
    density.save_png(&out.join("density.png")).map_err(io)?;
    samples.save_png(&out.join("samples.png")).map_err(io)?;
    Image::side_by_side(&[&data, &density, &samples]).save_png(&out.join("figure.png")).map_err(io)?;
    let loss: Vec<(f64, f64)> = run.log.iter().map(|r| (r.step as f64, r.loss)).collect();
    let test: Vec<(f64, f64)> = run.log.iter().filter_map(|r| r.test_nll.map(|v| (r.step as f64, v))).collect();
    Image::plot(&[&loss, &test], 600, 300).save_png(&out.join("loss.png")).map_err(io)?;
    Ok(())
}

/// log.csv: step, loss, test NLL (empty between evaluations), seconds.
pub fn write_log(rows: &[LogRow], path: &Path) -> std::io::Result<()> {
    let mut s = String::from("step,loss,test_nll,seconds\n");
    for r in rows {
        let t = r.test_nll.map(|v| format!("{v:.5}")).unwrap_or_default();
        s.push_str(&format!("{},{:.5},{},{:.2}\n", r.step, r.loss, t, r.seconds));
    }
    crate::train::checkpoint::write_atomically(path, s.as_bytes())
}

const FORMAT: &str = "resflow-toy-1";

impl ToyRun {
    /// Parameters, Adam moments, EMA, step and config in one safetensors file.
    pub fn to_checkpoint(&self) -> Checkpoint {
        let mut ck = Checkpoint::default();
        crate::train::checkpoint::put_training_state(&mut ck, &self.store, &self.adam, &self.ema);
        ck.metadata.insert("format".into(), FORMAT.into());
        ck.metadata.insert("config".into(), serde_json::to_string(&self.config).expect("config serialises"));
        ck.metadata.insert("step".into(), self.step().to_string());
        ck.metadata.insert("initialized".into(), self.initialized.to_string());
        ck.metadata.insert("log".into(), serde_json::to_string(&self.log).expect("log serialises"));
        ck
    }

    /// Rebuilds a run from a checkpoint (the config inside it), validating every tensor.
    pub fn from_checkpoint(gpu: &Gpu, path: &Path) -> Result<ToyRun, ToyError> {
        let ck = Checkpoint::load(path)?;
        let bad = |why: String| ToyError(format!("{} does not match this model: {why}", path.display()));
        if ck.meta("format")? != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", ck.meta("format")?)));
        }
        let config: ToyConfig = serde_json::from_str(ck.meta("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let step: usize = ck.meta("step")?.parse().map_err(|e| bad(format!("step: {e}")))?;
        let mut run = ToyRun::new(gpu, config)?;
        crate::train::checkpoint::take_training_state(&ck, &mut run.store, &mut run.adam, &mut run.ema, bad)?;
        run.adam.step = step;
        run.initialized = ck.metadata.get("initialized").is_some_and(|v| v == "true");
        if let Some(log) = ck.metadata.get("log") {
            run.log = serde_json::from_str(log).map_err(|e| bad(format!("log: {e}")))?;
        }
        Ok(run)
    }
}

/// Progress and outputs of `resflow train`.
pub struct TrainOutputs {
    pub dir: PathBuf,
    pub final_nll: Option<f64>,
}

/// The whole training job: steps with a progress bar, evaluations, pictures, checkpoints.
pub fn train(run: &mut ToyRun, out: &Path, quiet: bool) -> Result<TrainOutputs, ToyError> {
    std::fs::create_dir_all(out).map_err(|e| ToyError(format!("cannot create {}: {e}", out.display())))?;
    let total = run.config.iters;
    let bar = crate::train::progress::step_bar(total, run.step(), quiet);
    let start = Instant::now();
    let offset = run.log.last().map_or(0.0, |r| r.seconds);
    let entropy = run.source.entropy();
    let mut final_nll = None;
    let mut recent = Vec::new();
    while run.step() < total {
        let loss = match run.train_step() {
            Ok(l) => l,
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        };
        recent.push(loss);
        let step = run.step();
        let elapsed = offset + start.elapsed().as_secs_f64();
        let rate = (step as f64) / elapsed.max(1e-9);
        let avg = recent.iter().rev().take(50).sum::<f64>() / recent.len().min(50) as f64;
        bar.set_message(format!("loss {avg:.3}  {rate:.1} it/s"));
        bar.set_position(step as u64);
        let eval_now = step.is_multiple_of(run.config.eval_every.max(1)) || step == total;
        let mut row = LogRow { step, loss, test_nll: None, seconds: elapsed };
        if eval_now {
            let store = run.eval_store();
            let nll = run.test_nll(&store, &run.source.clone(), run.config.eval_samples);
            row.test_nll = Some(nll);
            final_nll = Some(nll);
            let gap = entropy.map(|h| format!(" (gap to the true entropy {:.3})", nll - h)).unwrap_or_default();
            let line = format!("step {step}: test NLL {nll:.4} nats{gap}");
            // A hidden bar (quiet, or stderr not a terminal) prints nothing itself.
            if quiet || bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            run.log.push(row);
            pictures(run, &store, out)?;
            write_log(&run.log, &out.join("log.csv")).map_err(|e| ToyError(format!("cannot write log.csv: {e}")))?;
            run.to_checkpoint().save(&out.join("checkpoint.safetensors"))?;
        } else {
            run.log.push(row);
        }
    }
    bar.finish();
    Ok(TrainOutputs { dir: out.to_path_buf(), final_nll })
}
