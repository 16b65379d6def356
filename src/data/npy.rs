//! NumPy `.npy` arrays: read (little-endian `f4`, `f8` or `u1`, C order) and written as `f4`,
//! a header first and the values streamed after it, so a writer of a million samples never
//! holds them all.

use std::io::Write;
use std::path::Path;

use super::DataError;

/// The values of an array read from a file.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyValues {
    /// `f4` or `f8` (converted to f32).
    Float(Vec<f32>),
    /// `u1`: bytes, such as 8-bit pixels.
    Bytes(Vec<u8>),
}

/// An array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub values: NpyValues,
}

const MAGIC: &[u8] = b"\x93NUMPY";
/// Elements a file may declare at most (4 GiB of f32): bounds the allocation before reading.
const MAX_ELEMENTS: usize = 1 << 30;

/// Reads `path`; the error names the file and what is wrong with it.
pub fn read_npy(path: &Path) -> Result<NpyArray, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError(format!("cannot read {}: {e}", path.display())))?;
    parse_npy(&bytes, &path.display().to_string())
}

/// Decodes the bytes of a `.npy` file; `what` names it in errors.
pub fn parse_npy(bytes: &[u8], what: &str) -> Result<NpyArray, DataError> {
    let bad = |why: String| DataError(format!("{what} is not a .npy array resflow reads: {why}"));
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("it does not start with the .npy magic bytes".into()));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12),
        v => return Err(bad(format!("format version {v}"))),
    };
    let header = bytes.get(start..start + len).ok_or_else(|| bad("the header is truncated".into()))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("the header is not text".into()))?;
    let descr = quoted_value(header, "descr").ok_or_else(|| bad(format!("no 'descr' in {header:?}")))?;
    if field(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err(bad("Fortran order (save it with numpy.ascontiguousarray)".into()));
    }
    let shape = shape(header).ok_or_else(|| bad(format!("no readable 'shape' in {header:?}")))?;
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS);
    let count = count.ok_or_else(|| bad(format!("shape {shape:?} is larger than {MAX_ELEMENTS} elements")))?;
    let data = &bytes[start + len..];
    let size = match descr {
        "<f4" => 4,
        "<f8" => 8,
        "|u1" | "<u1" => 1,
        other => return Err(bad(format!("dtype {other:?}; resflow reads '<f4', '<f8' and '|u1'"))),
    };
    if data.len() != count * size {
        return Err(bad(format!(
            "shape {shape:?} of {descr} needs {} bytes of data, the file has {}",
            count * size,
            data.len()
        )));
    }
    let values = match size {
        4 => NpyValues::Float(data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        8 => NpyValues::Float(data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect()),
        _ => NpyValues::Bytes(data.to_vec()),
    };
    Ok(NpyArray { shape, values })
}

/// The text after `'key':` in a header dict.
fn field<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    Some(header[at..].trim_start().strip_prefix(':')?.trim_start())
}

/// The quoted string value of `key`.
fn quoted_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let rest = field(header, key)?.strip_prefix('\'')?;
    Some(&rest[..rest.find('\'')?])
}

/// The `(d0, d1, …)` tuple of `shape`.
fn shape(header: &str) -> Option<Vec<usize>> {
    let rest = field(header, "shape")?.strip_prefix('(')?;
    let inner = &rest[..rest.find(')')?];
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|d| d.parse().ok()).collect()
}

/// The header of a C-order little-endian f32 array of `shape`, padded so the data starts at a
/// multiple of 64 bytes (format 1.0).
pub fn f32_header(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = MAGIC.len() + 4 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Writes f32 values after [`f32_header`] as they come.
pub fn write_f32s(out: &mut impl Write, values: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(4 * values.len());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    out.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_arrays_read_back_and_bad_files_name_the_problem() {
        let mut file = f32_header(&[3, 2]);
        assert_eq!(file.len() % 64, 0, "the data starts 64-byte aligned");
        write_f32s(&mut file, &[1.0, -2.5, 3.0, 0.25, 5.0, 6.0]).unwrap();
        let a = parse_npy(&file, "a.npy").unwrap();
        assert_eq!(a.shape, vec![3, 2]);
        assert_eq!(a.values, NpyValues::Float(vec![1.0, -2.5, 3.0, 0.25, 5.0, 6.0]));

        let one_d = f32_header(&[4]);
        assert!(std::str::from_utf8(&one_d[10..]).unwrap().contains("'shape': (4,)"));

        let err = |bytes: &[u8]| parse_npy(bytes, "x.npy").unwrap_err().0;
        assert!(err(b"not numpy at all").contains("magic"));
        assert!(err(&file[..file.len() - 4]).contains("needs 24 bytes of data, the file has 20"));
        let mut f8 = file.clone();
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'2';
        assert!(err(&f8).contains("dtype \"<f2\""));
        let mut fortran = file.clone();
        let at = fortran.windows(5).position(|w| w == b"False").unwrap();
        fortran[at..at + 5].copy_from_slice(b"True ");
        assert!(err(&fortran).contains("Fortran order"));
        assert!(err(&f32_header(&[1 << 20, 1 << 20])).contains("larger than"));
    }
}
