//! Checkpoints as safetensors files: every named tensor plus string metadata (the model
//! configuration as JSON, the step, a format tag). Written atomically: a temporary file in the
//! same directory, then a rename, so an interrupted write never replaces a good checkpoint.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};

/// What went wrong reading or writing a checkpoint; always names the file.
#[derive(Debug)]
pub struct CheckpointError(pub String);

impl fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for CheckpointError {}

/// The contents of a checkpoint, host side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    pub fn get(&self, name: &str) -> Option<(&[usize], &[f32])> {
        self.tensors.iter().find(|(n, _, _)| n == name).map(|(_, s, d)| (s.as_slice(), d.as_slice()))
    }

    pub fn meta(&self, key: &str) -> Result<&str, CheckpointError> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| CheckpointError(format!("checkpoint metadata lacks {key:?}")))
    }

    /// Writes `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let bytes: Vec<Vec<u8>> = self.tensors.iter().map(|(_, _, d)| bytemuck::cast_slice(d).to_vec()).collect();
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| {
                let view = TensorView::new(Dtype::F32, shape.clone(), b)
                    .map_err(|e| CheckpointError(format!("tensor {name}: {e}")))?;
                Ok((name.clone(), view))
            })
            .collect::<Result<_, CheckpointError>>()?;
        let data = safetensors::serialize(views, &Some(self.metadata.clone()))
            .map_err(|e| CheckpointError(format!("cannot encode checkpoint: {e}")))?;
        write_atomically(path, &data).map_err(|e| CheckpointError(format!("cannot write {}: {e}", path.display())))
    }

    /// Reads `path`; a missing, truncated or corrupt file is a clear error.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let data = std::fs::read(path)
            .map_err(|e| CheckpointError(format!("cannot read checkpoint {}: {e}", path.display())))?;
        let bad = |e: &dyn fmt::Display| {
            CheckpointError(format!("{} is not a valid checkpoint (truncated or corrupt?): {e}", path.display()))
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(&data).map_err(|e| bad(&e))?;
        let st = safetensors::SafeTensors::deserialize(&data).map_err(|e| bad(&e))?;
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(&format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            tensors.push((name, view.shape().to_vec(), values));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
    }
}

/// Writes `data` to a temporary sibling of `path`, syncs it, then renames it over `path`.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}
