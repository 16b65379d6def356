// The weight gradient as a GEMM over pixels, split along them (workgroup z takes the pixels
// from z · batch_a, k of them; `pixels` in all):
//   gW[co, (ci, tap)] = Σ_pixel gY[n, co, y, x] · X[n, ci, y + ky - pad, x + kx - pad]
// A = gY (rows co), B = X read through the window of each column (ci, ky, kx); each split
// writes its own [Co, Ci·k·k] partial (batch_c apart), summed on the host side.

fn load_a(base: u32, row: u32, kk: u32) -> f32 {
    let pix = base + kk;
    if row >= p.m || kk >= p.k || pix >= p.pixels { return 0.0; }
    let plane = p.h * p.w;
    return a[(pix / plane * p.m + row) * plane + pix % plane];
}

fn load_b(base: u32, kk: u32, col: u32) -> f32 {
    let pix = base + kk;
    if kk >= p.k || col >= p.n || pix >= p.pixels { return 0.0; }
    let plane = p.h * p.w;
    let taps = p.ksize * p.ksize;
    let tap = col % taps;
    let hw = pix % plane;
    let dy = i32(tap / p.ksize) - i32(p.pad);
    let dx = i32(tap % p.ksize) - i32(p.pad);
    return image_at((pix / plane * p.chans + col / taps) * plane, hw / p.w, hw % p.w, dy, dx);
}
