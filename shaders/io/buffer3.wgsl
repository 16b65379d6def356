// Input/output harness of elementwise kernels: 3 storage-buffer input(s), one vec4 output
// per invocation; indices fold a 2-D grid for more than 65 535 workgroups. The last vec4 may
// run past n into the buffer's padding, which is harmless: pooled buffers are whole vec4s.

@group(0) @binding(1) var<storage, read> in0: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> in1: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> in2: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i * 4u < p.n {
        out[i] = apply3(in0[i], in1[i], in2[i]);
    }
}
