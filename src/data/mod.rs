//! Datasets: the 2-D toy densities and user CSV files of 2-D points.

pub mod toy;

pub use toy::{load_csv, ToyDataset};
