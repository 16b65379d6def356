//! A run of any model family, chosen by the dataset of a new run or by the format tag of a
//! checkpoint: what the command line holds instead of asking each family in turn.

use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::image::{self, ImageRun};
use super::run::Run;
use super::toy::ToyRun;
use super::{trainer, TrainError};
use crate::data::IMAGE_DATASETS;
use crate::gpu::Gpu;

/// The model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Toy,
    Image,
}

impl Family {
    /// The family that trains on `dataset` (a toy name, `file:<path>`, or an image dataset).
    pub fn of_dataset(dataset: &str) -> Family {
        if IMAGE_DATASETS.contains(&dataset) {
            Family::Image
        } else {
            Family::Toy
        }
    }

    /// The family of the model in a checkpoint, from the file's header only. Checkpoints
    /// without the image tag are read as toy ones (whose loading names a wrong tag).
    pub fn of_checkpoint(path: &Path) -> Result<Family, TrainError> {
        let meta = Checkpoint::read_metadata(path)?;
        Ok(if meta.get("format").is_some_and(|f| f == image::FORMAT) { Family::Image } else { Family::Toy })
    }
}

/// A run of either family (each boxed: the two differ much in size).
pub enum AnyRun {
    Toy(Box<ToyRun>),
    Image(Box<ImageRun>),
}

/// Calls the same `Run` method on whichever run this is.
macro_rules! each {
    ($self:expr, $run:ident => $body:expr) => {
        match $self {
            AnyRun::Toy($run) => $body,
            AnyRun::Image($run) => $body,
        }
    };
}

impl AnyRun {
    /// The run saved in a checkpoint's bytes (a file read already, or one built into the
    /// program); `what` names it in errors.
    pub fn parse(gpu: &Gpu, bytes: &[u8], what: &str) -> Result<AnyRun, TrainError> {
        let ck = Checkpoint::parse(bytes, what)?;
        Ok(match ck.metadata.get("format").map(String::as_str) {
            Some(image::FORMAT) => AnyRun::Image(Box::new(ImageRun::from_loaded(gpu, &ck, what)?)),
            _ => AnyRun::Toy(Box::new(ToyRun::from_loaded(gpu, &ck, what)?)),
        })
    }

    /// The run saved in the checkpoint at `path`.
    pub fn load(gpu: &Gpu, path: &Path) -> Result<AnyRun, TrainError> {
        Ok(match Family::of_checkpoint(path)? {
            Family::Toy => AnyRun::Toy(Box::new(ToyRun::from_checkpoint(gpu, path)?)),
            Family::Image => AnyRun::Image(Box::new(ImageRun::from_checkpoint(gpu, path)?)),
        })
    }

    /// The run of a checkpoint to continue, up to `iters` steps when given; an image run's
    /// data must be on disk.
    pub fn resume(gpu: &Gpu, path: &Path, iters: Option<usize>) -> Result<AnyRun, TrainError> {
        let mut run = AnyRun::load(gpu, path)?;
        run.continue_to(iters)?;
        Ok(run)
    }

    /// Prepares a loaded run to train on, up to `iters` steps when given: a run with no steps
    /// left is an error (it would train nothing), and an image run's data must be on disk.
    pub fn continue_to(&mut self, iters: Option<usize>) -> Result<(), TrainError> {
        let (step, planned) = each!(&*self, r => (r.step(), r.iters()));
        match iters {
            Some(iters) if iters <= step => {
                return Err(TrainError(format!(
                    "--iters must be above the checkpoint's step {step} to train further, got {iters}"
                )))
            }
            Some(iters) => each!(&mut *self, r => r.extend_to(iters)),
            None if planned <= step => {
                return Err(TrainError(format!(
                    "the checkpoint's run has done all its {planned} steps; pass --iters above {step} to continue it"
                )))
            }
            None => {}
        }
        if let AnyRun::Image(r) = self {
            r.data()?;
        }
        Ok(())
    }

    pub fn default_out(&self) -> PathBuf {
        each!(self, r => r.default_out())
    }

    pub fn banner(&self, adapter: &str, out: &Path) -> String {
        each!(self, r => r.banner(adapter, out))
    }

    /// The whole training job (see `trainer::train`); returns the closing line.
    pub fn train(&mut self, out: &Path, quiet: bool) -> Result<Option<String>, TrainError> {
        each!(self, r => {
            trainer::train(r.as_mut(), out, quiet)?;
            Ok(r.summary(out))
        })
    }
}
