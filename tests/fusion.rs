//! Elementwise fusion: lazy chains compute what op-by-op kernels compute, in fewer dispatches,
//! for buffer and texture inputs, scalar broadcasts, shared subexpressions, chains past the
//! op and input limits, and a dropped result costs nothing.

mod common;

use common::{assert_close, values};
use resflow::fusion::ElementwiseInputs;
use resflow::fusion::{MAX_INPUTS, MAX_OPS};
use resflow::{Binary, CpuTensor, Gpu, Tensor, TensorOps, Unary};

/// A device of this file's own: the tests switch fusion on and off and count dispatches.
fn private_gpu() -> Gpu {
    let gpu = Gpu::new(None).unwrap_or_else(|e| panic!("these tests need a GPU adapter: {e}"));
    resflow::testing::settle(&gpu);
    gpu
}

/// A mixed expression: unary ops with and without parameters, binary ops, a lerp, a unary
/// VJP, a scalar broadcast and a shared subexpression (`a` is used three times).
fn expression<T: TensorOps>(x: &T, y: &T, s: &T) -> T {
    let a = x.mul(y).unary(Unary::Tanh);
    let b = a.unary(Unary::Affine(0.5, -0.25)).add(&a.unary(Unary::Square));
    let c = b.lerp(&y.unary(Unary::Sigmoid), 0.3).mul(s);
    let d = T::unary_grad(Unary::Softplus, &c, &c.unary(Unary::Softplus), &a);
    d.sub(&x.unary(Unary::SignedPow(1.5))).binary(Binary::Max, &a.unary(Unary::Neg))
}

fn inputs(gpu: &Gpu, n: usize) -> ([Tensor; 3], [CpuTensor; 3]) {
    let data = [values(n, -2.0, 2.0, 1), values(n, -2.0, 2.0, 2), vec![0.7]];
    let shapes = [vec![n], vec![n], vec![1]];
    let g = [0, 1, 2].map(|i| Tensor::from_slice(gpu, &data[i], &shapes[i]).unwrap());
    let c = [0, 1, 2].map(|i| CpuTensor::new(data[i].iter().map(|&v| v as f64).collect(), &shapes[i]));
    (g, c)
}

#[test]
fn fused_chains_match_op_by_op_kernels_and_the_reference() {
    let gpu = private_gpu();
    // CPU adapters store pairs of vec4s packed into 64-bit words where they can.
    let packs = resflow::testing::set_packed_stores(&gpu, true);
    if gpu.profile() == resflow::options::Profile::Cpu && gpu.features().contains(wgpu::Features::SHADER_INT64) {
        assert!(packs, "a CPU adapter with 64-bit integers packs its stores");
    }
    // Odd sizes (a partial last vec4; an odd count of vec4s, whose last pair is half past the
    // end), and one large enough for texture inputs on CPU adapters.
    for n in [1, 7, 9, 1031, 70_001] {
        let ([x, y, s], [cx, cy, cs]) = inputs(&gpu, n);
        let want = expression(&cx, &cy, &cs).data;
        let mut runs = Vec::new();
        for (fused, from, packed) in [
            (false, ElementwiseInputs::Buffers, false),
            (true, ElementwiseInputs::Buffers, false),
            (true, ElementwiseInputs::Textures, false),
            (true, ElementwiseInputs::Buffers, true),
            (true, ElementwiseInputs::Textures, true),
            (true, ElementwiseInputs::BuffersAndUniforms, true),
        ] {
            resflow::testing::set_fusion(&gpu, fused);
            resflow::testing::set_elementwise_inputs(&gpu, from);
            resflow::testing::set_packed_stores(&gpu, packed);
            let before = gpu.record_stats().dispatches;
            let got = expression(&x, &y, &s).to_host();
            runs.push((
                format!("n={n} fused={fused} {from:?} packed={packed}"),
                got,
                gpu.record_stats().dispatches - before,
            ));
        }
        resflow::testing::set_fusion(&gpu, true);
        resflow::testing::set_elementwise_inputs(&gpu, ElementwiseInputs::Auto);
        resflow::testing::set_packed_stores(&gpu, true);
        for (what, got, _) in &runs {
            // f32 kernels against the f64 reference of 16 ops.
            assert_close(what, got, &want, 1e-5, 1e-5);
        }
        // The same f32 operations in the same order: bit-identical here (a driver that
        // contracted a·b + c across two ops into one FMA would differ in the last place),
        // and packing moves bits without changing them.
        for (what, got, _) in &runs[1..] {
            assert_close(&format!("{what} vs unfused"), got, &runs[0].1, 0.0, 0.0);
        }
        assert_eq!(runs[0].2, 14, "n={n}: op by op, one dispatch per op");
        assert_eq!(runs[1].2, 1, "n={n}: the whole expression is one kernel");
    }
}

#[test]
fn chains_past_the_limits_split_and_stay_correct() {
    let gpu = private_gpu();
    let n = 515;
    // MAX_OPS·3 + 5 ops: four kernels.
    let x = Tensor::from_slice(&gpu, &values(n, -1.0, 1.0, 3), &[n]).unwrap();
    let mut t = x.clone();
    let mut c = CpuTensor::new(x.to_host(), &[n]);
    let before = gpu.record_stats().dispatches;
    for i in 0..MAX_OPS * 3 + 5 {
        let op = if i % 2 == 0 { Unary::Affine(0.9, 0.01) } else { Unary::Tanh };
        t = t.unary(op);
        c = c.unary(op);
    }
    let got = t.to_host();
    assert_eq!(gpu.record_stats().dispatches - before, 4);
    assert_close("long chain", &got, &c.data, 1e-5, 1e-6);

    // A sum of more distinct buffers than one kernel binds.
    let parts: Vec<Tensor> = (0..MAX_INPUTS * 2 + 1)
        .map(|i| Tensor::from_slice(&gpu, &values(n, 0.0, 1.0, 10 + i as u64), &[n]).unwrap())
        .collect();
    let mut sum = parts[0].clone();
    let mut want = CpuTensor::new(parts[0].to_host(), &[n]);
    for p in &parts[1..] {
        sum = sum.add(p);
        want = want.add(&CpuTensor::new(p.to_host(), &[n]));
    }
    let before = gpu.record_stats().dispatches;
    let got = sum.to_host();
    let kernels = gpu.record_stats().dispatches - before;
    assert!(kernels <= 3, "{} inputs took {kernels} kernels", parts.len());
    assert_close("wide sum", &got, &want.data, 1e-6, 1e-6);
}

#[test]
fn lazy_results_cost_nothing_until_used_and_run_once() {
    let gpu = private_gpu();
    let x = Tensor::from_slice(&gpu, &values(64, -1.0, 1.0, 4), &[64]).unwrap();
    let before = gpu.record_stats().dispatches;
    let unused = x.unary(Unary::Exp).add(&x);
    assert!(unused.is_lazy());
    drop(unused);
    let y = x.unary(Unary::Exp);
    let shared = y.reshape(&[8, 8]);
    assert_eq!(gpu.record_stats().dispatches, before, "nothing ran yet");
    let a = shared.to_vec();
    let b = y.to_vec();
    assert_eq!(gpu.record_stats().dispatches - before, 1, "realized once, shared by the reshape");
    assert_eq!(a, b);
    // `full` is lazy too and fuses into its consumer.
    let before = gpu.record_stats().dispatches;
    let z = Tensor::full(&gpu, &[64], 2.0).mul(&x);
    assert_eq!(z.to_vec(), x.to_vec().iter().map(|v| 2.0 * v).collect::<Vec<_>>());
    assert_eq!(gpu.record_stats().dispatches - before, 1);
}

#[test]
fn broadcast_operands_fuse_where_vec4_indexing_allows() {
    let gpu = private_gpu();
    // (result shape, operand shape, fuses): rows of a bias, per-channel values, scalars; a
    // row whose length is not a multiple of 4 takes the general broadcast kernel.
    let cases: [(&[usize], &[usize], bool); 7] = [
        (&[6, 8], &[8], true),
        (&[6, 8], &[1, 8], true),
        (&[2, 3, 4, 4], &[1, 3, 1, 1], true),
        (&[8, 4], &[8, 1], true),
        (&[7], &[1], true),
        (&[5, 3], &[3], false),
        (&[3, 2, 6], &[2, 1], false),
    ];
    // Buffers, and the CPU adapters' inputs: small broadcast operands from uniform buffers,
    // full-size ones from texture copies or from their buffers.
    let reads = [ElementwiseInputs::Buffers, ElementwiseInputs::Textures, ElementwiseInputs::BuffersAndUniforms];
    for (from, (i, &(shape, bshape, fuses))) in reads.iter().flat_map(|r| cases.iter().enumerate().map(move |c| (r, c)))
    {
        resflow::testing::set_elementwise_inputs(&gpu, *from);
        let n: usize = shape.iter().product();
        let m: usize = bshape.iter().product();
        let (xd, bd) = (values(n, -1.0, 1.0, 20 + i as u64), values(m, -1.0, 1.0, 30 + i as u64));
        let x = Tensor::from_slice(&gpu, &xd, shape).unwrap();
        let b = Tensor::from_slice(&gpu, &bd, bshape).unwrap();
        let cx = CpuTensor::new(xd.iter().map(|&v| v as f64).collect(), shape);
        let cb = CpuTensor::new(bd.iter().map(|&v| v as f64).collect(), bshape);
        let before = gpu.record_stats().dispatches;
        // Broadcast operand on either side, then a unary op on the result.
        let got = x.add(&b).mul(&b.sub(&x)).unary(Unary::Tanh).to_host();
        let want = cx.add(&cb).mul(&cb.sub(&cx)).unary(Unary::Tanh).data;
        let dispatches = gpu.record_stats().dispatches - before;
        assert_close(&format!("{shape:?} with {bshape:?} from {from:?}"), &got, &want, 1e-6, 1e-6);
        assert_eq!(dispatches == 1, fuses, "{shape:?} with {bshape:?}: {dispatches} dispatches");
    }
    resflow::testing::set_elementwise_inputs(&gpu, ElementwiseInputs::Auto);
}

#[test]
fn sums_compute_their_expression_in_the_same_kernel() {
    let gpu = private_gpu();
    let (n, h) = (256, 128);
    let (xd, yd) = (values(n * h, -1.0, 1.0, 40), values(n * h, -1.0, 1.0, 41));
    let x = Tensor::from_slice(&gpu, &xd, &[n, h]).unwrap();
    let y = Tensor::from_slice(&gpu, &yd, &[n, h]).unwrap();
    let cx = CpuTensor::new(xd.iter().map(|&v| v as f64).collect(), &[n, h]);
    let cy = CpuTensor::new(yd.iter().map(|&v| v as f64).collect(), &[n, h]);
    // Up to 1024 (vec4) rows sum in one pass; the whole tensor (8192 vec4s) takes a second
    // pass over its chunks' partial sums.
    for (axis, kernels) in [(Some(0), 1), (Some(1), 1), (None, 2)] {
        let before = gpu.record_stats().dispatches;
        let got = x.mul(&y).unary(Unary::Exp).reduce(resflow::Reduce::Sum, axis, false).to_host();
        let dispatches = gpu.record_stats().dispatches - before;
        let want = cx.mul(&cy).unary(Unary::Exp).reduce(resflow::Reduce::Sum, axis, false).data;
        // f32 sums of up to 32 768 terms.
        assert_close(&format!("axis {axis:?}"), &got, &want, 1e-5, 1e-4);
        // The fused map-and-sum, then (with several chunks) one sum of its partial sums.
        assert_eq!(dispatches, kernels, "axis {axis:?}");
    }
}

#[test]
fn matmuls_with_few_terms_are_elementwise_and_fuse_with_bias_and_activation() {
    let gpu = private_gpu();
    for (i, &(m, k, n)) in [(256, 2, 128), (7, 1, 5), (9, 3, 13), (4, 2, 2)].iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let sa = if ta { [k, m] } else { [m, k] };
            let sb = if tb { [n, k] } else { [k, n] };
            let (ad, bd, cd) =
                (values(m * k, -1.0, 1.0, 50 + i as u64), values(k * n, -1.0, 1.0, 60), values(n, -1.0, 1.0, 70));
            let a = Tensor::from_slice(&gpu, &ad, &sa).unwrap();
            let b = Tensor::from_slice(&gpu, &bd, &sb).unwrap();
            let bias = Tensor::from_slice(&gpu, &cd, &[n]).unwrap();
            let ca = CpuTensor::new(ad.iter().map(|&v| v as f64).collect(), &sa);
            let cb = CpuTensor::new(bd.iter().map(|&v| v as f64).collect(), &sb);
            let cbias = CpuTensor::new(cd.iter().map(|&v| v as f64).collect(), &[n]);
            let before = gpu.record_stats().dispatches;
            let got = a.matmul(&b, ta, tb).add(&bias).unary(Unary::Tanh).to_host();
            let dispatches = gpu.record_stats().dispatches - before;
            let want = ca.matmul(&cb, ta, tb).add(&cbias).unary(Unary::Tanh).data;
            let what = format!("{m}x{k}x{n} ta={ta} tb={tb}");
            assert_close(&what, &got, &want, 1e-6, 1e-6);
            // A bias row fuses when n is a multiple of 4; otherwise it takes the broadcast kernel.
            assert_eq!(dispatches, if n % 4 == 0 { 1 } else { 3 }, "{what}");
        }
    }
}

#[test]
fn skinny_matmuls_dot_rows_of_a_pending_expression() {
    let gpu = private_gpu();
    for (i, &(m, k, n)) in [(300, 64, 2), (7, 8, 1), (33, 12, 4), (5, 4, 3)].iter().enumerate() {
        for tb in [false, true] {
            let sb = if tb { [n, k] } else { [k, n] };
            let (ad, bd) = (values(m * k, -2.0, 2.0, 80 + i as u64), values(k * n, -1.0, 1.0, 90));
            let a = Tensor::from_slice(&gpu, &ad, &[m, k]).unwrap();
            let b = Tensor::from_slice(&gpu, &bd, &sb).unwrap();
            let ca = CpuTensor::new(ad.iter().map(|&v| v as f64).collect(), &[m, k]);
            let cb = CpuTensor::new(bd.iter().map(|&v| v as f64).collect(), &sb);
            let before = gpu.record_stats().dispatches;
            let got = a.unary(Unary::Tanh).matmul(&b, false, tb).to_host();
            let dispatches = gpu.record_stats().dispatches - before;
            let want = ca.unary(Unary::Tanh).matmul(&cb, false, tb).data;
            let what = format!("{m}x{k}x{n} tb={tb}");
            assert_close(&what, &got, &want, 1e-5, 1e-5);
            assert_eq!(dispatches, 1, "{what}: tanh computed inside the matmul");
        }
    }
}

#[test]
fn auto_inputs_follow_the_adapter_and_the_staging_probe() {
    let gpu = private_gpu();
    resflow::testing::set_elementwise_inputs(&gpu, ElementwiseInputs::Auto);
    let large = resflow::fusion::TEXTURE_INPUTS_FROM;
    assert_eq!(
        resflow::fusion::elementwise_inputs_for(&gpu, large - 1),
        ElementwiseInputs::Buffers,
        "small tensors read buffers"
    );
    let probe = resflow::fusion::staging_probe(&gpu);
    if gpu.profile() == resflow::options::Profile::Gpu {
        assert!(probe.is_none(), "only CPU adapters are probed");
        assert_eq!(resflow::fusion::elementwise_inputs_for(&gpu, large), ElementwiseInputs::Buffers);
        return;
    }
    if std::env::var_os("RESFLOW_ELEMENTWISE").is_some() {
        assert!(probe.is_none(), "a chosen input path skips the probe");
        return;
    }
    let p = probe.expect("a CPU adapter in Auto mode is probed on first use");
    assert!(p.staged_ms > 0.0 && p.buffer_ms > 0.0 && p.staged_ms.is_finite() && p.buffer_ms.is_finite(), "{p:?}");
    let want = if p.staging_pays() { ElementwiseInputs::Textures } else { ElementwiseInputs::BuffersAndUniforms };
    assert_eq!(resflow::fusion::elementwise_inputs_for(&gpu, large), want, "{p:?}");
    // An explicit choice wins over the probe, and Auto returns to it.
    resflow::testing::set_elementwise_inputs(&gpu, ElementwiseInputs::Textures);
    assert_eq!(resflow::fusion::elementwise_inputs_for(&gpu, large), ElementwiseInputs::Textures);
    resflow::testing::set_elementwise_inputs(&gpu, ElementwiseInputs::Auto);
    assert_eq!(resflow::fusion::elementwise_inputs_for(&gpu, large), want);
}
