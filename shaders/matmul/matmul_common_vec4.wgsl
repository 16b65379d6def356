// What the tiled kernels' vec4-load variants share: the matmul parameters, A and B bound as
// vec4 arrays, and the transposes. The host sends only shapes whose stored rows are multiples
// of 4 (K for A, M for transposed A, N for B, K for transposed B), so every vec4 is aligned
// and lies wholly inside or wholly outside its matrix.

struct Params {
    m: u32, n: u32, k: u32, pad0: u32,
    lda: u32, ldb: u32, ldc: u32, pad1: u32,
    batch_a: u32, batch_b: u32, batch_c: u32, pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

// A is stored [M,K] (or [K,M] when TRANS_A), B is [K,N] (or [N,K] when TRANS_B).
override TRANS_A: bool = false;
override TRANS_B: bool = false;

// The vec4 of op(A) holding rows row.. (TRANS_A) or k ka.. of row `row`, zero outside A.
fn a_vec4(base: u32, row: u32, ka: u32) -> vec4<f32> {
    if row >= p.m || ka >= p.k { return vec4<f32>(0.0); }
    return a[(base + select(row * p.lda + ka, ka * p.lda + row, TRANS_A)) / 4u];
}

// The vec4 of op(B) holding columns col.. or (TRANS_B) k kb.. of column `col`, zero outside B.
fn b_vec4(base: u32, kb: u32, col: u32) -> vec4<f32> {
    if col >= p.n || kb >= p.k { return vec4<f32>(0.0); }
    return b[(base + select(kb * p.ldb + col, col * p.ldb + kb, TRANS_B)) / 4u];
}
