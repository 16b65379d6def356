// Batched C[b] = op(A[b]) · op(B[b]) with A and B stored as f16 and C accumulated and stored in
// f32: the tile scheme of matmul_tiled.wgsl (64×64 output tiles, K-steps of 16, a 4×4 block per
// invocation) with half the bytes per operand load and per shared-memory tile.
enable f16;

struct Params {
    m: u32, n: u32, k: u32, pad0: u32,
    lda: u32, ldb: u32, ldc: u32, pad1: u32,
    batch_a: u32, batch_b: u32, batch_c: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f16>;
@group(0) @binding(2) var<storage, read> b: array<f16>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// A is stored [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B).
override TRANS_A: bool = false;
override TRANS_B: bool = false;

const TILE: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> tile_a: array<f16, 1024>; // [BK][TILE], k-major
var<workgroup> tile_b: array<f16, 1024>; // [BK][TILE]

// op(A)[row, kk] and op(B)[kk, col] of batch `base`, zero outside the matrices.
fn load_a(base: u32, row: u32, kk: u32) -> f16 {
    if row >= p.m || kk >= p.k { return f16(0.0); }
    return a[base + select(row * p.lda + kk, kk * p.lda + row, TRANS_A)];
}

fn load_b(base: u32, kk: u32, col: u32) -> f16 {
    if kk >= p.k || col >= p.n { return f16(0.0); }
    return b[base + select(kk * p.ldb + col, col * p.ldb + kk, TRANS_B)];
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let tile_row = wid.y * TILE;
    let tile_col = wid.x * TILE;
    let abase = wid.z * p.batch_a;
    let bbase = wid.z * p.batch_b;
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var t = 0u; t < 4u; t++) {
            let e = tid + 256u * t;
            // Consecutive invocations load consecutive elements of whichever layout is stored.
            var mm: u32; var ka: u32;
            if TRANS_A { mm = e % TILE; ka = e / TILE; } else { mm = e / BK; ka = e % BK; }
            tile_a[ka * TILE + mm] = load_a(abase, tile_row + mm, k0 + ka);
            var nn: u32; var kb: u32;
            if TRANS_B { nn = e / BK; kb = e % BK; } else { nn = e % TILE; kb = e / TILE; }
            tile_b[kb * TILE + nn] = load_b(bbase, k0 + kb, tile_col + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let row = kk * TILE;
            let bv = vec4<f32>(vec4<f16>(tile_b[row + lid.x], tile_b[row + lid.x + 16u],
                                         tile_b[row + lid.x + 32u], tile_b[row + lid.x + 48u]));
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(f32(tile_a[row + lid.y * 4u + i])), bv, acc[i]);
            }
        }
        workgroupBarrier();
    }
    let cbase = wid.z * p.batch_c;
    for (var i = 0u; i < 4u; i++) {
        let row = tile_row + lid.y * 4u + i;
        if row < p.m {
            for (var j = 0u; j < 4u; j++) {
                let col = tile_col + lid.x + 16u * j;
                if col < p.n {
                    c[cbase + row * p.ldc + col] = acc[i][j];
                }
            }
        }
    }
}
