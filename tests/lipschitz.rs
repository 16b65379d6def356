//! Lipschitz-constrained layers: power-iteration σ against dense singular values (matrix and
//! convolution operator), whole normalised networks against their dense Jacobians, and induced
//! mixed norms against brute force and the closed forms.

mod common;

use common::{gpu, singular_values, values};
use resflow::nn::induced::{closed_form_norm, dual};
use resflow::nn::{Binder, Conv2d, InducedNorm, Linear, Order, ParamStore, PowerIters, SpectralNorm};
use resflow::{Activation, CpuTensor, Tape, Tensor, TensorOps, Unary, Var};

fn store(seed: u64) -> ParamStore<Tensor> {
    ParamStore::new(Tensor::full(&gpu(), &[1], 0.0), seed)
}

#[test]
fn power_iteration_sigma_matches_top_singular_value_of_a_matrix() {
    let mut s = store(1);
    let data = values(7 * 5, -1.0, 1.0, 3);
    let w = s.add("w", Tensor::from_slice(&gpu(), &data, &[7, 5]).unwrap(), true);
    let sn = SpectralNorm::new(&mut s, "w", w, 0.9, None);
    sn.power_iterate(&mut s, PowerIters::Fixed(300));
    let want = singular_values(&data.iter().map(|&v| v as f64).collect::<Vec<_>>(), 7, 5)[0];
    let got = sn.sigma(&s);
    assert!((got - want).abs() < 1e-3 * want, "σ {got} vs {want}");
    // The tolerance mode stops early once converged and agrees.
    let used = sn.power_iterate(&mut s, PowerIters::Tolerance { atol: 1e-5, rtol: 1e-5, max: 1000 });
    assert!(used <= 10, "converged vectors need few more iterations, used {used}");
    assert!((sn.sigma(&s) - want).abs() < 1e-3 * want);
}

/// The dense matrix of x ↦ conv2d(x, w) at spatial size h × w (columns = basis inputs).
fn dense_conv(w: &CpuTensor, ci: usize, h: usize, wd: usize) -> (Vec<f64>, usize, usize) {
    let d_in = ci * h * wd;
    let co = w.shape[0];
    let d_out = co * h * wd;
    let mut m = vec![0.0; d_out * d_in];
    for j in 0..d_in {
        let mut e = vec![0.0; d_in];
        e[j] = 1.0;
        let y = CpuTensor::new(e, &[1, ci, h, wd]).conv2d(w);
        for i in 0..d_out {
            m[i * d_in + j] = y.data[i];
        }
    }
    (m, d_out, d_in)
}

#[test]
fn conv_operator_sigma_matches_dense_operator() {
    let (co, ci, h, wd) = (2, 3, 4, 4);
    let data = values(co * ci * 9, -1.0, 1.0, 5);
    let mut s = store(2);
    let w = s.add("w", Tensor::from_slice(&gpu(), &data, &[co, ci, 3, 3]).unwrap(), true);
    let sn = SpectralNorm::new(&mut s, "w", w, 0.98, Some((h, wd)));
    sn.power_iterate(&mut s, PowerIters::Fixed(500));
    let wc = CpuTensor::new(data.iter().map(|&v| v as f64).collect(), &[co, ci, 3, 3]);
    let (m, rows, cols) = dense_conv(&wc, ci, h, wd);
    let want = singular_values(&m, rows, cols)[0];
    let got = sn.sigma(&s);
    assert!((got - want).abs() < 1e-3 * want, "conv operator σ {got} vs dense {want}");
    // The operator norm is not the norm of the reshaped weight matrix.
    let flat = singular_values(&wc.data, co, ci * 9)[0];
    assert!((flat - want).abs() > 1e-2 * want, "test needs an operator whose norm differs ({flat} vs {want})");
}

/// The dense Jacobian of f at x (rows = outputs), by one VJP per output on the GPU.
/// A function of one variable recorded on a tape.
type Graph<'a> = dyn Fn(&Tape<Tensor>, &Var<Tensor>) -> Var<Tensor> + 'a;

fn jacobian(f: &Graph<'_>, x: &Tensor) -> Vec<f64> {
    let d_in = x.numel();
    let mut rows = Vec::new();
    let probe_tape = Tape::no_grad();
    let d_out = f(&probe_tape, &Var::constant(x.clone())).value.numel();
    for i in 0..d_out {
        let tape = Tape::new();
        let xv = tape.leaf(x.clone());
        let y = f(&tape, &xv);
        let mut e = vec![0.0f32; d_out];
        e[i] = 1.0;
        let g = tape.backward_with(&y, Tensor::from_slice(&gpu(), &e, y.shape()).unwrap());
        let row = g.get_or_zeros(&xv).to_host();
        assert_eq!(row.len(), d_in);
        rows.extend(row);
    }
    rows
}

#[test]
fn normalised_mlp_has_jacobian_norm_at_most_c_to_the_l() {
    let (d, hidden, c) = (4, 9, 0.9f32);
    let mut s = store(3);
    // Gain 4 makes every raw weight's norm exceed c, so the normalisation is active.
    let layers = [
        Linear::new(&mut s, "l1", d, hidden, 4.0, Some(c)),
        Linear::new(&mut s, "l2", hidden, hidden, 4.0, Some(c)),
        Linear::new(&mut s, "l3", hidden, d, 4.0, Some(c)),
    ];
    let beta_raw = s.add("beta", Tensor::full(&gpu(), &[1], 0.5), true);
    for l in &layers {
        l.power_iterate(&mut s, PowerIters::Fixed(200));
        let sigma = l.constraint.as_ref().unwrap().sigma(&s);
        assert!(sigma > c as f64, "raw σ {sigma} should exceed c");
    }
    let g = |tape: &Tape<Tensor>, x: &Var<Tensor>| {
        let b = Binder::new(&s, tape);
        let beta = tape.unary(&b.var(beta_raw), Unary::Softplus);
        let mut h = layers[0].forward(&b, x);
        for l in &layers[1..] {
            h = tape.activation(&h, Activation::LipSwish, Some(&beta));
            h = l.forward(&b, &h);
        }
        h
    };
    let bound = (c as f64).powi(3) * (1.0 + 1e-3);
    for seed in 0..4 {
        let x = Tensor::from_slice(&gpu(), &values(d, -2.0, 2.0, 40 + seed), &[1, d]).unwrap();
        let j = jacobian(&g, &x);
        let top = singular_values(&j, d, d)[0];
        assert!(top <= bound, "point {seed}: ‖J‖ = {top} > c³ = {bound}");
        assert!(top > 0.05, "a degenerate Jacobian would make the test vacuous ({top})");
    }
}

#[test]
fn normalised_conv_net_has_jacobian_norm_at_most_c_to_the_l() {
    let (ch, hidden, hw, c) = (2, 4, 4, 0.9f32);
    let mut s = store(4);
    let layers = [
        Conv2d::new(&mut s, "c1", ch, hidden, 3, 4.0, Some(c), (hw, hw)),
        Conv2d::new(&mut s, "c2", hidden, hidden, 1, 4.0, Some(c), (hw, hw)),
        Conv2d::new(&mut s, "c3", hidden, ch, 3, 4.0, Some(c), (hw, hw)),
    ];
    let beta_raw = s.add("beta", Tensor::full(&gpu(), &[1], 0.5), true);
    for l in &layers {
        l.power_iterate(&mut s, PowerIters::Fixed(300));
    }
    let g = |tape: &Tape<Tensor>, x: &Var<Tensor>| {
        let b = Binder::new(&s, tape);
        let beta = tape.unary(&b.var(beta_raw), Unary::Softplus);
        let mut h = layers[0].forward(&b, x);
        for l in &layers[1..] {
            h = tape.activation(&h, Activation::LipSwish, Some(&beta));
            h = l.forward(&b, &h);
        }
        h
    };
    let d = ch * hw * hw;
    let bound = (c as f64).powi(3) * (1.0 + 1e-3);
    for seed in 0..2 {
        let x = Tensor::from_slice(&gpu(), &values(d, -2.0, 2.0, 50 + seed), &[1, ch, hw, hw]).unwrap();
        let top = singular_values(&jacobian(&g, &x), d, d)[0];
        assert!(top <= bound && top > 0.05, "point {seed}: ‖J‖ = {top}, bound {bound}");
    }
}

/// max ‖Wx‖_q over ‖x‖_p = 1 for a 2-column W, by scanning the p-sphere.
fn brute_force(w: &[f64], rows: usize, p: f64, q: f64) -> f64 {
    let norm = |v: &[f64], r: f64| {
        if r.is_infinite() {
            v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
        } else {
            v.iter().map(|x| x.abs().powf(r)).sum::<f64>().powf(1.0 / r)
        }
    };
    let mut best = 0.0f64;
    for i in 0..200_000 {
        let t = std::f64::consts::PI * i as f64 / 200_000.0;
        let mut x = [t.cos(), t.sin()];
        let n = norm(&x, p);
        x = [x[0] / n, x[1] / n];
        let y: Vec<f64> = (0..rows).map(|r| w[2 * r] * x[0] + w[2 * r + 1] * x[1]).collect();
        best = best.max(norm(&y, q));
    }
    best
}

#[test]
fn induced_norm_closed_forms_match_brute_force() {
    let w: Vec<f64> = values(3 * 2, -1.0, 1.0, 8).iter().map(|&v| v as f64).collect();
    for q in [1.5, 2.0, 3.0, f64::INFINITY] {
        let (cf, bf) = (closed_form_norm(&w, 3, 2, 1.0, q), brute_force(&w, 3, 1.0, q));
        assert!((cf - bf).abs() < 1e-6 * bf, "1→{q}: {cf} vs {bf}");
    }
    for p in [1.5, 2.0, 3.0] {
        let (cf, bf) = (closed_form_norm(&w, 3, 2, p, f64::INFINITY), brute_force(&w, 3, p, f64::INFINITY));
        assert!((cf - bf).abs() < 1e-4 * bf, "{p}→∞: {cf} vs {bf}");
    }
    assert_eq!(dual(2.0), 2.0);
    assert_eq!(dual(3.0), 1.5);
}

#[test]
fn induced_norm_power_iteration_matches_brute_force() {
    let data = values(3 * 2, -1.0, 1.0, 9);
    let w64: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    for (p, q) in [(2.0, 2.0), (1.5, 3.0), (3.0, 1.5), (2.0, 4.0), (1.0, 2.0), (2.0, f64::INFINITY)] {
        let mut s = store(10);
        let w = s.add("w", Tensor::from_slice(&gpu(), &data, &[3, 2]).unwrap(), true);
        let order = |v: f64| if v.is_infinite() { Order::Inf } else { Order::Fixed(v as f32) };
        let n = InducedNorm::new(&mut s, "w", w, 0.9, order(p), order(q));
        n.power_iterate(&mut s, 200);
        let (got, want) = (n.sigma(&s), brute_force(&w64, 3, p, q));
        assert!(got <= want * (1.0 + 1e-4) && got >= want * (1.0 - 1e-3), "{p}→{q}: σ {got} vs max {want}");
    }
}

#[test]
fn gradients_flow_through_sigma_and_learnable_orders() {
    // f64 reference, central differences: the loss of a normalised layer moves with W through
    // σ, and with the learnable codomain order q.
    let proto = CpuTensor::scalar(0.0);
    let mut s = ParamStore::new(proto, 11);
    let w_data: Vec<f64> = values(3 * 4, -1.0, 1.0, 12).iter().map(|&v| 2.0 * v as f64).collect();
    let w = s.add("w", CpuTensor::new(w_data.clone(), &[3, 4]), true);
    let q = Order::learnable(&mut s, "q", 2.5);
    let norm = InducedNorm::new(&mut s, "w", w, 0.9, Order::Fixed(2.0), q);
    norm.power_iterate(&mut s, 50);
    let sn = SpectralNorm::new(&mut s, "w2", w, 0.9, None);
    sn.power_iterate(&mut s, PowerIters::Fixed(50));
    let x = CpuTensor::new(values(2 * 4, -1.0, 1.0, 13).iter().map(|&v| v as f64).collect(), &[2, 4]);
    let loss = |s: &ParamStore<CpuTensor>, which: usize| -> (f64, Vec<(String, Vec<f64>)>) {
        let tape = Tape::new();
        let b = Binder::new(s, &tape);
        let wv = b.var(w);
        let wn = if which == 0 { norm.normalized(&b, &wv) } else { sn.normalized(&b, &wv) };
        let y = tape.matmul(&Var::constant(x.clone()), &wn, false, true);
        let l = tape.sum(&tape.unary(&y, Unary::Tanh));
        let value = l.value.data[0];
        let grads = tape.backward(&l);
        let named = b.gradients(&grads).into_iter().map(|(id, g)| (s.name(id).to_string(), g.data)).collect();
        (value, named)
    };
    for which in [0, 1] {
        let (_, grads) = loss(&s, which);
        for (name, g) in grads {
            let id = s.find(&name).unwrap();
            let base = s.get(id).clone();
            for (i, &gi) in g.iter().enumerate() {
                let h = 1e-6;
                let mut plus = base.clone();
                plus.data[i] += h;
                let mut minus = base.clone();
                minus.data[i] -= h;
                let mut sp = ParamStore::new(CpuTensor::scalar(0.0), 0);
                let mut sm = ParamStore::new(CpuTensor::scalar(0.0), 0);
                for other in s.ids() {
                    let (vp, vm) = if other == id {
                        (plus.clone(), minus.clone())
                    } else {
                        (s.get(other).clone(), s.get(other).clone())
                    };
                    sp.add(s.name(other), vp, s.is_trainable(other));
                    sm.add(s.name(other), vm, s.is_trainable(other));
                }
                let fd = (loss(&sp, which).0 - loss(&sm, which).0) / (2.0 * h);
                assert!((gi - fd).abs() < 1e-6 * (1.0 + fd.abs()), "{which} {name}[{i}]: tape {gi} vs fd {fd}");
            }
        }
    }
}
