//! Linear and Conv2d layers over the parameter store, optionally spectrally normalised.

use crate::ops::{Dist, TensorOps};
use crate::tape::Var;

use super::induced::InducedNorm;
use super::params::{Binder, ParamId, ParamStore};
use super::spectral::{PowerIters, SpectralNorm};

/// The Lipschitz constraint of a layer's weight.
#[derive(Debug, Clone)]
pub enum Constraint {
    Spectral(SpectralNorm),
    Induced(InducedNorm),
}

/// A layer's weight as its kernels read it: `value`, and under f16 operands the factor the
/// layer's outputs are divided by. Dividing the f32 outputs, rather than the weight before the
/// kernel rounds it to f16, keeps the Lipschitz bound exact for the values actually multiplied:
/// σ is measured on the f16-rounded weight itself.
#[derive(Clone)]
pub struct Weight<T> {
    pub value: Var<T>,
    pub divisor: Option<Var<T>>,
}

impl<T: TensorOps> Weight<T> {
    /// `y` (the layer's matmul or convolution with `value`) divided by the divisor, if any.
    pub fn scale_output(&self, tape: &crate::tape::Tape<T>, y: Var<T>) -> Var<T> {
        match &self.divisor {
            Some(d) => tape.div(&y, d),
            None => y,
        }
    }

    /// The same values as constants (for computing series terms without recording).
    pub fn detached(&self) -> Weight<T> {
        let d = |v: &Var<T>| Var::constant(v.value.clone());
        Weight { value: d(&self.value), divisor: self.divisor.as_ref().map(d) }
    }
}

/// The values the kernels read for weight `w`: `w`, or under f16 operands `w` rounded to f16,
/// with the identity as the rounding's gradient (its derivative is zero almost everywhere; the
/// straight-through estimator is the usual choice). The difference added is exact in f32.
pub fn operand_weight<T: TensorOps>(tape: &crate::tape::Tape<T>, w: &Var<T>) -> Var<T> {
    if !w.value.half_operands() {
        return w.clone();
    }
    tape.add(w, &Var::constant(w.value.round_to_f16().sub(&w.value)))
}

/// [`operand_weight`] of a stored weight, off the tape (power iteration, σ readbacks).
pub fn operand_values<T: TensorOps>(w: &T) -> T {
    if w.half_operands() {
        w.round_to_f16()
    } else {
        w.clone()
    }
}

/// The weight `id` on the tape, normalised by its constraint if it has one.
fn constrained_weight<T: TensorOps>(b: &Binder<'_, T>, id: ParamId, constraint: &Option<Constraint>) -> Weight<T> {
    let w = b.var(id);
    let Some(c) = constraint else {
        return Weight { value: w, divisor: None };
    };
    let (value, divisor) = c.operand_and_divisor(b, &w);
    if w.value.half_operands() {
        Weight { value, divisor: Some(divisor) }
    } else {
        Weight { value: b.tape.div(&value, &divisor), divisor: None }
    }
}

impl Constraint {
    /// The weight the kernels read and max(1, σ/c), σ measured on that weight.
    fn operand_and_divisor<T: TensorOps>(&self, b: &Binder<'_, T>, w: &Var<T>) -> (Var<T>, Var<T>) {
        let w = operand_weight(b.tape, w);
        let divisor = match self {
            Constraint::Spectral(sn) => sn.divisor(b, &w),
            Constraint::Induced(n) => n.divisor(b, &w),
        };
        (w, divisor)
    }
    fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: PowerIters) -> usize {
        match self {
            Constraint::Spectral(sn) => sn.power_iterate(store, iters),
            Constraint::Induced(n) => {
                let count = match iters {
                    PowerIters::Fixed(k) => k,
                    PowerIters::Tolerance { max, .. } => max,
                };
                n.power_iterate(store, count);
                count
            }
        }
    }
    /// The current norm estimate σ (a readback).
    pub fn sigma<T: TensorOps>(&self, store: &ParamStore<T>) -> f64 {
        match self {
            Constraint::Spectral(sn) => sn.sigma(store),
            Constraint::Induced(n) => n.sigma(store),
        }
    }
}

/// y = x·Wᵀ + b, W [out, in].
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: ParamId,
    pub inputs: usize,
    pub outputs: usize,
    pub constraint: Option<Constraint>,
}

/// Uniform(−s, s) with s = gain/√fan_in (PyTorch's default with gain 1).
fn init_scale(fan_in: usize, gain: f32) -> f32 {
    gain / (fan_in as f32).sqrt()
}

impl Linear {
    /// A Linear layer whose weight is bounded in ‖·‖_{p→q} (induced-norm normalisation).
    pub fn with_induced_norm<T: TensorOps>(
        store: &mut ParamStore<T>,
        name: &str,
        inputs: usize,
        outputs: usize,
        coeff: f32,
        orders: (super::induced::Order, super::induced::Order),
    ) -> Self {
        let mut layer = Linear::new(store, name, inputs, outputs, 1.0, None);
        let norm = InducedNorm::new(store, name, layer.weight, coeff, orders.0, orders.1);
        layer.constraint = Some(Constraint::Induced(norm));
        layer
    }

    /// A layer named `name` (`name.weight`, `name.bias`); `gain` scales the initial weights
    /// (the toy flows start their last layer near zero), `coeff` adds spectral normalisation.
    pub fn new<T: TensorOps>(
        store: &mut ParamStore<T>,
        name: &str,
        inputs: usize,
        outputs: usize,
        gain: f32,
        coeff: Option<f32>,
    ) -> Self {
        let s = init_scale(inputs, gain);
        let w = store.random(&[outputs, inputs], Dist::Uniform { lo: -s, hi: s });
        let b = store.random(&[outputs], Dist::Uniform { lo: -s, hi: s });
        let weight = store.add(&format!("{name}.weight"), w, true);
        let bias = store.add(&format!("{name}.bias"), b, true);
        let constraint = coeff.map(|c| Constraint::Spectral(SpectralNorm::new(store, name, weight, c, None)));
        Linear { weight, bias, inputs, outputs, constraint }
    }

    pub fn weight<T: TensorOps>(&self, b: &Binder<'_, T>) -> Weight<T> {
        constrained_weight(b, self.weight, &self.constraint)
    }

    /// x [batch, in] → [batch, out].
    pub fn forward<T: TensorOps>(&self, b: &Binder<'_, T>, x: &Var<T>) -> Var<T> {
        let tape = b.tape;
        let w = self.weight(b);
        let y = w.scale_output(tape, tape.matmul(x, &w.value, false, true));
        tape.add(&y, &b.var(self.bias))
    }

    pub fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: PowerIters) -> usize {
        self.constraint.as_ref().map_or(0, |c| c.power_iterate(store, iters))
    }
}

/// y = conv2d(x, W) + b, W [co, ci, k, k], stride 1, "same" padding.
#[derive(Debug, Clone)]
pub struct Conv2d {
    pub weight: ParamId,
    pub bias: ParamId,
    pub inputs: usize,
    pub outputs: usize,
    pub kernel: usize,
    pub constraint: Option<Constraint>,
}

impl Conv2d {
    /// `spatial` is the input's (h, w): a spectrally normalised k×k convolution bounds the
    /// operator at that size.
    #[allow(clippy::too_many_arguments)]
    pub fn new<T: TensorOps>(
        store: &mut ParamStore<T>,
        name: &str,
        inputs: usize,
        outputs: usize,
        kernel: usize,
        gain: f32,
        coeff: Option<f32>,
        spatial: (usize, usize),
    ) -> Self {
        let s = init_scale(inputs * kernel * kernel, gain);
        let w = store.random(&[outputs, inputs, kernel, kernel], Dist::Uniform { lo: -s, hi: s });
        let b = store.random(&[outputs], Dist::Uniform { lo: -s, hi: s });
        let weight = store.add(&format!("{name}.weight"), w, true);
        let bias = store.add(&format!("{name}.bias"), b, true);
        let constraint = coeff.map(|c| Constraint::Spectral(SpectralNorm::new(store, name, weight, c, Some(spatial))));
        Conv2d { weight, bias, inputs, outputs, kernel, constraint }
    }

    pub fn weight<T: TensorOps>(&self, b: &Binder<'_, T>) -> Weight<T> {
        constrained_weight(b, self.weight, &self.constraint)
    }

    /// x [n, ci, h, w] → [n, co, h, w].
    pub fn forward<T: TensorOps>(&self, b: &Binder<'_, T>, x: &Var<T>) -> Var<T> {
        let tape = b.tape;
        let w = self.weight(b);
        let y = w.scale_output(tape, tape.conv2d(x, &w.value));
        let bias = tape.reshape(&b.var(self.bias), &[1, self.outputs, 1, 1]);
        tape.add(&y, &bias)
    }

    pub fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: PowerIters) -> usize {
        self.constraint.as_ref().map_or(0, |c| c.power_iterate(store, iters))
    }
}
