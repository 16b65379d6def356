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

/// The most data an IDX file may declare: far above MNIST's 47 MB, far below what a bogus
/// header could make a reader allocate.
pub const MAX_IDX_BYTES: usize = 1 << 30;

/// Decodes IDX bytes (gzipped or not); `what` names the source in errors.
pub fn parse_idx(bytes: &[u8], what: &str) -> Result<IdxArray, DataError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        decode(flate2::read::GzDecoder::new(bytes), what, true)
    } else {
        decode(bytes, what, false)
    }
}

/// Decodes an IDX stream: the header first, then at most the data it declares plus one byte
/// (to tell a longer file), so a small file that inflates to gigabytes is never inflated whole.
fn decode(mut input: impl Read, what: &str, gzip: bool) -> Result<IdxArray, DataError> {
    let bad = |why: String| DataError(format!("{what} is not a valid IDX file: {why}"));
    let read_error = |e: std::io::Error| {
        if gzip {
            bad(format!("bad gzip data ({e})"))
        } else {
            DataError(format!("cannot read {what}: {e}"))
        }
    };
    let mut magic = Vec::with_capacity(4);
    (&mut input).take(4).read_to_end(&mut magic).map_err(read_error)?;
    if magic.len() < 4 {
        return Err(bad(format!("only {} bytes, shorter than the 4-byte magic number", magic.len())));
    }
    if magic[0] != 0 || magic[1] != 0 {
        return Err(bad(format!(
            "magic number {:02x}{:02x}{:02x}{:02x} does not start with two zero bytes",
            magic[0], magic[1], magic[2], magic[3]
        )));
    }
    if magic[2] != UBYTE {
        return Err(bad(format!("element type 0x{:02x}; only unsigned bytes (0x08) are supported", magic[2])));
    }
    let ndims = magic[3] as usize;
    let mut header = Vec::with_capacity(4 * ndims);
    (&mut input).take(4 * ndims as u64).read_to_end(&mut header).map_err(read_error)?;
    if ndims == 0 || header.len() < 4 * ndims {
        return Err(bad(format!("header of {ndims} dimensions does not fit in {} bytes", 4 + header.len())));
    }
    let dims: Vec<usize> =
        header.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_BYTES)
        .ok_or_else(|| bad(format!("dimensions {dims:?} declare more than the {MAX_IDX_BYTES} bytes allowed")))?;
    let mut data = Vec::with_capacity(expected.min(1 << 24));
    input.take(expected as u64 + 1).read_to_end(&mut data).map_err(read_error)?;
    if data.len() != expected {
        let body = if data.len() > expected { "more".to_string() } else { data.len().to_string() };
        return Err(bad(format!(
            "dimensions {dims:?} need {expected} bytes of data, the file has {body} (truncated?)"
        )));
    }
    Ok(IdxArray { dims, data })
}

/// Reads and decodes an IDX file, streaming it (see [`parse_idx`]).
pub fn read_idx(path: &Path) -> Result<IdxArray, DataError> {
    let what = path.display().to_string();
    let mut file =
        std::io::BufReader::new(std::fs::File::open(path).map_err(|e| DataError(format!("cannot read {what}: {e}")))?);
    let gzip = std::io::BufRead::fill_buf(&mut file)
        .map_err(|e| DataError(format!("cannot read {what}: {e}")))?
        .starts_with(&[0x1f, 0x8b]);
    if gzip {
        decode(flate2::bufread::GzDecoder::new(file), &what, true)
    } else {
        decode(file, &what, false)
    }
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
