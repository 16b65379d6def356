// Convolution (stride 1, "same" padding) as an implicit GEMM on staged textures:
//   out[n, r, y, x] = Σ_{ky, kx, c} A[r][(ky, kx, c)] · X[n, c, y + ky - pad, x + kx - pad]
// with A from conv_stage_weight.wgsl (rows r = output channels) and X from
// conv_stage_input.wgsl (zero border, channels packed by 4). Columns of the GEMM are the output
// pixels (n, y, x), flattened. Each invocation accumulates 8 rows × 8 pixels over k-steps of
// 4 channels; the im2col matrix is never materialised. The same kernel runs the transposed
// convolution (the input VJP) with flipped weights.

struct Params {
    rows: u32, c4: u32, k: u32, h: u32,
    w: u32, pixels: u32, hp: u32, first: u32, // output image of the chunk's first pixel
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var wt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var xt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Workgroup shape (WG_X × WG_Y = 64): few output channels get a wide, short workgroup so the
// weight rows are padded to 8 · WG_Y, not 64.
override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let col0 = gid.x * 8u;
    let plane = p.h * p.w;
    // Texture coordinates of the 8 output pixels (clamped: their results are never stored).
    var px: array<u32, 8>;
    var py: array<u32, 8>;
    var pn: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let col = min(col0 + j, p.pixels - 1u);
        pn[j] = col / plane;
        let hw = col % plane;
        py[j] = hw / p.w;
        px[j] = hw % p.w;
    }
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    for (var ky = 0u; ky < p.k; ky++) {
        for (var kx = 0u; kx < p.k; kx++) {
            let tap = (ky * p.k + kx) * p.c4;
            for (var c4 = 0u; c4 < p.c4; c4++) {
                let t = tap + c4;
                let yo = c4 * p.hp + ky;
                // Column i of a_h: the 4 channel weights of row row0 + 4h + i.
                let a0 = mat4x4<f32>(textureLoad(wt, vec2<u32>(t, row0), 0),
                                     textureLoad(wt, vec2<u32>(t, row0 + 1u), 0),
                                     textureLoad(wt, vec2<u32>(t, row0 + 2u), 0),
                                     textureLoad(wt, vec2<u32>(t, row0 + 3u), 0));
                let a1 = mat4x4<f32>(textureLoad(wt, vec2<u32>(t, row0 + 4u), 0),
                                     textureLoad(wt, vec2<u32>(t, row0 + 5u), 0),
                                     textureLoad(wt, vec2<u32>(t, row0 + 6u), 0),
                                     textureLoad(wt, vec2<u32>(t, row0 + 7u), 0));
                // Column j of x_h: the 4 channels of pixel col0 + 4h + j; transposed, column l
                // is channel l across the 4 pixels, as the product wants.
                let x0 = transpose(mat4x4<f32>(
                    textureLoad(xt, vec2<u32>(px[0] + kx, yo + py[0]), pn[0]),
                    textureLoad(xt, vec2<u32>(px[1] + kx, yo + py[1]), pn[1]),
                    textureLoad(xt, vec2<u32>(px[2] + kx, yo + py[2]), pn[2]),
                    textureLoad(xt, vec2<u32>(px[3] + kx, yo + py[3]), pn[3])));
                let x1 = transpose(mat4x4<f32>(
                    textureLoad(xt, vec2<u32>(px[4] + kx, yo + py[4]), pn[4]),
                    textureLoad(xt, vec2<u32>(px[5] + kx, yo + py[5]), pn[5]),
                    textureLoad(xt, vec2<u32>(px[6] + kx, yo + py[6]), pn[6]),
                    textureLoad(xt, vec2<u32>(px[7] + kx, yo + py[7]), pn[7])));
                // (x · a)[:, i] = Σ_l X[channel l][pixels] · A[row i][channel l].
                acc00 += x0 * a0;
                acc01 += x1 * a0;
                acc10 += x0 * a1;
                acc11 += x1 * a1;
            }
        }
    }
    let blocks = array<mat4x4<f32>, 4>(acc00, acc01, acc10, acc11);
    for (var blk = 0u; blk < 4u; blk++) {
        let r = row0 + 4u * (blk / 2u);
        let q = col0 + 4u * (blk % 2u);
        for (var i = 0u; i < 4u; i++) {
            if r + i < p.rows {
                for (var j = 0u; j < 4u; j++) {
                    let col = q + j;
                    if col < p.pixels {
                        let n = col / plane;
                        out[((p.first + n) * p.rows + r + i) * plane + col % plane] = blocks[blk][i][j];
                    }
                }
            }
        }
    }
}
