//! Training runs: the [`Run`] trait each model family implements ([`toy`], [`image`]), the
//! one loop over it ([`trainer`]), the typed choices of their configurations ([`choices`])
//! and their error; and what runs share: the optimiser and weight average, checkpoints,
//! pictures, the progress bar and the per-step seeds.

pub mod any;
pub mod bounds;
pub mod checkpoint;
pub mod choices;
mod error;
pub mod image;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod run;
pub mod seed;
pub mod toy;
pub mod trainer;

pub use any::{AnyRun, Family};
pub use error::TrainError;
pub use run::{LogRow, Pace, Run};
