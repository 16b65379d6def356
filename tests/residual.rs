//! The invertible residual block: estimators against the dense log-det, the gradient modes
//! against each other and the dense gradient, the fixed-point inverse, and a whole flow's
//! log-density against a dense-Jacobian computation.
//!
//! Statistical checks run on the f64 reference backend (thousands of draws in a second); the
//! GPU is checked against it on fixed draws.

mod common;

use common::{gpu, mirror, values};
use resflow::flow::residual::{log_abs_det_identity_plus, InverseOptions};
use resflow::flow::{
    ActNorm, Estimator, Flow, FlowCtx, FlowLayer, GradMode, LipschitzNet, NetSpec, Probe, ResidualBlock, Roulette,
};
use resflow::nn::{Binder, ParamStore, PowerIters};
use resflow::{Activation, CpuTensor, Tape, Tensor, TensorOps, Var};

const D: usize = 3;

fn spec(coeff: f32, last_gain: f32) -> NetSpec {
    NetSpec { activation: Activation::LipSwish, coeff, leading_activation: false, gain: 3.0, last_gain }
}

/// A d = 3 MLP block on the reference backend, power-iterated to convergence.
fn cpu_block(estimator: Estimator, mode: GradMode, gain: f32) -> (ParamStore<CpuTensor>, ResidualBlock) {
    let mut store = ParamStore::new(CpuTensor::scalar(0.0), 7);
    let g = LipschitzNet::mlp(&mut store, "b0.g", &[D, 8, 8, D], &spec(0.9, gain));
    g.power_iterate(&mut store, PowerIters::Fixed(100));
    (store, ResidualBlock::new("b0", g, estimator, mode))
}

fn point() -> CpuTensor {
    CpuTensor::new(vec![0.3, -0.8, 0.5], &[1, D])
}

/// (log-det value, gradient w.r.t. x, gradient w.r.t. every trainable parameter, flattened).
fn logdet_and_grads(
    store: &ParamStore<CpuTensor>,
    block: &ResidualBlock,
    x: &CpuTensor,
    seed: u64,
) -> (f64, Vec<f64>, Vec<f64>) {
    let tape = Tape::new();
    let b = Binder::new(store, &tape);
    let ctx = FlowCtx::new(&b, seed, false);
    let xv = tape.leaf(x.clone());
    let (_, ld) = block.forward(&ctx, &xv);
    let loss = tape.sum(&ld);
    let value = loss.value.data[0];
    let grads = tape.backward(&loss);
    let gx = grads.get_or_zeros(&xv).data;
    let gt = b.gradients(&grads).into_iter().flat_map(|(_, g)| g.data).collect();
    (value, gx, gt)
}

fn exact_logdet(store: &ParamStore<CpuTensor>, block: &ResidualBlock, x: &CpuTensor) -> f64 {
    let exact = ResidualBlock::new("exact", block.g.clone(), Estimator::Exact, GradMode::Neumann);
    let tape = Tape::no_grad();
    let b = Binder::new(store, &tape);
    let ctx = FlowCtx::new(&b, 0, true);
    exact.forward(&ctx, &Var::constant(x.clone())).1.value.data[0]
}

/// An independent oracle: the block's Jacobian by central differences, then LU.
fn fd_logdet(store: &ParamStore<CpuTensor>, block: &ResidualBlock, x: &CpuTensor) -> f64 {
    let h = 1e-6;
    let mut jac = vec![0.0; D * D];
    for j in 0..D {
        let (mut p, mut m) = (x.clone(), x.clone());
        p.data[j] += h;
        m.data[j] -= h;
        let (gp, gm) = (block.g.eval(store, &p), block.g.eval(store, &m));
        for i in 0..D {
            jac[i * D + j] = (gp.data[i] - gm.data[i]) / (2.0 * h);
        }
    }
    log_abs_det_identity_plus(&jac, D)[0]
}

fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

#[test]
fn exact_and_truncated_estimators_match_the_dense_logdet() {
    let (store, block) = cpu_block(Estimator::Truncated(50), GradMode::Neumann, 1.0);
    let x = point();
    let dense = fd_logdet(&store, &block, &x);
    let exact = exact_logdet(&store, &block, &x);
    assert!((exact - dense).abs() < 1e-7, "exact {exact} vs finite-difference dense {dense}");
    assert!(dense.abs() > 0.05, "the test wants a non-trivial log-det, got {dense}");
    let mut block = block;
    block.probe = Probe::Basis;
    let (trunc, _, _) = logdet_and_grads(&store, &block, &x, 1);
    assert!((trunc - dense).abs() < 1e-5, "truncated K=50 {trunc} vs dense {dense}");
}

#[test]
fn unbiased_estimators_are_unbiased_and_short_truncation_is_not() {
    let x = point();
    let draws = 10_000;
    let run = |est: Estimator, probe: Probe| -> (f64, f64, f64) {
        let (store, mut block) = cpu_block(est, GradMode::Neumann, 3.0);
        block.probe = probe;
        let dense = exact_logdet(&store, &block, &x);
        let tape = Tape::no_grad();
        let b = Binder::new(&store, &tape);
        let ctx = FlowCtx::new(&b, 99, false);
        let samples: Vec<f64> =
            (0..draws).map(|_| block.forward(&ctx, &Var::constant(x.clone())).1.value.data[0]).collect();
        let (m, se) = mean_se(&samples);
        (m, se, dense)
    };
    for est in [
        Estimator::Unbiased { roulette: Roulette::Geometric(0.5), exact_terms: 2 },
        Estimator::Unbiased { roulette: Roulette::Poisson(2.0), exact_terms: 2 },
        Estimator::Unbiased { roulette: Roulette::Geometric(0.5), exact_terms: 0 },
    ] {
        let (m, se, dense) = run(est, Probe::Gaussian);
        assert!((m - dense).abs() < 3.0 * se, "{est:?}: mean {m} ± {se} vs dense {dense}");
    }
    // A linear g = W x with ‖W‖ = 0.9 has log-det terms that decay slowly, so dropping all but two
    // is a visible bias.
    let mut store = ParamStore::new(CpuTensor::scalar(0.0), 7);
    let g = LipschitzNet::mlp(&mut store, "lin.g", &[D, D], &spec(0.9, 5.0));
    g.power_iterate(&mut store, PowerIters::Fixed(100));
    let mut block = ResidualBlock::new("lin", g, Estimator::Truncated(2), GradMode::Neumann);
    // Rademacher probes: no diagonal variance term, so the bias stands out of the noise.
    block.probe = Probe::Rademacher;
    let dense = exact_logdet(&store, &block, &x);
    let tape = Tape::no_grad();
    let b = Binder::new(&store, &tape);
    let ctx = FlowCtx::new(&b, 98, false);
    let samples: Vec<f64> =
        (0..4 * draws).map(|_| block.forward(&ctx, &Var::constant(x.clone())).1.value.data[0]).collect();
    let (m, se) = mean_se(&samples);
    assert!((m - dense).abs() > 3.0 * se, "K=2 truncation should be visibly biased: {m} ± {se} vs {dense}");
}

/// Fixed random directions to project parameter gradients on (a scalar check per direction).
fn directions(len: usize) -> Vec<Vec<f64>> {
    (0..3).map(|k| values(len, -1.0, 1.0, 500 + k).iter().map(|&v| v as f64).collect()).collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn neumann_gradient_is_unbiased_for_the_dense_logdet_gradient() {
    let est = Estimator::Unbiased { roulette: Roulette::Poisson(2.0), exact_terms: 2 };
    let (store, block) = cpu_block(est, GradMode::Neumann, 1.0);
    let x = point();
    // Dense gradient: central differences of the exact log-det in x and in every parameter.
    let h = 1e-6;
    let dense_gx: Vec<f64> = (0..D)
        .map(|i| {
            let (mut p, mut m) = (x.clone(), x.clone());
            p.data[i] += h;
            m.data[i] -= h;
            (exact_logdet(&store, &block, &p) - exact_logdet(&store, &block, &m)) / (2.0 * h)
        })
        .collect();
    let mut dense_gt = Vec::new();
    for id in store.trainable().collect::<Vec<_>>() {
        for i in 0..store.get(id).numel() {
            let shift = |delta: f64| {
                let mut s2 = ParamStore::new(CpuTensor::scalar(0.0), 0);
                for other in store.ids() {
                    let mut v = store.get(other).clone();
                    if other == id {
                        v.data[i] += delta;
                    }
                    s2.add(store.name(other), v, store.is_trainable(other));
                }
                exact_logdet(&s2, &block, &x)
            };
            dense_gt.push((shift(h) - shift(-h)) / (2.0 * h));
        }
    }
    let dirs = directions(dense_gt.len());
    let draws = 10_000;
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(draws); D + dirs.len()];
    for seed in 0..draws as u64 {
        let (_, gx, gt) = logdet_and_grads(&store, &block, &x, 1000 + seed);
        for i in 0..D {
            samples[i].push(gx[i]);
        }
        for (k, d) in dirs.iter().enumerate() {
            samples[D + k].push(dot(&gt, d));
        }
    }
    let wants: Vec<f64> = dense_gx.iter().copied().chain(dirs.iter().map(|d| dot(&dense_gt, d))).collect();
    for (k, (s, want)) in samples.iter().zip(&wants).enumerate() {
        let (m, se) = mean_se(s);
        assert!((m - want).abs() < 3.0 * se, "component {k}: Neumann mean {m} ± {se} vs dense {want}");
    }
}

#[test]
fn naive_equals_neumann_in_expectation_and_bif_equals_neumann_exactly() {
    let est = Estimator::Unbiased { roulette: Roulette::Geometric(0.5), exact_terms: 1 };
    let (store, naive) = cpu_block(est, GradMode::Naive, 1.0);
    let neumann = ResidualBlock::new("b0", naive.g.clone(), est, GradMode::Neumann);
    let bif = ResidualBlock::new("b0", naive.g.clone(), est, GradMode::NeumannBif);
    let x = point();
    let n_params = store.trainable_count();
    let dirs = directions(n_params);
    let draws = 10_000;
    let (mut a, mut b) = (vec![Vec::new(); D + 3], vec![Vec::new(); D + 3]);
    for seed in 0..draws as u64 {
        let (va, gxa, gta) = logdet_and_grads(&store, &naive, &x, 5000 + seed);
        let (vb, gxb, gtb) = logdet_and_grads(&store, &neumann, &x, 5000 + seed);
        assert!((va - vb).abs() < 1e-12, "the same draw gives the same estimate");
        for i in 0..D {
            a[i].push(gxa[i]);
            b[i].push(gxb[i]);
        }
        for (k, d) in dirs.iter().enumerate() {
            a[D + k].push(dot(&gta, d));
            b[D + k].push(dot(&gtb, d));
        }
        if seed < 20 {
            let (vc, gxc, gtc) = logdet_and_grads(&store, &bif, &x, 5000 + seed);
            assert!((vc - vb).abs() < 1e-12);
            for (p, q) in gxc.iter().zip(&gxb).chain(gtc.iter().zip(&gtb)) {
                assert!((p - q).abs() < 1e-12 * (1.0 + q.abs()), "backward-in-forward {p} vs neumann {q}");
            }
        }
    }
    for k in 0..D + 3 {
        let ((ma, sa), (mb, sb)) = (mean_se(&a[k]), mean_se(&b[k]));
        let se = (sa * sa + sb * sb).sqrt();
        assert!((ma - mb).abs() < 3.0 * se, "component {k}: naive {ma} vs neumann {mb} (se {se})");
    }
}

#[test]
fn gpu_block_matches_reference_and_bif_matches_neumann_on_gpu() {
    let est = Estimator::Unbiased { roulette: Roulette::Poisson(2.0), exact_terms: 2 };
    let (cstore, cblock) = cpu_block(est, GradMode::Neumann, 1.0);
    let mut gstore = ParamStore::new(Tensor::full(&gpu(), &[1], 0.0), 7);
    let g = LipschitzNet::mlp(&mut gstore, "b0.g", &[D, 8, 8, D], &spec(0.9, 1.0));
    mirror(&cstore, &mut gstore);
    let xs = values(4 * D, -1.0, 1.0, 77);
    let xc = CpuTensor::new(xs.iter().map(|&v| v as f64).collect(), &[4, D]);
    let xg = Tensor::from_slice(&gpu(), &xs, &[4, D]).unwrap();
    let grads = |mode: GradMode| {
        let block = ResidualBlock::new("b0", g.clone(), est, mode);
        let tape = Tape::new();
        let b = Binder::new(&gstore, &tape);
        let ctx = FlowCtx::new(&b, 3, false);
        let xv = tape.leaf(xg.clone());
        let (y, ld) = block.forward(&ctx, &xv);
        let loss = tape.mean(&tape.add(&ld, &tape.reduce(&y, resflow::Reduce::Sum, Some(1), false)));
        let value = loss.value.item();
        let gr = tape.backward(&loss);
        let mut all = gr.get_or_zeros(&xv).to_vec();
        for (_, t) in b.gradients(&gr) {
            all.extend(t.to_vec());
        }
        (value, all)
    };
    let (vn, gn) = grads(GradMode::Neumann);
    let (vb, gb) = grads(GradMode::NeumannBif);
    assert!((vn - vb).abs() < 1e-6);
    for (p, q) in gb.iter().zip(&gn) {
        assert!((p - q).abs() < 1e-5 * (1.0 + q.abs()), "GPU backward-in-forward {p} vs neumann {q}");
    }
    // The same draws on the reference give the same log-det estimate per sample.
    let run_cpu = {
        let tape = Tape::no_grad();
        let b = Binder::new(&cstore, &tape);
        let ctx = FlowCtx::new(&b, 3, false);
        let mut block = ResidualBlock::new("b0", cblock.g.clone(), est, GradMode::Neumann);
        block.probe = Probe::Basis;
        block.forward(&ctx, &Var::constant(xc.clone())).1.value.data
    };
    let run_gpu = {
        let tape = Tape::no_grad();
        let b = Binder::new(&gstore, &tape);
        let ctx = FlowCtx::new(&b, 3, false);
        let mut block = ResidualBlock::new("b0", g.clone(), est, GradMode::Neumann);
        block.probe = Probe::Basis;
        block.forward(&ctx, &Var::constant(xg.clone())).1.value.to_host()
    };
    for (c, gv) in run_cpu.iter().zip(&run_gpu) {
        assert!((c - gv).abs() < 1e-5, "reference {c} vs GPU {gv}");
    }
}

fn gpu_store(seed: u64) -> ParamStore<Tensor> {
    ParamStore::new(Tensor::full(&gpu(), &[1], 0.0), seed)
}

#[test]
fn inverse_round_trips_for_mlp_and_cnn_blocks() {
    for coeff in [0.9f32, 0.98] {
        let mut store = gpu_store(3);
        let spec =
            NetSpec { activation: Activation::LipSwish, coeff, leading_activation: false, gain: 3.0, last_gain: 3.0 };
        let g = LipschitzNet::mlp(&mut store, "m.g", &[4, 16, 16, 4], &spec);
        g.power_iterate(&mut store, PowerIters::Fixed(100));
        let block = ResidualBlock::new("m", g, Estimator::Truncated(2), GradMode::Neumann);
        let x = Tensor::from_slice(&gpu(), &values(8 * 4, -2.0, 2.0, 5), &[8, 4]).unwrap();
        let y = <ResidualBlock as FlowLayer<Tensor>>::initialize(&block, &mut store, &x);
        let (back, iters) = block.inverse(&store, &y).unwrap();
        let err = back.sub(&x).unary(resflow::Unary::Abs).reduce(resflow::Reduce::Max, None, false).item();
        assert!(err < 1e-4, "MLP c={coeff}: round trip error {err} after {iters} iterations");

        let mut store = gpu_store(4);
        let g = LipschitzNet::cnn(&mut store, "c.g", &[2, 8, 8, 2], &[3, 1, 3], (6, 6), &spec);
        g.power_iterate(&mut store, PowerIters::Fixed(100));
        let block = ResidualBlock::new("c", g, Estimator::Truncated(2), GradMode::Neumann);
        let x = Tensor::from_slice(&gpu(), &values(2 * 2 * 36, -2.0, 2.0, 6), &[2, 2, 6, 6]).unwrap();
        let y = <ResidualBlock as FlowLayer<Tensor>>::initialize(&block, &mut store, &x);
        let (back, iters) = block.inverse(&store, &y).unwrap();
        let err = back.sub(&x).unary(resflow::Unary::Abs).reduce(resflow::Reduce::Max, None, false).item();
        assert!(err < 1e-4, "CNN c={coeff}: round trip error {err} after {iters} iterations");
    }
}

/// g(x) = c·P x with P a signed cyclic permutation: every singular value and every eigenvalue
/// modulus is c, so the fixed-point error shrinks (or grows) by exactly c per iteration.
fn linear_block(coeff: f32) -> (ParamStore<Tensor>, ResidualBlock) {
    let mut store = gpu_store(8);
    let spec =
        NetSpec { activation: Activation::LipSwish, coeff, leading_activation: false, gain: 1.0, last_gain: 1.0 };
    let g = LipschitzNet::mlp(&mut store, "lin.g", &[6, 6], &spec);
    let mut w = vec![0.0f32; 36];
    for i in 0..6 {
        w[i * 6 + (i + 1) % 6] = if i % 2 == 0 { 5.0 } else { -5.0 };
    }
    let weight = store.find("lin.g.lin0.weight").unwrap();
    let bias = store.find("lin.g.lin0.bias").unwrap();
    store.set(weight, Tensor::from_slice(&gpu(), &w, &[6, 6]).unwrap());
    store.set(bias, Tensor::full(&gpu(), &[6], 0.0));
    g.power_iterate(&mut store, PowerIters::Fixed(50));
    (store, ResidualBlock::new("block 7 (lin)", g, Estimator::Truncated(2), GradMode::Neumann))
}

#[test]
fn inverse_iterations_follow_the_lipschitz_constant() {
    for coeff in [0.5f32, 0.9] {
        let (store, mut block) = linear_block(coeff);
        block.inverse_options = InverseOptions { atol: 1e-5, rtol: 0.0, max_iters: 1000 };
        let y = Tensor::from_slice(&gpu(), &values(6, -1.0, 1.0, 9), &[1, 6]).unwrap();
        let (_, iters) = block.inverse(&store, &y).unwrap();
        // From an initial step of size ~‖y‖ the error falls as c^i: i ≈ log(tol/‖y‖)/log(c).
        let y_scale = y.unary(resflow::Unary::Abs).reduce(resflow::Reduce::Max, None, false).item() as f64;
        let predicted = (1e-5 / y_scale).ln() / (coeff as f64).ln();
        let rough = (1e-5f64).ln() / (coeff as f64).ln();
        assert!(
            (iters as f64) <= predicted * 1.3 && (iters as f64) >= predicted * 0.7,
            "c={coeff}: {iters} iterations, predicted {predicted:.1} (log(tol)/log(c) = {rough:.1})"
        );
    }
}

#[test]
fn a_block_with_lipschitz_above_one_gets_a_clear_inverse_error() {
    let (store, block) = linear_block(1.6);
    let y = Tensor::from_slice(&gpu(), &values(6, -1.0, 1.0, 9), &[1, 6]).unwrap();
    let err = block.inverse(&store, &y).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("block 7 (lin)") && msg.contains("Lip(g) < 1"), "{msg}");
}

#[test]
fn whole_flow_log_prob_matches_a_dense_jacobian_computation() {
    // ActNorm → block → ActNorm → block on 4-D inputs, exact log-dets, on the GPU; the oracle
    // composes the same maps on the reference and differentiates the whole flow numerically.
    let d = 4;
    let build = |store: &mut ParamStore<CpuTensor>| -> Flow<CpuTensor> {
        let s = NetSpec {
            activation: Activation::LipSwish,
            coeff: 0.9,
            leading_activation: false,
            gain: 2.0,
            last_gain: 1.0,
        };
        let g1 = LipschitzNet::mlp(store, "f.b1.g", &[d, 10, d], &s);
        let g2 = LipschitzNet::mlp(store, "f.b3.g", &[d, 10, 10, d], &s);
        Flow::new(vec![
            Box::new(ActNorm::new(store, "f.an0", d)),
            Box::new(ResidualBlock::new("f.b1", g1, Estimator::Exact, GradMode::Neumann)),
            Box::new(ActNorm::new(store, "f.an2", d)),
            Box::new(ResidualBlock::new("f.b3", g2, Estimator::Exact, GradMode::Neumann)),
        ])
    };
    let mut cstore = ParamStore::new(CpuTensor::scalar(0.0), 21);
    let cflow = build(&mut cstore);
    let batch: Vec<f64> = values(16 * d, -2.0, 2.0, 22).iter().map(|&v| 3.0 * v as f64 + 0.5).collect();
    cflow.initialize(&mut cstore, &CpuTensor::new(batch, &[16, d]));
    cflow.power_iterate(&mut cstore, PowerIters::Fixed(50));

    let x: Vec<f64> = vec![0.4, -1.2, 2.0, 0.1];
    let forward_all = |x: &[f64]| -> Vec<f64> {
        let tape = Tape::no_grad();
        let b = Binder::new(&cstore, &tape);
        let ctx = FlowCtx::new(&b, 0, true);
        cflow.forward(&ctx, &Var::constant(CpuTensor::new(x.to_vec(), &[1, d]))).0.value.data
    };
    let z = forward_all(&x);
    let h = 1e-6;
    let mut jac = vec![0.0; d * d];
    for j in 0..d {
        let (mut p, mut m) = (x.clone(), x.clone());
        p[j] += h;
        m[j] -= h;
        let (zp, zm) = (forward_all(&p), forward_all(&m));
        for i in 0..d {
            jac[i * d + j] = (zp[i] - zm[i]) / (2.0 * h);
        }
    }
    // log|det J_F| via LU of J_F = (I + (J_F − I)).
    let shifted: Vec<f64> = (0..d * d).map(|k| jac[k] - if k / d == k % d { 1.0 } else { 0.0 }).collect();
    let logdet = log_abs_det_identity_plus(&shifted, d)[0];
    let want =
        -0.5 * z.iter().map(|v| v * v).sum::<f64>() - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln() + logdet;

    let mut gstore = gpu_store(21);
    let gflow = {
        let s = NetSpec {
            activation: Activation::LipSwish,
            coeff: 0.9,
            leading_activation: false,
            gain: 2.0,
            last_gain: 1.0,
        };
        let an0 = ActNorm::new(&mut gstore, "f.an0", d);
        let g1 = LipschitzNet::mlp(&mut gstore, "f.b1.g", &[d, 10, d], &s);
        let an2 = ActNorm::new(&mut gstore, "f.an2", d);
        let g2 = LipschitzNet::mlp(&mut gstore, "f.b3.g", &[d, 10, 10, d], &s);
        // Parameters are created in a different order here; copy by name.
        Flow::<Tensor>::new(vec![
            Box::new(an0),
            Box::new(ResidualBlock::new("f.b1", g1, Estimator::Exact, GradMode::Neumann)),
            Box::new(an2),
            Box::new(ResidualBlock::new("f.b3", g2, Estimator::Exact, GradMode::Neumann)),
        ])
    };
    for id in cstore.ids() {
        let gid = gstore.find(cstore.name(id)).expect("same parameter names");
        let v: Vec<f32> = cstore.get(id).data.iter().map(|&x| x as f32).collect();
        gstore.set(gid, Tensor::from_slice(&gpu(), &v, cstore.get(id).shape()).unwrap());
    }
    let tape = Tape::no_grad();
    let b = Binder::new(&gstore, &tape);
    let ctx = FlowCtx::new(&b, 0, true);
    let xg = Tensor::from_slice(&gpu(), &x.iter().map(|&v| v as f32).collect::<Vec<_>>(), &[1, d]).unwrap();
    let got = gflow.log_prob(&ctx, &Var::constant(xg.clone())).value.item() as f64;
    assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "flow log p(x) {got} vs dense oracle {want}");
    // And the flow inverts.
    let zg = gflow.forward(&ctx, &Var::constant(xg.clone())).0.value;
    let (back, iters) = gflow.inverse(&gstore, &zg).unwrap();
    let err = back.sub(&xg).unary(resflow::Unary::Abs).reduce(resflow::Reduce::Max, None, false).item();
    assert!(err < 1e-4, "flow inverse error {err}, iterations {iters:?}");
}

#[test]
fn actnorm_initialises_from_data_and_its_logdet_is_exact() {
    let mut store = ParamStore::new(CpuTensor::scalar(0.0), 1);
    let an = ActNorm::new(&mut store, "an", 2);
    let data: Vec<f64> = (0..2 * 3 * 2 * 2).map(|i| (i as f64 * 0.37).sin() * 3.0 + 1.0).collect();
    let x = CpuTensor::new(data, &[3, 2, 2, 2]);
    let y = an.initialize(&mut store, &x);
    // After init every channel has mean 0 and (variance above the floor) unit variance.
    for c in 0..2 {
        let vals: Vec<f64> =
            (0..3).flat_map(|b| (0..4).map(move |p| (b, p))).map(|(b, p)| y.data[(b * 2 + c) * 4 + p]).collect();
        let (m, _) = mean_se(&vals);
        let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64;
        assert!(m.abs() < 1e-12 && (var - 1.0).abs() < 1e-9, "channel {c}: mean {m} var {var}");
    }
    let tape = Tape::no_grad();
    let b = Binder::new(&store, &tape);
    let ctx = FlowCtx::new(&b, 0, true);
    let ld = an.forward(&ctx, &Var::constant(x.clone())).1.value.data;
    let s = store.get(an.log_scale).data.clone();
    assert!((ld[0] - 4.0 * (s[0] + s[1])).abs() < 1e-12 && ld.len() == 3);
}

#[test]
fn the_exact_2x2_logdet_is_differentiable_and_its_gradient_is_right() {
    let mut store = ParamStore::new(CpuTensor::scalar(0.0), 5);
    let g = LipschitzNet::mlp(&mut store, "b.g", &[2, 8, 8, 2], &spec(0.9, 2.0));
    g.power_iterate(&mut store, PowerIters::Fixed(50));
    let block = ResidualBlock::new("b", g, Estimator::Exact, GradMode::Neumann);
    let x = CpuTensor::new(vec![0.3, -0.7, 1.1, 0.2], &[2, 2]);
    let (_, gx, gt) = logdet_and_grads(&store, &block, &x, 0);
    let h = 1e-6;
    let value = |s: &ParamStore<CpuTensor>, x: &CpuTensor| -> f64 {
        let tape = Tape::no_grad();
        let b = Binder::new(s, &tape);
        let ctx = FlowCtx::new(&b, 0, true);
        block.forward(&ctx, &Var::constant(x.clone())).1.value.data.iter().sum()
    };
    for (i, &gi) in gx.iter().enumerate() {
        let (mut p, mut m) = (x.clone(), x.clone());
        p.data[i] += h;
        m.data[i] -= h;
        let fd = (value(&store, &p) - value(&store, &m)) / (2.0 * h);
        assert!((gi - fd).abs() < 1e-6 * (1.0 + fd.abs()), "x[{i}]: tape {gi} vs fd {fd}");
    }
    let mut k = 0;
    for id in store.trainable().collect::<Vec<_>>() {
        for i in 0..store.get(id).numel() {
            let shifted = |delta: f64| {
                let mut s2 = store.clone();
                let mut v = s2.get(id).clone();
                v.data[i] += delta;
                s2.set(id, v);
                value(&s2, &x)
            };
            let fd = (shifted(h) - shifted(-h)) / (2.0 * h);
            assert!((gt[k] - fd).abs() < 1e-6 * (1.0 + fd.abs()), "{}[{i}]: tape {} vs fd {fd}", store.name(id), gt[k]);
            k += 1;
        }
    }
}
