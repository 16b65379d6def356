//! The power series of a residual block through the range where Jᵏv underflows f32: its
//! vectors are rescaled by powers of two so no JVP ever takes subnormal operands, the result
//! follows the f64 reference, and the rescaling changes no bit where nothing underflows.

mod common;

use common::{gpu, mirror};
use resflow::flow::lipnet::NetWeights;
use resflow::flow::residual::RESCALE_EVERY;
use resflow::flow::{Draw, Estimator, GradMode, LipschitzNet, NetSpec, ResidualBlock};
use resflow::nn::{Binder, ParamStore, PowerIters};
use resflow::{Activation, CpuTensor, Dist, Reduce, Tape, Tensor, TensorOps, Unary, Var};

const WIDTHS: [usize; 4] = [4, 16, 16, 4];
const BATCH: usize = 6;

/// A block on the reference backend and the same block on the GPU. `coeff` bounds each layer's
/// spectral norm, so the series shrinks by about coeff³ a term.
fn blocks(coeff: f32) -> (ParamStore<CpuTensor>, ParamStore<Tensor>, ResidualBlock) {
    let spec =
        NetSpec { activation: Activation::LipSwish, coeff, leading_activation: false, gain: 1.0, last_gain: 1.0 };
    let mut cpu = ParamStore::new(CpuTensor::scalar(0.0), 5);
    let g = LipschitzNet::mlp(&mut cpu, "b.g", &WIDTHS, &spec);
    g.power_iterate(&mut cpu, PowerIters::Fixed(50));
    let mut dev = ParamStore::new(Tensor::full(&gpu(), &[1], 0.0), 5);
    LipschitzNet::mlp(&mut dev, "b.g", &WIDTHS, &spec);
    mirror(&cpu, &mut dev);
    g.power_iterate(&mut dev, PowerIters::Fixed(50));
    (cpu, dev, ResidualBlock::new("b", g, Estimator::Truncated(1), GradMode::Neumann))
}

fn input<T: TensorOps>(proto: &T, seed: u64) -> T {
    proto.random_like(&[BATCH, WIDTHS[0]], Dist::Normal { mean: 0.0, std: 1.0 }, seed, 0)
}

/// Per term: (max |Jᵏv| per sample, smallest per-sample max |operand|), and (estimate, Neumann
/// vector) at the end.
type Trace = (Vec<(Vec<f64>, f64)>, Vec<f64>, Vec<f64>);

/// The block's weights and pre-activations at a fixed input, and a fixed probe.
fn prepared<T: TensorOps>(
    store: &ParamStore<T>,
    block: &ResidualBlock,
    tape: &Tape<T>,
) -> (NetWeights<T>, Vec<Var<T>>, T) {
    let w = block.g.weights(&Binder::new(store, tape));
    let x = input(&store.get(store.ids().next().unwrap()).clone(), 11);
    let v = input(&x, 12);
    let pre = block.g.apply(tape, &w, &Var::constant(x)).1;
    (w, pre, v)
}

fn run_series<T: TensorOps>(store: &ParamStore<T>, block: &ResidualBlock, terms: usize) -> Trace {
    let tape = Tape::no_grad();
    let (w, pre, v) = prepared(store, block, &tape);
    let row_max = |t: &T| t.unary(Unary::Abs).reduce(Reduce::Max, Some(1), false).to_host();
    let mut trace = Vec::new();
    let (est, s) = block.observed_series(&tape, &w, &pre, &v, &Draw::fixed(terms), |t| {
        let operand_min = row_max(t.operand).into_iter().fold(f64::INFINITY, f64::min);
        trace.push((row_max(t.jkv), operand_min));
    });
    (trace, est.to_host(), s.to_host())
}

#[test]
fn no_jvp_takes_subnormal_operands_while_the_series_underflows() {
    let (_, dev, block) = blocks(0.1);
    let (trace, est, s) = run_series(&dev, &block, 40);
    let smallest = trace.iter().flat_map(|(m, _)| m.iter().copied()).fold(f64::INFINITY, f64::min);
    assert!(smallest < f32::MIN_POSITIVE as f64, "the series must reach the subnormal range (min |Jᵏv| {smallest:e})");
    for (k, (_, operand)) in trace.iter().enumerate() {
        // Between rescalings the operand shrinks for at most RESCALE_EVERY − 1 terms from [1, 2).
        assert!(*operand > 1e-20, "term {}: the next JVP's operand fell to {operand:e}", k + 1);
    }
    assert!(est.iter().chain(&s).all(|x| x.is_finite()));
}

#[test]
fn the_series_follows_the_f64_reference_into_the_underflow_range() {
    let (cpu, dev, block) = blocks(0.3);
    let terms = 40;
    let (want, want_est, want_s) = run_series(&cpu, &block, terms);
    let (got, got_est, got_s) = run_series(&dev, &block, terms);
    let mut compared = 0;
    for k in 0..terms {
        for (row, (&g, &w)) in got[k].0.iter().zip(&want[k].0).enumerate() {
            // Terms whose scale is above f32's normal range are kept; below it they count as zero.
            if w > 2f64.powi(-120) {
                assert!((g - w).abs() <= 1e-3 * w, "term {} sample {row}: max |Jᵏv| {g:e} vs f64 {w:e}", k + 1);
                compared += 1;
            } else if w < 2f64.powi(-160) {
                assert!(g < 2f64.powi(-120), "term {} sample {row}: {g:e} where f64 has {w:e}", k + 1);
            }
        }
    }
    assert!(compared > BATCH * 8, "too few terms above the underflow range: {compared}");
    let last = want[terms - 1].0.iter().copied().fold(0.0, f64::max);
    assert!(last < 2f64.powi(-160), "the series must run into the underflow range (max |J⁴⁰v| {last:e})");
    for (g, w) in got_est.iter().zip(&want_est).chain(got_s.iter().zip(&want_s)) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{g} vs f64 {w}");
    }
}

/// The series as it ran before rescaling: Jᵏv itself, term after term.
fn plain_series(store: &ParamStore<Tensor>, block: &ResidualBlock, terms: usize) -> (Vec<f64>, Vec<f64>) {
    let tape = Tape::no_grad();
    let (w, pre, v) = prepared(store, block, &tape);
    let draw = Draw::fixed(terms);
    let mut u = v.clone();
    let mut s = v.scale(draw.neumann_coeff(0) as f32);
    let mut est = v.zeros_like(&[BATCH]);
    for k in 1..=terms {
        u = block.g.jvp(&tape, &w, &pre, &Var::constant(u)).value;
        let dot = v.mul(&u).reshape(&[BATCH, WIDTHS[0]]).reduce(Reduce::Sum, Some(1), false);
        est = est.add(&dot.scale(draw.logdet_coeff(k) as f32));
        s = s.add(&u.scale(draw.neumann_coeff(k) as f32));
    }
    (est.to_host(), s.to_host())
}

#[test]
fn rescaling_changes_no_bit_where_nothing_underflows() {
    let (_, dev, block) = blocks(0.95);
    let terms = 3 * RESCALE_EVERY + 1;
    let (trace, est, s) = run_series(&dev, &block, terms);
    let smallest = trace.iter().flat_map(|(m, _)| m.iter().copied()).fold(f64::INFINITY, f64::min);
    assert!(smallest > 1e-30, "this check needs a series that stays normal (min |Jᵏv| {smallest:e})");
    assert!(smallest < 0.5, "the series must have been rescaled (min |Jᵏv| {smallest:e})");
    let (plain_est, plain_s) = plain_series(&dev, &block, terms);
    assert_eq!(est, plain_est, "log-det estimate");
    assert_eq!(s, plain_s, "Neumann vector");
}
