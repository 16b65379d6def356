//! Shared test helpers: the GPU (failing loudly with the fix when there is none), seeded data
//! and closeness checks.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use resflow::{CpuTensor, Gpu, Tensor, TensorOps};

/// The shared GPU. Tests never skip: without an adapter they fail with the fix in the message.
pub fn gpu() -> Gpu {
    match Gpu::shared() {
        Ok(g) => {
            resflow::testing::settle(&g);
            g
        }
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

/// Eigenvalues of a symmetric n×n matrix (row-major) by cyclic Jacobi rotations, in f64.
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| m[i * n + j].powi(2))
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = m[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (m[q * n + q] - m[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (mkp, mkq) = (m[k * n + p], m[k * n + q]);
                    m[k * n + p] = c * mkp - s * mkq;
                    m[k * n + q] = s * mkp + c * mkq;
                }
                for k in 0..n {
                    let (mpk, mqk) = (m[p * n + k], m[q * n + k]);
                    m[p * n + k] = c * mpk - s * mqk;
                    m[q * n + k] = s * mpk + c * mqk;
                }
            }
        }
    }
    (0..n).map(|i| m[i * n + i]).collect()
}

/// Singular values of a rows × cols matrix (row-major), largest first.
pub fn singular_values(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut ata = vec![0.0; cols * cols];
    for i in 0..cols {
        for j in 0..cols {
            ata[i * cols + j] = (0..rows).map(|r| a[r * cols + i] * a[r * cols + j]).sum();
        }
    }
    let mut s: Vec<f64> = symmetric_eigenvalues(&ata, cols).into_iter().map(|e| e.max(0.0).sqrt()).collect();
    s.sort_by(|a, b| b.partial_cmp(a).unwrap());
    s
}

/// Copies a reference store's values into a GPU store of the same architecture.
pub fn mirror(cpu: &resflow::nn::ParamStore<CpuTensor>, gpu_store: &mut resflow::nn::ParamStore<Tensor>) {
    for id in cpu.ids() {
        let v: Vec<f32> = cpu.get(id).data.iter().map(|&x| x as f32).collect();
        gpu_store.set(id, Tensor::from_slice(&gpu(), &v, cpu.get(id).shape()).unwrap());
    }
}
