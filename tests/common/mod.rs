//! Shared test helpers: the GPU (failing loudly with the fix when there is none), seeded data
//! and closeness checks.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use resflow::{CpuTensor, Gpu, Tensor, TensorOps};

/// The shared GPU. Tests never skip: without an adapter they fail with the fix in the message.
pub fn gpu() -> Gpu {
    match Gpu::shared() {
        Ok(g) => g,
        Err(e) => panic!("these tests need a GPU adapter: {e}"),
    }
}

/// Random f32-representable values in [lo, hi), so GPU and f64 reference see the same inputs.
pub fn values(n: usize, lo: f64, hi: f64, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi) as f32).collect()
}

pub fn pair(data: &[f32], shape: &[usize]) -> (Tensor, CpuTensor) {
    let g = Tensor::from_slice(&gpu(), data, shape).unwrap();
    let c = CpuTensor::new(data.iter().map(|&v| v as f64).collect(), shape);
    (g, c)
}

/// Asserts |got - want| <= atol + rtol·|want| elementwise, naming the first offender.
pub fn assert_close(what: &str, got: &[f64], want: &[f64], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan());
        assert!(ok, "{what}: element {i}: got {g}, want {w} (rtol {rtol}, atol {atol})");
    }
}

pub fn assert_tensor_close<T: TensorOps>(what: &str, got: &T, want: &CpuTensor, rtol: f64, atol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes differ");
    assert_close(what, &got.to_host(), &want.data, rtol, atol);
}
