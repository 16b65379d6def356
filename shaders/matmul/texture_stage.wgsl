// Stages a (batched, possibly transposed) matrix from a buffer into an rgba32float texture:
// texel (x, row) of layer z holds columns 4x..4x+3 of that row. Everything outside the matrix
// is written as zero, so kernels may read the padded texture without bounds checks.
// The source is read as vec4s: one load per texel when rows are contiguous and 16-byte aligned
// (ALIGNED), else one vec4 load per element picked apart (still one load instruction each).

struct Params {
    rows: u32, cols: u32, row_stride: u32, col_stride: u32,
    batch_stride: u32, width: u32, height: u32, layers: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var dst: texture_storage_2d_array<rgba32float, write>;

// Set by the host when col_stride == 1 and cols, row_stride, batch_stride are multiples of 4.
override ALIGNED: bool = false;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = gid.x;
    let row = gid.y;
    let layer = gid.z;
    if x >= p.width || row >= p.height {
        return;
    }
    var v = vec4<f32>(0.0);
    if row < p.rows {
        let base = layer * p.batch_stride + row * p.row_stride;
        if ALIGNED {
            if 4u * x < p.cols {
                v = src[(base + 4u * x) / 4u];
            }
        } else {
            for (var c = 0u; c < 4u; c++) {
                let col = 4u * x + c;
                if col < p.cols {
                    let e = base + col * p.col_stride;
                    v[c] = src[e / 4u][e % 4u];
                }
            }
        }
    }
    textureStore(dst, vec2<u32>(x, row), layer, texel(v));
}
