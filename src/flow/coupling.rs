//! The affine coupling block (Real NVP), the paper's baseline against residual blocks.
//!
//! With a fixed checkerboard mask m over the pixels (every channel alike, parity alternating
//! from block to block), the network sees only x ⊙ m and produces a log-scale s and a shift t
//! for the other pixels: y = x ⊙ e^{s'} + t', with s' = tanh(s) ⊙ (1 − m) and t' = t ⊙ (1 − m).
//! The Jacobian is triangular, so log|det| = Σ s' exactly and the inverse is closed-form:
//! x = (y − t') ⊙ e^{−s'}, with s', t' computed from y ⊙ m = x ⊙ m.

use crate::nn::{Binder, Conv2d, ParamId, ParamStore};
use crate::ops::{Reduce, TensorOps, Unary};
use crate::tape::{Tape, Var};

use super::{FlowCtx, FlowLayer, InverseError};

pub struct AffineCoupling {
    name: String,
    convs: [Conv2d; 3],
    channels: usize,
    /// 1 where the network reads the input, per pixel of one image ([1, C, H, W] layout).
    mask: Vec<f32>,
    shape: [usize; 3],
}

impl AffineCoupling {
    /// Conv3×3(C→width) → ReLU → Conv1×1(width→width) → ReLU → Conv3×3(width→2C), the last
    /// initialised at zero so the block starts as the identity.
    pub fn new<T: TensorOps>(
        store: &mut ParamStore<T>,
        name: &str,
        image: [usize; 3],
        width: usize,
        parity: usize,
    ) -> Self {
        let [c, h, w] = image;
        let conv = |store: &mut ParamStore<T>, i: usize, cin, cout, k, gain| {
            Conv2d::new(store, &format!("{name}.conv{i}"), cin, cout, k, gain, None, (h, w))
        };
        let convs = [
            conv(store, 0, c, width, 3, 1.0),
            conv(store, 1, width, width, 1, 1.0),
            conv(store, 2, width, 2 * c, 3, 0.0),
        ];
        let mask = (0..c * h * w).map(|i| ((((i / w) % h) + (i % w) + parity) % 2) as f32).collect();
        AffineCoupling { name: name.to_string(), convs, channels: c, mask, shape: image }
    }

    pub fn param_ids(&self) -> Vec<ParamId> {
        self.convs.iter().flat_map(|c| [c.weight, c.bias]).collect()
    }

    fn masks<T: TensorOps>(&self, like: &T) -> (T, T) {
        let [c, h, w] = self.shape;
        let m = like.tensor_like(&self.mask, &[1, c, h, w]);
        let keep: Vec<f32> = self.mask.iter().map(|v| 1.0 - v).collect();
        (m, like.tensor_like(&keep, &[1, c, h, w]))
    }

    /// (s', t') from the masked input.
    fn scale_shift<T: TensorOps>(&self, b: &Binder<'_, T>, xm: &Var<T>, keep: &Var<T>) -> (Var<T>, Var<T>) {
        let tape: &Tape<T> = b.tape;
        let h1 = tape.unary(&self.convs[0].forward(b, xm), Unary::Relu);
        let h2 = tape.unary(&self.convs[1].forward(b, &h1), Unary::Relu);
        let out = self.convs[2].forward(b, &h2);
        let s = tape.mul(&tape.unary(&tape.slice(&out, 1, 0, self.channels), Unary::Tanh), keep);
        let t = tape.mul(&tape.slice(&out, 1, self.channels, self.channels), keep);
        (s, t)
    }
}

impl<T: TensorOps> FlowLayer<T> for AffineCoupling {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        let (b, tape) = (ctx.binder, ctx.binder.tape);
        let (m, keep) = self.masks(&x.value);
        let (m, keep) = (Var::constant(m), Var::constant(keep));
        let (s, t) = self.scale_shift(b, &tape.mul(x, &m), &keep);
        let y = tape.add(&tape.mul(x, &tape.unary(&s, Unary::Exp)), &t);
        let n = x.shape()[0];
        let logdet = tape.reduce(&tape.reshape(&s, &[n, x.value.numel() / n]), Reduce::Sum, Some(1), false);
        (y, logdet)
    }

    fn inverse(&self, store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError> {
        let tape = Tape::no_grad();
        let b = Binder::new(store, &tape);
        let (m, keep) = self.masks(y);
        let (s, t) = self.scale_shift(&b, &Var::constant(y.mul(&m)), &Var::constant(keep));
        Ok((y.sub(&t.value).mul(&s.value.unary(Unary::Neg).unary(Unary::Exp)), 0))
    }

    fn initialize(&self, store: &mut ParamStore<T>, x: &T) -> T {
        let tape = Tape::no_grad();
        let b = Binder::new(store, &tape);
        let ctx = FlowCtx::new(&b, 0, true);
        self.forward(&ctx, &Var::constant(x.clone())).0.value
    }
}
