// Batched C[b] = op(A[b]) · op(B[b]) with 64×64 output tiles staged through workgroup memory in
// K-steps of 16; each invocation accumulates a 4×4 block. The variant for real GPUs, where
// shared tiles cut global-memory traffic by the tile width.

// Params, the bindings and `stage` (the global loads of a K-step into the shared tiles) come
// from matmul_tiled_fetch.wgsl (scalar loads, any shape) or matmul_tiled_fetch_vec4.wgsl
// (vec4 loads, aligned shapes).

const TILE: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [BK][TILE], k-major
var<workgroup> tile_b: array<f32, 1024>; // [BK][TILE]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let tid = lid.y * 16u + lid.x;
    let corner = vec2<u32>(wid.y * TILE, wid.x * TILE); // first row, first column
    let bases = vec2<u32>(wid.z * p.batch_a, wid.z * p.batch_b);
    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) { acc[i] = vec4<f32>(0.0); }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        stage(tid, corner, bases, k0);
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
        let row = corner.x + lid.y * 4u + i;
        if row < p.m {
            for (var j = 0u; j < 4u; j++) {
                let col = corner.y + lid.x + 16u * j;
                if col < p.n {
                    c[cbase + row * p.ldc + col] = acc[i][j];
                }
            }
        }
    }
}
