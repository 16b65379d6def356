//! `resflow selfcheck`: one end-to-end check of the kernel families against the f64 reference.

use resflow::{CpuTensor, Gpu, Reduce, Tape, Tensor, TensorOps, Unary, Var};

/// A quick end-to-end check of each kernel family against the reference.
pub fn run(gpu: &Gpu) -> Result<(), Box<dyn std::error::Error>> {
    let data: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let g = Tensor::from_slice(gpu, &data, &[8, 12])?;
    let c = CpuTensor::new(data.iter().map(|&v| v as f64).collect(), &[8, 12]);
    fn grad_of<T: TensorOps>(x: T) -> (f64, Vec<f64>) {
        let tape = Tape::new();
        let v = tape.leaf(x.clone());
        let w = Var::constant(x.permute(&[1, 0]));
        let h = tape.matmul(&v, &w, false, false);
        let s = tape.unary(&h, Unary::Tanh);
        let l = tape.reduce(&s, Reduce::LogSumExp, None, false);
        let grads = tape.backward(&l);
        (l.value.to_host()[0], grads.get_or_zeros(&v).to_host())
    }
    let (lg, gg) = grad_of(g);
    let (lc, gc) = grad_of(c);
    let err = gg.iter().zip(&gc).map(|(a, b)| (a - b).abs()).fold((lg - lc).abs(), f64::max);
    println!("selfcheck matmul → tanh → logsumexp and its gradient: max |GPU − f64 reference| = {err:.2e}");
    if err > 1e-4 {
        return Err(format!("selfcheck failed: GPU and reference differ by {err:.2e}").into());
    }
    let stats = gpu.pool_stats();
    println!(
        "selfcheck ok; pool: {} buffers created, {:.1} KiB peak",
        stats.allocations,
        stats.peak_bytes as f64 / 1024.0
    );
    Ok(())
}
