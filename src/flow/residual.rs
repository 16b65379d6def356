//! The invertible residual block y = x + g(x) with its log-det estimators, gradient modes and
//! fixed-point inverse (docs/DESIGN.md §2).
//!
//! Gradient modes:
//! - `Naive`: every power-series term is recorded; memory grows with the number of terms.
//! - `Neumann`: the series runs unrecorded and yields s = Σ_m (−1)^m w_m J^m v; only one JVP is
//!   recorded, in the surrogate vᵀ(J s), whose gradient is the unbiased log-det gradient. The
//!   block's log-det output carries the estimate as its value and the surrogate's gradient.
//! - `NeumannBif` (backward-in-forward): the surrogate's gradients with respect to x and θ are
//!   computed inside the forward on a local tape, which is then dropped; only those gradient
//!   buffers stay until the backward scales them by the upstream gradient. The parameter
//!   gradient is summed over the batch at forward time, so it needs the same upstream gradient
//!   for every sample (true of a mean loss); the backward checks this.

use crate::nn::{Binder, ParamId, ParamStore, PowerIters};
use crate::ops::{Binary, Dist, Reduce, TensorOps, Unary};
use crate::tape::{Tape, Var};

use super::estimator::{Draw, Estimator, Probe};
use super::lipnet::{LipschitzNet, NetWeights};
use super::{FlowCtx, FlowLayer, InverseError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradMode {
    Naive,
    Neumann,
    NeumannBif,
}

impl GradMode {
    pub fn label(self) -> &'static str {
        match self {
            GradMode::Naive => "naive",
            GradMode::Neumann => "neumann",
            GradMode::NeumannBif => "neumann-bif",
        }
    }
}

/// Tolerances of the fixed-point inverse: stop when max|x_{i+1} − x_i| ≤ atol + rtol·|y|.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InverseOptions {
    pub atol: f32,
    pub rtol: f32,
    pub max_iters: usize,
}

impl Default for InverseOptions {
    fn default() -> Self {
        InverseOptions { atol: 1e-5, rtol: 1e-5, max_iters: 1000 }
    }
}

/// The tolerance of the f16 phase of the inverse under f16 operands (above their noise).
const F16_INVERSE_TOL: f32 = 1e-2;

pub struct ResidualBlock {
    pub name: String,
    pub g: LipschitzNet,
    pub estimator: Estimator,
    pub grad_mode: GradMode,
    pub probe: Probe,
    pub probes: usize,
    pub inverse_options: InverseOptions,
}

/// Terms between rescalings of the series vector: after one, max |u| is in [1, 2), and a
/// block would have to shrink it by 2⁻²⁵ a term to reach subnormals before the next.
pub const RESCALE_EVERY: usize = 4;

/// The series after term k: Jᵏv, the vector the next term's JVP takes (Jᵏv over its
/// per-sample scale), and the log-det estimate and Neumann vector so far.
pub struct SeriesTerm<'a, T> {
    pub k: usize,
    pub jkv: &'a T,
    pub operand: &'a T,
    pub estimate: &'a T,
    pub neumann: &'a T,
}

/// Per-sample dot products ⟨a_b, c_b⟩ of two [batch, …] tensors → [batch].
fn rowdot<T: TensorOps>(a: &T, c: &T) -> T {
    let b = a.shape()[0];
    a.mul(c).reshape(&[b, a.numel() / b]).reduce(Reduce::Sum, Some(1), false)
}

fn rowdot_tape<T: TensorOps>(tape: &Tape<T>, a: &Var<T>, c: &Var<T>) -> Var<T> {
    let b = a.shape()[0];
    let d = a.value.numel() / b;
    tape.reduce(&tape.reshape(&tape.mul(a, c), &[b, d]), Reduce::Sum, Some(1), false)
}

/// log|det(I + J)| of a batch of small dense Jacobians (row-major d×d per sample), by LU with
/// partial pivoting in f64.
pub fn log_abs_det_identity_plus(jac: &[f64], d: usize) -> Vec<f64> {
    jac.chunks(d * d)
        .map(|j| {
            let mut a: Vec<f64> = (0..d * d).map(|i| j[i] + if i / d == i % d { 1.0 } else { 0.0 }).collect();
            let mut logdet = 0.0;
            for col in 0..d {
                let pivot = (col..d).max_by(|&x, &y| a[x * d + col].abs().total_cmp(&a[y * d + col].abs())).unwrap();
                if pivot != col {
                    for k in 0..d {
                        a.swap(col * d + k, pivot * d + k);
                    }
                }
                let p = a[col * d + col];
                logdet += p.abs().ln();
                for r in col + 1..d {
                    let f = a[r * d + col] / p;
                    for k in col..d {
                        a[r * d + k] -= f * a[col * d + k];
                    }
                }
            }
            logdet
        })
        .collect()
}

impl ResidualBlock {
    /// Steps x ← y − g(x) from `x` until max|x_{i+1} − x_i| ≤ atol + rtol·|y|, a non-finite
    /// step, or `o.max_iters`: the last iterate, the steps taken and the last step's excess
    /// over the tolerance (≤ 0: converged).
    /// A future: each convergence check awaits its readback (ready at once natively).
    async fn fixed_point<T: TensorOps>(
        &self,
        store: &ParamStore<T>,
        y: &T,
        mut x: T,
        o: InverseOptions,
    ) -> (T, usize, f64) {
        let tolerance = y.unary(Unary::Abs).unary(Unary::Affine(o.rtol, o.atol));
        let mut excess = f64::INFINITY;
        for it in 1..=o.max_iters {
            let next = y.sub(&self.g.eval(store, &x));
            let step = next.sub(&x).unary(Unary::Abs);
            excess = step.sub(&tolerance).reduce(Reduce::Max, None, false).to_host_async().await[0];
            x = next;
            // WGSL's `max` drops a NaN operand, so the maximum alone can look converged while
            // some entries are NaN; the sum of the steps carries any NaN or infinity through.
            if excess <= 0.0 || it == o.max_iters {
                let total = step.reduce(Reduce::Sum, None, false).to_host_async().await[0];
                if !total.is_finite() {
                    excess = f64::NAN;
                }
            }
            if excess <= 0.0 || !excess.is_finite() {
                return (x, it, excess);
            }
        }
        (x, o.max_iters, excess)
    }

    pub fn new(name: &str, g: LipschitzNet, estimator: Estimator, grad_mode: GradMode) -> Self {
        ResidualBlock {
            name: name.to_string(),
            g,
            estimator,
            grad_mode,
            probe: Probe::Gaussian,
            probes: 1,
            inverse_options: InverseOptions::default(),
        }
    }

    /// The probe vectors of one forward (basis probes: one per feature, all samples alike).
    fn probe_vectors<T: TensorOps>(&self, ctx: &FlowCtx<'_, T>, x: &T) -> Vec<T> {
        match self.probe {
            Probe::Gaussian => {
                (0..self.probes).map(|_| ctx.random(x, x.shape(), Dist::Normal { mean: 0.0, std: 1.0 })).collect()
            }
            Probe::Rademacher => (0..self.probes).map(|_| ctx.random(x, x.shape(), Dist::Rademacher)).collect(),
            Probe::Basis => basis_vectors(x),
        }
    }

    /// How probe estimates combine: Hutchinson averages, basis probes sum to the exact trace.
    fn probe_weight(&self, count: usize) -> f32 {
        match self.probe {
            Probe::Basis => 1.0,
            _ => 1.0 / count as f32,
        }
    }

    /// The unrecorded series for one probe: (log-det estimate [batch], Neumann vector s).
    fn series<T: TensorOps>(&self, tape: &Tape<T>, w: &NetWeights<T>, pre: &[Var<T>], v: &T, draw: &Draw) -> (T, T) {
        self.observed_series(tape, w, pre, v, draw, |_| ())
    }

    /// [`Self::series`], showing `each_term` the state after every term (to time the terms).
    pub fn observed_series<T: TensorOps>(
        &self,
        tape: &Tape<T>,
        w: &NetWeights<T>,
        pre: &[Var<T>],
        v: &T,
        draw: &Draw,
        mut each_term: impl FnMut(&SeriesTerm<'_, T>),
    ) -> (T, T) {
        // Jᵏv shrinks like Lip(g)ᵏ or faster (10⁻² a term in an image block at initialisation),
        // and subnormal operands cost CPUs 10–100× (llvmpipe does not flush them). So the series
        // runs on u = Jᵏv / c, with c a per-sample power of two renewed every few terms to keep
        // max |u| in [1, 2): J is linear, so every product and sum is Jᵏv's scaled exactly, and
        // the result is bit-identical wherever Jᵏv would have stayed normal. A term whose scale
        // c falls below f32's normal range counts as zero: it lies below f32 resolution.
        let batch = v.shape()[0];
        let per_sample = |t: &T| t.reshape(&[batch, t.numel() / batch]);
        let mut row_shape = vec![1; v.shape().len()];
        row_shape[0] = batch;
        let mut u = v.clone();
        let mut scale: Option<T> = None;
        let mut s = v.scale(draw.neumann_coeff(0) as f32);
        let mut est = v.zeros_like(&[batch]);
        for k in 1..=draw.terms {
            u = self.g.jvp(tape, w, pre, &Var::constant(u)).value;
            let (dot, jkv) = match &scale {
                None => (rowdot(v, &u), u.clone()),
                Some(c) => (rowdot(v, &u).mul(c), u.mul(&c.reshape(&row_shape))),
            };
            est = est.add(&dot.scale(draw.logdet_coeff(k) as f32));
            s = s.add(&jkv.scale(draw.neumann_coeff(k) as f32));
            if k % RESCALE_EVERY == 0 && k < draw.terms {
                let up = per_sample(&u.unary(Unary::Abs)).reduce(Reduce::Max, Some(1), false).unary(Unary::UnitScale);
                u = u.mul(&up.reshape(&row_shape));
                let c = match scale {
                    None => up.unary(Unary::Recip),
                    Some(c) => c.div(&up),
                };
                scale = Some(c.mul(&c.binary(Binary::Ge, &c.full_like(&[batch], f32::MIN_POSITIVE))));
            }
            each_term(&SeriesTerm { k, jkv: &jkv, operand: &u, estimate: &est, neumann: &s });
        }
        (est, s)
    }

    /// Σ_k coeff_k vᵀJ^k v with every term recorded (the naive gradient).
    fn recorded_series<T: TensorOps>(
        &self,
        tape: &Tape<T>,
        w: &NetWeights<T>,
        pre: &[Var<T>],
        v: &T,
        draw: &Draw,
    ) -> Var<T> {
        let vv = Var::constant(v.clone());
        let mut u = vv.clone();
        let mut est: Option<Var<T>> = None;
        for k in 1..=draw.terms {
            u = self.g.jvp(tape, w, pre, &u);
            let term = tape.affine(&rowdot_tape(tape, &vv, &u), draw.logdet_coeff(k) as f32, 0.0);
            est = Some(match est {
                Some(e) => tape.add(&e, &term),
                None => term,
            });
        }
        est.unwrap_or_else(|| Var::constant(v.zeros_like(&[v.shape()[0]])))
    }

    /// The exact log-det: dense J from d JVPs; the d = 2 closed form is recorded (differentiable).
    fn exact_logdet<T: TensorOps>(&self, tape: &Tape<T>, w: &NetWeights<T>, pre: &[Var<T>], x: &Var<T>) -> Var<T> {
        let b = x.shape()[0];
        let d = x.value.numel() / b;
        let basis = basis_vectors(&x.value);
        if d == 2 {
            let cols: Vec<Var<T>> = basis
                .iter()
                .map(|e| tape.reshape(&self.g.jvp(tape, w, pre, &Var::constant(e.clone())), &[b, 2]))
                .collect();
            // J_ij = ∂g_i/∂x_j = column j, entry i.
            let entry = |i: usize, j: usize| tape.reshape(&tape.slice(&cols[j], 1, i, 1), &[b]);
            let (j00, j01, j10, j11) = (entry(0, 0), entry(0, 1), entry(1, 0), entry(1, 1));
            let diag = tape.mul(&tape.affine(&j00, 1.0, 1.0), &tape.affine(&j11, 1.0, 1.0));
            let det = tape.sub(&diag, &tape.mul(&j01, &j10));
            return tape.unary(&tape.unary(&det, Unary::Abs), Unary::Log);
        }
        assert!(
            !(tape.is_recording() && x.is_tracked()),
            "{}: the exact log-det is differentiable only for d = 2 (d = {d}); train with a truncated or unbiased estimator",
            self.name
        );
        assert!(
            d <= 256,
            "{}: the exact log-det builds a dense {d}×{d} Jacobian per sample; use an estimator",
            self.name
        );
        let detached = w.detached();
        let pre_d: Vec<Var<T>> = pre.iter().map(|p| Var::constant(p.value.clone())).collect();
        let ng = Tape::no_grad();
        let cols: Vec<Vec<f64>> = basis
            .iter()
            .map(|e| self.g.jvp(&ng, &detached, &pre_d, &Var::constant(e.clone())).value.to_host())
            .collect();
        let mut jac = vec![0.0; b * d * d];
        for (j, col) in cols.iter().enumerate() {
            for s in 0..b {
                for i in 0..d {
                    jac[(s * d + i) * d + j] = col[s * d + i];
                }
            }
        }
        Var::constant(x.value.tensor_like_f64(&log_abs_det_identity_plus(&jac, d), &[b]))
    }

    /// Backward-in-forward: on a local tape, g's forward, the unrecorded series (from detached
    /// local activations), the surrogate's one recorded JVP and its backward. Everything local is
    /// dropped before the caller records g's forward for y, so the two graphs never coexist.
    /// Returns the estimate [batch], ∂surrogate/∂x and ∂surrogate/∂θ (summed over the batch).
    fn bif_gradients<T: TensorOps>(
        &self,
        ctx: &FlowCtx<'_, T>,
        x: &T,
        draw: &Draw,
        probes: Vec<T>,
    ) -> (T, T, Vec<Option<T>>) {
        let local = Tape::new();
        let lb = Binder::new(ctx.binder.store, &local);
        let xl = local.leaf(x.clone());
        let wl = self.g.weights(&lb);
        let (_, pre) = self.g.apply(&local, &wl, &xl);
        let weight = self.probe_weight(probes.len());
        let (est, pairs) = {
            let ng = Tape::no_grad();
            let wd = wl.detached();
            let pre_d: Vec<Var<T>> = pre.iter().map(|p| Var::constant(p.value.clone())).collect();
            let mut est = x.zeros_like(&[x.shape()[0]]);
            let mut pairs = Vec::with_capacity(probes.len());
            for v in probes {
                let (e, s) = self.series(&ng, &wd, &pre_d, &v, draw);
                est = est.add(&e);
                pairs.push((v, s));
            }
            (est.scale(weight), pairs)
        };
        let mut total: Option<Var<T>> = None;
        for (v, s) in &pairs {
            let js = self.g.jvp(&local, &wl, &pre, &Var::constant(s.clone()));
            let dot = local.sum(&rowdot_tape(&local, &Var::constant(v.clone()), &js));
            total = Some(match total {
                Some(t) => local.add(&t, &dot),
                None => dot,
            });
        }
        drop(pairs);
        let total = local.affine(&total.expect("at least one probe"), weight, 0.0);
        let grads = local.backward(&total);
        let gx = grads.get_or_zeros(&xl);
        let gtheta = self.g.param_ids().iter().map(|&id| grads.get(&lb.var(id)).cloned()).collect();
        (est, gx, gtheta)
    }

    /// Records the backward-in-forward log-det node: value `est`, gradients precomputed.
    fn bif_node<T: TensorOps>(
        &self,
        ctx: &FlowCtx<'_, T>,
        x: &Var<T>,
        est: T,
        gx: T,
        gtheta: Vec<Option<T>>,
    ) -> Var<T> {
        let b = ctx.binder;
        let ids: Vec<ParamId> = self.g.param_ids();
        let mut inputs = vec![x.clone()];
        inputs.extend(ids.iter().map(|&id| b.var(id)));
        let refs: Vec<&Var<T>> = inputs.iter().collect();
        let name = self.name.clone();
        let mut view = vec![1; x.shape().len()];
        view[0] = x.shape()[0];
        b.tape.record(est, &refs, move |g_up| {
            let up = g_up.to_host();
            let (lo, hi) = up.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            assert!(
                hi - lo <= 1e-6 * hi.abs().max(lo.abs()).max(1e-30),
                "{name}: backward-in-forward needs the same upstream gradient for every sample (a mean loss); got [{lo}, {hi}]"
            );
            let mut out = vec![Some(gx.mul(&g_up.reshape(&view)))];
            out.extend(gtheta.iter().map(|g| g.as_ref().map(|g| g.scale(up[0] as f32))));
            out
        })
    }
}

/// The d basis probes of a [batch, …] tensor: probe j is e_j for every sample.
fn basis_vectors<T: TensorOps>(x: &T) -> Vec<T> {
    let b = x.shape()[0];
    let d = x.numel() / b;
    (0..d)
        .map(|j| {
            let mut data = vec![0.0f32; b * d];
            for s in 0..b {
                data[s * d + j] = 1.0;
            }
            x.tensor_like(&data, x.shape())
        })
        .collect()
}

impl<T: TensorOps> FlowLayer<T> for ResidualBlock {
    fn name(&self) -> &str {
        &self.name
    }

    fn forward(&self, ctx: &FlowCtx<'_, T>, x: &Var<T>) -> (Var<T>, Var<T>) {
        let tape = ctx.binder.tape;
        let estimator = ctx.estimator.unwrap_or(self.estimator);
        let training = tape.is_recording() && (x.is_tracked() || ctx.binder.store.trainable().next().is_some());
        if training && self.grad_mode == GradMode::NeumannBif && estimator != Estimator::Exact {
            let draw = ctx.draw(&estimator);
            let probes = self.probe_vectors(ctx, &x.value);
            let (est, gx, gtheta) = self.bif_gradients(ctx, &x.value, &draw, probes);
            let w = self.g.weights(ctx.binder);
            let y = tape.add(x, &self.g.apply(tape, &w, x).0);
            return (y, self.bif_node(ctx, x, est, gx, gtheta));
        }
        let w = self.g.weights(ctx.binder);
        let (gx, pre) = self.g.apply(tape, &w, x);
        let y = tape.add(x, &gx);
        if estimator == Estimator::Exact {
            return (y, self.exact_logdet(tape, &w, &pre, x));
        }
        let draw = ctx.draw(&estimator);
        let probes = self.probe_vectors(ctx, &x.value);
        let weight = self.probe_weight(probes.len());
        if training && self.grad_mode == GradMode::Naive {
            let mut total: Option<Var<T>> = None;
            for v in &probes {
                let e = self.recorded_series(tape, &w, &pre, v, &draw);
                total = Some(match total {
                    Some(t) => tape.add(&t, &e),
                    None => e,
                });
            }
            return (y, tape.affine(&total.expect("at least one probe"), weight, 0.0));
        }
        // The series, unrecorded, on detached copies of this evaluation's weights and activations.
        let ng = Tape::no_grad();
        let wd = w.detached();
        let pre_d: Vec<Var<T>> = pre.iter().map(|p| Var::constant(p.value.clone())).collect();
        let mut est = x.value.zeros_like(&[x.shape()[0]]);
        let mut pairs = Vec::with_capacity(probes.len());
        for v in probes {
            let (e, s) = self.series(&ng, &wd, &pre_d, &v, &draw);
            est = est.add(&e);
            pairs.push((v, s));
        }
        let est = est.scale(weight);
        if !training {
            return (y, Var::constant(est));
        }
        // Neumann: the surrogate vᵀ(J s), recorded, its value replaced by the estimate.
        let mut sur: Option<Var<T>> = None;
        for (v, s) in &pairs {
            let js = self.g.jvp(tape, &w, &pre, &Var::constant(s.clone()));
            let d = rowdot_tape(tape, &Var::constant(v.clone()), &js);
            sur = Some(match sur {
                Some(t) => tape.add(&t, &d),
                None => d,
            });
        }
        let sur = tape.affine(&sur.expect("at least one probe"), weight, 0.0);
        let offset = Var::constant(est.sub(&sur.value));
        (y, tape.add(&sur, &offset))
    }

    fn inverse(&self, store: &ParamStore<T>, y: &T) -> Result<(T, usize), InverseError> {
        pollster::block_on(self.inverse_async(store, y))
    }

    fn inverse_async<'a>(&'a self, store: &'a ParamStore<T>, y: &'a T) -> crate::flow::InverseFuture<'a, T> {
        Box::pin(async move {
            let o = self.inverse_options;
            let start = y.sub(&self.g.eval(store, y));
            let (x, outcome) = if y.half_operands() {
                // With f16 operands g(x) carries rounding noise (~10⁻³ of |g|) that no iterate
                // settles below: iterate in f16 to a tolerance above that noise, then refine in
                // f32 from there (a few steps: the error shrinks by Lip(g) per step). (Native
                // only: the browser offers no f16 precision switch.)
                let coarse =
                    InverseOptions { atol: o.atol.max(F16_INVERSE_TOL), rtol: o.rtol.max(F16_INVERSE_TOL), ..o };
                let (x, steps, excess) = self.fixed_point(store, y, start, coarse).await;
                if !excess.is_finite() {
                    return Err(InverseError { block: self.name.clone(), iterations: steps, excess });
                }
                let rest = InverseOptions { max_iters: o.max_iters.saturating_sub(steps).max(1), ..o };
                let (x, more, excess) = y.at_full_precision(|| pollster::block_on(self.fixed_point(store, y, x, rest)));
                (x, (steps + more, excess))
            } else {
                let (x, steps, excess) = self.fixed_point(store, y, start, o).await;
                (x, (steps, excess))
            };
            match outcome {
                (n, excess) if excess <= 0.0 => Ok((x, n)),
                (iterations, excess) => Err(InverseError { block: self.name.clone(), iterations, excess }),
            }
        })
    }

    fn initialize(&self, store: &mut ParamStore<T>, x: &T) -> T {
        x.add(&self.g.eval(store, x))
    }

    fn iterative_inverse(&self) -> bool {
        true
    }

    fn power_iterate(&self, store: &mut ParamStore<T>, iters: PowerIters) {
        self.g.power_iterate(store, iters);
    }
}
