//! ActNorm: y = (x + b) ⊙ e^s per channel, with data-dependent initialisation
//! (b = −mean, s = −½ log max(var, 0.2)) and log-det H·W·Σ s per sample.

use crate::nn::{ParamId, ParamStore};
use crate::ops::{Reduce, TensorOps, Unary};
use crate::tape::Var;

use super::{FlowCtx, FlowLayer, InverseError};

pub struct ActNorm {
    name: String,
    pub bias: ParamId,
    pub log_scale: ParamId,
    channels: usize,
}

impl ActNorm {
    /// ActNorm over `channels` (features of [B, D] inputs, or channels of [B, C, H, W]).
    pub fn new<T: TensorOps>(store: &mut ParamStore<T>, name: &str, channels: usize) -> Self {
        let bias = store.add(&format!("{name}.bias"), store.full(&[channels], 0.0), true);
        let log_scale = store.add(&format!("{name}.log_scale"), store.full(&[channels], 0.0), true);
        ActNorm { name: name.to_string(), bias, log_scale, channels }
    }

    /// The per-channel parameter reshaped to broadcast against x.
    fn view(&self, rank: usize) -> Vec<usize> {
        match rank {
            2 => vec![1, self.channels],
            4 => vec![1, self.channels, 1, 1],
            r => panic!("{}: ActNorm takes [B, D] or [B, C, H, W] inputs, got rank {r}", self.name),
        }
    }

    fn spatial(shape: &[usize]) -> usize {
        shape[2..].iter().product()
    }
}

impl<T: TensorOps> FlowLayer<T> for ActNorm {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        let (b, tape) = (ctx.binder, ctx.binder.tape);
        let view = self.view(x.shape().len());
        let bias = tape.reshape(&b.var(self.bias), &view);
        let s = b.var(self.log_scale);
        let scale = tape.unary(&tape.reshape(&s, &view), Unary::Exp);
        let y = tape.mul(&tape.add(x, &bias), &scale);
        let per_sample = tape.affine(&tape.sum(&s), Self::spatial(x.shape()) as f32, 0.0);
        let logdet = tape.broadcast_to(&tape.reshape(&per_sample, &[1]), &[x.shape()[0]]);
        (y, logdet)
    }

    fn inverse(&self, store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError> {
        let view = self.view(y.shape().len());
        let bias = store.get(self.bias).reshape(&view);
        let inv_scale = store.get(self.log_scale).unary(Unary::Neg).unary(Unary::Exp).reshape(&view);
        Ok((y.mul(&inv_scale).sub(&bias), 0))
    }

    fn initialize(&self, store: &mut ParamStore<T>, x: &T) -> T {
        // Per-channel mean and variance over the batch (and the pixels).
        let per_channel = match x.shape().len() {
            2 => x.clone(),
            4 => {
                let (b, c) = (x.shape()[0], x.shape()[1]);
                x.reshape(&[b, c, Self::spatial(x.shape())])
                    .permute(&[0, 2, 1])
                    .reshape(&[b * Self::spatial(x.shape()), c])
            }
            r => panic!("{}: ActNorm takes [B, D] or [B, C, H, W] inputs, got rank {r}", self.name),
        };
        let mean = per_channel.reduce(Reduce::Mean, Some(0), true);
        let var = per_channel.sub(&mean).unary(Unary::Square).reduce(Reduce::Mean, Some(0), false);
        let floor = var.full_like(var.shape(), 0.2);
        let log_scale = var.binary(crate::ops::Binary::Max, &floor).unary(Unary::Log).scale(-0.5);
        store.set(self.bias, mean.reshape(&[self.channels]).scale(-1.0));
        store.set(self.log_scale, log_scale);
        let view = self.view(x.shape().len());
        x.add(&store.get(self.bias).reshape(&view)).mul(&store.get(self.log_scale).unary(Unary::Exp).reshape(&view))
    }
}
