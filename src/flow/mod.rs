//! Invertible flows: the layer interface, the sequential flow with its standard-normal base,
//! ActNorm, the invertible residual block, and the image layers (logit transform, squeeze,
//! flatten, the affine coupling baseline).

pub mod actnorm;
pub mod coupling;
pub mod estimator;
pub mod lipnet;
pub mod logit;
pub mod reshape;
pub mod residual;

use std::cell::{Cell, RefCell};
use std::fmt;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::nn::{Binder, ParamStore, PowerIters};
use crate::ops::{Dist, Reduce, TensorOps, Unary};
use crate::tape::Var;

pub use actnorm::ActNorm;
pub use coupling::AffineCoupling;
pub use estimator::{Draw, Estimator, Probe, Roulette};
pub use lipnet::{LipschitzNet, NetSpec};
pub use logit::LogitTransform;
pub use reshape::{Flatten, Squeeze};
pub use residual::{GradMode, ResidualBlock, SeriesTerm};

/// A fixed-point inverse that did not converge (or diverged), naming the block.
#[derive(Debug, Clone, PartialEq)]
pub struct InverseError {
    pub block: String,
    pub iterations: usize,
    /// max(|x_{i+1} − x_i| − (atol + rtol·|y|)) at the last iteration.
    pub excess: f64,
}

impl fmt::Display for InverseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.excess.is_finite() {
            write!(
                f,
                "the fixed-point inverse of {} did not converge in {} iterations (the last step still \
                 exceeds the tolerance by {:.3e}); is Lip(g) < 1?",
                self.block, self.iterations, self.excess
            )
        } else {
            write!(
                f,
                "the fixed-point inverse of {} diverged after {} iterations; is Lip(g) < 1?",
                self.block, self.iterations
            )
        }
    }
}
impl std::error::Error for InverseError {}

/// Everything a flow's forward needs besides its input: the parameters bound to a tape, the
/// random streams of the estimators, and whether this is training or evaluation.
pub struct FlowCtx<'a, T> {
    pub binder: &'a Binder<'a, T>,
    /// Evaluation mode: estimators switch to their evaluation variant.
    pub eval: bool,
    /// Replaces every block's estimator (e.g. the exact 2×2 log-det for toy evaluation).
    pub estimator: Option<Estimator>,
    rng: RefCell<StdRng>,
    probe_seed: u64,
    probe_stream: Cell<u64>,
}

impl<'a, T: TensorOps> FlowCtx<'a, T> {
    pub fn new(binder: &'a Binder<'a, T>, seed: u64, eval: bool) -> Self {
        FlowCtx {
            binder,
            eval,
            estimator: None,
            rng: RefCell::new(StdRng::seed_from_u64(seed)),
            probe_seed: seed,
            probe_stream: Cell::new(0),
        }
    }
    /// The same context with every block using `estimator`.
    pub fn with_estimator(mut self, estimator: Estimator) -> Self {
        self.estimator = Some(estimator);
        self
    }
    /// One draw of the block's series terms.
    pub fn draw(&self, estimator: &Estimator) -> Draw {
        let e = if self.eval { estimator.for_evaluation() } else { *estimator };
        e.draw(&mut *self.rng.borrow_mut())
    }
    /// A fresh probe tensor from the counter-based generator.
    pub fn random(&self, like: &T, shape: &[usize], dist: Dist) -> T {
        let s = self.probe_stream.get();
        self.probe_stream.set(s + 1);
        like.random_like(shape, dist, self.probe_seed, s)
    }
}

/// The outcome of [`FlowLayer::inverse_async`].
pub type InverseFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(T, usize), InverseError>> + 'a>>;

/// An invertible layer.
pub trait FlowLayer<T: TensorOps> {
    fn name(&self) -> &str;
    /// y = F(x) and log|det ∂F/∂x| per sample ([batch]).
    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>);
    /// x = F⁻¹(y), with the iterations it took (0 for closed-form inverses).
    fn inverse(&self, store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError>;
    /// [`FlowLayer::inverse`] as a future, for callers that cannot block on a readback (a
    /// browser). Layers whose inverse reads nothing back keep this default.
    fn inverse_async<'a>(&'a self, store: &'a ParamStore<T>, y: &'a T) -> InverseFuture<'a, T> {
        Box::pin(std::future::ready(self.inverse(store, y)))
    }
    /// Data-dependent initialisation from a batch; returns the layer's output for the next one.
    fn initialize(&self, store: &mut ParamStore<T>, x: &T) -> T;
    /// Spectral-norm power iterations (no-op for layers without).
    fn power_iterate(&self, _store: &mut ParamStore<T>, _iters: PowerIters) {}
    /// Whether `inverse` iterates (a fixed point) rather than being closed-form.
    fn iterative_inverse(&self) -> bool {
        false
    }
}

/// A sequence of flow layers with a standard-normal base density.
pub struct Flow<T> {
    pub layers: Vec<Box<dyn FlowLayer<T>>>,
}

/// log N(z; 0, I) per sample of a [batch, …] tensor.
pub fn standard_normal_log_prob<T: TensorOps>(tape: &crate::tape::Tape<T>, z: &Var<T>) -> Var<T> {
    let b = z.shape()[0];
    let d = z.value.numel() / b;
    let flat = tape.reshape(z, &[b, d]);
    let sq = tape.reduce(&tape.unary(&flat, Unary::Square), Reduce::Sum, Some(1), false);
    tape.affine(&sq, -0.5, -0.5 * d as f32 * (2.0 * std::f32::consts::PI).ln())
}

impl<T: TensorOps> Flow<T> {
    pub fn new(layers: Vec<Box<dyn FlowLayer<T>>>) -> Self {
        Flow { layers }
    }

    /// z = F(x) and Σ log|det| per sample.
    pub fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        let tape = ctx.binder.tape;
        let mut h = x.clone();
        let mut total: Option<Var<T>> = None;
        for layer in &self.layers {
            let (y, ld) = layer.forward(ctx, &h);
            total = Some(match total {
                Some(t) => tape.add(&t, &ld),
                None => ld,
            });
            h = y;
        }
        let total = total.unwrap_or_else(|| Var::constant(x.value.zeros_like(&[x.shape()[0]])));
        (h, total)
    }

    /// log p(x) per sample.
    pub fn log_prob(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> Var<T> {
        let (z, logdet) = self.forward(ctx, x);
        ctx.binder.tape.add(&standard_normal_log_prob(ctx.binder.tape, &z), &logdet)
    }

    /// x = F⁻¹(z), with the iterations each layer with an iterative inverse took.
    pub fn inverse(&self, store: &ParamStore<T>, z: &T) -> Result<(T, Vec<usize>), InverseError> {
        pollster::block_on(self.inverse_async(store, z))
    }

    /// [`Flow::inverse`] as a future (see [`FlowLayer::inverse_async`]).
    pub async fn inverse_async(&self, store: &ParamStore<T>, z: &T) -> Result<(T, Vec<usize>), InverseError> {
        let mut h = z.clone();
        let mut iters = Vec::with_capacity(self.layers.len());
        for layer in self.layers.iter().rev() {
            let (x, n) = layer.inverse_async(store, &h).await?;
            if layer.iterative_inverse() {
                iters.push(n);
            }
            h = x;
        }
        iters.reverse();
        Ok((h, iters))
    }

    /// Data-dependent initialisation of every layer from a batch; returns the flow's output.
    pub fn initialize(&self, store: &mut ParamStore<T>, x: &T) -> T {
        let mut h = x.clone();
        for layer in &self.layers {
            h = layer.initialize(store, &h);
        }
        h
    }

    pub fn power_iterate(&self, store: &mut ParamStore<T>, iters: PowerIters) {
        for layer in &self.layers {
            layer.power_iterate(store, iters);
        }
    }
}
