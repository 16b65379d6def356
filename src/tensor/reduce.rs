//! Reductions (sum, mean, max, log-sum-exp) over one axis or all elements: fused sums that
//! compute their input's pending expression (in `fusion`), and the segmented reduce kernel.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::Tensor;
use crate::fusion::{self, Storage};
use crate::gpu::kernels::{grid_1d, LOOP_BUDGET};
use crate::gpu::KernelSpec;
use crate::ops::{reduced_shape, split_axis};
use crate::ops::{Reduce, TensorOps};
use crate::options::Profile;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    outer: u32,
    n: u32,
    inner: u32,
    seg_len: u32,
    segs: u32,
    scale: f32,
    pad: [u32; 2],
}

impl Tensor {
    /// Sum or mean over the middle axis of `[outer, n, inner]`: one fused kernel computing
    /// this tensor's pending expression while it sums, then a sum of its partial sums; other
    /// reductions and shapes whose vec4s straddle outputs take the reduce kernel.
    fn reduce_axis(&self, op: Reduce, outer: usize, n: usize, inner: usize) -> Tensor {
        if matches!(op, Reduce::Sum | Reduce::Mean) && n > 1 && fusion::enabled(&self.gpu) {
            if let Some((partial, chunks)) = fusion::sum(&self.gpu, &self.store, (outer, n, inner)) {
                let shape = [outer * chunks * inner];
                let partial = Tensor {
                    gpu: self.gpu.clone(),
                    store: Arc::new(Storage::realized(partial, shape[0])),
                    shape: shape.to_vec(),
                };
                let total =
                    if chunks > 1 { partial.reduce_unfused(Reduce::Sum, outer, chunks, inner) } else { partial };
                return if op == Reduce::Mean { total.scale(1.0 / n as f32) } else { total };
            }
        }
        self.reduce_unfused(op, outer, n, inner)
    }

    fn reduce_unfused(&self, op: Reduce, outer: usize, n: usize, inner: usize) -> Tensor {
        let outputs = outer * inner;
        let code = op.kernel_code();
        let scale = if op == Reduce::Mean { 1.0 / n as f32 } else { 1.0 };
        // Few outputs over a long axis: split the axis into segments reduced by whole
        // workgroups, then reduce the partial results (all three ops compose exactly). Segments
        // also keep each invocation's loop within LOOP_BUDGET.
        let per_group = outputs < 2048 && n > 256;
        let segs = if per_group {
            n.div_ceil(2048).min(64usize.div_ceil(outputs)).max(n.div_ceil(256 * (LOOP_BUDGET / 2))).max(1)
        } else {
            n.div_ceil(LOOP_BUDGET / 2).max(1)
        };
        let seg_len = n.div_ceil(segs);
        let out = Tensor::empty(&self.gpu, &[outer * segs * inner]);
        let first_scale = if segs > 1 { 1.0 } else { scale };
        let params = ReduceParams {
            outer: outer as u32,
            n: n as u32,
            inner: inner as u32,
            seg_len: seg_len as u32,
            segs: segs as u32,
            scale: first_scale,
            pad: [0; 2],
        };
        // On GPUs a workgroup's partial results combine through subgroup operations where the
        // adapter has them; CPU adapters keep the workgroup-memory tree (their subgroups are
        // SIMD lanes of one thread, and the tree measured no slower there).
        let subgroups = self.gpu.profile() == Profile::Gpu && self.gpu.features().contains(wgpu::Features::SUBGROUP);
        let (shader, entry) = match (per_group, subgroups) {
            (true, true) => ("reduce_subgroup", "per_group_subgroup"),
            (true, false) => ("reduce", "per_group"),
            (false, _) => ("reduce", "per_thread"),
        };
        let k = self.gpu.kernel(&KernelSpec::new(shader, entry, 1, 1).with("OP", code as f64));
        let total = (outer * segs * inner) as u32;
        let groups = if per_group { grid_1d(total) } else { grid_1d(total.div_ceil(256)) };
        self.gpu.dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), out.binding()], groups);
        if segs == 1 {
            return out;
        }
        let second = match op {
            Reduce::Mean => Reduce::Sum,
            other => other,
        };
        let merged = out.reduce_unfused(second, outer, segs, inner);
        if op == Reduce::Mean {
            merged.scale(scale)
        } else {
            merged
        }
    }
}

/// `op` over `axis`, or over all elements.
pub(super) fn reduce(a: &Tensor, op: Reduce, axis: Option<usize>, keepdim: bool) -> Tensor {
    match axis {
        None => {
            let r = a.reduce_axis(op, 1, a.numel(), 1);
            let shape = if keepdim { vec![1; a.shape.len()] } else { vec![] };
            r.reshape(&shape)
        }
        Some(axis) => {
            let (outer, n, inner) = split_axis(&a.shape, axis);
            a.reduce_axis(op, outer, n, inner).reshape(&reduced_shape(&a.shape, axis, keepdim))
        }
    }
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    let layout = |shader| super::param_layout!(shader, ReduceParams { outer, n, inner, seg_len, segs, scale });
    vec![layout("reduce"), layout("reduce_subgroup")]
}
