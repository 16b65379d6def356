// What the scalar-loading matmul kernels share: the parameters, the bindings, the transposes,
// the index of an element of op(A) and op(B), and zero-padded loads of them (tiled kernels).

struct Params {
    m: u32, n: u32, k: u32, pad0: u32,
    lda: u32, ldb: u32, ldc: u32, pad1: u32,
    batch_a: u32, batch_b: u32, batch_c: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// A is stored [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B).
override TRANS_A: bool = false;
override TRANS_B: bool = false;

fn a_index(row: u32, kk: u32) -> u32 {
    return select(row * p.lda + kk, kk * p.lda + row, TRANS_A);
}

fn b_index(kk: u32, col: u32) -> u32 {
    return select(kk * p.ldb + col, col * p.ldb + kk, TRANS_B);
}

// op(A)[row, kk] and op(B)[kk, col] of batch `base`, zero outside the matrices.
fn load_a(base: u32, row: u32, kk: u32) -> f32 {
    if row >= p.m || kk >= p.k { return 0.0; }
    return a[base + a_index(row, kk)];
}

fn load_b(base: u32, kk: u32, col: u32) -> f32 {
    if kk >= p.k || col >= p.n { return 0.0; }
    return b[base + b_index(kk, col)];
}
