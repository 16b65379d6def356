//! Spectral normalisation by power iteration (docs/DESIGN.md §2).
//!
//! Persistent vectors u, v live in the parameter store (non-trainable). The iteration runs off
//! the tape, on the device; only σ is read back, and only when asked (or, in tolerance mode,
//! one convergence scalar every few iterations). The normalised weight is
//! `W / max(1, σ/c)` with `σ = uᵀ W v` recorded on the tape, so the gradient flows through σ.
//! Under f16 operands W is the f16-rounded weight, the one the kernels multiply by.
//! A k×k convolution is normalised as the linear operator it applies at the input's spatial size
//! (conv / transposed-conv iteration); 1×1 convolutions and Linear weights as matrices.

use crate::ops::{Binary, Dist, TensorOps, Unary};
use crate::tape::Var;

use super::layers::operand_values;
use super::params::{Binder, ParamId, ParamStore};

/// How many power iterations to run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PowerIters {
    Fixed(usize),
    /// Until ‖u − u_prev‖/√dim < atol + rtol·max|u|, checked every 5 iterations, at most `max`.
    Tolerance {
        atol: f32,
        rtol: f32,
        max: usize,
    },
}

/// The operator whose norm is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// W [out, in] (also 1×1 convolutions, reshaped).
    Matrix,
    /// A k×k convolution at spatial size h × w.
    Conv { h: usize, w: usize },
}

#[derive(Debug, Clone)]
pub struct SpectralNorm {
    pub weight: ParamId,
    pub u: ParamId,
    pub v: ParamId,
    pub coeff: f32,
    pub operator: Operator,
}

/// x / ‖x‖₂ (with a floor that keeps a zero vector finite).
pub fn normalize<T: TensorOps>(x: &T) -> T {
    let norm = x.unary(Unary::Square).sum_all().unary(Unary::Affine(1.0, 1e-24)).unary(Unary::Sqrt);
    x.div(&norm)
}

impl SpectralNorm {
    /// Registers u, v for `weight` (shape [out, in] or [co, ci, k, k]) as `<prefix>.sn_u/.sn_v`.
    pub fn new<T: TensorOps>(
        store: &mut ParamStore<T>,
        prefix: &str,
        weight: ParamId,
        coeff: f32,
        spatial: Option<(usize, usize)>,
    ) -> Self {
        let shape = store.get(weight).shape().to_vec();
        let operator = match (shape.len(), spatial) {
            (4, Some((h, w))) if shape[2] > 1 => Operator::Conv { h, w },
            (2, _) | (4, _) => Operator::Matrix,
            _ => panic!("spectral norm of a weight of shape {shape:?}"),
        };
        let (out, inp) = (shape[0], shape[1]);
        let (u_shape, v_shape) = match operator {
            Operator::Matrix => (vec![out, 1], vec![shape[1..].iter().product(), 1]),
            Operator::Conv { h, w } => (vec![1, out, h, w], vec![1, inp, h, w]),
        };
        let u = normalize(&store.random(&u_shape, Dist::Normal { mean: 0.0, std: 1.0 }));
        let v = normalize(&store.random(&v_shape, Dist::Normal { mean: 0.0, std: 1.0 }));
        let u = store.add(&format!("{prefix}.sn_u"), u, false);
        let v = store.add(&format!("{prefix}.sn_v"), v, false);
        SpectralNorm { weight, u, v, coeff, operator }
    }

    fn matrix<T: TensorOps>(w: &T) -> T {
        let s = w.shape();
        w.reshape(&[s[0], s[1..].iter().product()])
    }

    /// (W v, Wᵀ u) for the operator.
    fn apply<T: TensorOps>(&self, w: &T, v: &T) -> T {
        match self.operator {
            Operator::Matrix => Self::matrix(w).matmul(v, false, false),
            Operator::Conv { .. } => v.conv2d(w),
        }
    }
    fn apply_t<T: TensorOps>(&self, w: &T, u: &T) -> T {
        match self.operator {
            Operator::Matrix => Self::matrix(w).matmul(u, true, false),
            Operator::Conv { .. } => u.conv_transpose2d(w),
        }
    }

    /// Runs the power iteration off the tape, updating u and v in the store; returns the count.
    pub fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: PowerIters) -> usize {
        let w = operand_values(store.get(self.weight));
        w.at_full_precision(|| self.power_iterate_on(store, &w, iters))
    }

    fn power_iterate_on<T: TensorOps>(&self, store: &mut ParamStore<T>, w: &T, iters: PowerIters) -> usize {
        let mut u = store.get(self.u).clone();
        let mut v = store.get(self.v).clone();
        if let (PowerIters::Fixed(n), Operator::Matrix) = (iters, self.operator) {
            // The fused kernel runs all n iterations in one dispatch.
            let (u2, v2) = T::matrix_power_iteration(&Self::matrix(w), &u, &v, n);
            store.set(self.u, u2);
            store.set(self.v, v2);
            return n;
        }
        let (max, tol) = match iters {
            PowerIters::Fixed(n) => (n, None),
            PowerIters::Tolerance { atol, rtol, max } => (max, Some((atol, rtol))),
        };
        let mut done = 0;
        while done < max {
            let prev = u.clone();
            u = normalize(&self.apply(w, &v));
            v = normalize(&self.apply_t(w, &u));
            done += 1;
            if let Some((atol, rtol)) = tol {
                if done % 5 == 0 || done == max {
                    let dim = u.numel() as f64;
                    let change = u.sub(&prev).unary(Unary::Square).sum_all().to_host()[0].sqrt() / dim.sqrt();
                    let scale = u.unary(Unary::Abs).reduce(crate::ops::Reduce::Max, None, false).to_host()[0];
                    if change < atol as f64 + rtol as f64 * scale {
                        break;
                    }
                }
            }
        }
        store.set(self.u, u);
        store.set(self.v, v);
        done
    }

    /// σ = uᵀ W v with the current vectors (a readback).
    pub fn sigma<T: TensorOps>(&self, store: &ParamStore<T>) -> f64 {
        let w = operand_values(store.get(self.weight));
        w.at_full_precision(|| self.apply(&w, store.get(self.v)).mul(store.get(self.u)).sum_all().to_host()[0])
    }

    /// The divisor max(1, σ/c) of `w` on the tape, σ = uᵀ W v with u, v constant: the
    /// normalised weight is W / divisor.
    pub fn divisor<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> Var<T> {
        w.value.at_full_precision(|| self.divisor_f32(b, w))
    }

    /// The normalised weight W / max(1, σ/c) on the tape.
    pub fn normalized<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> Var<T> {
        b.tape.div(w, &self.divisor(b, w))
    }

    fn divisor_f32<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> Var<T> {
        let tape = b.tape;
        let u = b.var(self.u);
        let v = b.var(self.v);
        let wv = match self.operator {
            Operator::Matrix => {
                let s = w.shape().to_vec();
                let wm = tape.reshape(w, &[s[0], s[1..].iter().product()]);
                tape.matmul(&wm, &v, false, false)
            }
            Operator::Conv { .. } => tape.conv2d(&v, w),
        };
        let sigma = tape.sum(&tape.mul(&wv, &u));
        let ratio = tape.affine(&sigma, 1.0 / self.coeff, 0.0);
        let one = Var::constant(sigma.value.full_like(&[], 1.0));
        tape.binary(&ratio, &one, Binary::Max)
    }
}
