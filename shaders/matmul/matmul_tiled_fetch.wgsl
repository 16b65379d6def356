// The 64×64 tiled kernel's global loads through load_a / load_b (matmul_common.wgsl, or a
// convolution's im2col loads): four scalars of each K-step's slices per invocation, any shape.

// The slices at k0 of the tile at `corner` (row, column) into the shared tiles; `bases`: A's
// and B's batch offsets. Consecutive invocations take consecutive addresses of each operand
// as it is stored: along k when A is row-major, along the rows when it is transposed (and
// along the columns of B, or along k when B is transposed).
fn stage(tid: u32, corner: vec2<u32>, bases: vec2<u32>, k0: u32) {
    for (var t = 0u; t < 4u; t++) {
        let e = tid + 256u * t;
        var mm: u32; var ka: u32;
        if TRANS_A { mm = e % TILE; ka = e / TILE; } else { mm = e / BK; ka = e % BK; }
        tile_a[ka * TILE + mm] = load_a(bases.x, corner.x + mm, k0 + ka);
        var nn: u32; var kb: u32;
        if TRANS_B { nn = e / BK; kb = e % BK; } else { nn = e % TILE; kb = e / TILE; }
        tile_b[kb * TILE + nn] = load_b(bases.y, k0 + kb, corner.y + nn);
    }
}
