// VJP of the unary ops: gx = gy * f'(x), using the saved input x and output y; four elements
// per invocation as in unary.wgsl.

struct Params { n: u32, a: f32, b: f32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;

override OP: u32 = 0u;

fn sigmoid(v: vec4<f32>) -> vec4<f32> {
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4<f32>(0.0));
}

fn derivative(v: vec4<f32>, out: vec4<f32>) -> vec4<f32> {
    switch OP {
        case 0u: { return vec4<f32>(-1.0); }
        case 1u: { return out; }
        case 2u: { return vec4<f32>(1.0) / v; }
        case 3u: { return out * (vec4<f32>(1.0) - out); }
        case 4u: { return sigmoid(v); }
        case 5u: { return vec4<f32>(1.0) - out * out; }
        case 6u: { return select(vec4<f32>(0.0), vec4<f32>(1.0), v > vec4<f32>(0.0)); }
        case 7u: { return 2.0 * v; }
        case 8u: { return vec4<f32>(0.5) / out; }
        case 9u: { return -out * out; }
        case 10u: { return vec4<f32>(p.a); }
        case 11u: {
            let s = sigmoid(v);
            return s + v * s * (vec4<f32>(1.0) - s);
        }
        case 12u: { return sign(v); }
        case 13u: { return p.a * pow(abs(v), vec4<f32>(p.a - 1.0)); }
        default: { return vec4<f32>(1.0); }
    }
}

// gx = gy · f'(x) given x, y = f(x) and gy.
fn apply3(x: vec4<f32>, y: vec4<f32>, gy: vec4<f32>) -> vec4<f32> {
    return gy * derivative(x, y);
}
