//! Checkpoints as safetensors files: every named tensor plus string metadata (the model
//! configuration as JSON, the step, a format tag). Written atomically: a temporary file in the
//! same directory, then a rename, so an interrupted write never replaces a good checkpoint.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};

use crate::nn::ParamStore;
use crate::ops::TensorOps;
use crate::tensor::Tensor;
use crate::train::optim::{Adam, Ema};

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
        write_atomically(path, &data).map_err(|e| CheckpointError(e.to_string()))
    }

    /// Only the string metadata of `path`, from the file's header (the tensors are not read):
    /// enough to tell which kind of model a checkpoint holds.
    pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>, CheckpointError> {
        use std::io::Read;
        let mut file = std::fs::File::open(path)
            .map_err(|e| CheckpointError(format!("cannot read checkpoint {}: {e}", path.display())))?;
        let bad = |e: &dyn fmt::Display| {
            CheckpointError(format!("{} is not a valid checkpoint (truncated or corrupt?): {e}", path.display()))
        };
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(|e| bad(&e))?;
        let len = u64::from_le_bytes(len);
        // safetensors caps its JSON header at 100 MB.
        if len > 100_000_000 {
            return Err(bad(&format!("header of {len} bytes")));
        }
        let mut header = vec![0u8; len as usize];
        file.read_exact(&mut header).map_err(|e| bad(&e))?;
        let json: serde_json::Value = serde_json::from_slice(&header).map_err(|e| bad(&e))?;
        let meta = json.get("__metadata__").and_then(|m| m.as_object());
        Ok(meta
            .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
            .unwrap_or_default())
    }

    /// Reads `path`; a missing, truncated or corrupt file is a clear error.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let data = std::fs::read(path)
            .map_err(|e| CheckpointError(format!("cannot read checkpoint {}: {e}", path.display())))?;
        Checkpoint::parse(&data, &path.display().to_string())
    }

    /// Decodes the bytes of a checkpoint file; `what` names it in errors.
    pub fn parse(data: &[u8], what: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |e: &dyn fmt::Display| {
            CheckpointError(format!("{what} is not a valid checkpoint (truncated or corrupt?): {e}"))
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(data).map_err(|e| bad(&e))?;
        let st = safetensors::SafeTensors::deserialize(data).map_err(|e| bad(&e))?;
        let mut tensors = Vec::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(bad(&format!("tensor {name} is {:?}, expected F32", view.dtype())));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            // A NaN or infinite weight would only surface as a NaN result much later.
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(bad(&format!("tensor {name} holds a non-finite value ({}) at index {i}", values[i])));
            }
            tensors.push((name, view.shape().to_vec(), values));
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Checkpoint { tensors, metadata: meta.metadata().clone().unwrap_or_default() })
    }
}

/// Writes `data` to a temporary sibling of `path`, syncs it, then renames it over `path`.
/// The error names the file; on failure neither the temporary nor a partial `path` remains.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = AtomicFile::create(path)?;
    file.write_all(data)?;
    file.commit()
}

/// A file written through a temporary sibling (`.name.tmpPID`) and renamed over its path only
/// by [`AtomicFile::commit`]: a failed or abandoned write keeps whatever `path` held and leaves
/// no temporary behind. Every error names the file it concerns.
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

/// `e` with the path it concerns in its message.
fn naming(path: &Path, what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
}

impl AtomicFile {
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| naming(dir, "create the directory", e))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
        let file = std::fs::File::create(&tmp).map_err(|e| naming(&tmp, "create", e))?;
        Ok(AtomicFile { path: path.to_path_buf(), tmp, file: Some(std::io::BufWriter::new(file)) })
    }

    /// Syncs the data and renames the temporary over the path.
    pub fn commit(mut self) -> std::io::Result<()> {
        // The file is closed (at the end of this block) before it is renamed.
        {
            let file = self.file.take().expect("not yet committed");
            let file = file.into_inner().map_err(|e| naming(&self.tmp, "write", e.into_error()))?;
            file.sync_all().map_err(|e| naming(&self.tmp, "write", e))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(|e| naming(&self.path, "write", e))
    }
}

impl std::io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let file = self.file.as_mut().expect("not yet committed");
        file.write(buf).map_err(|e| naming(&self.tmp, "write", e))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let file = self.file.as_mut().expect("not yet committed");
        file.flush().map_err(|e| naming(&self.tmp, "write", e))
    }
}

impl Drop for AtomicFile {
    /// Removes the temporary unless it was renamed (whether or not writing it failed).
    fn drop(&mut self) {
        self.file.take();
        if self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The tensors of a training run: parameters (`param/`), Adam moments (`adam_m/`, `adam_v/`)
/// and the EMA weights (`ema/`), each under its parameter's stable name.
pub fn put_training_state(ck: &mut Checkpoint, store: &ParamStore<Tensor>, adam: &Adam<Tensor>, ema: &Ema<Tensor>) {
    let mut put = |name: String, t: &Tensor| ck.tensors.push((name, t.shape().to_vec(), t.to_vec()));
    for id in store.ids() {
        put(format!("param/{}", store.name(id)), store.get(id));
    }
    for (id, m) in &adam.m {
        put(format!("adam_m/{}", store.name(*id)), m);
    }
    for (id, v) in &adam.v {
        put(format!("adam_v/{}", store.name(*id)), v);
    }
    for (id, e) in &ema.values {
        put(format!("ema/{}", store.name(*id)), e);
    }
}

/// Loads what `put_training_state` wrote into a freshly built model, checking every shape;
/// `bad` turns a mismatch into the caller's error. Every parameter and, for trainable ones,
/// its EMA must be there (evaluation uses the EMA: fresh weights in its place would pass
/// silently); a tensor the model does not have, and that is not one of the run's `others`, is
/// an error too.
pub fn take_training_state<E>(
    ck: &Checkpoint,
    others: &[&str],
    store: &mut ParamStore<Tensor>,
    adam: &mut Adam<Tensor>,
    ema: &mut Ema<Tensor>,
    bad: impl Fn(String) -> E,
) -> Result<(), E> {
    let load = |name: &str, like: &Tensor| -> Result<Option<Tensor>, E> {
        match ck.get(name) {
            None => Ok(None),
            Some((shape, data)) if shape == like.shape() => Ok(Some(like.tensor_like(data, shape))),
            Some((shape, _)) => Err(bad(format!("{name} has shape {shape:?}, the model expects {:?}", like.shape()))),
        }
    };
    for id in store.ids().collect::<Vec<_>>() {
        let name = store.name(id).to_string();
        let like = store.get(id).clone();
        let value = load(&format!("param/{name}"), &like)?.ok_or_else(|| bad(format!("missing parameter {name}")))?;
        store.set(id, value);
        if store.is_trainable(id) {
            if let Some(m) = load(&format!("adam_m/{name}"), &like)? {
                adam.m.insert(id, m);
            }
            if let Some(v) = load(&format!("adam_v/{name}"), &like)? {
                adam.v.insert(id, v);
            }
            let e = load(&format!("ema/{name}"), &like)?.ok_or_else(|| bad(format!("missing tensor ema/{name}")))?;
            ema.values.insert(id, e);
        }
    }
    let trainable: HashMap<&str, bool> = store.ids().map(|id| (store.name(id), store.is_trainable(id))).collect();
    let known = |tensor: &str| match tensor.split_once('/') {
        Some(("param", param)) => trainable.contains_key(param),
        Some(("adam_m" | "adam_v" | "ema", param)) => trainable.get(param) == Some(&true),
        _ => others.contains(&tensor),
    };
    if let Some((name, _, _)) = ck.tensors.iter().find(|(name, _, _)| !known(name)) {
        return Err(bad(format!("unexpected tensor {name}")));
    }
    Ok(())
}
