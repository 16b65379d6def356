// Elementwise unary ops y = f(x) on vec4s (CPU drivers pay per load instruction, GPUs like
// 16-byte accesses). OP is an override constant, so each op is its own pipeline with the switch
// folded away. The file is completed by an input/output harness (shaders/io/*1.wgsl): inputs
// from storage buffers, or from a flat texture copy on CPU adapters.

struct Params { n: u32, a: f32, b: f32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;

override OP: u32 = 0u;

fn sigmoid(v: vec4<f32>) -> vec4<f32> {
    // Two branches keep exp's argument non-positive: no overflow for large |v|.
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4<f32>(0.0));
}

fn apply1(v: vec4<f32>) -> vec4<f32> {
    switch OP {
        case 0u: { return -v; }
        case 1u: { return exp(v); }
        case 2u: { return log(v); }
        case 3u: { return sigmoid(v); }
        case 4u: { return max(v, vec4<f32>(0.0)) + log(1.0 + exp(-abs(v))); }
        case 5u: {
            let t = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - t) / (1.0 + t);
        }
        case 6u: { return max(v, vec4<f32>(0.0)); }
        case 7u: { return v * v; }
        case 8u: { return sqrt(v); }
        case 9u: { return vec4<f32>(1.0) / v; }
        case 10u: { return p.a * v + p.b; }
        case 11u: { return v * sigmoid(v); }
        case 12u: { return abs(v); }
        case 13u: { return sign(v) * pow(abs(v), vec4<f32>(p.a)); }
        default: { return v; }
    }
}
