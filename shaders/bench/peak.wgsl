// Device peak probes for the benches: `fma_peak` is an arithmetic-bound loop of independent FMA
// chains, `copy` a bandwidth-bound copy.

struct Params { n: u32, iters: u32, mul: f32, add: f32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

// Each invocation runs 8 independent vec4 chains, four steps each per loop iteration: 128
// FMAs = 256 flops per iteration. Enough independent work to hide FMA latency, and few loop
// iterations, whose bookkeeping on CPU adapters (masks, llvmpipe's loop limiter) would
// otherwise be part of what is measured.
@compute @workgroup_size(256)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let seed = f32(i) * 1e-6;
    var a: array<vec4<f32>, 8>;
    for (var c = 0u; c < 8u; c++) {
        a[c] = vec4<f32>(seed + f32(4u * c), seed + f32(4u * c + 1u), seed + f32(4u * c + 2u), seed + f32(4u * c + 3u));
    }
    var a0 = a[0]; var a1 = a[1]; var a2 = a[2]; var a3 = a[3];
    var a4 = a[4]; var a5 = a[5]; var a6 = a[6]; var a7 = a[7];
    let m = vec4<f32>(p.mul);
    let c = vec4<f32>(p.add);
    for (var it = 0u; it < p.iters; it++) {
        a0 = fma(fma(fma(fma(a0, m, c), m, c), m, c), m, c);
        a1 = fma(fma(fma(fma(a1, m, c), m, c), m, c), m, c);
        a2 = fma(fma(fma(fma(a2, m, c), m, c), m, c), m, c);
        a3 = fma(fma(fma(fma(a3, m, c), m, c), m, c), m, c);
        a4 = fma(fma(fma(fma(a4, m, c), m, c), m, c), m, c);
        a5 = fma(fma(fma(fma(a5, m, c), m, c), m, c), m, c);
        a6 = fma(fma(fma(fma(a6, m, c), m, c), m, c), m, c);
        a7 = fma(fma(fma(fma(a7, m, c), m, c), m, c), m, c);
    }
    if i < p.n {
        dst[i] = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7));
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
