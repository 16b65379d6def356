// The 128×128 tiled kernel's global loads as one vec4 of each slice per invocation, along the
// stored rows of each operand (matmul_common_vec4.wgsl).

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
    let sa = select(along_k(tid), across_k(tid), TRANS_A);
    let sb = select(across_k(tid), along_k(tid), TRANS_B);
    return Fetched(a_vec4(bases.x, corner.x + sa.x, k0 + sa.y), b_vec4(bases.y, k0 + sb.y, corner.y + sb.x));
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
