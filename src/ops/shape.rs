//! Shape arithmetic shared by every implementation of the op set: element counts, strides,
//! broadcasting, the shapes of matmuls, convolutions and squeezes, and the error they raise.

use std::fmt;

/// A shape error: raised by every op on mismatched inputs, with the op and shapes named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeError(pub String);

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shape error: {}", self.0)
    }
}
impl std::error::Error for ShapeError {}

pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Row-major strides of a contiguous shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `[outer, n, inner]` sizes around `axis`.
pub fn split_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    assert!(axis < shape.len(), "axis {axis} out of range for shape {shape:?}");
    (numel(&shape[..axis]), shape[axis], numel(&shape[axis + 1..]))
}

pub fn reduced_shape(shape: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut out = shape.to_vec();
    if keepdim {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    out
}

/// The broadcast of two shapes (numpy rules), or an error naming both.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(ShapeError(format!("cannot broadcast {a:?} with {b:?}")));
        };
    }
    Ok(out)
}

/// Strides to read a tensor of `shape` as if it had the (broadcast) shape `out`: 0 along axes
/// where it is broadcast. Both are padded on the left to `out.len()`.
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let pad = out.len() - shape.len();
    let own = strides(shape);
    (0..out.len()).map(|i| if i < pad || shape[i - pad] == 1 { 0 } else { own[i - pad] }).collect()
}

/// The shape after a matmul with optional transposes, and the batch count; `a` and `b` are
/// 2-D or 3-D ([batch, rows, cols]); a 2-D operand is shared across the other's batch.
pub fn matmul_shape(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<(usize, usize, usize, usize), ShapeError> {
    let err =
        || ShapeError(format!("matmul of {a:?}{} by {b:?}{}", if ta { "ᵀ" } else { "" }, if tb { "ᵀ" } else { "" }));
    if !(2..=3).contains(&a.len()) || !(2..=3).contains(&b.len()) {
        return Err(err());
    }
    let (ra, ca) = (a[a.len() - 2], a[a.len() - 1]);
    let (rb, cb) = (b[b.len() - 2], b[b.len() - 1]);
    let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
    let (k2, n) = if tb { (cb, rb) } else { (rb, cb) };
    let ba = if a.len() == 3 { a[0] } else { 1 };
    let bb = if b.len() == 3 { b[0] } else { 1 };
    if k != k2 || (a.len() == 3 && b.len() == 3 && ba != bb) {
        return Err(err());
    }
    Ok((ba.max(bb), m, k, n))
}

/// Checks that `shape` has at most 4 axes (what the strided kernels index) and pads it to 4.
pub fn pad4(shape: &[usize], what: &str) -> [usize; 4] {
    assert!(shape.len() <= 4, "{what}: at most 4 dimensions are supported, got {shape:?}");
    let mut out = [1usize; 4];
    out[4 - shape.len()..].copy_from_slice(shape);
    out
}

/// The same for strides (padding with 0).
pub fn pad4_strides(s: &[usize]) -> [u32; 4] {
    let mut out = [0u32; 4];
    for (i, v) in s.iter().enumerate() {
        out[4 - s.len() + i] = *v as u32;
    }
    out
}

/// Checks the operands of `conv2d` and returns (n, ci, h, w, co, k).
pub fn conv_shape(x: &[usize], w: &[usize]) -> Result<(usize, usize, usize, usize, usize, usize), ShapeError> {
    let err = |why: &str| ShapeError(format!("conv2d of {x:?} with weights {w:?}: {why}"));
    if x.len() != 4 || w.len() != 4 {
        return Err(err("input [N, C, H, W] and weights [Co, Ci, k, k] expected"));
    }
    if w[1] != x[1] {
        return Err(err("input channels differ"));
    }
    if w[2] != w[3] || w[2].is_multiple_of(2) {
        return Err(err("only square kernels of odd size are supported"));
    }
    Ok((x[0], x[1], x[2], x[3], w[0], w[2]))
}

/// Checks the operand of `squeeze2` (even spatial sizes).
pub fn squeeze_shape(x: &[usize]) -> Vec<usize> {
    assert!(
        x.len() == 4 && x[2].is_multiple_of(2) && x[3].is_multiple_of(2),
        "squeeze2 needs [B, C, 2H, 2W], got {x:?}"
    );
    vec![x[0], 4 * x[1], x[2] / 2, x[3] / 2]
}

pub fn unsqueeze_shape(x: &[usize]) -> Vec<usize> {
    assert!(x.len() == 4 && x[1].is_multiple_of(4), "unsqueeze2 needs [B, 4C, H, W], got {x:?}");
    vec![x[0], x[1] / 4, x[2] * 2, x[3] * 2]
}
