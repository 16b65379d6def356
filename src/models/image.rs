//! The multi-scale image flow (docs/DESIGN.md §2.13): logit transform, then per scale an ActNorm and
//! `blocks` invertible blocks (each followed by ActNorm), a squeeze between scales with an
//! optional factor-out of half the channels, and optional fully connected residual blocks at
//! the end; plus the hybrid model's classifier head on the output of every scale.
//!
//! The model is generic over the tensor type, so the whole-model log-det is checked against a
//! dense Jacobian on the f64 reference.

use crate::flow::{
    ActNorm, AffineCoupling, Estimator, Flatten, Flow, FlowCtx, FlowLayer, GradMode, InverseError, LipschitzNet,
    LogitTransform, NetSpec, ResidualBlock, Squeeze,
};
use crate::nn::{Binder, Conv2d, Linear, ParamStore, PowerIters};
use crate::ops::{Activation, Reduce, TensorOps, Unary};
use crate::tape::Var;

/// Which invertible block the scales are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// y = x + g(x) with a spectrally normalised CNN g (the paper's model).
    Residual,
    /// Real NVP affine coupling with a checkerboard mask (the paper's baseline).
    Coupling,
}

/// Everything that shapes the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// One image, [C, H, W].
    pub image: [usize; 3],
    pub scales: usize,
    /// Blocks per scale.
    pub blocks: usize,
    /// Hidden channels of every block's network.
    pub width: usize,
    /// Fully connected residual blocks after the last scale (the paper: 4 of width 128).
    pub fc_blocks: usize,
    pub fc_width: usize,
    pub factor_out: bool,
    pub block: BlockKind,
    pub coeff: f32,
    pub activation: Activation,
    pub estimator: Estimator,
    pub grad_mode: GradMode,
    /// α of the logit transform.
    pub alpha: f32,
    /// The hybrid model's classifier: (classes, channels of each head's convolution).
    pub classifier: Option<(usize, usize)>,
}

impl ModelSpec {
    /// The per-image shape entering each scale.
    pub fn scale_shapes(&self) -> Vec<[usize; 3]> {
        let mut shapes = vec![self.image];
        for _ in 1..self.scales {
            let [c, h, w] = *shapes.last().expect("one scale at least");
            let c = if self.factor_out { 2 * c } else { 4 * c };
            shapes.push([c, h / 2, w / 2]);
        }
        shapes
    }

    /// Shape checks with messages a user can act on.
    pub fn validate(&self) -> Result<(), String> {
        let [c, h, w] = self.image;
        if self.scales == 0 || self.blocks == 0 || self.width == 0 || c == 0 {
            return Err("the image model needs at least one scale, one block per scale and a non-zero width".into());
        }
        if self.scales > 16 {
            return Err(format!("--scales {} is more than any image allows (at most 16)", self.scales));
        }
        let factor = 1usize << (self.scales - 1);
        if !h.is_multiple_of(factor) || !w.is_multiple_of(factor) {
            return Err(format!(
                "{} scales squeeze the image {}× per side, but {h}×{w} is not divisible by {factor}",
                self.scales, factor
            ));
        }
        if self.fc_blocks > 0 && self.fc_width == 0 {
            return Err("--fc-width must be positive when there are fully connected blocks".into());
        }
        if !(self.coeff > 0.0 && self.coeff < 1.0) && self.block == BlockKind::Residual {
            return Err(format!("--coeff must be in (0, 1) for invertible residual blocks, got {}", self.coeff));
        }
        Ok(())
    }
}

/// The classifier head of one scale: Conv3×3 → ActNorm → ReLU → global average pool.
struct Head {
    conv: Conv2d,
    norm: ActNorm,
}

/// What one forward pass produces.
pub struct Forward<T> {
    /// The latent parts: one per factored-out scale, then the final output ([B, …] each).
    pub parts: Vec<Var<T>>,
    /// Σ log|det| per sample ([B]), the logit transform included.
    pub logdet: Var<T>,
    /// Class logits ([B, classes]) of the hybrid model.
    pub logits: Option<Var<T>>,
}

pub struct MultiScaleFlow<T> {
    pub spec: ModelSpec,
    logit: LogitTransform,
    /// Per scale: the leading ActNorm and the blocks with their ActNorms.
    pub stages: Vec<Flow<T>>,
    /// Flatten and the fully connected blocks, when there are any.
    pub fc: Option<Flow<T>>,
    heads: Vec<Head>,
    classifier: Option<Linear>,
}

impl<T: TensorOps> MultiScaleFlow<T> {
    pub fn new(store: &mut ParamStore<T>, spec: &ModelSpec) -> Result<Self, String> {
        spec.validate()?;
        let shapes = spec.scale_shapes();
        let mut stages = Vec::new();
        for (s, &[c, h, w]) in shapes.iter().enumerate() {
            let mut layers: Vec<Box<dyn FlowLayer<T>>> =
                vec![Box::new(ActNorm::new(store, &format!("s{s}.actnorm"), c))];
            for b in 0..spec.blocks {
                let name = format!("s{s}.block{b}");
                layers.push(match spec.block {
                    BlockKind::Residual => {
                        let net = NetSpec {
                            activation: spec.activation,
                            coeff: spec.coeff,
                            // The very first block of the model reads the logit output directly.
                            leading_activation: s > 0 || b > 0,
                            gain: 1.0,
                            last_gain: 1.0,
                        };
                        let widths = [c, spec.width, spec.width, c];
                        let g = LipschitzNet::cnn(store, &format!("{name}.g"), &widths, &[3, 1, 3], (h, w), &net);
                        Box::new(ResidualBlock::new(&name, g, spec.estimator, spec.grad_mode))
                    }
                    BlockKind::Coupling => Box::new(AffineCoupling::new(store, &name, [c, h, w], spec.width, b % 2)),
                });
                layers.push(Box::new(ActNorm::new(store, &format!("{name}.actnorm"), c)));
            }
            stages.push(Flow::new(layers));
        }
        let [c, h, w] = *shapes.last().expect("one scale at least");
        let fc = (spec.fc_blocks > 0).then(|| {
            let d = c * h * w;
            let mut layers: Vec<Box<dyn FlowLayer<T>>> = vec![Box::new(Flatten { image: [c, h, w] })];
            let net = NetSpec {
                activation: spec.activation,
                coeff: spec.coeff,
                leading_activation: true,
                gain: 1.0,
                last_gain: 1.0,
            };
            for b in 0..spec.fc_blocks {
                let name = format!("fc.block{b}");
                let g = LipschitzNet::mlp(store, &format!("{name}.g"), &[d, spec.fc_width, spec.fc_width, d], &net);
                layers.push(Box::new(ResidualBlock::new(&name, g, spec.estimator, spec.grad_mode)));
                layers.push(Box::new(ActNorm::new(store, &format!("{name}.actnorm"), d)));
            }
            Flow::new(layers)
        });
        let (heads, classifier) = match spec.classifier {
            None => (Vec::new(), None),
            Some((classes, hw)) => {
                let heads = shapes
                    .iter()
                    .enumerate()
                    .map(|(s, &[c, h, w])| Head {
                        conv: Conv2d::new(store, &format!("head{s}.conv"), c, hw, 3, 1.0, None, (h, w)),
                        norm: ActNorm::new(store, &format!("head{s}.actnorm"), hw),
                    })
                    .collect();
                (heads, Some(Linear::new(store, "classifier", hw * spec.scales, classes, 1.0, None)))
            }
        };
        Ok(MultiScaleFlow { spec: spec.clone(), logit: LogitTransform::new(spec.alpha), stages, fc, heads, classifier })
    }

    /// The per-sample shapes of the latent parts, in the order of `Forward::parts`.
    pub fn latent_shapes(&self) -> Vec<Vec<usize>> {
        let shapes = self.spec.scale_shapes();
        let mut out = Vec::new();
        for (s, &[c, h, w]) in shapes.iter().enumerate() {
            if s + 1 < shapes.len() && self.spec.factor_out {
                out.push(vec![2 * c, h / 2, w / 2]);
            }
        }
        let [c, h, w] = *shapes.last().expect("one scale at least");
        out.push(if self.fc.is_some() { vec![c * h * w] } else { vec![c, h, w] });
        out
    }

    pub fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> Forward<T> {
        let tape = ctx.binder.tape;
        let (mut h, mut logdet) = self.logit.forward(ctx, x);
        let mut parts = Vec::new();
        let mut features = Vec::new();
        let last = self.stages.len() - 1;
        for (s, stage) in self.stages.iter().enumerate() {
            let (y, ld) = stage.forward(ctx, &h);
            logdet = tape.add(&logdet, &ld);
            if let Some(head) = self.heads.get(s) {
                features.push(head.features(ctx, &y));
            }
            h = y;
            if s < last {
                h = Squeeze.forward(ctx, &h).0;
                if self.spec.factor_out {
                    let half = h.shape()[1] / 2;
                    parts.push(tape.slice(&h, 1, 0, half));
                    h = tape.slice(&h, 1, half, half);
                }
            }
        }
        if let Some(fc) = &self.fc {
            let (y, ld) = fc.forward(ctx, &h);
            logdet = tape.add(&logdet, &ld);
            h = y;
        }
        parts.push(h);
        let logits = self.classifier.as_ref().map(|lin| {
            let refs: Vec<&Var<T>> = features.iter().collect();
            lin.forward(ctx.binder, &tape.concat(&refs, 1))
        });
        Forward { parts, logdet, logits }
    }

    /// log p(x) per sample (nats, density of the dequantised x ∈ [0, 1]^D).
    pub fn log_prob(&self, out: &Forward<T>, ctx: &FlowCtx<'_, T>) -> Var<T> {
        let tape = ctx.binder.tape;
        out.parts
            .iter()
            .fold(out.logdet.clone(), |acc, z| tape.add(&acc, &crate::flow::standard_normal_log_prob(tape, z)))
    }

    /// x = F⁻¹(parts), with the fixed-point iterations of every residual block.
    pub fn inverse(&self, store: &ParamStore<T>, parts: &[T]) -> Result<(T, Vec<usize>), InverseError> {
        pollster::block_on(self.inverse_async(store, parts))
    }

    /// [`MultiScaleFlow::inverse`] as a future, for callers that cannot block on a readback.
    pub async fn inverse_async(&self, store: &ParamStore<T>, parts: &[T]) -> Result<(T, Vec<usize>), InverseError> {
        let mut iters = Vec::new();
        let mut parts = parts.to_vec();
        let mut h = parts.pop().expect("the final latent part");
        if let Some(fc) = &self.fc {
            let (x, n) = fc.inverse_async(store, &h).await?;
            iters.extend(n);
            h = x;
        }
        for (s, stage) in self.stages.iter().enumerate().rev() {
            if s + 1 < self.stages.len() {
                if self.spec.factor_out {
                    let z = parts.pop().expect("one factored-out part per scale");
                    h = T::concat(&[&z, &h], 1);
                }
                h = Squeeze.inverse(store, &h)?.0;
            }
            let (x, n) = stage.inverse_async(store, &h).await?;
            iters.splice(0..0, n);
            h = x;
        }
        Ok((self.logit.inverse(store, &h)?.0, iters))
    }

    /// Data-dependent initialisation of every ActNorm (flow and heads) from one batch.
    pub fn initialize(&self, store: &mut ParamStore<T>, x: &T) {
        let mut h = self.logit.initialize(store, x);
        let last = self.stages.len() - 1;
        for (s, stage) in self.stages.iter().enumerate() {
            h = stage.initialize(store, &h);
            if let Some(head) = self.heads.get(s) {
                head.initialize(store, &h);
            }
            if s < last {
                h = h.squeeze2();
                if self.spec.factor_out {
                    let half = h.shape()[1] / 2;
                    h = h.slice(1, half, half);
                }
            }
        }
        if let Some(fc) = &self.fc {
            fc.initialize(store, &h);
        }
    }

    pub fn power_iterate(&self, store: &mut ParamStore<T>, iters: PowerIters) {
        for stage in self.stages.iter().chain(&self.fc) {
            stage.power_iterate(store, iters);
        }
    }
}

impl Head {
    /// [B, C, H, W] → [B, head channels].
    fn features<T: TensorOps>(&self, ctx: &FlowCtx<'_, T>, h: &Var<T>) -> Var<T> {
        let tape = ctx.binder.tape;
        let a = self.norm.forward(ctx, &self.conv.forward(ctx.binder, h)).0;
        let r = tape.unary(&a, Unary::Relu);
        let (n, c) = (r.shape()[0], r.shape()[1]);
        let spatial = r.value.numel() / (n * c);
        tape.reduce(&tape.reshape(&r, &[n, c, spatial]), Reduce::Mean, Some(2), false)
    }

    fn initialize<T: TensorOps>(&self, store: &mut ParamStore<T>, h: &T) {
        let pre = {
            let tape = crate::tape::Tape::no_grad();
            let b = Binder::new(store, &tape);
            self.conv.forward(&b, &Var::constant(h.clone())).value
        };
        self.norm.initialize(store, &pre);
    }
}
