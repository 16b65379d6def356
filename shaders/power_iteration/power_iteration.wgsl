// Matrix power iteration in one dispatch: one workgroup runs every iteration
//   u ← normalize(W v),  v ← normalize(Wᵀ u)
// on W [rows, cols] (row-major), updating u and v in place. For the small weight matrices of
// the residual blocks this replaces ~10 dispatches per iteration with one per step.
// WG and workgroup_sum come from shaders/workgroup_sum.wgsl.

struct Params { rows: u32, cols: u32, iters: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    for (var it = 0u; it < p.iters; it++) {
        var sq = 0.0;
        for (var r = lid; r < p.rows; r += WG) {
            var acc = 0.0;
            for (var c = 0u; c < p.cols; c++) {
                acc += w[r * p.cols + c] * v[c];
            }
            u[r] = acc;
            sq += acc * acc;
        }
        let inv_u = 1.0 / (sqrt(workgroup_sum(lid, sq)) + 1e-12);
        for (var r = lid; r < p.rows; r += WG) {
            u[r] *= inv_u;
        }
        storageBarrier();
        sq = 0.0;
        for (var c = lid; c < p.cols; c += WG) {
            var acc = 0.0;
            for (var r = 0u; r < p.rows; r++) {
                acc += w[r * p.cols + c] * u[r];
            }
            v[c] = acc;
            sq += acc * acc;
        }
        let inv_v = 1.0 / (sqrt(workgroup_sum(lid, sq)) + 1e-12);
        for (var c = lid; c < p.cols; c += WG) {
            v[c] *= inv_v;
        }
        storageBarrier();
    }
}
