// The 64×64 tiled kernel's global loads as one vec4 of each K-step's slices per invocation,
// along the stored rows of each operand (matmul_common_vec4.wgsl).

fn stage(tid: u32, corner: vec2<u32>, bases: vec2<u32>, k0: u32) {
    // Along k: 4 vec4s per row of the slice; across k: 16 vec4s per k.
    let along_k = vec2<u32>(tid / 4u, (tid % 4u) * 4u);
    let across_k = vec2<u32>((tid % 16u) * 4u, tid / 16u);
    let sa = select(along_k, across_k, TRANS_A);
    let va = a_vec4(bases.x, corner.x + sa.x, k0 + sa.y);
    let sb = select(across_k, along_k, TRANS_B);
    let vb = b_vec4(bases.y, k0 + sb.y, corner.y + sb.x);
    for (var j = 0u; j < 4u; j++) {
        if TRANS_A {
            tile_a[sa.y * TILE + sa.x + j] = va[j];
        } else {
            tile_a[(sa.y + j) * TILE + sa.x] = va[j];
        }
        if TRANS_B {
            tile_b[(sb.y + j) * TILE + sb.x] = vb[j];
        } else {
            tile_b[sb.y * TILE + sb.x + j] = vb[j];
        }
    }
}
