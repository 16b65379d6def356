// Stages convolution weights [Co, Ci, k, k] into an rgba32float texture as the matrix of the
// implicit GEMM: row r, texel t = (ky·k + kx)·C4 + c4 holds the weights of 4 consecutive input
// channels 4·c4 .. at tap (ky, kx). With FLIP the rows are the input channels and the taps are
// mirrored — the weights of the transposed convolution (the VJP for the input). Rows past the
// row count and channels past the channel count are zero.

struct Params { co: u32, ci: u32, k: u32, c4: u32, rows_padded: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d_array<rgba32float, write>;

override FLIP: bool = false;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    let r = gid.y;
    let kk = p.k * p.k;
    if t >= kk * p.c4 || r >= p.rows_padded {
        return;
    }
    let tap = t / p.c4;
    let c4 = t % p.c4;
    let ky = tap / p.k;
    let kx = tap % p.k;
    // Rows and channels of the GEMM: (co, ci) normally, (ci, co) with FLIP.
    let rows = select(p.co, p.ci, FLIP);
    let chans = select(p.ci, p.co, FLIP);
    var v = vec4<f32>(0.0);
    if r < rows {
        for (var j = 0u; j < 4u; j++) {
            let ch = 4u * c4 + j;
            if ch < chans {
                var idx: u32;
                if FLIP {
                    idx = (ch * p.ci + r) * kk + (p.k - 1u - ky) * p.k + (p.k - 1u - kx);
                } else {
                    idx = (r * p.ci + ch) * kk + ky * p.k + kx;
                }
                v[j] = src[idx];
            }
        }
    }
    textureStore(dst, vec2<u32>(t, r), 0u, texel(v));
}
