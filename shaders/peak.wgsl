// Device peak probes for the benches: `fma` is an arithmetic-bound loop of independent FMA
// chains, `copy` a bandwidth-bound copy.

struct Params { n: u32, iters: u32, mul: f32, add: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

// Each invocation runs 4 independent vec4 chains: 16 lanes × 2 flops per iteration.
@compute @workgroup_size(256)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let seed = f32(i) * 1e-6;
    var a0 = vec4<f32>(seed, seed + 1.0, seed + 2.0, seed + 3.0);
    var a1 = a0 + 4.0;
    var a2 = a0 + 8.0;
    var a3 = a0 + 12.0;
    let m = vec4<f32>(p.mul);
    let c = vec4<f32>(p.add);
    for (var it = 0u; it < p.iters; it++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a2 = fma(a2, m, c);
        a3 = fma(a3, m, c);
    }
    if i < p.n {
        dst[i] = a0 + a1 + a2 + a3;
    }
}

override WG: u32 = 256u;

// Reads and writes n vec4s: 32 bytes of traffic per element.
@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i < p.n {
        dst[i] = src[i];
    }
}
