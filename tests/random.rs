//! The counter-based generator: reproducible, bit-identical to the reference Philox, and
//! distributed as claimed (moments; Kolmogorov–Smirnov for the normal).

mod common;

use common::gpu;
use resflow::reference::random_values;
use resflow::{Dist, Tensor};

#[test]
fn same_seed_same_numbers_other_seed_or_stream_other_numbers() {
    let gpu = gpu();
    let d = Dist::Normal { mean: 0.0, std: 1.0 };
    let a = Tensor::random(&gpu, &[1001], d, 42, 0).to_vec();
    let b = Tensor::random(&gpu, &[1001], d, 42, 0).to_vec();
    let c = Tensor::random(&gpu, &[1001], d, 43, 0).to_vec();
    let s = Tensor::random(&gpu, &[1001], d, 42, 1).to_vec();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, s);
    // A longer draw starts with the shorter one: element i depends only on (seed, stream, i).
    let long = Tensor::random(&gpu, &[5000], d, 42, 0).to_vec();
    assert_eq!(&long[..1001], &a[..]);
}

#[test]
fn gpu_philox_matches_reference_bits() {
    let gpu = gpu();
    let seed = 0x1234_5678_9abc_def0;
    let u = Tensor::random(&gpu, &[4099], Dist::Uniform { lo: 0.0, hi: 1.0 }, seed, 7).to_vec();
    let want = random_values(4099, Dist::Uniform { lo: 0.0, hi: 1.0 }, seed, 7);
    assert!(u.iter().zip(&want).all(|(g, w)| *g as f64 == *w), "uniform bits differ from the reference");
    let r = Tensor::random(&gpu, &[333], Dist::Rademacher, seed, 7).to_vec();
    let want = random_values(333, Dist::Rademacher, seed, 7);
    assert!(r.iter().zip(&want).all(|(g, w)| *g as f64 == *w));
    // Box–Muller's angle goes through the shader's own sin and cos (exact reduction, then
    // polynomials), so a normal is within a few f32 roundings of the f64 value on every device
    // (WGSL's built-in cos may err by 2⁻¹¹, which a 1e-4 tolerance would have let through).
    let z = Tensor::random(&gpu, &[4001], Dist::Normal { mean: 1.0, std: 2.0 }, seed, 7).to_vec();
    let want = random_values(4001, Dist::Normal { mean: 1.0, std: 2.0 }, seed, 7);
    let worst = z.iter().zip(&want).map(|(g, w)| (*g as f64 - w).abs() / (1.0 + w.abs())).fold(0.0, f64::max);
    assert!(worst < 2e-6, "normals differ from the reference by up to {worst:e} (relative)");
}

fn moments(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn moments_and_kolmogorov_smirnov() {
    let gpu = gpu();
    let n = 200_000;
    let (m, v) = moments(&Tensor::random(&gpu, &[n], Dist::Uniform { lo: -1.0, hi: 3.0 }, 9, 0).to_vec());
    // Standard error of the mean is σ/√n ≈ 0.0026 here; 5 σ bounds.
    assert!((m - 1.0).abs() < 0.013 && (v - 16.0 / 12.0).abs() < 0.02, "uniform mean {m} var {v}");
    let r = Tensor::random(&gpu, &[n], Dist::Rademacher, 9, 0).to_vec();
    assert!(r.iter().all(|&x| x == 1.0 || x == -1.0));
    let (m, v) = moments(&r);
    assert!(m.abs() < 0.012 && (v - 1.0).abs() < 1e-3, "rademacher mean {m} var {v}");

    let mut z = Tensor::random(&gpu, &[n], Dist::Normal { mean: 0.0, std: 1.0 }, 9, 0).to_vec();
    let (m, v) = moments(&z);
    assert!(m.abs() < 0.012 && (v - 1.0).abs() < 0.016, "normal mean {m} var {v}");
    z.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let phi = |x: f64| 0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2));
    let d = z
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = phi(x as f64);
            (f - i as f64 / n as f64).abs().max(((i + 1) as f64 / n as f64 - f).abs())
        })
        .fold(0.0, f64::max);
    // The KS critical value at α = 0.001 is 1.95/√n.
    assert!(d < 1.95 / (n as f64).sqrt(), "KS statistic {d}");
}

/// erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7, ample for a KS test at n = 2·10⁵).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly =
        t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()) * x.signum()
}
