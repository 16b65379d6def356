//! Volume-preserving rearrangements (log-det 0): squeeze (space-to-depth, [B,C,2H,2W] →
//! [B,4C,H,W], output channel 4c + 2i + j) between the scales of an image flow, and flatten
//! ([B,C,H,W] → [B,C·H·W]) before its fully connected blocks.

use crate::nn::ParamStore;
use crate::ops::TensorOps;
use crate::tape::Var;

use super::{FlowCtx, FlowLayer, InverseError};

fn zero_logdet<T: TensorOps>(x: &Var<T>) -> Var<T> {
    Var::constant(x.value.zeros_like(&[x.shape()[0]]))
}

pub struct Squeeze;

impl<T: TensorOps> FlowLayer<T> for Squeeze {
    fn name(&self) -> &str {
        "squeeze"
    }
    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        (ctx.binder.tape.squeeze2(x), zero_logdet(x))
    }
    fn inverse(&self, _store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError> {
        Ok((y.unsqueeze2(), 0))
    }
    fn initialize(&self, _store: &mut ParamStore<T>, x: &T) -> T {
        x.squeeze2()
    }
}

/// [B, C, H, W] → [B, C·H·W]; the inverse restores `image` = [C, H, W].
pub struct Flatten {
    pub image: [usize; 3],
}

impl<T: TensorOps> FlowLayer<T> for Flatten {
    fn name(&self) -> &str {
        "flatten"
    }
    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        let b = x.shape()[0];
        (ctx.binder.tape.reshape(x, &[b, x.value.numel() / b]), zero_logdet(x))
    }
    fn inverse(&self, _store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError> {
        let [c, h, w] = self.image;
        Ok((y.reshape(&[y.shape()[0], c, h, w]), 0))
    }
    fn initialize(&self, _store: &mut ParamStore<T>, x: &T) -> T {
        let b = x.shape()[0];
        x.reshape(&[b, x.numel() / b])
    }
}
