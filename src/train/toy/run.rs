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
        let (loss, grads) = {
            let tape = Tape::new();
            let b = Binder::new(&self.store, &tape);
            let ctx = FlowCtx::new(&b, step_seed(self.config.seed, t, 1), false);
            let lp = self.flow.log_prob(&ctx, &Var::constant(x));
            let nll = tape.affine(&tape.mean(&lp), -1.0, 0.0);
            let loss = nll.value.item() as f64;
            if !loss.is_finite() {
                return Err(TrainError(format!(
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
        let lp = toy::log_density(&self.gpu, &self.flow, store, &pts);
        -lp.iter().sum::<f64>() / lp.len() as f64
    }

    /// Parameters, Adam moments, EMA, step and config in one safetensors file.
    pub fn to_checkpoint(&self) -> Checkpoint {
        let mut ck = Checkpoint::default();
        put_training_state(&mut ck, &self.store, &self.adam, &self.ema);
        ck.metadata.insert("format".into(), FORMAT.into());
        ck.metadata.insert("config".into(), serde_json::to_string(&self.config).expect("config serialises"));
        ck.metadata.insert("step".into(), self.step().to_string());
        ck.metadata.insert("initialized".into(), self.initialized.to_string());
        ck.metadata.insert("log".into(), serde_json::to_string(&self.log).expect("log serialises"));
        ck
    }

    /// Rebuilds a run from a checkpoint (the config inside it), validating every tensor.
    pub fn from_checkpoint(gpu: &Gpu, path: &Path) -> Result<ToyRun, TrainError> {
        let ck = Checkpoint::load(path)?;
        let bad = |why: String| TrainError(format!("{} does not match this model: {why}", path.display()));
        if ck.meta("format")? != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", ck.meta("format")?)));
        }
        let config: ToyConfig = serde_json::from_str(ck.meta("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let step: usize = ck.meta("step")?.parse().map_err(|e| bad(format!("step: {e}")))?;
        let mut run = ToyRun::new(gpu, config)?;
        take_training_state(&ck, &mut run.store, &mut run.adam, &mut run.ema, bad)?;
        run.adam.step = step;
        run.initialized = ck.metadata.get("initialized").is_some_and(|v| v == "true");
        if let Some(log) = ck.metadata.get("log") {
            run.log = serde_json::from_str(log).map_err(|e| bad(format!("log: {e}")))?;
        }
        Ok(run)
    }
}
