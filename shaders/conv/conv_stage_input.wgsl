// Stages an NCHW image batch into an rgba32float texture for the convolution kernels: texel
// (x, c4·Hp + y, n) holds channels 4·c4 .. 4·c4+3 of pixel (x - pad, y - pad) of image n, where
// Hp = H + 2·pad. The border and the channels past C are zero, so the kernels read shifted
// windows without any bounds checks.

// `first`: index of the batch's first image to stage (the texture holds n images from it).
struct Params { n: u32, c: u32, h: u32, w: u32, pad: u32, c4: u32, first: u32, pad1: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d_array<rgba32float, write>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let wp = p.w + 2u * p.pad;
    let hp = p.h + 2u * p.pad;
    let x = gid.x;
    let yc = gid.y; // c4 · hp + y
    let img = gid.z;
    if x >= wp || yc >= hp * p.c4 {
        return;
    }
    let c4 = yc / hp;
    let y = yc % hp;
    var v = vec4<f32>(0.0);
    if x >= p.pad && x < p.w + p.pad && y >= p.pad && y < p.h + p.pad {
        let plane = p.h * p.w;
        let pix = (y - p.pad) * p.w + (x - p.pad);
        for (var j = 0u; j < 4u; j++) {
            let ch = 4u * c4 + j;
            if ch < p.c {
                v[j] = src[((p.first + img) * p.c + ch) * plane + pix];
            }
        }
    }
    textureStore(dst, vec2<u32>(x, yc), img, texel(v));
}
