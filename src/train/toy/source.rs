//! Where the points of a toy run come from: a built-in density or a user's CSV.

use std::path::Path;

use rand::rngs::StdRng;
use rand::Rng;

use crate::data::{load_csv, ToyDataset};
use crate::train::TrainError;

#[derive(Debug, Clone)]
pub enum Source {
    Toy(ToyDataset),
    /// A user's points; batches are drawn from them with replacement.
    Points(Vec<f32>),
}

impl Source {
    /// The source named by a config's dataset: a dataset name or `file:<path>`.
    pub fn of_dataset(dataset: &str) -> Result<Source, TrainError> {
        match dataset.strip_prefix("file:") {
            Some(path) => Ok(Source::Points(load_csv(Path::new(path))?)),
            None => Ok(Source::Toy(ToyDataset::parse(dataset)?)),
        }
    }

    /// `n` points as `x, y` pairs.
    pub fn sample(&self, n: usize, rng: &mut StdRng) -> Vec<f32> {
        match self {
            Source::Toy(d) => d.sample(n, rng),
            Source::Points(p) => {
                let count = p.len() / 2;
                (0..n)
                    .flat_map(|_| {
                        let i = rng.random_range(0..count);
                        [p[2 * i], p[2 * i + 1]]
                    })
                    .collect()
            }
        }
    }

    /// The true differential entropy (nats), where it is known.
    pub fn entropy(&self) -> Option<f64> {
        match self {
            Source::Toy(d) => d.entropy(),
            Source::Points(_) => None,
        }
    }
}
