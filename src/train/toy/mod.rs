//! Toy 2-D density estimation runs: the configuration, the data source, the run and what it
//! shows the training loop.

mod config;
mod outputs;
mod run;
mod source;

pub use config::ToyConfig;
pub use outputs::{Evaluation, LogRow};
pub use run::{ToyRun, FORMAT};
pub use source::Source;
