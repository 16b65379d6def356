//! The configuration of a toy run, stored as JSON in its checkpoints.

use serde::{Deserialize, Serialize};

use crate::models::toy::ToySpec;
use crate::train::bounds;
use crate::train::choices::{Activation, Estimator, GradMode, LrSchedule, Roulette};
use crate::train::optim::AdamConfig;
use crate::train::TrainError;

/// Everything that defines a toy run. The field order is the JSON order of checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToyConfig {
    /// A dataset name, or `file:<path>` for a CSV of points.
    pub dataset: String,
    pub blocks: usize,
    pub hidden: Vec<usize>,
    pub activation: Activation,
    pub coeff: f32,
    pub power_iters: usize,
    pub estimator: Estimator,
    /// Terms of the truncated estimator, or exact terms of the unbiased one.
    pub terms: usize,
    pub grad_mode: GradMode,
    pub actnorm: bool,
    pub lr: f32,
    /// Checkpoints written before schedules existed have none: constant.
    #[serde(default)]
    pub lr_schedule: LrSchedule,
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
            activation: Activation::Lipswish,
            coeff: 0.99,
            power_iters: 5,
            estimator: Estimator::Exact,
            terms: 2,
            grad_mode: GradMode::Neumann,
            actnorm: true,
            lr: 1e-2,
            lr_schedule: LrSchedule::Constant,
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

impl ToyConfig {
    /// The model of this configuration (the unbiased estimator draws geometric terms).
    pub fn model_spec(&self) -> ToySpec {
        ToySpec {
            blocks: self.blocks,
            hidden: self.hidden.clone(),
            activation: self.activation.into(),
            coeff: self.coeff,
            estimator: self.estimator.with_terms(self.terms, Roulette::Geometric),
            grad_mode: self.grad_mode.into(),
            actnorm: self.actnorm,
        }
    }

    pub fn adam(&self) -> AdamConfig {
        AdamConfig::residual_flows(self.lr, self.warmup, self.clip, self.lr_schedule.cosine_steps(self.iters))
    }

    /// Every setting within its bounds (see `bounds`), whether it came from flags or from a
    /// checkpoint: nothing is built from a config this refuses.
    pub fn validate(&self) -> Result<(), TrainError> {
        bounds::count("blocks", self.blocks, 1..=1000)?;
        bounds::count("hidden (number of layers)", self.hidden.len(), 1..=16)?;
        for &h in &self.hidden {
            bounds::count("hidden", h, 1..=bounds::MAX_WIDTH)?;
        }
        bounds::count("power-iters", self.power_iters, 1..=10_000)?;
        bounds::count("terms", self.terms, 1..=100)?;
        if !(self.coeff > 0.0 && self.coeff < 1.0) {
            return Err(TrainError(format!("--coeff must be in (0, 1) for an invertible flow, got {}", self.coeff)));
        }
        bounds::fraction("ema", self.ema, 0.0, 1.0, true)?;
        bounds::positive("lr", self.lr, 10.0)?;
        bounds::positive("clip", self.clip, 1e9)?;
        bounds::count("batch", self.batch, 1..=bounds::MAX_BATCH)?;
        bounds::count("iters", self.iters, 1..=bounds::MAX_STEPS)?;
        bounds::count("eval-every", self.eval_every, 1..=bounds::MAX_STEPS)?;
        bounds::count("eval samples", self.eval_samples, 1..=1_000_000_000)?;
        let params = self.parameter_count();
        if params > bounds::MAX_PARAMETERS {
            return Err(TrainError(format!(
                "--blocks × --hidden make {params} parameters, more than the {} allowed",
                bounds::MAX_PARAMETERS
            )));
        }
        Ok(())
    }

    /// Weights and biases of every block's MLP (an upper bound on what the model allocates,
    /// computed without allocating).
    pub fn parameter_count(&self) -> usize {
        let mut widths = vec![2];
        widths.extend(&self.hidden);
        widths.push(2);
        let per_block: usize = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum::<usize>() + 4;
        per_block.saturating_mul(self.blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config JSON of the default run's checkpoint, as written before the choices were typed.
    const DEFAULT_JSON: &str = r#"{"dataset":"checkerboard","blocks":10,"hidden":[64,64],"activation":"lipswish","coeff":0.99,"power_iters":5,"estimator":"exact","terms":2,"grad_mode":"neumann","actnorm":true,"lr":0.01,"lr_schedule":"constant","warmup":100,"clip":10.0,"ema":0.99,"batch":256,"iters":1400,"seed":1,"eval_every":700,"eval_samples":10000}"#;

    #[test]
    fn checkpoints_old_and_new_read_the_same_config() {
        assert_eq!(serde_json::to_string(&ToyConfig::default()).unwrap(), DEFAULT_JSON);
        assert_eq!(serde_json::from_str::<ToyConfig>(DEFAULT_JSON).unwrap(), ToyConfig::default());
        // Checkpoints from before learning-rate schedules have none: constant.
        let old = DEFAULT_JSON.replace(r#""lr_schedule":"constant","#, "");
        assert_eq!(serde_json::from_str::<ToyConfig>(&old).unwrap(), ToyConfig::default());
    }
}
