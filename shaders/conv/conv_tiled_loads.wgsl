// The convolution (FLIP = false) and its transpose, the input VJP (FLIP = true), as a GEMM per
// image (workgroup z): C[r, pixel] = Σ_kk A[r, kk] · B[kk, pixel] with kk = (channel, ky, kx).
//   forward:    r = co, A[co, (ci, tap)] = W[co, ci, tap],  B = X[ci, y + ky - pad, x + kx - pad]
//   transposed: r = ci, A[ci, (co, tap)] = W[co, ci, tap],  B = U[co, y - ky + pad, x - kx + pad]
// batch_b is one image of B, batch_c one image of C; ldc is the plane.

override FLIP: bool = false;

fn load_a(base: u32, row: u32, kk: u32) -> f32 {
    if row >= p.m || kk >= p.k { return 0.0; }
    if FLIP {
        let taps = p.ksize * p.ksize;
        return a[(kk / taps * p.m + row) * taps + kk % taps];
    }
    return a[row * p.k + kk];
}

fn load_b(base: u32, kk: u32, col: u32) -> f32 {
    if kk >= p.k || col >= p.n { return 0.0; }
    let taps = p.ksize * p.ksize;
    let tap = kk % taps;
    let sign = select(1, -1, FLIP);
    let dy = sign * (i32(tap / p.ksize) - i32(p.pad));
    let dx = sign * (i32(tap % p.ksize) - i32(p.pad));
    return image_at(base + kk / taps * p.h * p.w, col / p.w, col % p.w, dy, dx);
}
