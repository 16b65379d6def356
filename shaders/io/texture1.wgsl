// Input/output harness of elementwise kernels: 1 input(s) read with textureLoad from flat
// texture copies (texel t at (t mod 1024, (t / 1024) mod 1024, layer t / 1024²), written by
// Gpu::stage_flat), one vec4 output per invocation. On CPU adapters a texture load is a
// vectorised gather while a storage-buffer load is a per-lane loop.

@group(0) @binding(1) var in0: texture_2d_array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i * 4u < p.n {
        let c = vec2<u32>(i % 1024u, (i / 1024u) % 1024u);
        let layer = i / (1024u * 1024u);
        out[i] = apply1(textureLoad(in0, c, layer, 0));
    }
}
