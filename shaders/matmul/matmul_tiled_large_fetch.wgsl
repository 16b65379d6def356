// The 128×128 tiled kernel's global loads through load_a / load_b (matmul_common.wgsl, or a
// convolution's im2col loads): four scalars of each slice per invocation, any shape.

// An invocation's share of the next slices of A and B.
struct Fetched { a: array<f32, 4>, b: array<f32, 4> }

// Element t (0..4) of invocation `tid`'s share of a slice: (row or column in the tile, k).
// Consecutive invocations take consecutive addresses of the operand as it is stored.
fn a_slot(tid: u32, t: u32) -> vec2<u32> {
    let e = tid + 256u * t;
    return select(vec2<u32>(e / BK, e % BK), vec2<u32>(e % TILE, e / TILE), TRANS_A);
}

fn b_slot(tid: u32, t: u32) -> vec2<u32> {
    let e = tid + 256u * t;
    return select(vec2<u32>(e % TILE, e / TILE), vec2<u32>(e / BK, e % BK), TRANS_B);
}

// The slices at k0 of the tile at `corner` (row, column); `bases`: A's and B's batch offsets.
fn fetch(tid: u32, corner: vec2<u32>, bases: vec2<u32>, k0: u32) -> Fetched {
    var f: Fetched;
    for (var t = 0u; t < 4u; t++) {
        let sa = a_slot(tid, t);
        f.a[t] = load_a(bases.x, corner.x + sa.x, k0 + sa.y);
        let sb = b_slot(tid, t);
        f.b[t] = load_b(bases.y, k0 + sb.y, corner.y + sb.x);
    }
    return f;
}

// `f` into the shared buffer starting at vec4 `buf`.
fn stash(tid: u32, f: Fetched, buf: u32) {
    for (var t = 0u; t < 4u; t++) {
        let sa = a_slot(tid, t);
        tile_a[buf + sa.y * ROW4 + sa.x / 4u][sa.x % 4u] = f.a[t];
        let sb = b_slot(tid, t);
        tile_b[buf + sb.y * ROW4 + sb.x / 4u][sb.x % 4u] = f.b[t];
    }
}
