//! The state of a toy run: the model, optimiser and weight average; one training step; the
//! test NLL with the exact 2×2 log-det; checkpoints.
//!
//! Every random number of step t comes from `seed::step_seed`, so a resumed run continues
//! exactly as an uninterrupted one.

use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::outputs::LogRow;
use super::{Source, ToyConfig};
use crate::flow::{Flow, FlowCtx};
use crate::gpu::Gpu;
use crate::models::toy;
use crate::nn::{Binder, ParamStore, PowerIters};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use crate::train::checkpoint::{put_training_state, take_training_state, Checkpoint};
use crate::train::optim::{Adam, Ema};
use crate::train::seed::step_seed;
use crate::train::TrainError;

/// Test points drawn at once (a draw shapes some datasets, rings and moons: a run's test set
/// up to this size is one draw).
const SCORED_PER_DRAW: usize = 1 << 20;

/// The checkpoint tensor holding a CSV run's points.
const POINTS: &str = "data/points";

/// Points stored in a checkpoint, checked as a CSV's are.
fn parse_points(points: &[f32], what: &str) -> Result<Vec<f32>, TrainError> {
    let text: String = points.chunks_exact(2).map(|p| format!("{},{}\n", p[0], p[1])).collect();
    Ok(crate::data::parse_csv(&text, &format!("{what} ({POINTS})"))?)
}

/// The format tag of toy checkpoints.
pub const FORMAT: &str = "resflow-toy-1";

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
    pub fn new(gpu: &Gpu, config: ToyConfig) -> Result<ToyRun, TrainError> {
        config.validate()?;
        let source = Source::of_dataset(&config.dataset)?;
        ToyRun::with_source(gpu, config, source)
    }

    /// A new run on points already in hand (a checkpoint's own copy of a CSV's).
    pub fn with_source(gpu: &Gpu, config: ToyConfig, source: Source) -> Result<ToyRun, TrainError> {
        config.validate()?;
        // A training step holds the widest activation and its tangents (the exact log-det's
        // Jacobian columns) for the whole batch in single buffers.
        let fits = gpu.items_per_pass(3 * toy::widest(&config.model_spec()));
        if config.batch > fits {
            return Err(TrainError(format!(
                "--batch {} does not fit this adapter ({}): its activations would exceed \
                 max_storage_buffer_binding_size ({} bytes); the largest batch for this model is {fits}",
                config.batch,
                gpu.info().name,
                gpu.limits().max_storage_buffer_binding_size
            )));
        }
        let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), config.seed);
        let flow = toy::build(&mut store, &config.model_spec());
        let adam = Adam::new(config.adam());
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
    pub fn train_step(&mut self) -> Result<f64, TrainError> {
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
        let tape = Tape::new();
        let b = Binder::new(&self.store, &tape);
        let ctx = FlowCtx::new(&b, step_seed(self.config.seed, t, 1), false);
        let lp = self.flow.log_prob(&ctx, &Var::constant(x));
        let nll = tape.affine(&tape.mean(&lp), -1.0, 0.0);
        let grads = b.gradients(&tape.backward(&nll));
        self.adam.step(&mut self.store, grads);
        self.ema.update(&self.store);
        // The loss is read after the whole step is recorded, so the device runs the forward
        // pass while the host records the backward one; a non-finite loss still ends the run
        // before anything of this step is saved.
        let loss = nll.value.item() as f64;
        if !loss.is_finite() {
            return Err(TrainError(format!(
                "the loss became {loss} at step {t}; training stopped (the last checkpoint is kept). \
                 Try a lower --lr or a smaller --coeff"
            )));
        }
        Ok(loss)
    }

    /// The EMA weights, power-iterated to convergence for evaluation.
    pub fn eval_store(&self) -> ParamStore<Tensor> {
        let mut s = self.ema.apply_to(&self.store);
        self.flow.power_iterate(&mut s, PowerIters::Fixed(200));
        s
    }

    /// Points a pass of sampling and scoring on this run's device.
    pub fn chunk(&self) -> usize {
        toy::points_per_chunk(&self.gpu, toy::widest(&self.config.model_spec()))
    }

    /// Test NLL (nats) on fresh samples with the exact 2×2 log-det, on the given weights.
    /// The samples are drawn and scored a million at a time, so memory does not grow with
    /// `samples`; a non-finite NLL is an error.
    pub fn test_nll(&self, store: &ParamStore<Tensor>, source: &Source, samples: usize) -> Result<f64, TrainError> {
        if samples == 0 {
            return Err(TrainError("--samples must be at least 1".into()));
        }
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, usize::MAX, 7));
        // 10 000 points a pass: the chunking every test NLL of log.csv was computed with.
        let chunk = self.chunk().min(10_000);
        let mut total = 0.0;
        for start in (0..samples).step_by(SCORED_PER_DRAW) {
            let pts = source.sample(SCORED_PER_DRAW.min(samples - start), &mut rng);
            for lp in toy::log_density(&self.gpu, &self.flow, store, &pts, chunk) {
                total += lp;
            }
        }
        TrainError::finite("the test NLL", -total / samples as f64)
    }

    /// log p (nats, exact log-det) of each of the 2-D `points`, on the given weights; a
    /// non-finite density is an error naming the point.
    pub fn log_density(&self, store: &ParamStore<Tensor>, points: &[f32]) -> Result<Vec<f64>, TrainError> {
        let lp = toy::log_density(&self.gpu, &self.flow, store, points, self.chunk().min(10_000));
        match lp.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(TrainError(format!(
                "point {i} ({}, {}) has log-density {}: the model is not finite there",
                points[2 * i],
                points[2 * i + 1],
                lp[i]
            ))),
            None => Ok(lp),
        }
    }

    /// The mean negative log-density (nats) of the 2-D `points`.
    pub fn nll_of(&self, store: &ParamStore<Tensor>, points: &[f32]) -> Result<f64, TrainError> {
        let lp = self.log_density(store, points)?;
        TrainError::finite("the NLL", -lp.iter().sum::<f64>() / lp.len().max(1) as f64)
    }

    /// Parameters, Adam moments, EMA, step and config in one safetensors file.
    pub fn to_checkpoint(&self) -> Checkpoint {
        let mut ck = Checkpoint::default();
        put_training_state(&mut ck, &self.store, &self.adam, &self.ema);
        // A CSV's points travel with the model, so evaluation needs no file outside it.
        if let Source::Points(p) = &self.source {
            ck.tensors.push((POINTS.into(), vec![p.len() / 2, 2], p.clone()));
        }
        ck.metadata.insert("format".into(), FORMAT.into());
        ck.metadata.insert("config".into(), serde_json::to_string(&self.config).expect("config serialises"));
        ck.metadata.insert("step".into(), self.step().to_string());
        ck.metadata.insert("initialized".into(), self.initialized.to_string());
        ck.metadata.insert("log".into(), serde_json::to_string(&self.log).expect("log serialises"));
        ck
    }

    /// Rebuilds a run from a checkpoint (the config inside it), validating every tensor.
    pub fn from_checkpoint(gpu: &Gpu, path: &Path) -> Result<ToyRun, TrainError> {
        ToyRun::from_loaded(gpu, &Checkpoint::load(path)?, &path.display().to_string())
    }

    /// [`ToyRun::from_checkpoint`] of a checkpoint already read; `what` names it in errors.
    pub fn from_loaded(gpu: &Gpu, ck: &Checkpoint, what: &str) -> Result<ToyRun, TrainError> {
        let bad = |why: String| TrainError(format!("{what} does not match this model: {why}"));
        if ck.meta("format")? != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", ck.meta("format")?)));
        }
        let config: ToyConfig = serde_json::from_str(ck.meta("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let step: usize = ck.meta("step")?.parse().map_err(|e| bad(format!("step: {e}")))?;
        config.validate()?;
        let source = match ck.get(POINTS) {
            Some(([_, 2], points)) => Source::Points(parse_points(points, what)?),
            Some((shape, _)) => return Err(bad(format!("{POINTS} has shape {shape:?}, expected [n, 2]"))),
            None => Source::of_dataset(&config.dataset)?,
        };
        let mut run = ToyRun::with_source(gpu, config, source)?;
        take_training_state(ck, &[POINTS], &mut run.store, &mut run.adam, &mut run.ema, bad)?;
        run.adam.step = step;
        run.initialized = ck.metadata.get("initialized").is_some_and(|v| v == "true");
        if let Some(log) = ck.metadata.get("log") {
            run.log = serde_json::from_str(log).map_err(|e| bad(format!("log: {e}")))?;
        }
        Ok(run)
    }
}
