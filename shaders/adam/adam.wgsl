// One Adam step for one parameter tensor, four elements per invocation:
//   g ← clip · g,  m ← β₁m + (1−β₁)g,  v ← β₂v + (1−β₂)g²,  p ← p − lr_t · m / (√v + ε̂)
// with lr_t and ε̂ carrying the bias corrections (host side). `clip` is a one-element tensor
// computed on the device (gradient-norm clipping without a readback).

struct Params { n: u32, lr: f32, beta1: f32, beta2: f32, eps: f32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> hp: Params;
@group(0) @binding(1) var<storage, read> param: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> m_in: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> v_in: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> clip: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> param_out: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read_write> m_out: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read_write> v_out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i * 4u >= hp.n {
        return;
    }
    let g = grad[i] * clip[0].x;
    let m = hp.beta1 * m_in[i] + (1.0 - hp.beta1) * g;
    let v = hp.beta2 * v_in[i] + (1.0 - hp.beta2) * g * g;
    m_out[i] = m;
    v_out[i] = v;
    param_out[i] = param[i] - hp.lr * m / (sqrt(v) + hp.eps);
}
