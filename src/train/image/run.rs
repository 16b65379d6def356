//! The state of an image run: dequantised batches, and one step of the density (bits/dim) or
//! hybrid loss with gradient accumulation.
//!
//! Every random number of step t comes from `seed::step_seed`, so a resumed run continues
//! exactly as an uninterrupted one.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::outputs::ImageLogRow;
use super::ImageConfig;
use crate::data::{images, ImageSet, Splits};
use crate::flow::FlowCtx;
use crate::gpu::Gpu;
use crate::models::image::{ModelSpec, MultiScaleFlow};
use crate::nn::{Binder, ParamId, ParamStore, PowerIters};
use crate::ops::{Reduce, TensorOps};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use crate::train::optim::{Adam, Ema};
use crate::train::seed::step_seed;
use crate::train::TrainError;

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

/// The most images one pass of the model (a micro-batch, a chunk of samples) takes on this
/// device: the widest activation of a pass, and its tangent, must fit one storage binding.
pub fn images_per_pass(gpu: &Gpu, config: &ImageConfig, format: &ImageFormat) -> usize {
    let [c, h, w] = format.shape;
    let widest = (config.width.max(4 * c) * h * w).max(config.fc_width).max(config.head_width * h * w);
    gpu.items_per_pass(2 * widest)
}

impl ImageRun {
    /// A new run on the configured dataset (loaded now: a missing dataset is an error here).
    pub fn new(gpu: &Gpu, config: ImageConfig) -> Result<ImageRun, TrainError> {
        config.validate()?;
        let data = images::load(&config.dataset, &config.data_dir)?;
        Self::with_data(gpu, config, data)
    }

    /// A new run on data already in memory (benchmarks, synthetic data).
    pub fn with_data(gpu: &Gpu, config: ImageConfig, data: Splits) -> Result<ImageRun, TrainError> {
        let mut run = Self::build(gpu, config, ImageFormat::of(&data.train))?;
        run.data = Some(data);
        Ok(run)
    }

    pub(super) fn build(gpu: &Gpu, config: ImageConfig, format: ImageFormat) -> Result<ImageRun, TrainError> {
        config.validate()?;
        let micro = config.batch / config.accumulate;
        let fits = images_per_pass(gpu, &config, &format);
        if micro > fits {
            return Err(TrainError(format!(
                "--batch {} (micro-batches of {micro}) does not fit this adapter ({}): its activations would \
                 exceed max_storage_buffer_binding_size ({} bytes); the largest micro-batch for this model is \
                 {fits} (raise --accumulate or lower --batch)",
                config.batch,
                gpu.info().name,
                gpu.limits().max_storage_buffer_binding_size
            )));
        }
        let spec = config.model_spec(format.shape, format.classes)?;
        let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), config.seed);
        let model = MultiScaleFlow::new(&mut store, &spec)?;
        let adam = Adam::new(config.adam());
        let ema = Ema::new(&store, config.ema);
        let lambda = config.hybrid.lambda(format.dim());
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
    pub fn data(&mut self) -> Result<&Splits, TrainError> {
        if self.data.is_none() {
            let data = images::load(&self.config.dataset, &self.config.data_dir)?;
            if ImageFormat::of(&data.train) != self.format {
                return Err(TrainError(format!(
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

    pub(super) fn tensor(&self, values: &[f32], n: usize) -> Tensor {
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
    pub fn train_step(&mut self) -> Result<StepStats, TrainError> {
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
        // The scalars each micro-batch reports, read back once the whole step is recorded, so
        // the device runs each forward pass while the host records the backward one.
        let mut reported: Vec<(Tensor, Option<Tensor>)> = Vec::with_capacity(self.config.accumulate);
        let share = 1.0 / self.config.accumulate as f32;
        for m in 0..self.config.accumulate {
            let x = self.tensor(&pixels[m * micro * d..(m + 1) * micro * d], micro);
            let tape = Tape::new();
            let b = Binder::new(&self.store, &tape);
            let ctx = FlowCtx::new(&b, step_seed(self.config.seed, t, 1 + m as u64), false);
            let out = self.model.forward(&ctx, &Var::constant(x));
            let nll = tape.affine(&tape.mean(&self.model.log_prob(&out, &ctx)), -1.0, 0.0);
            let (loss, ce) = match (self.lambda, &out.logits) {
                (Some(lambda), Some(logits)) => {
                    let ce = cross_entropy(&tape, logits, &self.one_hot(&labels[m * micro..(m + 1) * micro]));
                    (tape.add(&tape.affine(&nll, lambda, 0.0), &ce), Some(ce.value.clone()))
                }
                // Bits/dim: nats per image scaled by 1/(D ln 2).
                _ => (tape.affine(&nll, 1.0 / (d as f32 * std::f32::consts::LN_2), 0.0), None),
            };
            let grads = b.gradients(&tape.backward(&tape.affine(&loss, share, 0.0)));
            total = Some(match total {
                None => grads,
                Some(acc) => acc.into_iter().zip(grads).map(|((id, a), (_, g))| (id, a.add(&g))).collect(),
            });
            reported.push((nll.value.clone(), ce));
        }
        self.adam.step(&mut self.store, total.expect("at least one micro-batch"));
        let mut stats = StepStats { loss: 0.0, bpd: 0.0, ce: self.lambda.map(|_| 0.0) };
        for (nll, ce) in reported {
            let nll_value = nll.item() as f64;
            // The reported bits/dim adds the constant of the quantisation (no gradient), so it
            // reads as the training bits/dim; the loss follows from the values read back.
            let bpd = self.format.bits_per_dim(-nll_value);
            let ce = ce.map(|c| c.item() as f64);
            let loss_value = match (self.lambda, ce) {
                (Some(lambda), Some(ce)) => lambda as f64 * nll_value + ce,
                _ => bpd,
            };
            // A non-finite loss ends the run before anything of this step is saved.
            if !loss_value.is_finite() || !bpd.is_finite() {
                return Err(TrainError(format!(
                    "the loss became {loss_value} at step {t}; training stopped (the last checkpoint is kept). \
                     Try a lower --lr, a smaller --coeff or a larger --alpha"
                )));
            }
            stats.loss += loss_value * share as f64;
            stats.bpd += bpd * share as f64;
            if let (Some(c), Some(v)) = (stats.ce.as_mut(), ce) {
                *c += v * share as f64;
            }
        }
        self.ema.update(&self.store);
        Ok(stats)
    }
}

/// Mean cross-entropy of logits [B, K] against one-hot labels: lse(logits) − ⟨logits, y⟩.
fn cross_entropy(tape: &Tape<Tensor>, logits: &Var<Tensor>, one_hot: &Tensor) -> Var<Tensor> {
    let lse = tape.reduce(logits, Reduce::LogSumExp, Some(1), false);
    let picked = tape.reduce(&tape.mul(logits, &Var::constant(one_hot.clone())), Reduce::Sum, Some(1), false);
    tape.mean(&tape.sub(&lse, &picked))
}
