//! The engine in a few lines: tensors on the GPU, a recorded graph, its gradient, and the same
//! graph on the f64 reference for comparison.
//!
//! cargo run --release --example tape_basics

use resflow::{CpuTensor, Gpu, Reduce, Tape, Tensor, TensorOps, Unary, Var};

/// loss = logsumexp(tanh(x · w)) — written once, run on any backend.
fn loss_and_grad<T: TensorOps>(x: T, w: T) -> (f64, Vec<f64>) {
    let tape = Tape::new();
    let wv = tape.leaf(w);
    let xv = Var::constant(x);
    let h = tape.matmul(&xv, &wv, false, false);
    let loss = tape.reduce(&tape.unary(&h, Unary::Tanh), Reduce::LogSumExp, None, false);
    let grads = tape.backward(&loss);
    (loss.value.to_host()[0], grads.get_or_zeros(&wv).to_host())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(None)?;
    let x: Vec<f32> = (0..12).map(|i| i as f32 / 6.0 - 1.0).collect();
    let w: Vec<f32> = (0..8).map(|i| (i as f32 * 0.7).sin()).collect();
    let (l_gpu, g_gpu) = loss_and_grad(Tensor::from_slice(&gpu, &x, &[3, 4])?, Tensor::from_slice(&gpu, &w, &[4, 2])?);
    let cpu = |d: &[f32], s: &[usize]| CpuTensor::new(d.iter().map(|&v| v as f64).collect(), s);
    let (l_ref, g_ref) = loss_and_grad(cpu(&x, &[3, 4]), cpu(&w, &[4, 2]));
    println!("loss  GPU {l_gpu:.6}  reference {l_ref:.6}");
    for (g, r) in g_gpu.iter().zip(&g_ref) {
        println!("dL/dw GPU {g:+.6}  reference {r:+.6}");
    }
    Ok(())
}
