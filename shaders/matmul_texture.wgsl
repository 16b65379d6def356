// Batched C[b] = A[b] · B[b] with both operands staged in rgba32float textures (see
// texture_stage.wgsl: A as [M, K], B as [K, N], transposes already applied, zero-padded to the
// grid). Each invocation accumulates an 8×8 block of C over k-steps of 4.
// The variant for CPU adapters: lavapipe turns `textureLoad` into vector gathers, while every
// storage-buffer load costs a per-invocation loop; this runs ≈ 5× the buffer-only kernels there.

struct Params {
    m: u32, n: u32, k4: u32, ldc: u32,
    batch_c: u32, a_layer_step: u32, b_layer_step: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var ta: texture_2d_array<f32>;
@group(0) @binding(2) var tb: texture_2d_array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let col4 = gid.x * 2u; // texel column of B: columns 4·col4 ..
    let la = gid.z * p.a_layer_step;
    let lb = gid.z * p.b_layer_step;
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    for (var k4 = 0u; k4 < p.k4; k4++) {
        let k0 = 4u * k4;
        // Column l of b_h: B[k0 + l][4(col4 + h) ..]; column i of a_i: A[row0 + 4i + i'][k0 ..].
        let b0 = mat4x4<f32>(textureLoad(tb, vec2<u32>(col4, k0), lb, 0),
                             textureLoad(tb, vec2<u32>(col4, k0 + 1u), lb, 0),
                             textureLoad(tb, vec2<u32>(col4, k0 + 2u), lb, 0),
                             textureLoad(tb, vec2<u32>(col4, k0 + 3u), lb, 0));
        let b1 = mat4x4<f32>(textureLoad(tb, vec2<u32>(col4 + 1u, k0), lb, 0),
                             textureLoad(tb, vec2<u32>(col4 + 1u, k0 + 1u), lb, 0),
                             textureLoad(tb, vec2<u32>(col4 + 1u, k0 + 2u), lb, 0),
                             textureLoad(tb, vec2<u32>(col4 + 1u, k0 + 3u), lb, 0));
        let a0 = mat4x4<f32>(textureLoad(ta, vec2<u32>(k4, row0), la, 0),
                             textureLoad(ta, vec2<u32>(k4, row0 + 1u), la, 0),
                             textureLoad(ta, vec2<u32>(k4, row0 + 2u), la, 0),
                             textureLoad(ta, vec2<u32>(k4, row0 + 3u), la, 0));
        let a1 = mat4x4<f32>(textureLoad(ta, vec2<u32>(k4, row0 + 4u), la, 0),
                             textureLoad(ta, vec2<u32>(k4, row0 + 5u), la, 0),
                             textureLoad(ta, vec2<u32>(k4, row0 + 6u), la, 0),
                             textureLoad(ta, vec2<u32>(k4, row0 + 7u), la, 0));
        // (b · a)[:, i] = Σ_l B[k0+l][cols] · A[row i][k0+l]: column i is row i of C's block.
        acc00 += b0 * a0;
        acc01 += b1 * a0;
        acc10 += b0 * a1;
        acc11 += b1 * a1;
    }
    let cbase = gid.z * p.batch_c;
    let blocks = array<mat4x4<f32>, 4>(acc00, acc01, acc10, acc11);
    for (var blk = 0u; blk < 4u; blk++) {
        let r = row0 + 4u * (blk / 2u);
        let q = 4u * (col4 + blk % 2u);
        for (var i = 0u; i < 4u; i++) {
            if r + i < p.m {
                for (var j = 0u; j < 4u; j++) {
                    if q + j < p.n {
                        c[cbase + (r + i) * p.ldc + q + j] = blocks[blk][i][j];
                    }
                }
            }
        }
    }
}
