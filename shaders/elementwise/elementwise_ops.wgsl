// The elementwise op library of the fused kernels (src/fusion/): every unary op, its
// derivative, every binary op and the activations with their derivatives, on vec4s. A
// generated kernel calls these with literal op codes, so after inlining the driver's compiler
// folds each switch to one case. The UNARY_*, BINARY_*, ACT_* and ACT_FN_* constants are
// generated from the tables of src/ops/mod.rs and src/activation.rs and precede this file.

// Where texel t of a flat texture copy (Gpu::stage_flat) sits: (t mod 1024, t / 1024 mod 1024)
// of layer t / 1024². (Coordinates, not loads: a storage texture can't be a function
// parameter in every back-end, so the generated kernels call textureLoad themselves.)
fn flat_xy(t: u32) -> vec2<u32> {
    return vec2<u32>(t % 1024u, (t / 1024u) % 1024u);
}

fn flat_layer(t: u32) -> u32 {
    return t / 1048576u;
}

// Whether elements e0 .. e0 + 3 have their index along an axis, (e / inner) % len, in lo..hi.
fn within(e0: u32, inner: u32, len: u32, lo: u32, hi: u32) -> vec4<bool> {
    let a = ((vec4<u32>(e0) + vec4<u32>(0u, 1u, 2u, 3u)) / inner) % len;
    return (a >= vec4<u32>(lo)) & (a < vec4<u32>(hi));
}

fn sigmoid(v: vec4<f32>) -> vec4<f32> {
    // Two branches keep exp's argument non-positive: no overflow for large |v|.
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4<f32>(0.0));
}

// y = f(v); `a` and `b` are the op's parameters (Affine, SignedPow), 0 for the others.
fn unary_op(op: u32, v: vec4<f32>, a: f32, b: f32) -> vec4<f32> {
    switch op {
        case UNARY_NEG: { return -v; }
        case UNARY_EXP: { return exp(v); }
        case UNARY_LOG: { return log(v); }
        case UNARY_SIGMOID: { return sigmoid(v); }
        case UNARY_SOFTPLUS: { return max(v, vec4<f32>(0.0)) + log(1.0 + exp(-abs(v))); }
        case UNARY_TANH: {
            let t = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - t) / (1.0 + t);
        }
        case UNARY_RELU: { return max(v, vec4<f32>(0.0)); }
        case UNARY_SQUARE: { return v * v; }
        case UNARY_SQRT: { return sqrt(v); }
        case UNARY_RECIP: { return vec4<f32>(1.0) / v; }
        case UNARY_AFFINE: { return a * v + b; }
        case UNARY_SILU: { return v * sigmoid(v); }
        case UNARY_ABS: { return abs(v); }
        case UNARY_SIGNED_POW: { return sign(v) * pow(abs(v), vec4<f32>(a)); }
        case UNARY_UNIT_SCALE: {
            // Biased exponent e of |v|; 2^(127 − e) is the power of two whose bits are
            // (254 − e) << 23. Only normal |v| < 1 (e in 1..=126) is scaled.
            let e = (bitcast<vec4<u32>>(abs(v)) >> vec4<u32>(23u)) & vec4<u32>(0xffu);
            let up = bitcast<vec4<f32>>((vec4<u32>(254u) - e) << vec4<u32>(23u));
            return select(vec4<f32>(1.0), up, (e >= vec4<u32>(1u)) & (e <= vec4<u32>(126u)));
        }
        default: { return v; }
    }
}

// f'(v) given v and y = f(v).
fn unary_derivative(op: u32, v: vec4<f32>, y: vec4<f32>, a: f32) -> vec4<f32> {
    switch op {
        case UNARY_NEG: { return vec4<f32>(-1.0); }
        case UNARY_EXP: { return y; }
        case UNARY_LOG: { return vec4<f32>(1.0) / v; }
        case UNARY_SIGMOID: { return y * (vec4<f32>(1.0) - y); }
        case UNARY_SOFTPLUS: { return sigmoid(v); }
        case UNARY_TANH: { return vec4<f32>(1.0) - y * y; }
        case UNARY_RELU: { return select(vec4<f32>(0.0), vec4<f32>(1.0), v > vec4<f32>(0.0)); }
        case UNARY_SQUARE: { return 2.0 * v; }
        case UNARY_SQRT: { return vec4<f32>(0.5) / y; }
        case UNARY_RECIP: { return -y * y; }
        case UNARY_AFFINE: { return vec4<f32>(a); }
        case UNARY_SILU: {
            let s = sigmoid(v);
            return s + v * s * (vec4<f32>(1.0) - s);
        }
        case UNARY_ABS: { return sign(v); }
        case UNARY_SIGNED_POW: { return a * pow(abs(v), vec4<f32>(a - 1.0)); }
        case UNARY_UNIT_SCALE: { return vec4<f32>(0.0); }
        default: { return vec4<f32>(1.0); }
    }
}

// u ∘ v; BINARY_LERP is the interpolation u + a·(v − u) (weight EMAs).
fn binary_op(op: u32, u: vec4<f32>, v: vec4<f32>, a: f32) -> vec4<f32> {
    switch op {
        case BINARY_ADD: { return u + v; }
        case BINARY_SUB: { return u - v; }
        case BINARY_MUL: { return u * v; }
        case BINARY_DIV: { return u / v; }
        case BINARY_MAX: { return max(u, v); }
        case BINARY_MIN: { return min(u, v); }
        case BINARY_GE: { return select(vec4<f32>(0.0), vec4<f32>(1.0), u >= v); }
        case BINARY_LERP: { return u + a * (v - u); }
        default: { return u; }
    }
}

// σ(z)(1 - σ(z)) = e^{-|z|} / (1 + e^{-|z|})², free of the cancellation in 1 - σ(z) for large z.
fn sigmoid_slope(z: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(z));
    return e / ((1.0 + e) * (1.0 + e));
}

// LipSwish φ(x) = x·σ(βx)/1.1 and, by `which`, φ', φ'', ∂φ/∂β, ∂φ'/∂β (docs/DESIGN.md §2).
fn lipswish(v: vec4<f32>, b: f32, which: u32) -> vec4<f32> {
    let s = sigmoid(b * v);
    let ds = sigmoid_slope(b * v);
    switch which {
        case ACT_FN_VALUE: { return v * s / 1.1; }
        case ACT_FN_D1: { return (s + b * v * ds) / 1.1; }
        case ACT_FN_D2: { return b * ds * (2.0 + b * v * (1.0 - 2.0 * s)) / 1.1; }
        case ACT_FN_DBETA: { return v * v * ds / 1.1; }
        default: { return v * ds * (2.0 + b * v * (1.0 - 2.0 * s)) / 1.1; }
    }
}

// ELU (α = 1): value, φ', φ''.
fn elu(v: vec4<f32>, which: u32) -> vec4<f32> {
    let pos = v > vec4<f32>(0.0);
    let e = exp(min(v, vec4<f32>(0.0)));
    switch which {
        case ACT_FN_VALUE: { return select(e - 1.0, v, pos); }
        case ACT_FN_D1: { return select(e, vec4<f32>(1.0), pos); }
        case ACT_FN_D2: { return select(e, vec4<f32>(0.0), pos); }
        default: { return vec4<f32>(0.0); }
    }
}

// softplus: value, φ', φ''.
fn softplus(v: vec4<f32>, which: u32) -> vec4<f32> {
    switch which {
        case ACT_FN_VALUE: { return max(v, vec4<f32>(0.0)) + log(1.0 + exp(-abs(v))); }
        case ACT_FN_D1: { return sigmoid(v); }
        case ACT_FN_D2: { return sigmoid_slope(v); }
        default: { return vec4<f32>(0.0); }
    }
}

// Activation `act` (0 LipSwish with β = b, 1 ELU, 2 softplus), piece `which`.
fn activation_op(act: u32, which: u32, v: vec4<f32>, b: f32) -> vec4<f32> {
    switch act {
        case ACT_LIPSWISH: { return lipswish(v, b, which); }
        case ACT_ELU: { return elu(v, which); }
        default: { return softplus(v, which); }
    }
}
