//! Samples of a toy run written to a file as they are drawn: `x,y` CSV lines streamed
//! through an atomic file, or a histogram PNG. Memory stays flat whatever the number of
//! samples, and a failure (a non-finite sample, a full disk) leaves no partial file.

use std::io::Write;
use std::path::Path;

use super::ToyRun;
use crate::models::toy;
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use crate::train::checkpoint::AtomicFile;
use crate::train::plot::Histogram;
use crate::train::TrainError;

/// What a file of samples holds, by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFile {
    /// `x,y` lines under an `x,y` header.
    Csv,
    /// A histogram of the samples on [-4, 4]².
    Png,
}

impl SampleFile {
    pub fn of(path: &Path) -> Result<SampleFile, TrainError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Ok(SampleFile::Csv),
            Some("png") => Ok(SampleFile::Png),
            _ => Err(TrainError(format!("--out must end in .csv or .png, got {}", path.display()))),
        }
    }
}

impl ToyRun {
    /// Writes `n` samples of the weights `store` to `out` (CSV or PNG by its extension);
    /// returns the most fixed-point iterations each block took.
    pub fn write_samples(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
        out: &Path,
    ) -> Result<Vec<usize>, TrainError> {
        if n == 0 {
            return Err(TrainError("--n must be at least 1".into()));
        }
        let chunk = self.chunk();
        match SampleFile::of(out)? {
            SampleFile::Csv => {
                let mut file = AtomicFile::create(out)?;
                file.write_all(b"x,y\n")?;
                let mut line = String::new();
                let iters = toy::sample_chunks(&self.gpu, &self.flow, store, n, seed, 1.0, chunk, |pts| {
                    line.clear();
                    for p in pts.chunks_exact(2) {
                        use std::fmt::Write;
                        let _ = writeln!(line, "{},{}", p[0], p[1]);
                    }
                    file.write_all(line.as_bytes()).map_err(|e| e.to_string())
                })?;
                file.commit()?;
                Ok(iters)
            }
            SampleFile::Png => {
                let mut histogram = Histogram::new(4.0, 100);
                let iters = toy::sample_chunks(&self.gpu, &self.flow, store, n, seed, 1.0, chunk, |pts| {
                    histogram.add(pts);
                    Ok(())
                })?;
                histogram.image().upscale(3).save_png(out)?;
                Ok(iters)
            }
        }
    }
}
