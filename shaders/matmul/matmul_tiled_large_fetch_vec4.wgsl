// The 128×128 tiled kernel's global loads as one vec4 of each slice per invocation, along the
// stored rows of each operand. Needs the stored row length of each operand to be a multiple
// of 4 (K for A, M for transposed A, N for B, K for transposed B; checked on the host), so a
// vec4 lies wholly inside or wholly outside the matrix.

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

struct Fetched { a: vec4<f32>, b: vec4<f32> }

// Invocation `tid`'s vec4 of a slice: (row or column in the tile, first k). Along k (two
// vec4s per row or column of the tile) when the operand is stored with k contiguous, else
// along the rows or columns (32 vec4s per k).
fn along_k(tid: u32) -> vec2<u32> {
    return vec2<u32>(tid / 2u, (tid % 2u) * 4u);
}

fn across_k(tid: u32) -> vec2<u32> {
    return vec2<u32>((tid % 32u) * 4u, tid / 32u);
}

fn fetch(tid: u32, corner: vec2<u32>, bases: vec2<u32>, k0: u32) -> Fetched {
    var f = Fetched(vec4<f32>(0.0), vec4<f32>(0.0));
    let sa = select(along_k(tid), across_k(tid), TRANS_A);
    let row = corner.x + sa.x;
    let ka = k0 + sa.y;
    if row < p.m && ka < p.k {
        f.a = a[(bases.x + select(row * p.lda + ka, ka * p.lda + row, TRANS_A)) / 4u];
    }
    let sb = select(across_k(tid), along_k(tid), TRANS_B);
    let col = corner.y + sb.x;
    let kb = k0 + sb.y;
    if col < p.n && kb < p.k {
        f.b = b[(bases.y + select(kb * p.ldb + col, col * p.ldb + kb, TRANS_B)) / 4u];
    }
    return f;
}

fn stash(tid: u32, f: Fetched, buf: u32) {
    let sa = select(along_k(tid), across_k(tid), TRANS_A);
    if TRANS_A {
        tile_a[buf + sa.y * ROW4 + sa.x / 4u] = f.a;
    } else {
        for (var j = 0u; j < 4u; j++) {
            tile_a[buf + (sa.y + j) * ROW4 + sa.x / 4u][sa.x % 4u] = f.a[j];
        }
    }
    let sb = select(across_k(tid), along_k(tid), TRANS_B);
    if TRANS_B {
        for (var j = 0u; j < 4u; j++) {
            tile_b[buf + (sb.y + j) * ROW4 + sb.x / 4u][sb.x % 4u] = f.b[j];
        }
    } else {
        tile_b[buf + sb.y * ROW4 + sb.x / 4u] = f.b;
    }
}
