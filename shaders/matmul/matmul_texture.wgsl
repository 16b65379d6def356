// Batched C[b] = A[b] · B[b] with both operands in rgba32float textures. Each invocation
// accumulates an 8×8 block of C over k-steps of 4.
// The variant for CPU adapters: lavapipe turns `textureLoad` into vector gathers, while every
// storage-buffer access costs a per-invocation loop; this runs ≈ 5× the buffer-only kernels there.
//
// Operand layouts: by default a texture holds its operand as staged by texture_stage.wgsl (A as
// [M, K], B as [K, N], transposes applied, zero-padded). With TRANS_A (TRANS_B) it holds the
// operand as stored, i.e. Aᵀ as [K, M] (Bᵀ as [N, K]), copied straight from the buffer; the
// kernel transposes its 4×4 blocks in registers instead.

struct Params {
    m: u32, n: u32, k4: u32, ldc: u32,
    batch_c: u32, a_layer_step: u32, b_layer_step: u32, pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var ta: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(2) var tb: texture_storage_2d_array<rgba32float, read>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// Set by the host when n, ldc and batch_c are multiples of 4: rows of C stored as vec4s.
override VEC_OUT: bool = false;
// The result is stored transposed (element (r, q) at q·ldc + r): the host computes a tall,
// skinny C as (Cᵀ)ᵀ, so that its few columns lie along the workgroup's rows (below).
override TRANS_C: bool = false;

// Column i: A[row0 + 4h + i][4k4 ..].
fn load_a(k4: u32, row0: u32, layer: u32, h: u32) -> mat4x4<f32> {
    if TRANS_A {
        let x = row0 / 4u + h;
        return transpose(mat4x4<f32>(textureLoad(ta, vec2<u32>(x, 4u * k4), layer),
                                     textureLoad(ta, vec2<u32>(x, 4u * k4 + 1u), layer),
                                     textureLoad(ta, vec2<u32>(x, 4u * k4 + 2u), layer),
                                     textureLoad(ta, vec2<u32>(x, 4u * k4 + 3u), layer)));
    }
    let r = row0 + 4u * h;
    return mat4x4<f32>(textureLoad(ta, vec2<u32>(k4, r), layer),
                       textureLoad(ta, vec2<u32>(k4, r + 1u), layer),
                       textureLoad(ta, vec2<u32>(k4, r + 2u), layer),
                       textureLoad(ta, vec2<u32>(k4, r + 3u), layer));
}

// Column l: B[4k4 + l][4(col4 + h) ..].
fn load_b(k4: u32, col4: u32, layer: u32, h: u32) -> mat4x4<f32> {
    let x = col4 + h;
    if TRANS_B {
        return transpose(mat4x4<f32>(textureLoad(tb, vec2<u32>(k4, 4u * x), layer),
                                     textureLoad(tb, vec2<u32>(k4, 4u * x + 1u), layer),
                                     textureLoad(tb, vec2<u32>(k4, 4u * x + 2u), layer),
                                     textureLoad(tb, vec2<u32>(k4, 4u * x + 3u), layer)));
    }
    let k0 = 4u * k4;
    return mat4x4<f32>(textureLoad(tb, vec2<u32>(x, k0), layer),
                       textureLoad(tb, vec2<u32>(x, k0 + 1u), layer),
                       textureLoad(tb, vec2<u32>(x, k0 + 2u), layer),
                       textureLoad(tb, vec2<u32>(x, k0 + 3u), layer));
}

@compute @workgroup_size(8, 8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row0 = gid.y * 8u;
    let col4 = gid.x * 2u; // texel column of B: columns 4·col4 ..
    // Blocks wholly outside C do nothing: CPU drivers then skip the lanes of a small result
    // (llvmpipe runs 8 consecutive invocations, one row of the workgroup, as one vector).
    if row0 >= p.m || 4u * col4 >= p.n {
        return;
    }
    let la = gid.z * p.a_layer_step;
    let lb = gid.z * p.b_layer_step;
    var acc00 = mat4x4<f32>();
    var acc01 = mat4x4<f32>();
    var acc10 = mat4x4<f32>();
    var acc11 = mat4x4<f32>();
    for (var k4 = 0u; k4 < p.k4; k4++) {
        let b0 = load_b(k4, col4, lb, 0u);
        let b1 = load_b(k4, col4, lb, 1u);
        let a0 = load_a(k4, row0, la, 0u);
        let a1 = load_a(k4, row0, la, 1u);
        // (b · a)[:, i] = Σ_l B[k0+l][cols] · A[row i][k0+l]: column i is row i of C's block.
        acc00 += b0 * a0;
        acc01 += b1 * a0;
        acc10 += b0 * a1;
        acc11 += b1 * a1;
    }
    let cbase = gid.z * p.batch_c;
    let blocks = array<mat4x4<f32>, 4>(acc00, acc01, acc10, acc11);
    for (var blk = 0u; blk < 4u; blk++) {
        let r = row0 + 4u * (blk / 2u);
        let q = 4u * (col4 + blk % 2u);
        for (var i = 0u; i < 4u; i++) {
            if r + i < p.m && q < p.n {
                let e = cbase + (r + i) * p.ldc + q;
                if VEC_OUT {
                    c[e / 4u] = blocks[blk][i];
                } else {
                    for (var j = 0u; j < 4u; j++) {
                        if q + j < p.n {
                            let f = select(e + j, cbase + (q + j) * p.ldc + r + i, TRANS_C);
                            c[f / 4u][f % 4u] = blocks[blk][i][j];
                        }
                    }
                }
            }
        }
    }
}
