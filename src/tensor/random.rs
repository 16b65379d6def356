//! Counter-based random tensors (Philox4x32-10: uniform, normal, Rademacher), bit-identical
//! to the f64 reference's generator.

use bytemuck::{Pod, Zeroable};

use super::Tensor;
use crate::gpu::kernels::grid_1d;
use crate::gpu::{Gpu, KernelSpec};
use crate::ops::{Dist, TensorOps};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RandomParams {
    n: u32,
    pad: u32,
    seed: [u32; 2],
    stream: [u32; 2],
    lo: f32,
    hi: f32,
}

impl Tensor {
    pub fn random(gpu: &Gpu, shape: &[usize], dist: Dist, seed: u64, stream: u64) -> Tensor {
        let out = Tensor::empty(gpu, shape);
        let n = out.numel() as u32;
        let (mode, lo, hi) = match dist {
            Dist::Uniform { lo, hi } => (0, lo, hi),
            Dist::Normal { mean, std } => (1, mean, std),
            Dist::Rademacher => (2, 0.0, 0.0),
        };
        let k = gpu.kernel(&KernelSpec::new("random", "main", 0, 1).with("MODE", mode as f64));
        let params = RandomParams {
            n,
            pad: 0,
            seed: [seed as u32, (seed >> 32) as u32],
            stream: [stream as u32, (stream >> 32) as u32],
            lo,
            hi,
        };
        gpu.dispatch(&k, bytemuck::bytes_of(&params), &[out.binding()], grid_1d(n.div_ceil(4).div_ceil(256)));
        out
    }
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    vec![super::param_layout!("random", RandomParams { n, seed, stream, lo, hi })]
}
