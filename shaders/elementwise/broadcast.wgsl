// Elementwise binary ops with broadcasting over up to 4 dimensions: the output shape is
// `shape`, and each input is read through strides that are 0 along its broadcast axes. The
// broadcasts that vec4 indexing can express run as fused kernels instead (src/fusion.rs); this
// file follows the op library (elementwise_ops.wgsl) and uses its binary_op.

struct Params {
    n: u32, pad0: u32, pad1: u32, pad2: u32,
    shape: vec4<u32>,
    sa: vec4<u32>,
    sb: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

override OP: u32 = 0u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n {
        return;
    }
    let i3 = i % p.shape.w;
    let r2 = i / p.shape.w;
    let i2 = r2 % p.shape.z;
    let r1 = r2 / p.shape.z;
    let i1 = r1 % p.shape.y;
    let i0 = r1 / p.shape.y;
    let idx = vec4<u32>(i0, i1, i2, i3);
    y[i] = binary_op(OP, vec4<f32>(a[dot(idx, p.sa)]), vec4<f32>(b[dot(idx, p.sb)]), 0.0).x;
}
