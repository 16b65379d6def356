//! The logit transform of image flows (docs/DESIGN.md §2): s = α + (1 − 2α)x, y = log s − log(1 − s),
//! log-det Σ[−log(s(1 − s)) + log(1 − 2α)]. It maps dequantised pixels in [0, 1] to ℝ, where
//! the residual blocks work; α keeps the ends finite.

use crate::nn::ParamStore;
use crate::ops::{Reduce, TensorOps, Unary};
use crate::tape::Var;

use super::{FlowCtx, FlowLayer, InverseError};

pub struct LogitTransform {
    pub alpha: f32,
}

impl LogitTransform {
    pub fn new(alpha: f32) -> Self {
        assert!((0.0..0.5).contains(&alpha), "the logit transform needs 0 ≤ α < ½, got {alpha}");
        LogitTransform { alpha }
    }
}

impl<T: TensorOps> FlowLayer<T> for LogitTransform {
    fn name(&self) -> &str {
        "logit"
    }

    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        let tape = ctx.binder.tape;
        let a = self.alpha;
        let s = tape.affine(x, 1.0 - 2.0 * a, a);
        let log_s = tape.unary(&s, Unary::Log);
        let log_1ms = tape.unary(&tape.affine(&s, -1.0, 1.0), Unary::Log);
        let y = tape.sub(&log_s, &log_1ms);
        let (b, d) = (x.shape()[0], x.value.numel() / x.shape()[0]);
        let both = tape.reshape(&tape.add(&log_s, &log_1ms), &[b, d]);
        let per_sample = tape.reduce(&both, Reduce::Sum, Some(1), false);
        let logdet = tape.affine(&per_sample, -1.0, d as f32 * (1.0 - 2.0 * a).ln());
        (y, logdet)
    }

    fn inverse(&self, _store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError> {
        let a = self.alpha;
        Ok((y.unary(Unary::Sigmoid).unary(Unary::Affine(1.0 / (1.0 - 2.0 * a), -a / (1.0 - 2.0 * a))), 0))
    }

    fn initialize(&self, _store: &mut ParamStore<T>, x: &T) -> T {
        let a = self.alpha;
        let s = x.unary(Unary::Affine(1.0 - 2.0 * a, a));
        s.unary(Unary::Log).sub(&s.unary(Unary::Affine(-1.0, 1.0)).unary(Unary::Log))
    }
}
