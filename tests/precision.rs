//! f16 operands (`--precision f16`): the f16 matmul and convolution kernels against the f64
//! reference within a bound derived from f16 rounding (and off the exact result by more than
//! f32 rounding alone would be, so the operands really are f16), the spectral bound on the f16
//! weights the kernels actually read, the refusal on adapters without `SHADER_F16`, and a toy
//! run in f16 reaching the f32 run's NLL.

mod common;

use std::sync::OnceLock;

use common::{pair, values};
use resflow::nn::{Binder, Linear, ParamStore, PowerIters};
use resflow::options::Precision;
use resflow::train::toy::{ToyConfig, ToyRun};
use resflow::{CpuTensor, Gpu, GpuError, MatmulKernel, Tape, Tensor, TensorOps, Unary};

/// A device of this test's own with f16 operands (the shared one stays f32 for other tests).
fn half_gpu() -> Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let gpu = Gpu::new(None).expect("a GPU adapter");
        gpu.set_precision(Precision::F16).expect("lavapipe and the GPUs we test on offer SHADER_F16");
        resflow::testing::settle(&gpu);
        gpu
    })
    .clone()
}

/// f16's unit roundoff: a faithfully rounded operand is off by at most 2u relative.
const U16: f64 = 1.0 / 2048.0;

/// Checks an f16-operand result against the exact one: each product of two operands rounded to
/// f16 is off by at most (4u + 4u²)·|a||b|, and an f32 sum of `terms` of them by at most
/// terms·2⁻²³ of Σ|a||b| more. `abs` is Σ|a||b| per output. Also requires the largest error
/// to exceed 2⁻¹⁶ of the largest Σ|a||b|: f32 operands would be ~100× closer.
fn assert_f16_close(what: &str, got: &[f64], want: &[f64], abs: &[f64], terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let bound = 4.0 * U16 + 4.0 * U16 * U16 + terms as f64 * 2f64.powi(-23);
    let mut worst: f64 = 0.0;
    for (i, ((g, w), a)) in got.iter().zip(want).zip(abs).enumerate() {
        let err = (g - w).abs();
        assert!(err <= bound * a + 1e-30, "{what}: element {i}: got {g}, want {w}, bound {}", bound * a);
        worst = worst.max(err);
    }
    let scale = abs.iter().cloned().fold(0.0, f64::max);
    assert!(worst > scale * 2f64.powi(-16), "{what}: error {worst} is f32-sized: the operands were not f16");
}

fn reference_abs(c: &CpuTensor) -> CpuTensor {
    c.unary(Unary::Abs)
}

#[test]
fn f16_matmuls_match_the_reference_within_f16_rounding() {
    // (batch_a, batch_b, m, k, n): odd sizes, tile-sized ones, and both batched forms.
    let cases = [(0, 0, 37, 70, 45), (0, 0, 128, 64, 128), (0, 0, 5, 300, 3), (3, 3, 20, 33, 17), (0, 2, 9, 16, 24)];
    for (case, &(ba, bb, m, k, n)) in cases.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a_shape: Vec<usize> =
                [ba].into_iter().filter(|&b| b > 0).chain(if ta { [k, m] } else { [m, k] }).collect();
            let b_shape: Vec<usize> =
                [bb].into_iter().filter(|&b| b > 0).chain(if tb { [n, k] } else { [k, n] }).collect();
            let (ga, ca) = pair(&values(a_shape.iter().product(), -1.0, 1.0, case as u64), &a_shape);
            let (gb, cb) = pair(&values(b_shape.iter().product(), -1.0, 1.0, 50 + case as u64), &b_shape);
            let want = ca.matmul(&cb, ta, tb).to_host();
            let abs = reference_abs(&ca).matmul(&reference_abs(&cb), ta, tb).to_host();
            for kernel in [MatmulKernel::Texture, MatmulKernel::Tiled] {
                let got = ga.matmul_f16_using(&gb, ta, tb, kernel).unwrap().to_host();
                let what = format!("{kernel:?} {a_shape:?}·{b_shape:?} ta={ta} tb={tb}");
                assert_f16_close(&what, &got, &want, &abs, k);
            }
        }
    }
}

#[test]
fn f16_convolutions_match_the_reference_within_f16_rounding() {
    let gpu = half_gpu();
    for (case, &([n, ci, h, w], co, k)) in
        [([2, 3, 8, 8], 5, 3), ([1, 8, 6, 5], 4, 1), ([2, 6, 7, 9], 8, 3)].iter().enumerate()
    {
        let seed = 10 * case as u64;
        let x = values(n * ci * h * w, -1.0, 1.0, seed);
        let wt = values(co * ci * k * k, -1.0, 1.0, seed + 1);
        let gy = values(n * co * h * w, -1.0, 1.0, seed + 2);
        let upload = |data: &[f32], shape: &[usize]| {
            (
                Tensor::from_slice(&gpu, data, shape).unwrap(),
                CpuTensor::new(data.iter().map(|&v| v as f64).collect(), shape),
            )
        };
        let (gx, cx) = upload(&x, &[n, ci, h, w]);
        let (gw, cw) = upload(&wt, &[co, ci, k, k]);
        let (gg, cg) = upload(&gy, &[n, co, h, w]);
        let (ax, aw, ag) = (reference_abs(&cx), reference_abs(&cw), reference_abs(&cg));
        let what = |op: &str| format!("{op} [{n},{ci},{h},{w}]->{co} k{k}");
        assert_f16_close(
            &what("conv2d"),
            &gx.conv2d(&gw).to_host(),
            &cx.conv2d(&cw).to_host(),
            &ax.conv2d(&aw).to_host(),
            ci * k * k,
        );
        assert_f16_close(
            &what("conv_transpose2d"),
            &gg.conv_transpose2d(&gw).to_host(),
            &cg.conv_transpose2d(&cw).to_host(),
            &ag.conv_transpose2d(&aw).to_host(),
            co * k * k,
        );
        assert_f16_close(
            &what("conv2d_grad_weight"),
            &gx.conv2d_grad_weight(&gg, k).to_host(),
            &cx.conv2d_grad_weight(&cg, k).to_host(),
            &ax.conv2d_grad_weight(&ag, k).to_host(),
            n * h * w,
        );
    }
}

#[test]
fn rounding_to_f16_gives_the_nearest_half_floats() {
    let gpu = common::gpu();
    let mut data = values(4096, -3.0, 3.0, 7);
    data.extend([0.0, 1.0, -65504.0, 1e-6, 6.1e-5, 0.1, 1.0 + 1.0 / 4096.0]);
    let got = Tensor::from_slice(&gpu, &data, &[data.len()]).unwrap().round_to_f16().to_vec();
    for (x, r) in data.iter().zip(&got) {
        assert_eq!(half::f16::from_f32(*r).to_f32(), *r, "{r} (from {x}) is not an f16 value");
        // Within one f16 step of x: its relative spacing 2u, or the subnormal spacing 2⁻²⁴.
        let step = (x.abs() as f64 * 2.0 * U16).max(2f64.powi(-24));
        assert!(((r - x).abs() as f64) <= step, "{x} rounded to {r}");
    }
    // The reference rounds to nearest, ties to even.
    let reference = CpuTensor::new(vec![1.0 + 1.0 / 4096.0, 0.1], &[2]).round_to_f16().to_host();
    assert_eq!(reference, vec![1.0, half::f16::from_f64(0.1).to_f64()]);
}

/// σ_max of a row-major rows × cols matrix by power iteration in f64.
fn spectral_norm(w: &[f64], rows: usize, cols: usize) -> f64 {
    let mut v = vec![1.0; cols];
    let mut sigma = 0.0;
    for _ in 0..500 {
        let u: Vec<f64> = (0..rows).map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum()).collect();
        let nu = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        let wt: Vec<f64> = (0..cols).map(|c| (0..rows).map(|r| w[r * cols + c] * u[r] / nu).sum()).collect();
        sigma = wt.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = wt.iter().map(|x| x / sigma).collect();
    }
    sigma
}

#[test]
fn the_spectral_bound_holds_for_the_f16_weights_the_kernels_read() {
    let gpu = half_gpu();
    let (outputs, inputs, coeff) = (48, 64, 0.9);
    let mut store = ParamStore::new(Tensor::full(&gpu, &[1], 0.0), 3);
    // Gain 4 makes σ ≈ 2.3, well above the bound, so the normalisation is active.
    let layer = Linear::new(&mut store, "l", inputs, outputs, 4.0, Some(coeff));
    layer.power_iterate(&mut store, PowerIters::Fixed(200));
    let tape = Tape::no_grad();
    let binder = Binder::new(&store, &tape);
    let weight = layer.weight(&binder);
    let used = weight.value.value.to_host();
    let raw = store.get(layer.weight).to_host();
    for (u, r) in used.iter().zip(&raw) {
        assert_eq!(*u, half::f16::from_f64(*r).to_f64(), "the kernels read the f16-rounded weight");
    }
    let divisor = weight.divisor.expect("f16 layers divide their outputs").value.to_host()[0];
    let lipschitz = spectral_norm(&used, outputs, inputs) / divisor;
    assert!(divisor > 1.5, "the bound is active (divisor {divisor})");
    assert!(lipschitz <= coeff as f64 * (1.0 + 1e-4), "Lipschitz constant {lipschitz} exceeds {coeff}");
    assert!(lipschitz >= coeff as f64 * (1.0 - 1e-3), "Lipschitz constant {lipschitz} is not tight at {coeff}");

    // The layer's output is (x·Wᵀ)/divisor with x rounded to f16: the f32 reference from the
    // same rounded operands agrees to f32 accumulation.
    let x = values(5 * inputs, -1.0, 1.0, 4);
    let y = layer.forward(&binder, &resflow::Var::constant(Tensor::from_slice(&gpu, &x, &[5, inputs]).unwrap()));
    let bias = store.get(layer.bias).to_host();
    let y = y.value.to_host();
    for row in 0..5 {
        for o in 0..outputs {
            let dot: f64 =
                (0..inputs).map(|i| half::f16::from_f32(x[row * inputs + i]).to_f64() * used[o * inputs + i]).sum();
            let want = dot / divisor + bias[o];
            assert!(
                (y[row * outputs + o] - want).abs() < 1e-5,
                "output ({row}, {o}): {} vs {want}",
                y[row * outputs + o]
            );
        }
    }
}

#[test]
fn f16_is_refused_without_shader_f16() {
    let gpu = Gpu::without_features(wgpu::Features::SHADER_F16).expect("a GPU adapter");
    match gpu.set_precision(Precision::F16) {
        Err(e @ GpuError::NoShaderF16 { .. }) => {
            let message = e.to_string();
            assert!(message.contains("SHADER_F16") && message.contains("--precision f32"), "{message}");
        }
        other => panic!("f16 accepted without SHADER_F16: {other:?}"),
    }
    assert_eq!(gpu.precision(), Precision::F32);
    gpu.set_precision(Precision::F32).expect("f32 needs nothing");
}

#[test]
fn a_toy_run_in_f16_reaches_the_f32_runs_nll() {
    let config = ToyConfig {
        blocks: 2,
        hidden: vec![32],
        batch: 256,
        iters: 150,
        eval_every: 1000,
        eval_samples: 4000,
        lr: 5e-3,
        warmup: 0,
        ..ToyConfig::default()
    };
    let train = |gpu: &Gpu| {
        let mut run = ToyRun::new(gpu, config.clone()).unwrap();
        for _ in 0..config.iters {
            run.train_step().unwrap();
        }
        let nll = run.test_nll(&run.store.clone(), &run.source.clone(), config.eval_samples).unwrap();
        (run, nll)
    };
    let (_, f32_nll) = train(&common::gpu());
    let gpu = half_gpu();
    let (run, f16_nll) = train(&gpu);
    println!("toy NLL after {} steps: f32 {f32_nll:.4}, f16 {f16_nll:.4}", config.iters);
    assert!(f32_nll.is_finite() && f16_nll.is_finite());
    assert!((f16_nll - f32_nll).abs() <= 0.05, "f16 NLL {f16_nll} vs f32 {f32_nll}");

    // Sampling in f16 iterates in f16 and refines in f32: the same points as an f32 inverse.
    let store = run.eval_store();
    let (half, iters) = resflow::models::toy::sample(&gpu, &run.flow, &store, 500, 3).unwrap();
    gpu.set_precision(Precision::F32).unwrap();
    let full = resflow::models::toy::sample(&gpu, &run.flow, &store, 500, 3);
    gpu.set_precision(Precision::F16).unwrap();
    let (full, _) = full.unwrap();
    assert!(iters.iter().all(|&n| n > 0));
    for (i, (h, f)) in half.iter().zip(&full).enumerate() {
        assert!(h.is_finite() && (h - f).abs() <= 1e-4 * (1.0 + f.abs()), "sample value {i}: f16 {h}, f32 {f}");
    }
}
