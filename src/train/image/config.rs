//! The configuration of an image run, stored as JSON in its checkpoints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::models::image::ModelSpec;
use crate::train::bounds;
use crate::train::choices::{Activation, Block, Estimator, GradMode, Hybrid, LrSchedule, Roulette};
use crate::train::optim::AdamConfig;
use crate::train::TrainError;

/// The most images a sample grid holds (a 64 × 64 grid).
pub const MAX_GRID_SAMPLES: usize = 4096;

/// Everything that defines an image run. The field order is the JSON order of checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// mnist, fashion-mnist or digits.
    pub dataset: String,
    pub data_dir: PathBuf,
    pub scales: usize,
    /// Blocks per scale.
    pub blocks: usize,
    pub width: usize,
    pub fc_blocks: usize,
    pub fc_width: usize,
    pub factor_out: bool,
    pub block: Block,
    /// lipswish or elu.
    pub activation: Activation,
    pub coeff: f32,
    /// unbiased or truncated.
    pub estimator: Estimator,
    pub roulette: Roulette,
    /// Exact terms of the unbiased estimator, or the truncation length.
    pub terms: usize,
    pub grad_mode: GradMode,
    /// Spectral-norm power iterations stop at this relative tolerance (at most 100 per step).
    pub power_tol: f32,
    pub alpha: f32,
    pub hybrid: Hybrid,
    pub head_width: usize,
    pub lr: f32,
    /// Checkpoints written before schedules existed have none: constant (the paper's).
    #[serde(default)]
    pub lr_schedule: LrSchedule,
    pub warmup: usize,
    pub clip: f32,
    pub ema: f32,
    pub batch: usize,
    /// Micro-batches whose gradients are summed into one step (batch = micro-batch × this).
    pub accumulate: usize,
    pub iters: usize,
    pub seed: u64,
    pub eval_every: usize,
    /// Test images for bits/dim (the first ones of the test split).
    pub eval_images: usize,
    /// Images in the sample grid.
    pub samples: usize,
}

impl Default for ImageConfig {
    /// The small configuration of the PyTorch reference (3 scales × 1 block, width 64,
    /// batch 64, Poisson(2) with 2 exact terms, Neumann + backward-in-forward), on MNIST.
    fn default() -> Self {
        ImageConfig {
            dataset: "mnist".into(),
            data_dir: PathBuf::from("data"),
            scales: 3,
            blocks: 1,
            width: 64,
            fc_blocks: 0,
            fc_width: 128,
            factor_out: false,
            block: Block::Residual,
            activation: Activation::Lipswish,
            coeff: 0.98,
            estimator: Estimator::Unbiased,
            roulette: Roulette::Poisson,
            terms: 2,
            grad_mode: GradMode::NeumannBif,
            power_tol: 1e-3,
            alpha: 1e-6,
            hybrid: Hybrid::None,
            head_width: 256,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            warmup: 1000,
            clip: 1.0,
            ema: 0.999,
            batch: 64,
            accumulate: 1,
            iters: 300,
            seed: 1,
            eval_every: 100,
            eval_images: 2000,
            samples: 16,
        }
    }
}

impl ImageConfig {
    pub fn adam(&self) -> AdamConfig {
        AdamConfig::residual_flows(self.lr, self.warmup, self.clip, self.lr_schedule.cosine_steps(self.iters))
    }

    /// The model of this configuration for images of `image` = [C, H, W] with `classes`.
    pub fn model_spec(&self, image: [usize; 3], classes: usize) -> Result<ModelSpec, TrainError> {
        let spec = ModelSpec {
            image,
            scales: self.scales,
            blocks: self.blocks,
            width: self.width,
            fc_blocks: self.fc_blocks,
            fc_width: self.fc_width,
            factor_out: self.factor_out,
            block: self.block.into(),
            coeff: self.coeff,
            activation: self.activation.into(),
            estimator: self.estimator.with_terms(self.terms, self.roulette),
            grad_mode: self.grad_mode.into(),
            alpha: self.alpha,
            classifier: self.hybrid.lambda(1).map(|_| (classes, self.head_width)),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what does not depend on the dataset (the model's shapes are checked against the
    /// images in `model_spec`).
    pub fn validate(&self) -> Result<(), TrainError> {
        // The upper bound of --scales depends on the images: `ModelSpec::validate` checks it.
        bounds::count("scales", self.scales, 1..=usize::MAX)?;
        bounds::count("blocks", self.blocks, 1..=100)?;
        bounds::count("width", self.width, 1..=bounds::MAX_WIDTH)?;
        bounds::count("fc-blocks", self.fc_blocks, 0..=100)?;
        bounds::count("fc-width", self.fc_width, 1..=bounds::MAX_WIDTH)?;
        bounds::count("terms", self.terms, 1..=100)?;
        bounds::count("head-width", self.head_width, 0..=bounds::MAX_WIDTH)?;
        bounds::count("batch", self.batch, 1..=bounds::MAX_BATCH)?;
        bounds::count("accumulate", self.accumulate, 1..=bounds::MAX_BATCH)?;
        bounds::count("iters", self.iters, 1..=bounds::MAX_STEPS)?;
        bounds::count("eval-every", self.eval_every, 1..=bounds::MAX_STEPS)?;
        bounds::count("eval-images", self.eval_images, 1..=10_000_000)?;
        bounds::count("samples", self.samples, 1..=MAX_GRID_SAMPLES)?;
        if !(self.coeff > 0.0 && self.coeff < 1.0) {
            return Err(TrainError(format!("--coeff must be in (0, 1) for an invertible flow, got {}", self.coeff)));
        }
        bounds::positive("lr", self.lr, 10.0)?;
        bounds::positive("clip", self.clip, 1e9)?;
        bounds::positive("power-tol", self.power_tol, 1.0)?;
        if self.activation == Activation::Softplus {
            return Err(TrainError("--activation softplus is for toy models; images take lipswish or elu".into()));
        }
        if self.estimator == Estimator::Exact {
            return Err(TrainError(
                "--estimator exact needs a 2×2 Jacobian (toy models); images take unbiased or truncated".into(),
            ));
        }
        if self.batch == 0 || self.accumulate == 0 || self.eval_images == 0 {
            return Err(TrainError("--batch, --accumulate and --eval-images must be positive".into()));
        }
        if !self.batch.is_multiple_of(self.accumulate) {
            return Err(TrainError(format!(
                "--batch {} must be a multiple of --accumulate {} (each micro-batch has batch/accumulate images)",
                self.batch, self.accumulate
            )));
        }
        // α = 0 would let a dequantised pixel that rounds to 0 or 1 in f32 reach log 0.
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(TrainError(format!("--alpha must be in (0, 0.5), got {}", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.ema) {
            return Err(TrainError(format!("--ema must be in [0, 1), got {}", self.ema)));
        }
        if self.samples == 0 || (self.hybrid != Hybrid::None && self.head_width == 0) {
            return Err(TrainError("--samples and --head-width must be positive".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config JSON of a hybrid image checkpoint, as written before the choices were typed.
    const HYBRID_JSON: &str = r#"{"dataset":"digits","data_dir":"data","scales":3,"blocks":1,"width":8,"fc_blocks":0,"fc_width":128,"factor_out":false,"block":"residual","activation":"lipswish","coeff":0.98,"estimator":"unbiased","roulette":"poisson","terms":2,"grad_mode":"neumann-bif","power_tol":0.001,"alpha":0.000001,"hybrid":"1/D","head_width":8,"lr":0.001,"lr_schedule":"cosine","warmup":1000,"clip":1.0,"ema":0.999,"batch":16,"accumulate":2,"iters":9,"seed":1,"eval_every":3,"eval_images":32,"samples":4}"#;

    #[test]
    fn checkpoints_old_and_new_read_the_same_config() {
        let config: ImageConfig = serde_json::from_str(HYBRID_JSON).unwrap();
        assert_eq!(
            (config.hybrid, config.grad_mode, config.lr_schedule),
            (Hybrid::InverseDim, GradMode::NeumannBif, LrSchedule::Cosine)
        );
        assert_eq!(serde_json::to_string(&config).unwrap(), HYBRID_JSON);
        // `--hybrid` ignored case, and schedules came later.
        let old = HYBRID_JSON.replace(r#""1/D""#, r#""1/d""#).replace(r#""lr_schedule":"cosine","#, "");
        let old: ImageConfig = serde_json::from_str(&old).unwrap();
        assert_eq!(ImageConfig { lr_schedule: LrSchedule::Constant, ..config }, old);
    }
}
