// Batched C[b] = op(A[b]) · op(B[b]), register-blocked without workgroup memory: each
// invocation keeps a 4×4 block of C in registers. Rows of the block are contiguous, columns are
// interleaved 16 apart, so neighbouring invocations read neighbouring B elements. Out-of-range
// rows/columns are clamped on load and masked on store, which keeps the k-loop branch-free.
// This is the variant for CPU adapters (lavapipe), where emulated barriers make tiling slower.

// Params, bindings, TRANS_A/TRANS_B, a_index and b_index: matmul_common.wgsl.

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = wid.y * 64u + lid.y * 4u;
    let col0 = wid.x * 64u + lid.x;
    let abase = wid.z * p.batch_a;
    let bbase = wid.z * p.batch_b;
    let r = min(vec4<u32>(row0, row0 + 1u, row0 + 2u, row0 + 3u), vec4<u32>(p.m - 1u));
    let cl = min(vec4<u32>(col0, col0 + 16u, col0 + 32u, col0 + 48u), vec4<u32>(p.n - 1u));
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let bv = vec4<f32>(b[bbase + b_index(kk, cl.x)], b[bbase + b_index(kk, cl.y)],
                           b[bbase + b_index(kk, cl.z)], b[bbase + b_index(kk, cl.w)]);
        acc0 = fma(vec4<f32>(a[abase + a_index(r.x, kk)]), bv, acc0);
        acc1 = fma(vec4<f32>(a[abase + a_index(r.y, kk)]), bv, acc1);
        acc2 = fma(vec4<f32>(a[abase + a_index(r.z, kk)]), bv, acc2);
        acc3 = fma(vec4<f32>(a[abase + a_index(r.w, kk)]), bv, acc3);
    }
    let cbase = wid.z * p.batch_c;
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        if row < p.m {
            for (var j = 0u; j < 4u; j++) {
                let col = col0 + 16u * j;
                if col < p.n {
                    c[cbase + row * p.ldc + col] = rows[i][j];
                }
            }
        }
    }
}
