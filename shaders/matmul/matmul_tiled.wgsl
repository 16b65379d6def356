// Batched C[b] = op(A[b]) · op(B[b]) with 64×64 output tiles staged through workgroup memory in
// K-steps of 16; each invocation accumulates a 4×4 block. The variant for real GPUs, where
// shared tiles cut global-memory traffic by the tile width.

// Params, bindings, TRANS_A/TRANS_B and the loads of op(A), op(B): matmul_common.wgsl.

const TILE: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [BK][TILE], k-major
var<workgroup> tile_b: array<f32, 1024>; // [BK][TILE]

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
            // A tile: 64 rows × 16 k; along k when A is row-major, along rows when transposed.
            var mm: u32; var ka: u32;
            if TRANS_A { mm = e % TILE; ka = e / TILE; } else { mm = e / BK; ka = e % BK; }
            tile_a[ka * TILE + mm] = load_a(abase, tile_row + mm, k0 + ka);
            var nn: u32; var kb: u32;
            if TRANS_B { nn = e / BK; kb = e % BK; } else { nn = e % TILE; kb = e / TILE; }
            tile_b[kb * TILE + nn] = load_b(bbase, k0 + kb, tile_col + nn);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let bv = vec4<f32>(tile_b[kk * TILE + lid.x], tile_b[kk * TILE + lid.x + 16u],
                               tile_b[kk * TILE + lid.x + 32u], tile_b[kk * TILE + lid.x + 48u]);
            for (var i = 0u; i < 4u; i++) {
                acc[i] = fma(vec4<f32>(tile_a[kk * TILE + lid.y * 4u + i]), bv, acc[i]);
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
