// Batched C[b] = op(A[b]) · op(B[b]) for GPUs, on 128×128 output tiles: each K-step of 8 stages
// a 128×8 slice of A and an 8×128 slice of B in workgroup memory, double-buffered so that the
// next slice is fetched into registers while the current one is multiplied (one barrier per
// step), and each of the 256 invocations accumulates an 8×8 block of C in registers from vec4
// reads of the shared slices: 16 FMAs per shared read instead of the 64×64 kernel's 4. The
// shared slices take 16 KiB, WebGPU's guaranteed workgroup storage.
// An invocation's rows are two groups of four, 64 apart (and its columns likewise), so the
// invocations of a row of the workgroup read neighbouring vec4s of shared memory.

// Params, the bindings and the global loads: `fetch` (slices into registers) and `stash` (the
// registers into a shared buffer) come from matmul_tiled_large_fetch.wgsl (scalar loads, any
// shape) or matmul_tiled_large_fetch_vec4.wgsl (vec4 loads, aligned shapes).

const TILE: u32 = 128u;
const BK: u32 = 8u;
// Vec4s per k-row of a staged slice, and per buffer.
const ROW4: u32 = 32u;
const SLICE4: u32 = 256u;

// [2 buffers][BK][TILE / 4] vec4s: A's rows and B's columns along the vec4s.
var<workgroup> tile_a: array<vec4<f32>, 512>;
var<workgroup> tile_b: array<vec4<f32>, 512>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let corner = vec2<u32>(wid.y * TILE, wid.x * TILE); // first row, first column
    let bases = vec2<u32>(wid.z * p.batch_a, wid.z * p.batch_b);
    var acc: array<vec4<f32>, 16>; // rows r: acc[2r] columns 4tx.., acc[2r + 1] columns 64 + 4tx..
    for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }
    var f = fetch(tid, corner, bases, 0u);
    stash(tid, f, 0u);
    workgroupBarrier();
    let steps = (p.k + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let cur = (s % 2u) * SLICE4;
        let more = s + 1u < steps;
        if more {
            f = fetch(tid, corner, bases, (s + 1u) * BK);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let row = cur + kk * ROW4;
            let a0 = tile_a[row + lid.y];
            let a1 = tile_a[row + lid.y + 16u];
            let b0 = tile_b[row + lid.x];
            let b1 = tile_b[row + lid.x + 16u];
            for (var i = 0u; i < 4u; i++) {
                acc[2u * i] = fma(vec4<f32>(a0[i]), b0, acc[2u * i]);
                acc[2u * i + 1u] = fma(vec4<f32>(a0[i]), b1, acc[2u * i + 1u]);
                acc[2u * i + 8u] = fma(vec4<f32>(a1[i]), b0, acc[2u * i + 8u]);
                acc[2u * i + 9u] = fma(vec4<f32>(a1[i]), b1, acc[2u * i + 9u]);
            }
        }
        if more {
            stash(tid, f, SLICE4 - cur);
        }
        workgroupBarrier();
    }
    let cbase = wid.z * p.batch_c;
    for (var r = 0u; r < 8u; r++) {
        let row = corner.x + (r / 4u) * 64u + lid.y * 4u + r % 4u;
        if row < p.m {
            for (var h = 0u; h < 2u; h++) {
                let v = acc[2u * r + h];
                for (var j = 0u; j < 4u; j++) {
                    let col = corner.y + h * 64u + lid.x * 4u + j;
                    if col < p.n {
                        c[cbase + row * p.ldc + col] = v[j];
                    }
                }
            }
        }
    }
}
