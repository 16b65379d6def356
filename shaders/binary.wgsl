// Elementwise binary ops on same-shape inputs, four elements per invocation (see unary.wgsl
// for why vec4, and why the padding of the last vec4 is harmless). Broadcasting inputs take
// broadcast.wgsl. OP 7 is the interpolation u + a·(v − u) (weight EMAs).

struct Params { n: u32, a: f32, b: f32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>;

override OP: u32 = 0u;

fn apply(u: vec4<f32>, v: vec4<f32>) -> vec4<f32> {
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

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i * 4u < p.n {
        y[i] = apply(a[i], b[i]);
    }
}
