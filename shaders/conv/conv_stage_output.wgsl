// Stages an NCHW gradient [N, C, H, W] into an rgba32float texture as the matrix [C, N·H·W]:
// texel (p4, c) holds pixels 4·p4 .. 4·p4+3 (flattened over n, y, x) of channel c. Pixels past
// the end and rows past C are zero. The A operand of the weight-gradient GEMM.

struct Params { n: u32, c: u32, plane: u32, width: u32, rows_padded: u32, first: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let p4 = gid.x;
    let c = gid.y;
    if p4 >= p.width || c >= p.rows_padded {
        return;
    }
    var v = vec4<f32>(0.0);
    if c < p.c {
        for (var j = 0u; j < 4u; j++) {
            let pix = 4u * p4 + j;
            if pix < p.n * p.plane {
                let n = pix / p.plane;
                v[j] = src[((p.first + n) * p.c + c) * p.plane + pix % p.plane];
            }
        }
    }
    textureStore(dst, vec2<u32>(p4, c), 0u, texel(v));
}
