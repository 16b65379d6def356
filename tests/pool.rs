//! Buffer pool and batched dispatch: steady state allocates nothing, many ops share one submit,
//! and recycled buffers are never overwritten under queued work.

use resflow::{Dist, Tape, Tensor, TensorOps, Unary};

/// A device of this test's own: the counters must not see the other tests' work, which runs
/// in parallel on the shared device.
fn private_gpu() -> resflow::Gpu {
    let gpu = resflow::Gpu::new(None).unwrap_or_else(|e| panic!("these tests need a GPU adapter: {e}"));
    resflow::testing::settle(&gpu);
    gpu
}

/// One small training-like step: forward, backward, readback of the loss.
fn step(x: &Tensor, w: &Tensor) -> f32 {
    let tape = Tape::new();
    let xv = tape.leaf(x.clone());
    let wv = tape.leaf(w.clone());
    let h = tape.matmul(&xv, &wv, false, false);
    let a = tape.unary(&h, Unary::Tanh);
    let loss = tape.mean(&tape.mul(&a, &a));
    let g = tape.backward(&loss);
    let gw = g.get(&wv).unwrap().clone();
    // Elementwise results are lazy; realizing the update makes the step run it.
    w.sub(&gw.scale(0.1)).realize();
    loss.value.item()
}

#[test]
fn steady_state_creates_no_buffers() {
    let gpu = private_gpu();
    let x = Tensor::random(&gpu, &[37, 19], Dist::Normal { mean: 0.0, std: 1.0 }, 1, 0);
    let w = Tensor::random(&gpu, &[19, 23], Dist::Normal { mean: 0.0, std: 0.3 }, 2, 0);
    let first = step(&x, &w); // warm-up: fills the pool
    let before = gpu.pool_stats().allocations;
    for _ in 0..5 {
        assert_eq!(step(&x, &w), first, "same inputs, same loss");
    }
    let after = gpu.pool_stats();
    assert_eq!(after.allocations, before, "steady-state steps created {} buffers", after.allocations - before);
    assert!(after.peak_bytes >= after.live_bytes);
}

#[test]
fn many_ops_few_submits() {
    let gpu = private_gpu();
    // Without fusion every op is a dispatch; with it, a chain is one per MAX_OPS ops. Pending
    // work is submitted every `submit_every` dispatches (0: only by the readback).
    let every = resflow::options::SUBMIT_EVERY;
    for submit_every in [0, every] {
        resflow::testing::set_submit_every(&gpu, submit_every);
        for (fused, dispatches) in [(false, 1000), (true, 1000u64.div_ceil(resflow::fusion::MAX_OPS as u64))] {
            resflow::testing::set_fusion(&gpu, fused);
            let mut t = Tensor::full(&gpu, &[1024], 0.0);
            t.realize();
            gpu.sync();
            let before = gpu.record_stats();
            for _ in 0..1000 {
                t = t.unary(Unary::Affine(1.0, 1.0));
            }
            let v = t.to_vec();
            let after = gpu.record_stats();
            assert!(v.iter().all(|&x| x == 1000.0), "fusion {fused}, submit every {submit_every}");
            assert_eq!(after.dispatches - before.dispatches, dispatches, "fusion {fused}");
            let submits = if submit_every == 0 { 1 } else { dispatches.div_ceil(submit_every) };
            assert_eq!(
                after.submits - before.submits,
                submits,
                "{dispatches} dispatches and a readback, submitting every {submit_every}"
            );
        }
    }
}

#[test]
fn upload_into_recycled_buffer_does_not_overtake_queued_work() {
    // A buffer freed while queued work still reads it goes back to the pool; an upload that
    // lands in it must not become visible to that earlier work.
    let gpu = private_gpu();
    let a = Tensor::from_slice(&gpu, &[1.0; 4096], &[4096]).unwrap();
    let b = a.unary(Unary::Affine(2.0, 0.0));
    b.realize(); // records the kernel reading `a`, so dropping `a` frees its buffer
    drop(a);
    let c = Tensor::from_slice(&gpu, &[5.0; 4096], &[4096]).unwrap();
    assert!(b.to_vec().iter().all(|&v| v == 2.0));
    assert!(c.to_vec().iter().all(|&v| v == 5.0));
}

#[test]
fn peak_tracks_live_and_resets() {
    let gpu = private_gpu();
    gpu.sync();
    gpu.reset_peak();
    let base = gpu.pool_stats().live_bytes;
    {
        let _big = Tensor::empty(&gpu, &[1 << 20]);
        assert!(gpu.pool_stats().live_bytes >= base + (4 << 20));
    }
    let s = gpu.pool_stats();
    assert!(s.peak_bytes >= base + (4 << 20));
    gpu.reset_peak();
    assert!(gpu.pool_stats().peak_bytes < base + (4 << 20) || gpu.pool_stats().live_bytes >= base + (4 << 20));
}
