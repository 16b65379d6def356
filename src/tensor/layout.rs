//! Layout ops: reshape, permute, slice and its VJP, concat and broadcast. Slices and broadcasts
//! that one index map reads are lazy reads that fuse into their consumer; the rest run the
//! strided copy kernel (`shaders/layout/strided_copy.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::Tensor;
use crate::fusion::{Node, Operand, Role};
use crate::gpu::kernels::grid_1d;
use crate::gpu::KernelSpec;
use crate::ops::split_axis;
use crate::ops::{broadcast_shape, broadcast_strides, numel, pad4, pad4_strides, strides, ShapeError, TensorOps};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(super) struct IndexedParams {
    pub n: u32,
    pub offset_a: u32,
    pub offset_b: u32,
    pub pad: u32,
    pub shape: [u32; 4],
    pub strides_a: [u32; 4],
    pub strides_b: [u32; 4],
}

impl Tensor {
    /// One strided copy (see `shaders/layout/strided_copy.wgsl`) of a 4-D box from `self` into `dst`.
    fn strided_copy_into(
        &self,
        dst: &Tensor,
        box_shape: [usize; 4],
        src: (usize, [u32; 4]),
        dst_at: (usize, [u32; 4]),
    ) {
        let n = box_shape.iter().product::<usize>() as u32;
        let params = IndexedParams {
            n,
            offset_a: src.0 as u32,
            offset_b: dst_at.0 as u32,
            pad: 0,
            shape: box_shape.map(|v| v as u32),
            strides_a: src.1,
            strides_b: dst_at.1,
        };
        let k = self.gpu.kernel(&KernelSpec::new("strided_copy", "main", 1, 1));
        self.gpu.dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), dst.binding()], grid_1d(n.div_ceil(256)));
    }
}

/// The same storage under another shape of as many elements.
pub(super) fn try_reshape(a: &Tensor, shape: &[usize]) -> Result<Tensor, ShapeError> {
    if numel(shape) != a.numel() {
        return Err(ShapeError(format!("cannot reshape {:?} to {shape:?}", a.shape)));
    }
    Ok(Tensor { gpu: a.gpu.clone(), store: a.store.clone(), shape: shape.to_vec() })
}

/// Axes reordered by `perm` (a strided copy).
pub(super) fn permute(a: &Tensor, perm: &[usize]) -> Tensor {
    assert_eq!(perm.len(), a.shape.len(), "permute {perm:?} of shape {:?}", a.shape);
    let out_shape: Vec<usize> = perm.iter().map(|&p| a.shape[p]).collect();
    let src = strides(&a.shape);
    let src_strides: Vec<usize> = perm.iter().map(|&p| src[p]).collect();
    let out = Tensor::empty(&a.gpu, &out_shape);
    let box_shape = pad4(&out_shape, "permute");
    a.strided_copy_into(&out, box_shape, (0, pad4_strides(&src_strides)), (0, pad4_strides(&strides(&out_shape))));
    out
}

/// `len` indices of `axis` from `start`.
pub(super) fn slice(a: &Tensor, axis: usize, start: usize, len: usize) -> Tensor {
    let (outer, n, inner) = split_axis(&a.shape, axis);
    assert!(start + len <= n, "slice {start}..{} out of range for axis {axis} of {:?}", start + len, a.shape);
    let mut shape = a.shape.clone();
    shape[axis] = len;
    // A slice that is one index map away from its input (a contiguous range, or one column
    // of a matrix) is a lazy read, so its consumer fuses it; other slices copy.
    let view = if outer == 1 {
        Some(Role::Broadcast { inner: 1, len: len * inner, stride: 1, offset: start * inner })
    } else if len * inner == 1 {
        Some(Role::Broadcast { inner: 1, len: outer, stride: n, offset: start })
    } else {
        None
    };
    if let Some(role) = view {
        return a.fused_operands(&shape, &[Operand { store: &a.store, role }], |mut k| k.remove(0));
    }
    let out = Tensor::empty(&a.gpu, &shape);
    a.strided_copy_into(
        &out,
        [1, outer, len, inner],
        (start * inner, [0, (n * inner) as u32, inner as u32, 1]),
        (0, [0, (len * inner) as u32, inner as u32, 1]),
    );
    out
}

/// The VJP of a slice: `a` placed at `start` along `axis` of zeros shaped `full`.
pub(super) fn unslice(a: &Tensor, full: &[usize], axis: usize, start: usize) -> Tensor {
    let (outer, n, inner) = split_axis(full, axis);
    let len = a.shape[axis];
    // Where one index map reads the slice back (one column of a matrix; a range that is
    // a whole multiple of its length from the start, e.g. a half), the result is a lazy
    // `Within` expression, which fuses into the gradient sums; otherwise a copy into zeros.
    let read = if len * inner == 1 {
        Some(Role::Broadcast { inner: n, len: outer, stride: 1, offset: 0 })
    } else if outer == 1 && start.is_multiple_of(len) {
        Some(Role::Broadcast { inner: 1, len: len * inner, stride: 1, offset: 0 })
    } else {
        None
    };
    if let Some(role) = read {
        let (lo, hi) = (start, start + len);
        return a.fused_operands(full, &[Operand { store: &a.store, role }], |mut k| Node::Within {
            value: k.remove(0).into(),
            inner,
            len: n,
            lo,
            hi,
        });
    }
    let out = Tensor::full(&a.gpu, full, 0.0);
    a.strided_copy_into(
        &out,
        [1, outer, len, inner],
        (0, [0, (len * inner) as u32, inner as u32, 1]),
        (start * inner, [0, (n * inner) as u32, inner as u32, 1]),
    );
    out
}

/// `parts` joined along `axis`.
pub(super) fn concat(parts: &[&Tensor], axis: usize) -> Tensor {
    let mut shape = parts[0].shape.clone();
    shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
    let (outer, n, inner) = split_axis(&shape, axis);
    let out = Tensor::empty(&parts[0].gpu, &shape);
    let mut start = 0;
    for p in parts {
        let len = p.shape[axis];
        p.strided_copy_into(
            &out,
            [1, outer, len, inner],
            (0, [0, (len * inner) as u32, inner as u32, 1]),
            (start * inner, [0, (n * inner) as u32, inner as u32, 1]),
        );
        start += len;
    }
    out
}

/// `a` broadcast to `shape`.
pub(super) fn broadcast_to(a: &Tensor, shape: &[usize]) -> Tensor {
    broadcast_shape(&a.shape, shape).expect("broadcast_to");
    // A broadcast that fused kernels can read directly is a lazy read, not a copy.
    if Role::of(&a.shape, shape).is_some() {
        return a.fused(shape, &[a], |mut k| k.remove(0));
    }
    let out = Tensor::empty(&a.gpu, shape);
    a.strided_copy_into(
        &out,
        pad4(shape, "broadcast_to"),
        (0, pad4_strides(&broadcast_strides(&a.shape, shape))),
        (0, pad4_strides(&strides(shape))),
    );
    out
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    vec![super::param_layout!("strided_copy", IndexedParams { n, offset_a, offset_b, shape, strides_a, strides_b })]
}
