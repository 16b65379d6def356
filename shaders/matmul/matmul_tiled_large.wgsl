// Batched C[b] = op(A[b]) · op(B[b]) for GPUs, on 128×128 output tiles: each K-step of 8 stages
// a 128×8 slice of A and an 8×128 slice of B in workgroup memory, double-buffered so that the
// next slice is fetched into registers while the current one is multiplied (one barrier per
// step), and each of the 256 invocations accumulates an 8×8 block of C in registers from vec4
// reads of the shared slices: 16 FMAs per shared read instead of the 64×64 kernel's 4. The
// shared slices take 16 KiB, WebGPU's guaranteed workgroup storage.
// An invocation's rows are two groups of four, 64 apart (and its columns likewise), so the
// invocations of a row of the workgroup read neighbouring vec4s of shared memory.

// Params, bindings, TRANS_A/TRANS_B and the loads of op(A), op(B): matmul_common.wgsl.

const TILE: u32 = 128u;
const BK: u32 = 8u;
// Vec4s per k-row of a staged slice, and per buffer.
const ROW4: u32 = 32u;
const SLICE4: u32 = 256u;

// [2 buffers][BK][TILE / 4] vec4s: A's rows and B's columns along the vec4s.
var<workgroup> tile_a: array<vec4<f32>, 512>;
var<workgroup> tile_b: array<vec4<f32>, 512>;

// Element t (0..4) of invocation `tid`'s share of a slice: (row or column in the tile, k).
// Consecutive invocations take consecutive addresses of the operand as it is stored.
fn a_slot(tid: u32, t: u32) -> vec2<u32> {
    let e = tid + 256u * t;
    return select(vec2<u32>(e / BK, e % BK), vec2<u32>(e % TILE, e / TILE), TRANS_A);
}

fn b_slot(tid: u32, t: u32) -> vec2<u32> {
    let e = tid + 256u * t;
    return select(vec2<u32>(e % TILE, e / TILE), vec2<u32>(e / BK, e % BK), TRANS_B);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let tile_row = wid.y * TILE;
    let tile_col = wid.x * TILE;
    let abase = wid.z * p.batch_a;
    let bbase = wid.z * p.batch_b;
    var acc: array<vec4<f32>, 16>; // rows r: acc[2r] columns 4tx.., acc[2r + 1] columns 64 + 4tx..
    for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }
    var ra: array<f32, 4>;
    var rb: array<f32, 4>;
    for (var t = 0u; t < 4u; t++) {
        let sa = a_slot(tid, t);
        ra[t] = load_a(abase, tile_row + sa.x, sa.y);
        let sb = b_slot(tid, t);
        rb[t] = load_b(bbase, sb.y, tile_col + sb.x);
    }
    for (var t = 0u; t < 4u; t++) {
        let sa = a_slot(tid, t);
        tile_a[sa.y * ROW4 + sa.x / 4u][sa.x % 4u] = ra[t];
        let sb = b_slot(tid, t);
        tile_b[sb.y * ROW4 + sb.x / 4u][sb.x % 4u] = rb[t];
    }
    workgroupBarrier();
    let steps = (p.k + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let cur = (s % 2u) * SLICE4;
        let more = s + 1u < steps;
        if more {
            let k0 = (s + 1u) * BK;
            for (var t = 0u; t < 4u; t++) {
                let sa = a_slot(tid, t);
                ra[t] = load_a(abase, tile_row + sa.x, k0 + sa.y);
                let sb = b_slot(tid, t);
                rb[t] = load_b(bbase, k0 + sb.y, tile_col + sb.x);
            }
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
            let next = SLICE4 - cur;
            for (var t = 0u; t < 4u; t++) {
                let sa = a_slot(tid, t);
                tile_a[next + sa.y * ROW4 + sa.x / 4u][sa.x % 4u] = ra[t];
                let sb = b_slot(tid, t);
                tile_b[next + sb.y * ROW4 + sb.x / 4u][sb.x % 4u] = rb[t];
            }
        }
        workgroupBarrier();
    }
    let cbase = wid.z * p.batch_c;
    for (var r = 0u; r < 8u; r++) {
        let row = tile_row + (r / 4u) * 64u + lid.y * 4u + r % 4u;
        if row < p.m {
            for (var h = 0u; h < 2u; h++) {
                let v = acc[2u * r + h];
                for (var j = 0u; j < 4u; j++) {
                    let col = tile_col + h * 64u + lid.x * 4u + j;
                    if col < p.n {
                        c[cbase + row * p.ldc + col] = v[j];
                    }
                }
            }
        }
    }
}
