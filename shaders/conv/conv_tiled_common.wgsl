// What the storage-buffer convolutions share: they run the tiled matmul kernels
// (matmul_tiled.wgsl, matmul_tiled_large.wgsl) as implicit GEMMs, with load_a / load_b that do
// the im2col index arithmetic on the NCHW input and the OIHW weights as they are stored (no
// staging). Out-of-image taps read zero by bounds checks, which is the "same" padding.
// The first twelve words are the matmul kernels' (m, n, k, ldc and the batch steps they use);
// the rest is the convolution's geometry.

struct Params {
    m: u32, n: u32, k: u32, pad0: u32,
    pad1: u32, pad2: u32, ldc: u32, pad3: u32,
    batch_a: u32, batch_b: u32, batch_c: u32, pad4: u32,
    h: u32, w: u32, ksize: u32, pad: u32,
    chans: u32, pixels: u32, pad5: u32, pad6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// How the tile kernels spread a slice's loads over invocations (consecutive invocations take
// consecutive k when TRANS is set for B, or unset for A): chosen on the host so that
// neighbouring invocations read neighbouring addresses.
override TRANS_A: bool = false;
override TRANS_B: bool = false;

// Element (y + dy, x + dx) of the channel plane starting at `plane0`, zero outside the image.
fn image_at(plane0: u32, y: u32, x: u32, dy: i32, dx: i32) -> f32 {
    let yy = i32(y) + dy;
    let xx = i32(x) + dx;
    if yy < 0 || yy >= i32(p.h) || xx < 0 || xx >= i32(p.w) { return 0.0; }
    return b[plane0 + u32(yy) * p.w + u32(xx)];
}
