// Batched C[b] = op(A[b]) · op(B[b]), register-blocked with vec4 loads: each invocation
// accumulates an 8×8 block of C over k-steps of 4, reading an 8×4 block of A and a 4×8 block of
// B per step (8 vec4 loads each), transposed in registers where the stored layout runs the
// other way. CPU drivers (lavapipe) pay a fixed cost per load per invocation, so the FMAs per
// load (here 16) decide the speed; GPUs get 16-byte loads.
// Needs K % 4 == 0, M % 4 == 0 when TRANS_A, N % 4 == 0 unless TRANS_B (the host falls back to
// `matmul.wgsl` otherwise). Out-of-range rows/columns are clamped on load, masked on store.
// Parameters, bindings and transposes come from matmul_common_vec4.wgsl.

// A[rows r..r+4][k0..k0+4] as a matrix whose column i is row r+i (rows clamped to M-1).
fn a_block(base: u32, r: u32, k0: u32) -> mat4x4<f32> {
    if TRANS_A {
        let rb = min(r, p.m - 4u);
        return transpose(mat4x4<f32>(
            a[(base + k0 * p.lda + rb) / 4u],
            a[(base + (k0 + 1u) * p.lda + rb) / 4u],
            a[(base + (k0 + 2u) * p.lda + rb) / 4u],
            a[(base + (k0 + 3u) * p.lda + rb) / 4u]));
    }
    let last = p.m - 1u;
    return mat4x4<f32>(
        a[(base + min(r, last) * p.lda + k0) / 4u],
        a[(base + min(r + 1u, last) * p.lda + k0) / 4u],
        a[(base + min(r + 2u, last) * p.lda + k0) / 4u],
        a[(base + min(r + 3u, last) * p.lda + k0) / 4u]);
}

// B[k0..k0+4][cols q..q+4] as a matrix whose column l is k-row k0+l (columns clamped).
fn b_block(base: u32, k0: u32, q: u32) -> mat4x4<f32> {
    if TRANS_B {
        let last = p.n - 1u;
        return transpose(mat4x4<f32>(
            b[(base + min(q, last) * p.ldb + k0) / 4u],
            b[(base + min(q + 1u, last) * p.ldb + k0) / 4u],
            b[(base + min(q + 2u, last) * p.ldb + k0) / 4u],
            b[(base + min(q + 3u, last) * p.ldb + k0) / 4u]));
    }
    let qb = min(q, p.n - 4u);
    return mat4x4<f32>(
        b[(base + k0 * p.ldb + qb) / 4u],
        b[(base + (k0 + 1u) * p.ldb + qb) / 4u],
        b[(base + (k0 + 2u) * p.ldb + qb) / 4u],
        b[(base + (k0 + 3u) * p.ldb + qb) / 4u]);
}

override RB: u32 = 2u; // 4-row blocks per invocation
override CB: u32 = 2u; // 4-column blocks per invocation

@compute @workgroup_size(8, 8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row0 = (wid.y * 8u + lid.y) * 4u * RB;
    let col0 = (wid.x * 8u + lid.x) * 4u * CB;
    let abase = wid.z * p.batch_a;
    let bbase = wid.z * p.batch_b;
    // acc[i * CB + h]: rows row0 + 4i .. +4 (as matrix columns), columns col0 + 4h .. +4.
    var acc: array<mat4x4<f32>, 16>;
    for (var t = 0u; t < RB * CB; t++) { acc[t] = mat4x4<f32>(); }
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        var bb: array<mat4x4<f32>, 4>;
        for (var h = 0u; h < CB; h++) { bb[h] = b_block(bbase, k0, col0 + 4u * h); }
        for (var i = 0u; i < RB; i++) {
            let ab = a_block(abase, row0 + 4u * i, k0);
            // (b · a)[:, r] = Σ_l B[k0+l][cols] · A[row r][k0+l]: column r is row r of C's block.
            for (var h = 0u; h < CB; h++) { acc[i * CB + h] += bb[h] * ab; }
        }
    }
    let cbase = wid.z * p.batch_c;
    for (var t = 0u; t < RB * CB; t++) {
        let r = row0 + 4u * (t / CB);
        let q = col0 + 4u * (t % CB);
        for (var i = 0u; i < 4u; i++) {
            if r + i < p.m {
                for (var j = 0u; j < 4u; j++) {
                    if q + j < p.n {
                        c[cbase + (r + i) * p.ldc + q + j] = acc[t][i][j];
                    }
                }
            }
        }
    }
}
