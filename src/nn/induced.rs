//! Generalised spectral normalisation with induced mixed norms ‖W‖_{p→q} (docs/DESIGN.md §2).
//!
//! ‖W‖_{p→q} = max_{‖x‖_p = 1} ‖Wx‖_q, estimated by the dual-map power iteration
//!   y = Wx,  z = sign(y)|y|^{q−1} / ‖·‖_{q*},  w = Wᵀz,  x = sign(w)|w|^{p*−1} / ‖·‖_p,
//! with σ = ‖Wx‖_q recorded on the tape (x constant) so the gradient reaches W and, for
//! learnable orders, q. Closed forms replace the iteration for 1→q (largest column q-norm) and
//! p→∞ (largest row p*-norm). Learnable orders are p = 1 + softplus(raw) ∈ (1, ∞), init 2.

use crate::ops::{Binary, Dist, Reduce, TensorOps, Unary};
use crate::tape::{Tape, Var};

use super::params::{Binder, ParamId, ParamStore};

/// A norm order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Order {
    Fixed(f32),
    /// p = 1 + softplus(raw), raw a one-element parameter.
    Learnable(ParamId),
    Inf,
}

/// softplus⁻¹(y) = ln(eʸ − 1).
fn inverse_softplus(y: f64) -> f64 {
    y.exp_m1().ln()
}

impl Order {
    pub fn learnable<T: TensorOps>(store: &mut ParamStore<T>, name: &str, init: f64) -> Order {
        assert!(init > 1.0, "a learnable order starts above 1, got {init}");
        let raw = store.full(&[1], inverse_softplus(init - 1.0) as f32);
        Order::Learnable(store.add(name, raw, true))
    }

    /// The current value (a readback for learnable orders).
    pub fn value<T: TensorOps>(&self, store: &ParamStore<T>) -> f64 {
        match *self {
            Order::Fixed(p) => p as f64,
            Order::Inf => f64::INFINITY,
            Order::Learnable(id) => 1.0 + Unary::Softplus.eval(store.get(id).to_host()[0]),
        }
    }

    /// The order as a one-element value on the tape (learnable ones carry a gradient).
    fn var<T: TensorOps>(&self, b: &Binder<'_, T>, like: &T) -> Var<T> {
        match *self {
            Order::Fixed(p) => Var::constant(like.full_like(&[1], p)),
            Order::Learnable(id) => b.tape.affine(&b.tape.unary(&b.var(id), Unary::Softplus), 1.0, 1.0),
            Order::Inf => panic!("the ∞ order has no value on the tape"),
        }
    }
}

/// The dual exponent p* = p/(p−1).
pub fn dual(p: f64) -> f64 {
    if p.is_infinite() {
        1.0
    } else if p == 1.0 {
        f64::INFINITY
    } else {
        p / (p - 1.0)
    }
}

/// ‖x‖_p of all elements, off the tape (p finite ≥ 1, or ∞).
pub fn lp_norm<T: TensorOps>(x: &T, p: f64) -> T {
    let a = x.unary(Unary::Abs);
    if p.is_infinite() {
        return a.reduce(Reduce::Max, None, false);
    }
    a.unary(Unary::SignedPow(p as f32)).sum_all().unary(Unary::SignedPow((1.0 / p) as f32))
}

/// ‖y‖_q along `axis` (or all) on the tape, with q a one-element variable:
/// exp(ln Σ exp(q·ln(|y| + ε)) / q), which differentiates in both y and q.
pub fn lp_norm_tape<T: TensorOps>(tape: &Tape<T>, y: &Var<T>, q: &Var<T>, axis: Option<usize>) -> Var<T> {
    let log_abs = tape.unary(&tape.affine(&tape.unary(y, Unary::Abs), 1.0, 1e-30), Unary::Log);
    let powered = tape.unary(&tape.mul(&log_abs, q), Unary::Exp);
    let total = tape.reduce(&powered, Reduce::Sum, axis, false);
    tape.unary(&tape.div(&tape.unary(&total, Unary::Log), q), Unary::Exp)
}

#[derive(Debug, Clone)]
pub struct InducedNorm {
    pub weight: ParamId,
    /// The persistent domain vector x [in, 1], ‖x‖_p = 1.
    pub x: ParamId,
    pub coeff: f32,
    pub p: Order,
    pub q: Order,
}

impl InducedNorm {
    pub fn new<T: TensorOps>(
        store: &mut ParamStore<T>,
        prefix: &str,
        weight: ParamId,
        coeff: f32,
        p: Order,
        q: Order,
    ) -> Self {
        let inputs = store.get(weight).shape()[1];
        let x0 = store.random(&[inputs, 1], Dist::Normal { mean: 0.0, std: 1.0 });
        let x0 = x0.div(&lp_norm(&x0, 2.0));
        let x = store.add(&format!("{prefix}.norm_x"), x0, false);
        InducedNorm { weight, x, coeff, p, q }
    }

    fn closed_form(p: f64, q: f64) -> bool {
        p == 1.0 || q.is_infinite()
    }

    /// Runs `iters` dual-map power iterations off the tape (no-op for the closed forms).
    pub fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: usize) {
        let (p, q) = (self.p.value(store), self.q.value(store));
        if Self::closed_form(p, q) {
            return;
        }
        let w = super::layers::operand_values(store.get(self.weight));
        let mut x = store.get(self.x).clone();
        w.at_full_precision(|| {
            for _ in 0..iters {
                let y = w.matmul(&x, false, false);
                let z = y.unary(Unary::SignedPow((q - 1.0) as f32));
                let z = z.div(&lp_norm(&z, dual(q)));
                let g = w.matmul(&z, true, false);
                let xn = g.unary(Unary::SignedPow((dual(p) - 1.0) as f32));
                x = xn.div(&lp_norm(&xn, p));
            }
        });
        store.set(self.x, x);
    }

    /// σ ≈ ‖W‖_{p→q} with the current vector (a readback).
    pub fn sigma<T: TensorOps>(&self, store: &ParamStore<T>) -> f64 {
        let (p, q) = (self.p.value(store), self.q.value(store));
        let w = &super::layers::operand_values(store.get(self.weight));
        if Self::closed_form(p, q) {
            return closed_form_norm(&w.to_host(), w.shape()[0], w.shape()[1], p, q);
        }
        w.at_full_precision(|| lp_norm(&w.matmul(store.get(self.x), false, false), q).to_host()[0])
    }

    /// σ on the tape.
    fn sigma_tape<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> Var<T> {
        let tape = b.tape;
        let (p, q) = (self.p.value(b.store), self.q.value(b.store));
        if p == 1.0 {
            // Largest column q-norm (q = ∞: largest entry).
            let cols = if q.is_infinite() {
                tape.reduce(&tape.unary(w, Unary::Abs), Reduce::Max, Some(0), false)
            } else {
                lp_norm_tape(tape, w, &self.q.var(b, &w.value), Some(0))
            };
            return tape.reduce(&cols, Reduce::Max, None, false);
        }
        if q.is_infinite() {
            // Largest row p*-norm, p* = p/(p−1).
            let pv = self.p.var(b, &w.value);
            let p_star = tape.div(&pv, &tape.affine(&pv, 1.0, -1.0));
            let rows = lp_norm_tape(tape, w, &p_star, Some(1));
            return tape.reduce(&rows, Reduce::Max, None, false);
        }
        let wx = tape.matmul(w, &b.var(self.x), false, false);
        let s = lp_norm_tape(tape, &wx, &self.q.var(b, &w.value), None);
        tape.reshape(&s, &[])
    }

    /// The normalised weight W / max(1, σ/c) on the tape.
    pub fn normalized<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> Var<T> {
        b.tape.div(w, &self.divisor(b, w))
    }

    /// The divisor max(1, σ/c) of `w` on the tape (the normalised weight is W / divisor).
    pub fn divisor<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> Var<T> {
        let tape = b.tape;
        let sigma = w.value.at_full_precision(|| self.sigma_tape(b, w));
        let ratio = tape.affine(&sigma, 1.0 / self.coeff, 0.0);
        let one = Var::constant(w.value.full_like(&[], 1.0));
        tape.binary(&ratio, &one, Binary::Max)
    }
}

/// ‖W‖_{1→q} (largest column q-norm) or ‖W‖_{p→∞} (largest row p*-norm) of a row-major
/// rows × cols matrix, in f64.
pub fn closed_form_norm(w: &[f64], rows: usize, cols: usize, p: f64, q: f64) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>, r: f64| {
        if r.is_infinite() {
            v.fold(0.0, |m: f64, x| m.max(x.abs()))
        } else {
            v.map(|x| x.abs().powf(r)).sum::<f64>().powf(1.0 / r)
        }
    };
    if p == 1.0 {
        (0..cols).map(|j| norm(&mut (0..rows).map(|i| w[i * cols + j]), q)).fold(0.0, f64::max)
    } else {
        assert!(q.is_infinite(), "closed forms exist for 1→q and p→∞ only");
        (0..rows).map(|i| norm(&mut (0..cols).map(|j| w[i * cols + j]), dual(p))).fold(0.0, f64::max)
    }
}

/// Orders chained through a network g of `layers` layers: layer i maps ‖·‖_{p_i} to
/// ‖·‖_{p_{i+1}}, and the last codomain is the first domain, so g is bounded in one norm.
#[derive(Debug, Clone)]
pub struct NormChain {
    pub orders: Vec<Order>,
}

impl NormChain {
    /// All orders learnable from `init` (the first one is shared by input and output).
    pub fn learnable<T: TensorOps>(store: &mut ParamStore<T>, prefix: &str, layers: usize, init: f64) -> Self {
        let orders = (0..layers).map(|i| Order::learnable(store, &format!("{prefix}.order{i}"), init)).collect();
        NormChain { orders }
    }

    pub fn fixed(layers: usize, p: f32) -> Self {
        NormChain { orders: vec![Order::Fixed(p); layers] }
    }

    /// (domain, codomain) orders of layer i.
    pub fn orders_of(&self, i: usize) -> (Order, Order) {
        (self.orders[i], self.orders[(i + 1) % self.orders.len()])
    }
}
