//! Image checkpoints: the training state with the config and the image format, so sampling
//! needs no dataset on disk.

use std::path::Path;

use super::{ImageFormat, ImageRun};
use crate::gpu::Gpu;
use crate::train::checkpoint::{put_training_state, take_training_state, Checkpoint};
use crate::train::TrainError;

/// The format tag of image checkpoints.
pub const FORMAT: &str = "resflow-image-1";

impl ImageRun {
    pub fn to_checkpoint(&self) -> Checkpoint {
        let mut ck = Checkpoint::default();
        put_training_state(&mut ck, &self.store, &self.adam, &self.ema);
        let f = &self.format;
        let meta = [
            ("format", FORMAT.to_string()),
            ("config", serde_json::to_string(&self.config).expect("config serialises")),
            ("step", self.step().to_string()),
            ("initialized", self.initialized.to_string()),
            ("image", format!("{},{},{}", f.shape[0], f.shape[1], f.shape[2])),
            ("levels", f.levels.to_string()),
            ("classes", f.classes.to_string()),
            ("log", serde_json::to_string(&self.log).expect("log serialises")),
        ];
        ck.metadata.extend(meta.into_iter().map(|(k, v)| (k.to_string(), v)));
        ck
    }

    /// Rebuilds a run from a checkpoint (its config and image format), validating every tensor.
    pub fn from_checkpoint(gpu: &Gpu, path: &Path) -> Result<ImageRun, TrainError> {
        ImageRun::from_loaded(gpu, &Checkpoint::load(path)?, &path.display().to_string())
    }

    /// [`ImageRun::from_checkpoint`] of a checkpoint already read; `what` names it in errors.
    pub fn from_loaded(gpu: &Gpu, ck: &Checkpoint, what: &str) -> Result<ImageRun, TrainError> {
        let bad = |why: String| TrainError(format!("{what} does not match this model: {why}"));
        if ck.meta("format")? != FORMAT {
            return Err(bad(format!("format {:?}, expected {FORMAT:?}", ck.meta("format")?)));
        }
        let config: super::ImageConfig =
            serde_json::from_str(ck.meta("config")?).map_err(|e| bad(format!("config: {e}")))?;
        let number =
            |key: &str| -> Result<usize, TrainError> { ck.meta(key)?.parse().map_err(|e| bad(format!("{key}: {e}"))) };
        let dims: Vec<usize> = ck
            .meta("image")?
            .split(',')
            .map(|v| v.parse().map_err(|e| bad(format!("image: {e}"))))
            .collect::<Result<_, _>>()?;
        let shape: [usize; 3] = dims.try_into().map_err(|_| bad("image needs 3 dimensions".into()))?;
        let format = ImageFormat { shape, levels: number("levels")?, classes: number("classes")? };
        // Bounded before anything is built from them.
        if !(1..=64).contains(&shape[0]) || shape[1..].iter().any(|d| !(1..=1024).contains(d)) {
            return Err(bad(format!("image {shape:?}: at most 64 channels of 1024 × 1024 pixels")));
        }
        if !(2..=65_536).contains(&format.levels) || format.classes > 100_000 {
            return Err(bad(format!(
                "levels {} (2..=65536) or classes {} (at most 100000)",
                format.levels, format.classes
            )));
        }
        let mut run = Self::build(gpu, config, format)?;
        take_training_state(ck, &[], &mut run.store, &mut run.adam, &mut run.ema, bad)?;
        run.adam.step = number("step")?;
        run.initialized = ck.metadata.get("initialized").is_some_and(|v| v == "true");
        if let Some(log) = ck.metadata.get("log") {
            run.log = serde_json::from_str(log).map_err(|e| bad(format!("log: {e}")))?;
        }
        Ok(run)
    }
}
