//! Image Residual Flows: the multi-scale model (`model`), and its training, bits/dim
//! evaluation, sampling and checkpoints (`run`). The configuration lives here.

pub mod run;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::flow::{Estimator, GradMode, Roulette};
use crate::ops::Activation;

pub use crate::models::image::{BlockKind, ModelSpec, MultiScaleFlow};
pub use run::{ImageRun, ImageTrainOutputs};

/// Everything that defines an image run; stored in the checkpoint's metadata.
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
    /// `residual` or `coupling` (the Real NVP baseline).
    pub block: String,
    pub activation: String,
    pub coeff: f32,
    /// `unbiased` (Russian roulette) or `truncated`.
    pub estimator: String,
    /// `poisson` (λ = 2) or `geometric` (p = 0.5).
    pub roulette: String,
    /// Exact terms of the unbiased estimator, or the truncation length.
    pub terms: usize,
    pub grad_mode: String,
    /// Spectral-norm power iterations stop at this relative tolerance (at most 100 per step).
    pub power_tol: f32,
    pub alpha: f32,
    /// The hybrid model's λ in λ·(−log p(x)) + CE: `none` (a pure density model), `0`, `1/D`, `1`.
    pub hybrid: String,
    pub head_width: usize,
    pub lr: f32,
    /// `constant` (the paper) or `cosine` (decay to zero at the last step); checkpoints
    /// without it are constant.
    #[serde(default = "crate::toy::constant_schedule")]
    pub lr_schedule: String,
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
            block: "residual".into(),
            activation: "lipswish".into(),
            coeff: 0.98,
            estimator: "unbiased".into(),
            roulette: "poisson".into(),
            terms: 2,
            grad_mode: "neumann-bif".into(),
            power_tol: 1e-3,
            alpha: 1e-6,
            hybrid: "none".into(),
            head_width: 256,
            lr: 1e-3,
            lr_schedule: "constant".into(),
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

/// A configuration or run error, printed as one line.
#[derive(Debug)]
pub struct ImageError(pub String);

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for ImageError {}

macro_rules! image_error_from {
    ($($t:ty),*) => { $( impl From<$t> for ImageError { fn from(e: $t) -> Self { ImageError(e.to_string()) } } )* };
}
image_error_from!(crate::train::checkpoint::CheckpointError, crate::flow::InverseError, crate::data::DataError, String);

impl ImageConfig {
    /// The step at which the cosine schedule reaches zero (0: constant learning rate).
    pub fn cosine_steps(&self) -> usize {
        crate::train::optim::cosine_steps(&self.lr_schedule, self.iters).unwrap_or(0)
    }
    pub fn activation(&self) -> Result<Activation, ImageError> {
        match self.activation.as_str() {
            "lipswish" => Ok(Activation::LipSwish),
            "elu" => Ok(Activation::Elu),
            other => Err(ImageError(format!("unknown activation {other:?}; choose lipswish, elu"))),
        }
    }
    pub fn estimator(&self) -> Result<Estimator, ImageError> {
        let roulette = match self.roulette.as_str() {
            "poisson" => Roulette::Poisson(2.0),
            "geometric" => Roulette::Geometric(0.5),
            other => return Err(ImageError(format!("unknown roulette {other:?}; choose poisson, geometric"))),
        };
        match self.estimator.as_str() {
            "unbiased" => Ok(Estimator::Unbiased { roulette, exact_terms: self.terms }),
            "truncated" => Ok(Estimator::Truncated(self.terms.max(1))),
            other => Err(ImageError(format!("unknown estimator {other:?} for images; choose unbiased, truncated"))),
        }
    }
    pub fn grad_mode(&self) -> Result<GradMode, ImageError> {
        match self.grad_mode.as_str() {
            "naive" => Ok(GradMode::Naive),
            "neumann" => Ok(GradMode::Neumann),
            "neumann-bif" => Ok(GradMode::NeumannBif),
            other => Err(ImageError(format!("unknown gradient mode {other:?}; choose naive, neumann, neumann-bif"))),
        }
    }
    pub fn block_kind(&self) -> Result<BlockKind, ImageError> {
        match self.block.as_str() {
            "residual" => Ok(BlockKind::Residual),
            "coupling" => Ok(BlockKind::Coupling),
            other => Err(ImageError(format!("unknown block {other:?}; choose residual, coupling"))),
        }
    }
    /// λ of the hybrid loss for images of `dim` dimensions; None for a pure density model.
    pub fn hybrid_lambda(&self, dim: usize) -> Result<Option<f32>, ImageError> {
        match self.hybrid.to_ascii_lowercase().as_str() {
            "none" => Ok(None),
            "0" => Ok(Some(0.0)),
            "1/d" => Ok(Some(1.0 / dim as f32)),
            "1" => Ok(Some(1.0)),
            other => Err(ImageError(format!("unknown --hybrid {other:?}; choose none, 0, 1/D, 1"))),
        }
    }

    /// The model of this configuration for images of `image` = [C, H, W] with `classes`.
    pub fn model_spec(&self, image: [usize; 3], classes: usize) -> Result<ModelSpec, ImageError> {
        let spec = ModelSpec {
            image,
            scales: self.scales,
            blocks: self.blocks,
            width: self.width,
            fc_blocks: self.fc_blocks,
            fc_width: self.fc_width,
            factor_out: self.factor_out,
            block: self.block_kind()?,
            coeff: self.coeff,
            activation: self.activation()?,
            estimator: self.estimator()?,
            grad_mode: self.grad_mode()?,
            alpha: self.alpha,
            classifier: self.hybrid_lambda(1)?.map(|_| (classes, self.head_width)),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what does not depend on the dataset (the model's shapes are checked against the
    /// images in `model_spec`).
    pub fn validate(&self) -> Result<(), ImageError> {
        self.activation()?;
        self.estimator()?;
        self.grad_mode()?;
        self.block_kind()?;
        self.hybrid_lambda(1)?;
        crate::train::optim::cosine_steps(&self.lr_schedule, self.iters).map_err(ImageError)?;
        if self.batch == 0 || self.accumulate == 0 || self.eval_images == 0 {
            return Err(ImageError("--batch, --accumulate and --eval-images must be positive".into()));
        }
        if !self.batch.is_multiple_of(self.accumulate) {
            return Err(ImageError(format!(
                "--batch {} must be a multiple of --accumulate {} (each micro-batch has batch/accumulate images)",
                self.batch, self.accumulate
            )));
        }
        // α = 0 would let a dequantised pixel that rounds to 0 or 1 in f32 reach log 0.
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err(ImageError(format!("--alpha must be in (0, 0.5), got {}", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.ema) {
            return Err(ImageError(format!("--ema must be in [0, 1), got {}", self.ema)));
        }
        if self.samples == 0 || (self.hybrid != "none" && self.head_width == 0) {
            return Err(ImageError("--samples and --head-width must be positive".into()));
        }
        Ok(())
    }
}
