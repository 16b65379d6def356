//! The toy 2-D model: residual blocks whose g is a `2 → hidden… → 2` Lipschitz MLP, each
//! optionally followed by ActNorm; its exact log-density and samples through the fixed-point
//! inverse.

use std::fmt;

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
pub fn build<T: TensorOps + 'static>(store: &mut ParamStore<T>, spec: &ToySpec) -> Flow<T> {
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
    let mut layers: Vec<Box<dyn FlowLayer<T>>> = Vec::new();
    for i in 0..spec.blocks {
        let g = LipschitzNet::mlp(store, &format!("block{i}.g"), &widths, &net);
        layers.push(Box::new(ResidualBlock::new(&format!("block{i}"), g, spec.estimator, spec.grad_mode)));
        if spec.actnorm {
            layers.push(Box::new(ActNorm::new(store, &format!("actnorm{i}"), 2)));
        }
    }
    Flow::new(layers)
}

/// Points per pass of a per-point computation (sampling, scoring): what fits the device, and
/// at most 2^16 so memory stays flat however many points there are.
pub fn points_per_chunk(gpu: &Gpu, width: usize) -> usize {
    gpu.items_per_pass(width).clamp(1, 1 << 16)
}

/// The widest activation of the model per point, in floats.
pub fn widest(spec: &ToySpec) -> usize {
    spec.hidden.iter().copied().max().unwrap_or(2).max(2)
}

/// log p(x) of 2-D points under the flow (exact log-det), `chunk` points a pass.
pub fn log_density(gpu: &Gpu, flow: &Flow<Tensor>, store: &ParamStore<Tensor>, pts: &[f32], chunk: usize) -> Vec<f64> {
    pollster::block_on(log_density_async(gpu, flow, store, pts, chunk))
}

/// [`log_density`] as a future, for callers that cannot block on a readback (a browser).
pub async fn log_density_async(
    gpu: &Gpu,
    flow: &Flow<Tensor>,
    store: &ParamStore<Tensor>,
    pts: &[f32],
    chunk: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(pts.len() / 2);
    for chunk in pts.chunks(2 * chunk.max(1)) {
        let x = Tensor::from_slice(gpu, chunk, &[chunk.len() / 2, 2]).expect("2-D points");
        let tape = Tape::no_grad();
        let b = Binder::new(store, &tape);
        let ctx = FlowCtx::new(&b, 0, true).with_estimator(Estimator::Exact);
        let lp = flow.log_prob(&ctx, &Var::constant(x)).value;
        out.extend(lp.to_vec_async().await.into_iter().map(f64::from));
    }
    out
}

/// Why sampling stopped.
#[derive(Debug)]
pub enum SampleError {
    Inverse(InverseError),
    /// Sample `index` (counted from 0) came out NaN or infinite.
    NonFinite {
        index: usize,
        value: f32,
    },
    /// The consumer of the samples failed (a write, say).
    Sink(String),
}

impl fmt::Display for SampleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleError::Inverse(e) => e.fmt(f),
            SampleError::NonFinite { index, value } => {
                write!(f, "sample {index} is {value}: the model produces non-finite samples (are its weights finite?)")
            }
            SampleError::Sink(e) => f.write_str(e),
        }
    }
}
impl std::error::Error for SampleError {}

impl From<InverseError> for SampleError {
    fn from(e: InverseError) -> Self {
        SampleError::Inverse(e)
    }
}

/// `n` samples through the fixed-point inverse, `chunk` at a time, each chunk checked finite
/// and handed to `sink` as `x, y` pairs before the next is drawn; memory does not grow with
/// `n`. Chunk k draws stream k of `seed`, so one chunk is exactly [`sample`]. The base
/// samples have standard deviation `temperature` (1: the model's own distribution). Returns
/// the most iterations each block took.
#[allow(clippy::too_many_arguments)]
pub fn sample_chunks(
    gpu: &Gpu,
    flow: &Flow<Tensor>,
    store: &ParamStore<Tensor>,
    n: usize,
    seed: u64,
    temperature: f32,
    chunk: usize,
    sink: impl FnMut(&[f32]) -> Result<(), String>,
) -> Result<Vec<usize>, SampleError> {
    pollster::block_on(sample_chunks_async(gpu, flow, store, n, seed, temperature, chunk, sink))
}

/// [`sample_chunks`] as a future, for callers that cannot block on a readback (a browser).
#[allow(clippy::too_many_arguments)]
pub async fn sample_chunks_async(
    gpu: &Gpu,
    flow: &Flow<Tensor>,
    store: &ParamStore<Tensor>,
    n: usize,
    seed: u64,
    temperature: f32,
    chunk: usize,
    mut sink: impl FnMut(&[f32]) -> Result<(), String>,
) -> Result<Vec<usize>, SampleError> {
    let chunk = chunk.max(1);
    let mut most: Vec<usize> = Vec::new();
    for (k, start) in (0..n).step_by(chunk).enumerate() {
        let m = chunk.min(n - start);
        let z = Tensor::random(gpu, &[m, 2], Dist::Normal { mean: 0.0, std: temperature }, seed, k as u64);
        let (x, iters) = flow.inverse_async(store, &z).await?;
        let x = x.to_vec_async().await;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(SampleError::NonFinite { index: start + i / 2, value: x[i] });
        }
        most.resize(iters.len(), 0);
        for (a, b) in most.iter_mut().zip(&iters) {
            *a = (*a).max(*b);
        }
        sink(&x).map_err(SampleError::Sink)?;
    }
    Ok(most)
}

/// `n` samples through the fixed-point inverse in one pass, with the iterations per block
/// (for the few thousand points of a picture; [`sample_chunks`] for any number).
pub fn sample(
    gpu: &Gpu,
    flow: &Flow<Tensor>,
    store: &ParamStore<Tensor>,
    n: usize,
    seed: u64,
) -> Result<(Vec<f32>, Vec<usize>), SampleError> {
    let mut pts = Vec::with_capacity(2 * n);
    let iters = sample_chunks(gpu, flow, store, n, seed, 1.0, n.max(1), |x| {
        pts.extend_from_slice(x);
        Ok(())
    })?;
    Ok((pts, iters))
}
