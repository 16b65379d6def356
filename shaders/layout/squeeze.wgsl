// Squeeze (space-to-depth ×2) and its inverse on NCHW:
//   out[b, 4c + 2i + j, h, w] = in[b, c, 2h + i, 2w + j]      (docs/DESIGN.md §2)
// One invocation per element of the squeezed tensor; INVERSE swaps source and destination.

struct Params { n: u32, c: u32, h: u32, w: u32 } // squeezed: [?, 4c, h, w]; n = its element count

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

override INVERSE: bool = false;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = gid.x + gid.y * nwg.x * 256u; // index into the squeezed tensor
    if o >= p.n {
        return;
    }
    let w = o % p.w;
    let h = (o / p.w) % p.h;
    let ch = (o / (p.w * p.h)) % (4u * p.c);
    let b = o / (p.w * p.h * 4u * p.c);
    let c = ch / 4u;
    let i = (ch / 2u) % 2u;
    let j = ch % 2u;
    let u = (((b * p.c + c) * 2u * p.h) + 2u * h + i) * 2u * p.w + 2u * w + j; // unsqueezed index
    if INVERSE {
        dst[u] = src[o];
    } else {
        dst[o] = src[u];
    }
}
