// Elementwise binary ops on same-shape inputs, on vec4s (see unary.wgsl; completed by
// shaders/io/*2.wgsl). Broadcasting inputs take broadcast.wgsl. OP 7 is the interpolation
// u + a·(v − u) (weight EMAs).

struct Params { n: u32, a: f32, b: f32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;

override OP: u32 = 0u;

fn apply2(u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
    switch OP {
        case 0u: { return u + v; }
        case 1u: { return u - v; }
        case 2u: { return u * v; }
        case 3u: { return u / v; }
        case 4u: { return max(u, v); }
        case 5u: { return min(u, v); }
        case 6u: { return select(vec4<f32>(0.0), vec4<f32>(1.0), u >= v); }
        case 7u: { return u + p.a * (v - u); }
        default: { return u; }
    }
}
