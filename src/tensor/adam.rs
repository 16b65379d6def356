//! One Adam step over a parameter tensor, its moments and the clipping factor, in one kernel
//! (`shaders/adam/adam.wgsl`).

use bytemuck::{Pod, Zeroable};

use super::Tensor;
use crate::gpu::kernels::grid_1d;
use crate::gpu::KernelSpec;
use crate::ops::{AdamStep, TensorOps};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct AdamParams {
    n: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    pad: [u32; 3],
}

/// One Adam step: new parameters and moments from `grad`, the moments and the clip factor.
pub(super) fn adam_step(
    a: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    clip: &Tensor,
    h: AdamStep,
) -> (Tensor, Tensor, Tensor) {
    let (p2, m2, v2) =
        (Tensor::empty(&a.gpu, &a.shape), Tensor::empty(&a.gpu, &a.shape), Tensor::empty(&a.gpu, &a.shape));
    let n = a.numel() as u32;
    let params = AdamParams { n, lr: h.lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, pad: [0; 3] };
    let k = a.gpu.kernel(&KernelSpec::new("adam", "main", 5, 3));
    let bindings = [
        a.binding(),
        grad.binding(),
        m.binding(),
        v.binding(),
        clip.binding(),
        p2.binding(),
        m2.binding(),
        v2.binding(),
    ];
    a.gpu.dispatch(&k, bytemuck::bytes_of(&params), &bindings, grid_1d(n.div_ceil(1024)));
    (p2, m2, v2)
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    vec![super::param_layout!("adam", AdamParams { n, lr, beta1, beta2, eps })]
}
