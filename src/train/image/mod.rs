//! Image runs: the configuration, the run and its training step, evaluation and sampling,
//! checkpoints, and what the run shows the training loop.

mod checkpoint;
mod config;
mod eval;
mod outputs;
mod run;

pub use checkpoint::FORMAT;
pub use config::{ImageConfig, MAX_GRID_SAMPLES};
pub use eval::Evaluation;
pub use outputs::{Evaluations, ImageLogRow};
pub use run::{ImageFormat, ImageRun, StepStats};
