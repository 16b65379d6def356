//! Toy 2-D density estimation runs: the configuration, the data source, the run, what it
//! shows the training loop, and its samples written to files.

mod config;
mod outputs;
mod run;
mod samples;
mod source;

pub use config::ToyConfig;
pub use outputs::{Evaluation, LogRow};
pub use run::{ToyRun, FORMAT};
pub use samples::SampleFile;
pub use source::Source;
