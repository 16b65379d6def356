// The weight gradient of a convolution (stride 1, "same" padding) as a GEMM over pixels:
//   gW[co, ci, ky, kx] = Σ_{n, y, x} gY[n, co, y, x] · X[n, ci, y + ky - pad, x + kx - pad]
// A = gY as [Co, pixels] (conv_stage_output.wgsl), B read implicitly from the staged input
// (conv_stage_input.wgsl): GEMM column quads are (ky, kx, 4 input channels). Each invocation
// accumulates 8 output channels × 2 quads over k-steps of 4 pixels.

struct Params {
    co: u32, ci: u32, k: u32, c4: u32,
    w: u32, plane: u32, pixels: u32, hp: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var gt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var xt: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> gw: array<f32>;

override WG_X: u32 = 8u;
override WG_Y: u32 = 8u;

@compute @workgroup_size(WG_X, WG_Y)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let q0 = gid.x * 2u;
    let quads = p.k * p.k * p.c4;
    // Decode the two column quads (clamped; their results are not stored).
    var kx: array<u32, 2>;
    var yo: array<u32, 2>; // c4 · Hp + ky
    for (var h = 0u; h < 2u; h++) {
        let q = min(q0 + h, quads - 1u);
        let tap = q / p.c4;
        kx[h] = tap % p.k;
        yo[h] = (q % p.c4) * p.hp + tap / p.k;
    }
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    let steps = (p.pixels + 3u) / 4u;
    for (var s = 0u; s < steps; s++) {
        // Column i of a_h: 4 pixels of output channel row0 + 4h + i.
        let a0 = mat4x4<f32>(textureLoad(gt, vec2<u32>(s, row0), 0),
                             textureLoad(gt, vec2<u32>(s, row0 + 1u), 0),
                             textureLoad(gt, vec2<u32>(s, row0 + 2u), 0),
                             textureLoad(gt, vec2<u32>(s, row0 + 3u), 0));
        let a1 = mat4x4<f32>(textureLoad(gt, vec2<u32>(s, row0 + 4u), 0),
                             textureLoad(gt, vec2<u32>(s, row0 + 5u), 0),
                             textureLoad(gt, vec2<u32>(s, row0 + 6u), 0),
                             textureLoad(gt, vec2<u32>(s, row0 + 7u), 0));
        // Column l of b_h: the 4 input channels of quad h at pixel 4s + l (its window tap).
        var b0: mat4x4<f32>;
        var b1: mat4x4<f32>;
        for (var l = 0u; l < 4u; l++) {
            let pix = min(4u * s + l, p.pixels - 1u);
            let n = pix / p.plane;
            let hw = pix % p.plane;
            let y = hw / p.w;
            let x = hw % p.w;
            b0[l] = textureLoad(xt, vec2<u32>(x + kx[0], yo[0] + y), n);
            b1[l] = textureLoad(xt, vec2<u32>(x + kx[1], yo[1] + y), n);
        }
        acc00 += b0 * a0;
        acc01 += b1 * a0;
        acc10 += b0 * a1;
        acc11 += b1 * a1;
    }
    let kk = p.k * p.k;
    let blocks = array<mat4x4<f32>, 4>(acc00, acc01, acc10, acc11);
    for (var blk = 0u; blk < 4u; blk++) {
        let r = row0 + 4u * (blk / 2u);
        let q = q0 + blk % 2u;
        if q < quads {
            let tap = q / p.c4;
            let c0 = 4u * (q % p.c4);
            for (var i = 0u; i < 4u; i++) {
                if r + i < p.co {
                    for (var j = 0u; j < 4u; j++) {
                        if c0 + j < p.ci {
                            gw[((r + i) * p.ci + c0 + j) * kk + tap] = blocks[blk][i][j];
                        }
                    }
                }
            }
        }
    }
}
