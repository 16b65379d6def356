// Activations and their derivatives as fused kernels, four elements per invocation:
//   out = [gy ·] F(x; β)
// with F chosen by WHICH: 0 the value φ, 1 φ', 2 φ'', 3 ∂φ/∂β, 4 ∂φ'/∂β (DESIGN.md §2), and
// ACT: 0 LipSwish φ(x) = x·σ(βx)/1.1, 1 ELU (α = 1), 2 softplus. β is read from a one-element
// buffer (LipSwish only); gy multiplies when HAS_GY (the VJPs), which saves a pass.

struct Params { n: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
// After the harness's two inputs (x, gy) and its output: β as a one-element buffer.
@group(0) @binding(4) var<storage, read> beta: array<vec4<f32>>;

override ACT: u32 = 0u;
override WHICH: u32 = 0u;
override HAS_GY: bool = false;

fn sigmoid(v: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4<f32>(0.0));
}

// σ(z)(1 - σ(z)) = e^{-|z|} / (1 + e^{-|z|})², free of the cancellation in 1 - σ(z) for large z.
fn sigmoid_slope(z: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(z));
    return e / ((1.0 + e) * (1.0 + e));
}

fn lipswish(v: vec4<f32>, b: f32) -> vec4<f32> {
    let s = sigmoid(b * v);
    let ds = sigmoid_slope(b * v);
    switch WHICH {
        case 0u: { return v * s / 1.1; }
        case 1u: { return (s + b * v * ds) / 1.1; }
        case 2u: { return b * ds * (2.0 + b * v * (1.0 - 2.0 * s)) / 1.1; }
        case 3u: { return v * v * ds / 1.1; }
        default: { return v * ds * (2.0 + b * v * (1.0 - 2.0 * s)) / 1.1; }
    }
}

fn elu(v: vec4<f32>) -> vec4<f32> {
    let pos = v > vec4<f32>(0.0);
    let e = exp(min(v, vec4<f32>(0.0)));
    switch WHICH {
        case 0u: { return select(e - 1.0, v, pos); }
        case 1u: { return select(e, vec4<f32>(1.0), pos); }
        case 2u: { return select(e, vec4<f32>(0.0), pos); }
        default: { return vec4<f32>(0.0); }
    }
}

fn softplus(v: vec4<f32>) -> vec4<f32> {
    let s = sigmoid(v);
    switch WHICH {
        case 0u: { return max(v, vec4<f32>(0.0)) + log(1.0 + exp(-abs(v))); }
        case 1u: { return s; }
        case 2u: { return sigmoid_slope(v); }
        default: { return vec4<f32>(0.0); }
    }
}

// [gy ·] F(x; β); gy is bound to x when HAS_GY is off.
fn apply2(x: vec4<f32>, gy: vec4<f32>) -> vec4<f32> {
    var f: vec4<f32>;
    switch ACT {
        case 0u: { f = lipswish(x, beta[0].x); }
        case 1u: { f = elu(x); }
        default: { f = softplus(x); }
    }
    if HAS_GY {
        f = f * gy;
    }
    return f;
}
