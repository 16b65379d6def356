//! Training runs and what they share: the optimiser and weight average, checkpoints, pictures,
//! the progress bar and the per-step seeds.

pub mod checkpoint;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod seed;
