//! Every VJP: the tape's rules on the f64 reference against central finite differences, and
//! the same rules on the GPU against the reference.

mod common;

use common::{assert_close, gpu, values};
use resflow::{Activation, Binary, CpuTensor, Reduce, Tape, Tensor, TensorOps, Unary, Var};

/// One graph to differentiate: an op applied to its inputs.
#[derive(Debug, Clone)]
enum Case {
    Unary(Unary),
    Binary(Binary, Vec<usize>, Vec<usize>),
    Reduce(Reduce, Vec<usize>, Option<usize>, bool),
    Matmul(Vec<usize>, Vec<usize>, bool, bool),
    Reshape,
    Permute(Vec<usize>),
    Slice(usize, usize, usize),
    Concat(usize),
    BroadcastTo(Vec<usize>, Vec<usize>),
    /// A small chain mixing several ops (gradient accumulation through reuse).
    Chain,
    /// conv2d(x [N,Ci,H,W], w [Co,Ci,k,k]).
    Conv(Vec<usize>, Vec<usize>),
    /// conv_transpose2d(u [N,Co,H,W], w [Co,Ci,k,k]).
    ConvT(Vec<usize>, Vec<usize>),
    Squeeze,
    Unsqueeze,
    /// An activation (or its derivative, with `true`); LipSwish takes β = softplus(β_raw).
    Act(Activation, bool),
    /// φ'(z) ⊙ h, the fused JVP step.
    ActJvp(Activation),
}

impl Case {
    fn input_shapes(&self) -> Vec<Vec<usize>> {
        match self {
            Case::Unary(_) => vec![vec![3, 5]],
            Case::Binary(_, a, b) => vec![a.clone(), b.clone()],
            Case::Reduce(_, s, ..) => vec![s.clone()],
            Case::Matmul(a, b, ..) => vec![a.clone(), b.clone()],
            Case::Reshape => vec![vec![2, 6]],
            Case::Permute(p) => vec![(0..p.len()).map(|i| i + 2).collect()],
            Case::Slice(..) => vec![vec![3, 4, 5]],
            Case::Concat(_) => vec![vec![2, 3, 4], vec![2, 3, 4]],
            Case::BroadcastTo(s, _) => vec![s.clone()],
            Case::Chain => vec![vec![4, 3], vec![3, 2]],
            Case::Conv(x, w) | Case::ConvT(x, w) => vec![x.clone(), w.clone()],
            Case::Squeeze => vec![vec![2, 3, 4, 6]],
            Case::Unsqueeze => vec![vec![2, 8, 3, 2]],
            Case::Act(a, _) if a.has_beta() => vec![vec![3, 7], vec![1]],
            Case::Act(..) => vec![vec![3, 7]],
            Case::ActJvp(a) if a.has_beta() => vec![vec![3, 7], vec![3, 7], vec![1]],
            Case::ActJvp(_) => vec![vec![3, 7], vec![3, 7]],
        }
    }

    /// Inputs away from kinks and singularities, so central differences are accurate.
    fn range(&self) -> (f64, f64) {
        match self {
            Case::Unary(Unary::Log | Unary::Sqrt | Unary::Recip) => (0.5, 2.0),
            Case::Unary(Unary::SignedPow(_)) => (-2.0, -0.5),
            Case::Binary(Binary::Div, ..) => (0.5, 2.0),
            _ => (-2.0, 2.0),
        }
    }

    fn build<T: TensorOps>(&self, tape: &Tape<T>, x: &[Var<T>]) -> Var<T> {
        match self {
            Case::Unary(op) => tape.unary(&x[0], *op),
            Case::Binary(op, ..) => tape.binary(&x[0], &x[1], *op),
            Case::Reduce(op, _, axis, keep) => tape.reduce(&x[0], *op, *axis, *keep),
            Case::Matmul(_, _, ta, tb) => tape.matmul(&x[0], &x[1], *ta, *tb),
            Case::Reshape => tape.reshape(&x[0], &[3, 4]),
            Case::Permute(p) => tape.permute(&x[0], p),
            Case::Slice(axis, start, len) => tape.slice(&x[0], *axis, *start, *len),
            Case::Concat(axis) => tape.concat(&[&x[0], &x[1]], *axis),
            Case::BroadcastTo(_, to) => tape.broadcast_to(&x[0], to),
            Case::Conv(..) => tape.conv2d(&x[0], &x[1]),
            Case::ConvT(..) => tape.conv_transpose2d(&x[0], &x[1]),
            Case::Squeeze => tape.squeeze2(&x[0]),
            Case::Unsqueeze => tape.unsqueeze2(&x[0]),
            Case::Act(act, derivative) => {
                let beta = act.has_beta().then(|| tape.unary(&x[1], Unary::Softplus));
                if *derivative {
                    tape.activation_derivative(&x[0], *act, beta.as_ref())
                } else {
                    tape.activation(&x[0], *act, beta.as_ref())
                }
            }
            Case::ActJvp(act) => {
                let beta = act.has_beta().then(|| tape.unary(&x[2], Unary::Softplus));
                tape.activation_jvp(&x[0], &x[1], *act, beta.as_ref())
            }
            Case::Chain => {
                let h = tape.matmul(&x[0], &x[1], false, false);
                let s = tape.unary(&h, Unary::Tanh);
                let p = tape.mul(&s, &h);
                let q = tape.add(&p, &h);
                tape.reduce(&q, Reduce::Sum, Some(1), true)
            }
        }
    }
}

/// Loss = Σ f(x) ⊙ w for fixed random w; returns (loss, gradient per input).
fn loss_and_grads<T: TensorOps>(case: &Case, inputs: &[T]) -> (f64, Vec<Vec<f64>>) {
    let tape = Tape::new();
    let xs: Vec<Var<T>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let y = case.build(&tape, &xs);
    let w_vals = values(y.value.numel(), -1.0, 1.0, 999);
    let w = Var::constant(inputs[0].tensor_like(&w_vals, y.shape()));
    let loss = tape.sum(&tape.mul(&y, &w));
    let value = loss.value.to_host()[0];
    let grads = tape.backward(&loss);
    assert!(tape.is_empty(), "backward consumes the tape");
    (value, xs.iter().map(|x| grads.get_or_zeros(x).to_host()).collect())
}

fn cases() -> Vec<Case> {
    let mut cases: Vec<Case> = [
        Unary::Neg,
        Unary::Exp,
        Unary::Log,
        Unary::Sigmoid,
        Unary::Softplus,
        Unary::Tanh,
        Unary::Square,
        Unary::Sqrt,
        Unary::Recip,
        Unary::Affine(0.7, -0.2),
        Unary::Silu,
        Unary::SignedPow(1.6),
        Unary::SignedPow(0.6),
    ]
    .into_iter()
    .map(Case::Unary)
    .collect();
    for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min] {
        cases.push(Case::Binary(op, vec![2, 3, 4], vec![2, 3, 4]));
        cases.push(Case::Binary(op, vec![2, 3, 4], vec![3, 1]));
        cases.push(Case::Binary(op, vec![4, 1], vec![1, 5]));
    }
    for op in [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::LogSumExp] {
        cases.push(Case::Reduce(op, vec![3, 4, 5], Some(1), false));
        cases.push(Case::Reduce(op, vec![3, 4, 5], Some(2), true));
        cases.push(Case::Reduce(op, vec![3, 4, 5], None, false));
    }
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta { vec![4, 3] } else { vec![3, 4] };
        let b = if tb { vec![5, 4] } else { vec![4, 5] };
        cases.push(Case::Matmul(a.clone(), b.clone(), ta, tb));
        cases.push(Case::Matmul(vec![2, a[0], a[1]], vec![2, b[0], b[1]], ta, tb));
        cases.push(Case::Matmul(vec![2, a[0], a[1]], b, ta, tb));
    }
    cases.extend([
        Case::Reshape,
        Case::Permute(vec![1, 0]),
        Case::Permute(vec![2, 0, 1]),
        Case::Permute(vec![0, 3, 1, 2]),
        Case::Slice(1, 1, 2),
        Case::Slice(2, 0, 3),
        Case::Concat(0),
        Case::Concat(2),
        Case::BroadcastTo(vec![3, 1], vec![2, 3, 4]),
        Case::Chain,
        Case::Conv(vec![2, 3, 4, 5], vec![2, 3, 3, 3]),
        Case::Conv(vec![1, 5, 3, 3], vec![3, 5, 1, 1]),
        Case::Conv(vec![1, 2, 5, 4], vec![3, 2, 5, 5]),
        Case::ConvT(vec![2, 2, 4, 5], vec![2, 3, 3, 3]),
        Case::Squeeze,
        Case::Unsqueeze,
    ]);
    for act in [Activation::LipSwish, Activation::Elu, Activation::Softplus] {
        cases.push(Case::Act(act, false));
        cases.push(Case::Act(act, true));
        cases.push(Case::ActJvp(act));
    }
    cases
}

fn inputs_for(case: &Case, seed: u64) -> Vec<Vec<f32>> {
    let (lo, hi) = case.range();
    case.input_shapes().iter().enumerate().map(|(i, s)| values(s.iter().product(), lo, hi, seed + i as u64)).collect()
}

#[test]
fn reference_vjps_match_finite_differences() {
    for (ci, case) in cases().iter().enumerate() {
        let shapes = case.input_shapes();
        let data = inputs_for(case, 100 + 10 * ci as u64);
        let inputs: Vec<CpuTensor> =
            data.iter().zip(&shapes).map(|(d, s)| CpuTensor::new(d.iter().map(|&v| v as f64).collect(), s)).collect();
        let (_, grads) = loss_and_grads(case, &inputs);
        let h = 1e-6;
        for (k, input) in inputs.iter().enumerate() {
            let mut fd = Vec::with_capacity(input.data.len());
            for i in 0..input.data.len() {
                let mut plus = inputs.clone();
                plus[k].data[i] += h;
                let mut minus = inputs.clone();
                minus[k].data[i] -= h;
                fd.push((loss_and_grads(case, &plus).0 - loss_and_grads(case, &minus).0) / (2.0 * h));
            }
            assert_close(&format!("{case:?} input {k}: tape vs finite differences"), &grads[k], &fd, 1e-6, 1e-7);
        }
    }
}

#[test]
fn gpu_vjps_match_reference() {
    let gpu = gpu();
    for (ci, case) in cases().iter().enumerate() {
        let shapes = case.input_shapes();
        let data = inputs_for(case, 100 + 10 * ci as u64);
        let cpu: Vec<CpuTensor> =
            data.iter().zip(&shapes).map(|(d, s)| CpuTensor::new(d.iter().map(|&v| v as f64).collect(), s)).collect();
        let dev: Vec<Tensor> = data.iter().zip(&shapes).map(|(d, s)| Tensor::from_slice(&gpu, d, s).unwrap()).collect();
        let (lc, gc) = loss_and_grads(case, &cpu);
        let (lg, gg) = loss_and_grads(case, &dev);
        assert_close(&format!("{case:?} loss"), &[lg], &[lc], 1e-5, 1e-5);
        for k in 0..gc.len() {
            assert_close(&format!("{case:?} input {k}: GPU vs reference"), &gg[k], &gc[k], 1e-5, 1e-5);
        }
    }
}

#[test]
fn no_grad_tape_records_nothing_and_constants_get_no_gradient() {
    let gpu = gpu();
    let x = Tensor::from_slice(&gpu, &[1.0, 2.0, 3.0], &[3]).unwrap();
    let off = Tape::no_grad();
    let v = off.leaf(x.clone());
    let y = off.unary(&v, Unary::Exp);
    assert!(off.is_empty() && !y.is_tracked());

    let tape = Tape::new();
    let a = tape.leaf(x.clone());
    let c = Var::constant(x);
    let s = tape.sum(&tape.mul(&a, &c));
    assert_eq!(tape.len(), 3, "leaf, mul and sum are recorded");
    let g = tape.backward(&s);
    assert_eq!(g.get(&a).unwrap().to_vec(), vec![1.0, 2.0, 3.0]);
    assert!(g.get(&c).is_none());
}
