//! Builds a checkpoint into `resflow-sample` when `RESFLOW_EMBED_CHECKPOINT` names one. The
//! file is checked here, so a wrong path or a file that is not a resflow checkpoint fails the
//! build with a message naming it instead of producing a program that fails when run.

use std::path::{Path, PathBuf};

const VAR: &str = "RESFLOW_EMBED_CHECKPOINT";
/// The format tags of the checkpoints resflow writes.
const FORMATS: [&str; 2] = ["resflow-toy-1", "resflow-image-1"];

fn main() {
    println!("cargo::rerun-if-env-changed={VAR}");
    println!("cargo::rustc-check-cfg=cfg(resflow_embedded)");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("embedded.safetensors");
    let Some(path) = std::env::var_os(VAR).filter(|p| !p.is_empty()).map(PathBuf::from) else {
        return;
    };
    println!("cargo::rerun-if-changed={}", path.display());
    let bytes = std::fs::read(&path).unwrap_or_else(|e| fail(&path, &format!("cannot be read: {e}")));
    if let Err(why) = check(&bytes) {
        fail(&path, &why);
    }
    std::fs::write(&out, &bytes).unwrap_or_else(|e| fail(&out, &format!("cannot be written: {e}")));
    println!("cargo::rustc-cfg=resflow_embedded");
}

fn fail(path: &Path, why: &str) -> ! {
    eprintln!("error: {VAR}={} {why}", path.display());
    std::process::exit(1);
}

/// The checks a checkpoint passes before it is built in: a safetensors header that parses,
/// a resflow format tag and a config, f32 tensors that exactly tile the data, finite values.
/// (Loading checks the config against the tensors again when the program runs.)
fn check(bytes: &[u8]) -> Result<(), String> {
    let bad = |why: String| Err(format!("is not a resflow checkpoint: {why}"));
    let Some(len) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap()) as usize) else {
        return bad("shorter than a safetensors header".into());
    };
    let Some(header) = bytes.get(8..8usize.saturating_add(len)) else {
        return bad(format!("its header claims {len} bytes, more than the file holds"));
    };
    let header: serde_json::Value = match serde_json::from_slice(header) {
        Ok(v) => v,
        Err(e) => return bad(format!("its header is not JSON ({e})")),
    };
    let Some(entries) = header.as_object() else { return bad("its header is not a JSON object".into()) };
    let meta = entries.get("__metadata__").and_then(|m| m.as_object());
    let format = meta.and_then(|m| m.get("format")).and_then(|f| f.as_str()).unwrap_or("");
    if !FORMATS.contains(&format) {
        return bad(format!("its format tag is {format:?}, expected one of {FORMATS:?}"));
    }
    if meta.and_then(|m| m.get("config")).is_none() {
        return bad("it has no model config".into());
    }
    let data = &bytes[8 + len..];
    let mut spans = Vec::new();
    for (name, t) in entries.iter().filter(|(k, _)| *k != "__metadata__") {
        if t.get("dtype").and_then(|d| d.as_str()) != Some("F32") {
            return bad(format!("tensor {name} is not F32"));
        }
        let offsets: Option<Vec<usize>> = t
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .map(|o| o.iter().filter_map(|v| v.as_u64().map(|v| v as usize)).collect());
        let Some([start, end]) = offsets.as_deref().and_then(|o| <[usize; 2]>::try_from(o).ok()) else {
            return bad(format!("tensor {name} has no data offsets"));
        };
        if start > end || end > data.len() || (end - start) % 4 != 0 {
            return bad(format!("tensor {name} spans bytes {start}..{end} of {}", data.len()));
        }
        let values = &data[start..end];
        if let Some(i) = values.chunks_exact(4).position(|c| !f32::from_le_bytes(c.try_into().unwrap()).is_finite()) {
            return bad(format!("tensor {name} holds a non-finite value at index {i}"));
        }
        spans.push((start, end));
    }
    spans.sort();
    let tiled = spans.iter().try_fold(0, |at, &(s, e)| (s == at).then_some(e));
    if spans.is_empty() || tiled != Some(data.len()) {
        return bad("its tensors do not exactly fill the data (truncated or corrupt?)".into());
    }
    Ok(())
}
