//! The toy 2-D model: residual blocks whose g is a `2 → hidden… → 2` Lipschitz MLP, each
//! optionally followed by ActNorm; its exact log-density and samples through the fixed-point
//! inverse.

use crate::flow::{
    ActNorm, Estimator, Flow, FlowCtx, FlowLayer, GradMode, InverseError, LipschitzNet, NetSpec, ResidualBlock,
};
use crate::gpu::Gpu;
use crate::nn::{Binder, ParamStore};
use crate::ops::{Activation, Dist, TensorOps};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

/// Everything that shapes the toy model.
#[derive(Debug, Clone, PartialEq)]
pub struct ToySpec {
    pub blocks: usize,
    /// Hidden widths of each block's MLP.
    pub hidden: Vec<usize>,
    pub activation: Activation,
    /// Lipschitz coefficient of every layer.
    pub coeff: f32,
    /// The log-det estimator while training.
    pub estimator: Estimator,
    pub grad_mode: GradMode,
    /// ActNorm after every block.
    pub actnorm: bool,
}

/// The flow of `spec`, its parameters created in `store`.
pub fn build(store: &mut ParamStore<Tensor>, spec: &ToySpec) -> Flow<Tensor> {
    let net = NetSpec {
        activation: spec.activation,
        coeff: spec.coeff,
        leading_activation: false,
        gain: 1.0,
        // The last layer starts near zero, so every block starts near the identity.
        last_gain: 1e-3,
    };
    let mut widths = vec![2];
    widths.extend(&spec.hidden);
    widths.push(2);
    let mut layers: Vec<Box<dyn FlowLayer<Tensor>>> = Vec::new();
    for i in 0..spec.blocks {
        let g = LipschitzNet::mlp(store, &format!("block{i}.g"), &widths, &net);
        layers.push(Box::new(ResidualBlock::new(&format!("block{i}"), g, spec.estimator, spec.grad_mode)));
        if spec.actnorm {
            layers.push(Box::new(ActNorm::new(store, &format!("actnorm{i}"), 2)));
        }
    }
    Flow::new(layers)
}

/// log p(x) of 2-D points under the flow (exact log-det), in chunks.
pub fn log_density(gpu: &Gpu, flow: &Flow<Tensor>, store: &ParamStore<Tensor>, pts: &[f32]) -> Vec<f64> {
    let mut out = Vec::with_capacity(pts.len() / 2);
    for chunk in pts.chunks(2 * 10_000) {
        let x = Tensor::from_slice(gpu, chunk, &[chunk.len() / 2, 2]).expect("2-D points");
        let tape = Tape::no_grad();
        let b = Binder::new(store, &tape);
        let ctx = FlowCtx::new(&b, 0, true).with_estimator(Estimator::Exact);
        out.extend(flow.log_prob(&ctx, &Var::constant(x)).value.to_host());
    }
    out
}

/// `n` samples through the fixed-point inverse, with the iterations per block.
pub fn sample(
    gpu: &Gpu,
    flow: &Flow<Tensor>,
    store: &ParamStore<Tensor>,
    n: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<usize>), InverseError> {
    let z = Tensor::random(gpu, &[n, 2], Dist::Normal { mean: 0.0, std: 1.0 }, seed, 0);
    let (x, iters) = flow.inverse(store, &z)?;
    Ok((x.to_vec(), iters))
}
