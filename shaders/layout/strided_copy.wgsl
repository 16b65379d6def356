// dst[dst_offset + idx·dst_strides] = src[src_offset + idx·src_strides] over a 4-D index box
// `shape`: one kernel serves permute, slice, concat and the VJPs of all three.

struct Params {
    n: u32, src_offset: u32, dst_offset: u32, pad: u32,
    shape: vec4<u32>,
    src_strides: vec4<u32>,
    dst_strides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

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
    dst[p.dst_offset + dot(idx, p.dst_strides)] = src[p.src_offset + dot(idx, p.src_strides)];
}
