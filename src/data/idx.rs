//! The IDX format of MNIST and Fashion-MNIST: a big-endian header (two zero bytes, a type code,
//! the number of dimensions, one u32 per dimension) followed by the raw values. Files may be
//! gzipped (Fashion-MNIST ships them so); the gzip magic is detected, not the file name.

use std::io::Read;
use std::path::Path;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// A file that is not a valid IDX array (the message names the file and what is wrong).
#[derive(Debug, Clone, PartialEq)]
pub struct DataError(pub String);

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DataError {}

/// The type code of unsigned bytes, the only one MNIST-style files use.
const UBYTE: u8 = 0x08;

/// Decodes IDX bytes (gzipped or not); `what` names the source in errors.
pub fn parse_idx(bytes: &[u8], what: &str) -> Result<IdxArray, DataError> {
    let bad = |why: String| DataError(format!("{what} is not a valid IDX file: {why}"));
    let raw;
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| bad(format!("bad gzip data ({e})")))?;
        raw = out;
        &raw[..]
    } else {
        bytes
    };
    if bytes.len() < 4 {
        return Err(bad(format!("only {} bytes, shorter than the 4-byte magic number", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "magic number {:02x}{:02x}{:02x}{:02x} does not start with two zero bytes",
            bytes[0], bytes[1], bytes[2], bytes[3]
        )));
    }
    if bytes[2] != UBYTE {
        return Err(bad(format!("element type 0x{:02x}; only unsigned bytes (0x08) are supported", bytes[2])));
    }
    let ndims = bytes[3] as usize;
    let header = 4 + 4 * ndims;
    if ndims == 0 || bytes.len() < header {
        return Err(bad(format!("header of {ndims} dimensions does not fit in {} bytes", bytes.len())));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected =
        dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("dimensions overflow".into()))?;
    let body = bytes.len() - header;
    if body != expected {
        return Err(bad(format!(
            "dimensions {dims:?} need {expected} bytes of data, the file has {body} (truncated?)"
        )));
    }
    Ok(IdxArray { dims, data: bytes[header..].to_vec() })
}

/// Reads and decodes an IDX file.
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError(format!("cannot read {}: {e}", path.display())))?;
    parse_idx(&bytes, &path.display().to_string())
}

/// Encodes unsigned bytes as IDX (for tests and for writing small datasets).
pub fn encode_idx(dims: &[usize], data: &[u8]) -> Vec<u8> {
    assert_eq!(dims.iter().product::<usize>(), data.len(), "IDX dims must match the data");
    let mut out = vec![0, 0, UBYTE, dims.len() as u8];
    for &d in dims {
        out.extend((d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}
