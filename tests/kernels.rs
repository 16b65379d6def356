//! Every GPU op against the f64 reference on random inputs, including sizes that are not
//! multiples of the tile sizes and sizes that need more than 65 535 workgroups.

mod common;

use common::{assert_tensor_close, gpu, pair, values};
use resflow::{Binary, CpuTensor, Dist, MatmulKernel, Reduce, Tensor, TensorOps, Unary};

const UNARY: [Unary; 15] = [
    Unary::Neg,
    Unary::Exp,
    Unary::Log,
    Unary::Sigmoid,
    Unary::Softplus,
    Unary::Tanh,
    Unary::Relu,
    Unary::Square,
    Unary::Sqrt,
    Unary::Recip,
    Unary::Affine(-1.5, 0.25),
    Unary::Silu,
    Unary::Abs,
    Unary::SignedPow(1.7),
    Unary::SignedPow(0.5),
];

fn positive_only(op: Unary) -> bool {
    matches!(op, Unary::Log | Unary::Sqrt | Unary::Recip)
}

#[test]
fn unit_scale_brings_magnitudes_into_one_to_two_exactly() {
    // Normal magnitudes from 2⁻¹²⁶ up, powers of two and their neighbours, zero, subnormals.
    let mut data: Vec<f32> = (-126..8)
        .flat_map(|e| {
            let p = 2f32.powi(e);
            [p, -p, p * 1.5, f32::from_bits(p.to_bits() - 1), -f32::from_bits(p.to_bits() + 1)]
        })
        .collect();
    data.extend([0.0, -0.0, 1e-40, -1e-45, f32::MIN_POSITIVE, 3.0e38]);
    let (g, c) = pair(&data, &[data.len()]);
    let got = g.unary(Unary::UnitScale).to_vec();
    assert_tensor_close("UnitScale", &g.unary(Unary::UnitScale), &c.unary(Unary::UnitScale), 0.0, 0.0);
    for (x, f) in data.iter().zip(&got) {
        let scaled = x.abs() * f;
        if x.is_normal() && x.abs() < 1.0 {
            assert!((1.0..2.0).contains(&scaled), "{x:e} · {f:e} = {scaled:e}");
        } else {
            assert_eq!(*f, 1.0, "{x:e}");
        }
    }
}

#[test]
fn unary_ops_match_reference() {
    for op in UNARY {
        let (lo, hi) = if positive_only(op) { (0.05, 4.0) } else { (-30.0, 30.0) };
        let data = values(1031, lo, hi, 1);
        let (g, c) = pair(&data, &[1031]);
        assert_tensor_close(&format!("{op:?}"), &g.unary(op), &c.unary(op), 2e-6, 1e-6);
    }
}

#[test]
fn unary_grads_match_reference() {
    for op in UNARY {
        let (lo, hi) = if positive_only(op) { (0.05, 4.0) } else { (-8.0, 8.0) };
        let (gx, cx) = pair(&values(517, lo, hi, 2), &[517]);
        let (gg, cg) = pair(&values(517, -1.0, 1.0, 3), &[517]);
        let (gy, cy) = (gx.unary(op), cx.unary(op));
        let got = Tensor::unary_grad(op, &gx, &gy, &gg);
        let want = CpuTensor::unary_grad(op, &cx, &cy, &cg);
        assert_tensor_close(&format!("{op:?}'"), &got, &want, 1e-5, 1e-5);
    }
}

#[test]
fn binary_ops_broadcast_like_reference() {
    let cases: [(&[usize], &[usize]); 5] =
        [(&[7, 33], &[7, 33]), (&[2, 3, 5], &[3, 1]), (&[4, 1], &[1, 5]), (&[2, 3, 4, 5], &[5]), (&[], &[3, 2])];
    for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min, Binary::Ge] {
        for (i, (sa, sb)) in cases.iter().enumerate() {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let (ga, ca) = pair(&values(na, 0.5, 3.0, 10 + i as u64), sa);
            let (gb, cb) = pair(&values(nb, 0.5, 3.0, 20 + i as u64), sb);
            assert_tensor_close(&format!("{op:?} {sa:?} {sb:?}"), &ga.binary(op, &gb), &ca.binary(op, &cb), 1e-6, 1e-6);
        }
    }
}

#[test]
fn mismatched_shapes_are_errors_not_garbage() {
    let (a, _) = pair(&values(6, 0.0, 1.0, 1), &[2, 3]);
    let (b, _) = pair(&values(8, 0.0, 1.0, 1), &[2, 4]);
    let err = a.try_binary(Binary::Add, &b).unwrap_err();
    assert!(err.to_string().contains("[2, 3]") && err.to_string().contains("[2, 4]"), "{err}");
    assert!(a.try_matmul(&b, false, false).is_err());
    assert!(a.try_reshape(&[7]).is_err());
    assert!(Tensor::from_slice(&gpu(), &[1.0, 2.0], &[3]).is_err());
}

#[test]
fn reductions_match_reference() {
    // Shapes exercise the one-thread-per-output path, the workgroup path and the two-pass split.
    // Sums and means whose vec4s line up run as fused kernels (rows, columns, a whole tensor
    // over texture inputs); the others take the reduce kernel.
    let cases: [(&[usize], Option<usize>); 11] = [
        (&[256, 128], Some(0)),
        (&[8, 64, 16], Some(1)),
        (&[70_000], None),
        (&[6, 40], Some(1)),
        (&[300, 7, 11], Some(1)),
        (&[3, 5000], Some(1)),
        (&[5000, 3], Some(0)),
        (&[70_001], None),
        (&[17, 19], Some(0)),
        (&[17, 19], None),
        (&[4, 3, 2], Some(2)),
    ];
    for op in [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::LogSumExp] {
        for (i, (shape, axis)) in cases.iter().enumerate() {
            let n: usize = shape.iter().product();
            let (g, c) = pair(&values(n, -3.0, 3.0, 30 + i as u64), shape);
            for keepdim in [false, true] {
                let what = format!("{op:?} {shape:?} axis {axis:?} keepdim {keepdim}");
                // Sums of many terms in f32 carry ~√n·ε relative error.
                assert_tensor_close(&what, &g.reduce(op, *axis, keepdim), &c.reduce(op, *axis, keepdim), 1e-4, 1e-3);
            }
        }
    }
    // Log-sum-exp stays finite far outside exp's range.
    let (g, c) = pair(&values(999, 200.0, 300.0, 5), &[999]);
    assert_tensor_close(
        "lse large",
        &g.reduce(Reduce::LogSumExp, None, false),
        &c.reduce(Reduce::LogSumExp, None, false),
        1e-6,
        1e-4,
    );
}

#[test]
fn matmul_both_kernels_match_reference() {
    let shapes = [
        (1, 1, 1),
        (7, 13, 5),
        (64, 64, 64),
        (65, 129, 67),
        (130, 31, 257),
        (3, 200, 2),
        (132, 68, 260),
        (4, 8, 12),
        (260, 36, 8),
        // Rows a whole 256-byte texture row: the texture kernel copies these operands as stored.
        (128, 64, 192),
        (256, 128, 2),
        (2, 256, 128),
        (64, 132, 64),
        // Tall and skinny results (the texture kernel computes them as Cᵀ): a toy model's
        // first-layer weight gradient, and odd sizes.
        (64, 1024, 2),
        (13, 50, 5),
        (9, 7, 1),
    ];
    for kernel in [MatmulKernel::Scalar, MatmulKernel::Vec4, MatmulKernel::Tiled, MatmulKernel::Texture] {
        for (i, &(m, k, n)) in shapes.iter().enumerate() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let sa = if ta { [k, m] } else { [m, k] };
                let sb = if tb { [n, k] } else { [k, n] };
                let (ga, ca) = pair(&values(m * k, -1.0, 1.0, 40 + i as u64), &sa);
                let (gb, cb) = pair(&values(k * n, -1.0, 1.0, 50 + i as u64), &sb);
                let got = ga.matmul_using(&gb, ta, tb, kernel).unwrap();
                let what = format!("{kernel:?} {m}x{k}x{n} ta={ta} tb={tb}");
                assert_tensor_close(&what, &got, &ca.matmul(&cb, ta, tb), 1e-4, 1e-4);
            }
        }
        // Batched, and a 2-D right operand shared across the batch.
        let (ga, ca) = pair(&values(3 * 9 * 70, -1.0, 1.0, 60), &[3, 9, 70]);
        let (gb, cb) = pair(&values(3 * 70 * 11, -1.0, 1.0, 61), &[3, 70, 11]);
        let (gw, cw) = pair(&values(70 * 11, -1.0, 1.0, 62), &[70, 11]);
        assert_tensor_close(
            "batched",
            &ga.matmul_using(&gb, false, false, kernel).unwrap(),
            &ca.matmul(&cb, false, false),
            1e-4,
            1e-4,
        );
        assert_tensor_close(
            "shared rhs",
            &ga.matmul_using(&gw, false, false, kernel).unwrap(),
            &ca.matmul(&cw, false, false),
            1e-4,
            1e-4,
        );
        // Batched operands copied as stored, plain and both transposed.
        let (ga, ca) = pair(&values(2 * 64 * 128, -1.0, 1.0, 63), &[2, 64, 128]);
        let (gb, cb) = pair(&values(2 * 128 * 64, -1.0, 1.0, 64), &[2, 128, 64]);
        let got = ga.matmul_using(&gb, false, false, kernel).unwrap();
        assert_tensor_close("batched, copied", &got, &ca.matmul(&cb, false, false), 1e-4, 1e-4);
        let got = gb.matmul_using(&ga, true, true, kernel).unwrap();
        assert_tensor_close("batched, copied, transposed", &got, &cb.matmul(&ca, true, true), 1e-4, 1e-4);
        // Batched results of more than one 128×128 tile each way, K not a multiple of 8.
        let (ga, ca) = pair(&values(2 * 150 * 45, -1.0, 1.0, 65), &[2, 150, 45]);
        let (gb, cb) = pair(&values(2 * 45 * 260, -1.0, 1.0, 66), &[2, 45, 260]);
        let got = ga.matmul_using(&gb, false, false, kernel).unwrap();
        assert_tensor_close("batched, large tiles", &got, &ca.matmul(&cb, false, false), 1e-4, 1e-4);
        // The same with every stored row a multiple of 4 (the tiled kernel's vec4 loads), in
        // all four transposes, with partial tiles each way.
        let (ga, ca) = pair(&values(2 * 132 * 44, -1.0, 1.0, 67), &[2, 132, 44]);
        let (gb, cb) = pair(&values(2 * 44 * 260, -1.0, 1.0, 68), &[2, 44, 260]);
        let (gat, cat) = pair(&values(2 * 132 * 44, -1.0, 1.0, 69), &[2, 44, 132]);
        let (gbt, cbt) = pair(&values(2 * 44 * 260, -1.0, 1.0, 70), &[2, 260, 44]);
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (a, a_ref) = if ta { (&gat, &cat) } else { (&ga, &ca) };
            let (b, b_ref) = if tb { (&gbt, &cbt) } else { (&gb, &cb) };
            let got = a.matmul_using(b, ta, tb, kernel).unwrap();
            let what = format!("{kernel:?} batched, aligned, ta={ta} tb={tb}");
            assert_tensor_close(&what, &got, &a_ref.matmul(b_ref, ta, tb), 1e-4, 1e-4);
        }
    }
}

#[test]
fn layout_ops_match_reference() {
    let (g, c) = pair(&values(2 * 3 * 4 * 5, -1.0, 1.0, 70), &[2, 3, 4, 5]);
    for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 3, 1], [1, 0, 3, 2]] {
        assert_tensor_close(&format!("permute {perm:?}"), &g.permute(&perm), &c.permute(&perm), 0.0, 0.0);
    }
    let (g2, c2) = pair(&values(7 * 9, -1.0, 1.0, 71), &[7, 9]);
    assert_tensor_close("transpose", &g2.permute(&[1, 0]), &c2.permute(&[1, 0]), 0.0, 0.0);
    for (axis, start, len) in [(0, 1, 1), (1, 0, 2), (2, 1, 3), (3, 4, 1)] {
        let (gs, cs) = (g.slice(axis, start, len), c.slice(axis, start, len));
        assert_tensor_close(&format!("slice {axis}"), &gs, &cs, 0.0, 0.0);
        let full = [2, 3, 4, 5];
        assert_tensor_close(
            &format!("unslice {axis}"),
            &gs.unslice(&full, axis, start),
            &cs.unslice(&full, axis, start),
            0.0,
            0.0,
        );
    }
    // The lazy index-map paths: a matrix column, and the second half of the rows (read as the
    // input of one more op, so the expression is also fused into a consumer).
    for (axis, start, len) in [(1, 3, 1), (0, 3, 3), (0, 0, 2)] {
        let (gm, cm) = pair(&values(6 * 9, -1.0, 1.0, 74), &[6, 9]);
        let (gs, cs) = (gm.slice(axis, start, len).scale(2.0), cm.slice(axis, start, len).scale(2.0));
        assert_tensor_close(&format!("matrix slice {axis} {start}"), &gs, &cs, 0.0, 0.0);
        let (gu, cu) = (gs.unslice(&[6, 9], axis, start).scale(0.5), cs.unslice(&[6, 9], axis, start).scale(0.5));
        assert_tensor_close(&format!("matrix unslice {axis} {start}"), &gu, &cu, 0.0, 0.0);
    }
    let (h, d) = pair(&values(2 * 2 * 4 * 5, -1.0, 1.0, 72), &[2, 2, 4, 5]);
    assert_tensor_close("concat", &Tensor::concat(&[&g, &h], 1), &CpuTensor::concat(&[&c, &d], 1), 0.0, 0.0);
    let (b, bc) = pair(&values(3, -1.0, 1.0, 73), &[3, 1]);
    assert_tensor_close("broadcast_to", &b.broadcast_to(&[2, 3, 4]), &bc.broadcast_to(&[2, 3, 4]), 0.0, 0.0);
    let r = g.reshape(&[6, 20]);
    assert_eq!(r.shape(), &[6, 20]);
    assert_eq!(r.to_vec(), g.to_vec());
}

#[test]
fn elementwise_beyond_65535_workgroups() {
    // 65 536 · 256 + 3 elements need a folded 2-D grid.
    let n = 65_536 * 256 + 3;
    let gpu = gpu();
    let x = Tensor::random(&gpu, &[n], Dist::Uniform { lo: -1.0, hi: 1.0 }, 7, 0);
    let y = x.unary(Unary::Affine(2.0, 1.0));
    let (xs, ys) = (x.to_vec(), y.to_vec());
    for i in [0, 1, n / 2, n - 2, n - 1] {
        assert_eq!(ys[i], 2.0 * xs[i] + 1.0, "element {i}");
    }
    let bad = ys.iter().zip(&xs).filter(|(y, x)| **y != 2.0 * **x + 1.0).count();
    assert_eq!(bad, 0);
    let filled = Tensor::full(&gpu, &[n], 3.5).to_vec();
    assert!(filled.iter().all(|&v| v == 3.5));
}

#[test]
fn results_do_not_depend_on_runtime_checks() {
    // Kernels are compiled without wgpu's injected bounds checks; with them the results must be
    // bit-identical, or some kernel reads or writes outside its bindings.
    let checked = resflow::Gpu::with_runtime_checks(None, true).expect("GPU adapter");
    let run = |gpu: &resflow::Gpu| -> Vec<Vec<f32>> {
        let a = Tensor::from_slice(gpu, &values(67 * 45, -1.0, 1.0, 80), &[67, 45]).unwrap();
        let b = Tensor::from_slice(gpu, &values(45 * 33, -1.0, 1.0, 81), &[45, 33]).unwrap();
        let a4 = Tensor::from_slice(gpu, &values(132 * 68, -1.0, 1.0, 82), &[132, 68]).unwrap();
        let b4 = Tensor::from_slice(gpu, &values(68 * 260, -1.0, 1.0, 83), &[68, 260]).unwrap();
        let mut out = Vec::new();
        for kernel in [MatmulKernel::Scalar, MatmulKernel::Vec4, MatmulKernel::Tiled, MatmulKernel::Texture] {
            out.push(a.matmul_using(&b, false, false, kernel).unwrap().to_vec());
            out.push(a4.matmul_using(&b4, false, false, kernel).unwrap().to_vec());
            out.push(a4.matmul_using(&a4, true, false, kernel).unwrap().to_vec());
        }
        out.push(a.unary(Unary::Softplus).to_vec());
        out.push(a.binary(Binary::Mul, &a).to_vec());
        out.push(a.binary(Binary::Add, &a.slice(0, 0, 1)).to_vec());
        out.push(a.reduce(Reduce::LogSumExp, Some(0), false).to_vec());
        out.push(a.reduce(Reduce::Sum, None, false).to_vec());
        out.push(a.permute(&[1, 0]).to_vec());
        out.push(Tensor::random(gpu, &[1001], Dist::Normal { mean: 0.0, std: 1.0 }, 3, 4).to_vec());
        out
    };
    let (fast, safe) = (run(&gpu()), run(&checked));
    for (i, (f, s)) in fast.iter().zip(&safe).enumerate() {
        assert!(f.iter().zip(s).all(|(x, y)| x.to_bits() == y.to_bits()), "output {i} differs with runtime checks");
    }
}

#[test]
fn optimizer_and_power_iteration_kernels_match_reference() {
    use resflow::AdamStep;
    let n = 1027;
    let (p, pc) = pair(&values(n, -1.0, 1.0, 90), &[n]);
    let (g, gc) = pair(&values(n, -1.0, 1.0, 91), &[n]);
    let (m, mc) = pair(&values(n, -0.1, 0.1, 92), &[n]);
    let (v, vc) = pair(&values(n, 0.0, 0.1, 93), &[n]);
    let (clip, clipc) = pair(&[0.7], &[1]);
    let h = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.99, eps: 1e-8 };
    let (p2, m2, v2) = p.adam_step(&g, &m, &v, &clip, h);
    let (pc2, mc2, vc2) = pc.adam_step(&gc, &mc, &vc, &clipc, h);
    assert_tensor_close("adam param", &p2, &pc2, 1e-5, 1e-6);
    assert_tensor_close("adam m", &m2, &mc2, 1e-5, 1e-7);
    assert_tensor_close("adam v", &v2, &vc2, 1e-5, 1e-8);
    assert_tensor_close("lerp", &p.lerp(&g, 0.3), &pc.lerp(&gc, 0.3), 1e-6, 1e-6);

    // Rows of whole vec4s (cols a multiple of 4) take the vec4 kernel, the others the scalar
    // one. Long runs and long matrices too: on lavapipe a kernel invocation's loops together
    // stop after 65 535 iterations, so these must be split across dispatches (a 512×512 matrix
    // at 50 iterations, or 200 at 128×128, exceeds that in one) or fall back to ops (2×40001).
    let shapes = [(5, 3, 7), (64, 64, 7), (3, 64, 5), (300, 17, 7), (128, 128, 200), (512, 512, 50), (2, 40_000, 3)];
    for (rows, cols, iters) in shapes.into_iter().chain([(2, 40_001, 3)]) {
        let (w, wc) = pair(&values(rows * cols, -1.0, 1.0, 94), &[rows, cols]);
        let (u, uc) = pair(&values(rows, -1.0, 1.0, 95), &[rows, 1]);
        let (v, vc) = pair(&values(cols, -1.0, 1.0, 96), &[cols, 1]);
        let (ug, vg) = Tensor::matrix_power_iteration(&w, &u, &v, iters);
        let (ur, vr) = CpuTensor::matrix_power_iteration(&wc, &uc, &vc, iters);
        assert_tensor_close(&format!("power iteration u {rows}x{cols}"), &ug, &ur, 1e-4, 1e-5);
        assert_tensor_close(&format!("power iteration v {rows}x{cols}"), &vg, &vr, 1e-4, 1e-5);
        // The inputs are untouched (the kernel works on copies).
        assert_eq!(u.to_vec(), values(rows, -1.0, 1.0, 95));
    }
}

#[test]
fn texture_staged_elementwise_inputs_match_buffer_inputs_bit_for_bit() {
    use resflow::fusion::ElementwiseInputs;
    use resflow::{ActFn, Activation, Binary};
    // A device of its own, so switching its input mode cannot affect other tests.
    let gpu = resflow::Gpu::new(None).expect("a GPU adapter");
    // Sizes around the flat texture's row (4096 floats) and layer (4 Mi floats) boundaries,
    // and not multiples of 4.
    for n in [5usize, 4097, (1 << 16) + 3, 4 * 1024 * 1024 + 4101] {
        let a = Tensor::from_slice(&gpu, &values(n, -3.0, 3.0, n as u64), &[n]).unwrap();
        let b = Tensor::from_slice(&gpu, &values(n, 0.5, 2.0, n as u64 + 1), &[n]).unwrap();
        let beta = Tensor::from_slice(&gpu, &[0.7], &[1]).unwrap();
        let run = |mode| {
            resflow::testing::set_elementwise_inputs(&gpu, mode);
            let y = a.unary(Unary::Softplus);
            let outs = [
                y.clone(),
                a.binary(Binary::Div, &b),
                Tensor::unary_grad(Unary::Softplus, &a, &y, &b),
                a.activation(Activation::LipSwish, ActFn::D1, Some(&beta), Some(&b)),
            ];
            outs.iter().map(|t| t.to_vec()).collect::<Vec<_>>()
        };
        let buffers = run(ElementwiseInputs::Buffers);
        for mode in [ElementwiseInputs::Textures, ElementwiseInputs::BuffersAndUniforms] {
            for (k, (x, y)) in buffers.iter().zip(&run(mode)).enumerate() {
                let same = x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "n = {n}, op {k}: {mode:?} inputs differ from buffer inputs");
            }
        }
    }
    resflow::testing::set_elementwise_inputs(&gpu, ElementwiseInputs::Auto);
}

/// The choices made by adapter type follow the profile (`RESFLOW_PROFILE`, else the adapter),
/// so running this file under `RESFLOW_PROFILE=gpu` really runs the GPU path.
#[test]
fn policies_follow_the_profile() {
    use resflow::fusion::{elementwise_inputs_for, packed_stores, ElementwiseInputs, TEXTURE_INPUTS_FROM};
    use resflow::options::{Profile, RuntimeOptions};
    let gpu = gpu();
    let o = RuntimeOptions::get();
    let want = o.profile.unwrap_or(if gpu.is_cpu() { Profile::Cpu } else { Profile::Gpu });
    assert_eq!(gpu.profile(), want);
    if o.matmul.is_none() {
        let kernel = resflow::MatmulKernel::default_for(&gpu);
        let expected = if want == Profile::Gpu { resflow::MatmulKernel::Tiled } else { resflow::MatmulKernel::Texture };
        assert_eq!(kernel, expected);
    }
    if want == Profile::Gpu {
        if o.elementwise == ElementwiseInputs::Auto {
            assert_eq!(elementwise_inputs_for(&gpu, TEXTURE_INPUTS_FROM * 4), ElementwiseInputs::Buffers);
        }
        assert!(!packed_stores(&gpu), "GPUs store vec4s natively");
    }
}

/// Both tile sizes of the tiled GEMMs, whichever the device's probe chose: matmuls of at least
/// 128×128 (vec4 and scalar loads, every transpose, batched) and convolutions and their VJPs
/// with a 130-row result.
#[test]
fn both_tile_sizes_match_reference() {
    use resflow::Tiles;
    for tiles in [Tiles::Small, Tiles::Large] {
        for (i, &(m, k, n)) in [(132usize, 44usize, 136usize), (130, 45, 129)].iter().enumerate() {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let sa = if ta { [2, k, m] } else { [2, m, k] };
                let sb = if tb { [n, k] } else { [k, n] };
                let (ga, ca) = pair(&values(2 * m * k, -1.0, 1.0, 80 + i as u64), &sa);
                let (gb, cb) = pair(&values(k * n, -1.0, 1.0, 90 + i as u64), &sb);
                let got = ga.matmul_with_tiles(&gb, ta, tb, tiles).unwrap();
                let what = format!("{tiles:?} {m}x{k}x{n} ta={ta} tb={tb}");
                assert_tensor_close(&what, &got, &ca.matmul(&cb, ta, tb), 1e-4, 1e-4);
            }
        }
        let (xs, ws, us) = ([2, 16, 12, 12], [130, 16, 3, 3], [2, 130, 12, 12]);
        let (gx, cx) = pair(&values(2 * 16 * 144, -1.0, 1.0, 95), &xs);
        let (gw, cw) = pair(&values(130 * 16 * 9, -1.0, 1.0, 96), &ws);
        let (gu, cu) = pair(&values(2 * 130 * 144, -1.0, 1.0, 97), &us);
        let what = format!("{tiles:?} conv2d");
        assert_tensor_close(&what, &gx.conv2d_with_tiles(&gw, tiles).unwrap(), &cx.conv2d(&cw), 1e-4, 1e-4);
        let what = format!("{tiles:?} conv_transpose2d");
        assert_tensor_close(&what, &gu.conv_transpose2d_with_tiles(&gw, tiles), &cu.conv_transpose2d(&cw), 1e-4, 1e-4);
        let what = format!("{tiles:?} grad_weight");
        let got = gx.conv2d_grad_weight_with_tiles(&gu, 3, tiles);
        assert_tensor_close(&what, &got, &cx.conv2d_grad_weight(&cu, 3), 1e-4, 1e-3);
    }
}

/// The tile probe on a fresh device (its kernels not yet compiled) finishes within a second;
/// its result is cached and read back; a corrupt cache file or an unusable cache directory
/// means probing again, without a panic or a stray file.
#[test]
fn tile_probe_is_bounded_and_cached() {
    use resflow::options::TileProbe;
    use resflow::tensor::tile_config::{cache_key, choose};
    use resflow::TileSource;
    let dir = std::env::temp_dir().join(format!("resflow-tile-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fresh = resflow::Gpu::new(None).expect("a second device on the adapter");
    let start = std::time::Instant::now();
    let probed = choose(&fresh, Some(&dir), TileProbe::Auto);
    let cold = start.elapsed();
    assert!(cold < std::time::Duration::from_secs(1), "cold probe took {cold:?}");
    assert!(matches!(probed.source, TileSource::Probed { .. }), "{probed:?}");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one cache file and no temporary: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(text.contains(&cache_key(&fresh)), "{text}");

    let cached = choose(&fresh, Some(&dir), TileProbe::Auto);
    assert_eq!(cached.config, probed.config);
    assert_eq!(cached.source, TileSource::Cached(files[0].clone()));
    assert!(matches!(choose(&fresh, Some(&dir), TileProbe::Force).source, TileSource::Probed { .. }));
    assert_eq!(choose(&fresh, Some(&dir), TileProbe::Off).source, TileSource::Off);

    for corrupt in ["", "resflow tile configs v1\nkey=", "\u{0}\u{ff}garbage\n", &text.replace("matmul=", "matmul=9")] {
        std::fs::write(&files[0], corrupt).unwrap();
        let again = choose(&fresh, Some(&dir), TileProbe::Auto);
        assert!(matches!(again.source, TileSource::Probed { .. }), "{corrupt:?}: {again:?}");
        assert!(matches!(choose(&fresh, Some(&dir), TileProbe::Auto).source, TileSource::Cached(_)), "rewritten");
    }

    // A cache "directory" that is a file: nothing can be written under it.
    let blocked = dir.join("not-a-directory");
    std::fs::write(&blocked, "x").unwrap();
    let choice = choose(&fresh, Some(&blocked.join("resflow")), TileProbe::Auto);
    assert!(matches!(choice.source, TileSource::Probed { .. }));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "nothing but the cache file and the blocker");
    std::fs::remove_dir_all(&dir).unwrap();
}
