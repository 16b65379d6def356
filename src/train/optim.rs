//! Adam with linear warm-up, an optional cosine decay and gradient-norm clipping, and an
//! exponential moving average of the weights for evaluation.
//!
//! The clipping factor min(1, max_norm / ‖g‖) is computed on the device and read by the fused
//! Adam kernel, so a step needs no readback.

use std::collections::BTreeMap;

use crate::nn::{ParamId, ParamStore};
use crate::ops::{AdamStep, Binary, Reduce, TensorOps, Unary};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Steps of linear learning-rate warm-up from 0.
    pub warmup: usize,
    /// Largest global gradient norm (∞ disables clipping).
    pub clip: f32,
    /// Cosine decay of the learning rate to zero at this step (0: constant after warm-up).
    pub cosine_steps: usize,
}

impl AdamConfig {
    /// The Residual Flows setting: β = (0.9, 0.99), ε = 1e-8.
    pub fn residual_flows(lr: f32, warmup: usize, clip: f32, cosine_steps: usize) -> Self {
        AdamConfig { lr, beta1: 0.9, beta2: 0.99, eps: 1e-8, warmup, clip, cosine_steps }
    }
}

pub struct Adam<T> {
    pub config: AdamConfig,
    /// Steps taken so far.
    pub step: usize,
    pub m: BTreeMap<ParamId, T>,
    pub v: BTreeMap<ParamId, T>,
}

impl<T: TensorOps> Adam<T> {
    pub fn new(config: AdamConfig) -> Self {
        Adam { config, step: 0, m: BTreeMap::new(), v: BTreeMap::new() }
    }

    /// The learning rate of the next step: linear warm-up, then constant or a cosine decay
    /// that reaches zero at `cosine_steps`.
    pub fn current_lr(&self) -> f32 {
        let (w, t) = (self.config.warmup, self.step + 1);
        let warm = if w == 0 { 1.0 } else { (t as f32 / w as f32).min(1.0) };
        let decay = match self.config.cosine_steps {
            0 => 1.0,
            total => 0.5 * (1.0 + (std::f32::consts::PI * (t.min(total) as f32 / total as f32)).cos()),
        };
        self.config.lr * warm * decay
    }

    /// The one-element clipping factor min(1, clip / ‖g‖), and ‖g‖ itself.
    pub fn clip_factor(&self, grads: &[(ParamId, T)]) -> (T, T) {
        let mut total: Option<T> = None;
        for (_, g) in grads {
            let s = g.unary(Unary::Square).reduce(Reduce::Sum, None, false);
            total = Some(match total {
                Some(t) => t.add(&s),
                None => s,
            });
        }
        let total = total.expect("at least one gradient");
        let norm = total.unary(Unary::Sqrt);
        let factor = if self.config.clip.is_finite() {
            let raw = norm.unary(Unary::Affine(1.0, 1e-6)).unary(Unary::Recip).scale(self.config.clip);
            raw.binary(Binary::Min, &raw.full_like(&[], 1.0))
        } else {
            norm.full_like(&[], 1.0)
        };
        (factor.reshape(&[1]), norm)
    }

    /// One step on every (parameter, gradient) pair; returns the gradient norm (on the device).
    pub fn step(&mut self, store: &mut ParamStore<T>, grads: Vec<(ParamId, T)>) -> T {
        let (clip, norm) = self.clip_factor(&grads);
        let c = self.config;
        let t = (self.step + 1) as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        // Bias corrections folded in: p −= lr·√bc2/bc1 · m / (√v + ε·√bc2).
        let h = AdamStep {
            lr: self.current_lr() * bc2.sqrt() / bc1,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps * bc2.sqrt(),
        };
        for (id, g) in grads {
            let p = store.get(id).clone();
            let m = self.m.remove(&id).unwrap_or_else(|| p.zeros_like(p.shape()));
            let v = self.v.remove(&id).unwrap_or_else(|| p.zeros_like(p.shape()));
            let (p2, m2, v2) = p.adam_step(&g, &m, &v, &clip, h);
            store.set(id, p2);
            self.m.insert(id, m2);
            self.v.insert(id, v2);
        }
        self.step += 1;
        norm
    }
}

/// Largest weight (in elements) whose EMA update may stay pending across steps.
const LAZY_EMA_MAX_ELEMENTS: usize = 1 << 16;

/// EMA of the trainable weights: e ← e + (1 − decay)·(p − e).
pub struct Ema<T> {
    pub decay: f32,
    pub values: BTreeMap<ParamId, T>,
}

impl<T: TensorOps> Ema<T> {
    pub fn new(store: &ParamStore<T>, decay: f32) -> Self {
        let values = store.trainable().map(|id| (id, store.get(id).clone())).collect();
        Ema { decay, values }
    }

    pub fn update(&mut self, store: &ParamStore<T>) {
        for (id, e) in self.values.iter_mut() {
            *e = e.lerp(store.get(*id), 1.0 - self.decay);
            // Small averages stay lazy: the next updates join the same pending chain, which
            // the fusion limits realise every few steps in one dispatch instead of one per
            // step (the same arithmetic, in the same order). Large ones are realised now, so
            // the chain never keeps several old copies of a big weight alive.
            if e.shape().iter().product::<usize>() > LAZY_EMA_MAX_ELEMENTS {
                e.realize();
            }
        }
    }

    /// A copy of `store` with the averaged weights (non-trainable state copied as is).
    pub fn apply_to(&self, store: &ParamStore<T>) -> ParamStore<T> {
        let mut out = store.clone();
        for (id, e) in &self.values {
            out.set(*id, e.clone());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::CpuTensor;

    #[test]
    fn learning_rate_warms_up_then_follows_the_schedule() {
        let config = AdamConfig { lr: 1.0, beta1: 0.9, beta2: 0.99, eps: 1e-8, warmup: 10, clip: 1.0, cosine_steps: 0 };
        let mut adam: Adam<CpuTensor> = Adam::new(config);
        let lr_at = |adam: &mut Adam<CpuTensor>, step| {
            adam.step = step;
            adam.current_lr()
        };
        assert!((lr_at(&mut adam, 0) - 0.1).abs() < 1e-6 && lr_at(&mut adam, 9) == 1.0 && lr_at(&mut adam, 500) == 1.0);
        adam.config.cosine_steps = 100;
        // Half-way the cosine is at ½; it reaches 0 at the last step and stays there.
        assert!((lr_at(&mut adam, 49) - 0.5).abs() < 1e-6);
        assert!(lr_at(&mut adam, 99).abs() < 1e-6 && lr_at(&mut adam, 150).abs() < 1e-6);
        assert!(lr_at(&mut adam, 20) > lr_at(&mut adam, 21));
    }
}
