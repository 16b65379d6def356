//! Convolutions, squeeze and activations: GPU against the f64 reference on odd shapes, and the
//! LipSwish derivative pieces against finite differences.

mod common;

use common::{assert_tensor_close, pair, values};
use resflow::{ActFn, Activation, ConvKernel, TensorOps};

/// Both kernels run on every adapter, whichever the profile picks by default.
const KERNELS: [ConvKernel; 2] = [ConvKernel::Texture, ConvKernel::Tiled];

/// (input shape, weight shape): odd channel counts and sizes, kernels 1/3/5, more output
/// channels than one 64-row tile, pixel counts that are not multiples of the 8-pixel block, and
/// a batch whose staged textures exceed the 8 MiB budget, so it runs in several passes. Then
/// the image models' layers (3→64 and 64→64 3×3, 1×1 at a coarse scale), a result of 128×128
/// tiles each way, and a weight gradient whose pixel splits end inside an image.
const CASES: [([usize; 4], [usize; 4]); 13] = [
    ([5, 512, 32, 32], [2, 512, 3, 3]),
    ([2, 3, 5, 7], [5, 3, 3, 3]),
    ([1, 1, 4, 4], [1, 1, 1, 1]),
    ([3, 6, 6, 5], [7, 6, 5, 5]),
    ([2, 13, 9, 9], [9, 13, 3, 3]),
    ([1, 20, 3, 3], [70, 20, 1, 1]),
    ([2, 4, 17, 19], [3, 4, 3, 3]),
    ([1, 3, 32, 32], [17, 3, 3, 3]),
    ([2, 3, 16, 16], [64, 3, 3, 3]),
    ([2, 64, 14, 14], [64, 64, 3, 3]),
    ([3, 64, 7, 7], [12, 64, 1, 1]),
    ([2, 16, 12, 12], [130, 16, 3, 3]),
    ([3, 3, 20, 21], [5, 3, 3, 3]),
];

fn sizes(s: &[usize]) -> usize {
    s.iter().product()
}

#[test]
fn conv2d_matches_reference() {
    for (i, (xs, ws)) in CASES.iter().enumerate() {
        let (gx, cx) = pair(&values(sizes(xs), -1.0, 1.0, 200 + i as u64), xs);
        let (gw, cw) = pair(&values(sizes(ws), -1.0, 1.0, 300 + i as u64), ws);
        let want = cx.conv2d(&cw);
        for kernel in KERNELS {
            let what = format!("{kernel:?} conv2d {xs:?} * {ws:?}");
            assert_tensor_close(&what, &gx.conv2d_using(&gw, kernel).unwrap(), &want, 1e-4, 1e-4);
        }
    }
}

#[test]
fn conv_transpose2d_matches_reference() {
    for (i, (xs, ws)) in CASES.iter().enumerate() {
        let us = [xs[0], ws[0], xs[2], xs[3]];
        let (gu, cu) = pair(&values(sizes(&us), -1.0, 1.0, 400 + i as u64), &us);
        let (gw, cw) = pair(&values(sizes(ws), -1.0, 1.0, 500 + i as u64), ws);
        let want = cu.conv_transpose2d(&cw);
        for kernel in KERNELS {
            let what = format!("{kernel:?} conv_transpose2d {us:?} * {ws:?}");
            assert_tensor_close(&what, &gu.conv_transpose2d_using(&gw, kernel), &want, 1e-4, 1e-4);
        }
    }
}

#[test]
fn conv2d_grad_weight_matches_reference() {
    for (i, (xs, ws)) in CASES.iter().enumerate() {
        let gs = [xs[0], ws[0], xs[2], xs[3]];
        let (gx, cx) = pair(&values(sizes(xs), -1.0, 1.0, 600 + i as u64), xs);
        let (gg, cg) = pair(&values(sizes(&gs), -1.0, 1.0, 700 + i as u64), &gs);
        let want = cx.conv2d_grad_weight(&cg, ws[2]);
        for kernel in KERNELS {
            let what = format!("{kernel:?} grad_weight {xs:?} -> {ws:?}");
            // Sums over all pixels: f32 error grows like √(pixels)·ε.
            assert_tensor_close(&what, &gx.conv2d_grad_weight_using(&gg, ws[2], kernel), &want, 1e-4, 1e-3);
        }
    }
}

#[test]
fn the_default_convolution_follows_the_profile() {
    use resflow::options::{Profile, RuntimeOptions};
    let gpu = common::gpu();
    if RuntimeOptions::get().conv.is_none() {
        let want = if gpu.profile() == Profile::Gpu { ConvKernel::Tiled } else { ConvKernel::Texture };
        assert_eq!(ConvKernel::default_for(&gpu), want);
    }
}

#[test]
fn conv_adjoint_identity_holds() {
    // ⟨conv(x), u⟩ = ⟨x, convᵀ(u)⟩ on the GPU: the two kernels are each other's adjoint.
    let (xs, ws) = ([2, 5, 7, 6], [4, 5, 3, 3]);
    let us = [2, 4, 7, 6];
    let (gx, _) = pair(&values(sizes(&xs), -1.0, 1.0, 1), &xs);
    let (gw, _) = pair(&values(sizes(&ws), -1.0, 1.0, 2), &ws);
    let (gu, _) = pair(&values(sizes(&us), -1.0, 1.0, 3), &us);
    for kernel in KERNELS {
        let lhs = gx.conv2d_using(&gw, kernel).unwrap().mul(&gu).sum_all().item() as f64;
        let rhs = gx.mul(&gu.conv_transpose2d_using(&gw, kernel)).sum_all().item() as f64;
        assert!((lhs - rhs).abs() < 1e-4 * (1.0 + lhs.abs()), "{kernel:?}: {lhs} vs {rhs}");
    }
}

#[test]
fn shape_errors_are_reported() {
    let (x, _) = pair(&values(2 * 3 * 4 * 4, -1.0, 1.0, 1), &[2, 3, 4, 4]);
    let (w, _) = pair(&values(5 * 2 * 3 * 3, -1.0, 1.0, 1), &[5, 2, 3, 3]);
    let err = x.try_conv2d(&w).unwrap_err().to_string();
    assert!(err.contains("input channels"), "{err}");
    let (w2, _) = pair(&values(5 * 3 * 2 * 2, -1.0, 1.0, 1), &[5, 3, 2, 2]);
    assert!(x.try_conv2d(&w2).unwrap_err().to_string().contains("odd"));
}

#[test]
fn squeeze_matches_reference_and_round_trips() {
    let shape = [2, 3, 6, 10];
    let (g, c) = pair(&values(sizes(&shape), -1.0, 1.0, 9), &shape);
    let sg = g.squeeze2();
    assert_tensor_close("squeeze", &sg, &c.squeeze2(), 0.0, 0.0);
    assert_eq!(sg.shape(), &[2, 12, 3, 5]);
    assert_tensor_close("unsqueeze", &sg.unsqueeze2(), &c, 0.0, 0.0);
    // Channel 4c + 2i + j holds pixel (2h + i, 2w + j) of channel c.
    let v = sg.to_vec();
    let x = g.to_vec();
    let (c_, i, j, h, w) = (2, 1, 0, 2, 3);
    assert_eq!(v[((4 * c_ + 2 * i + j) * 3 + h) * 5 + w], x[((c_ * 6) + 2 * h + i) * 10 + 2 * w + j]);
}

#[test]
fn activations_match_reference() {
    let (gx, cx) = pair(&values(1029, -12.0, 12.0, 11), &[1029]);
    let (gb, cb) = pair(&[0.974], &[1]);
    let (gg, cg) = pair(&values(1029, -1.0, 1.0, 12), &[1029]);
    for act in [Activation::LipSwish, Activation::Elu, Activation::Softplus] {
        for f in [ActFn::Value, ActFn::D1, ActFn::D2, ActFn::DBeta, ActFn::D1Beta] {
            let (b, bc) = if act.has_beta() { (Some(&gb), Some(&cb)) } else { (None, None) };
            let what = format!("{act:?} {f:?}");
            assert_tensor_close(&what, &gx.activation(act, f, b, None), &cx.activation(act, f, bc, None), 1e-5, 1e-6);
            let got = gx.activation(act, f, b, Some(&gg));
            assert_tensor_close(&format!("{what} · gy"), &got, &cx.activation(act, f, bc, Some(&cg)), 1e-5, 1e-6);
        }
    }
}

#[test]
fn lipswish_slope_is_below_one_for_every_beta() {
    for beta_raw in [-3.0f64, -1.0, 0.0, 0.5, 1.0, 2.0, 5.0] {
        let beta = (1.0 + beta_raw.exp()).ln();
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for i in 0..=200_000 {
            let x = -50.0 / beta + 100.0 / beta * i as f64 / 200_000.0;
            let d = Activation::LipSwish.eval(ActFn::D1, x, beta);
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(hi < 1.0, "β={beta}: max φ' = {hi}");
        assert!((hi - 0.99985).abs() < 1e-4 && (lo + 0.0913).abs() < 1e-3, "β={beta}: φ' in [{lo}, {hi}]");
    }
}

#[test]
fn lipswish_pieces_match_finite_differences() {
    let act = Activation::LipSwish;
    let h = 1e-6;
    for &beta in &[0.3, 0.974, 2.5] {
        for i in 0..41 {
            let x = -6.0 + 0.3 * i as f64;
            let e = |f, x, b| act.eval(f, x, b);
            let checks = [
                (
                    "φ'",
                    e(ActFn::D1, x, beta),
                    (e(ActFn::Value, x + h, beta) - e(ActFn::Value, x - h, beta)) / (2.0 * h),
                ),
                ("φ''", e(ActFn::D2, x, beta), (e(ActFn::D1, x + h, beta) - e(ActFn::D1, x - h, beta)) / (2.0 * h)),
                (
                    "∂φ/∂β",
                    e(ActFn::DBeta, x, beta),
                    (e(ActFn::Value, x, beta + h) - e(ActFn::Value, x, beta - h)) / (2.0 * h),
                ),
                (
                    "∂φ'/∂β",
                    e(ActFn::D1Beta, x, beta),
                    (e(ActFn::D1, x, beta + h) - e(ActFn::D1, x, beta - h)) / (2.0 * h),
                ),
            ];
            for (name, got, fd) in checks {
                assert!((got - fd).abs() < 1e-7 * (1.0 + fd.abs()), "{name} at x={x} β={beta}: {got} vs {fd}");
            }
            // ∂φ'/∂β = (x/β)·φ'' (DESIGN.md).
            if x != 0.0 {
                let rel = e(ActFn::D1Beta, x, beta) - x / beta * e(ActFn::D2, x, beta);
                assert!(rel.abs() < 1e-12);
            }
        }
    }
}
