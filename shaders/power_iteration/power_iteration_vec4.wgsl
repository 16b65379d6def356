// The power iteration of shaders/power_iteration.wgsl for a W whose rows are whole vec4s
// (cols a multiple of 4): every load of W and v moves four values. On CPU adapters each
// storage-buffer load is a per-lane loop whatever its width, so this does a quarter of them.

struct Params { rows: u32, cols4: u32, iters: u32, pad: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    for (var it = 0u; it < p.iters; it++) {
        var sq = 0.0;
        for (var r = lid; r < p.rows; r += WG) {
            var acc = 0.0;
            for (var c = 0u; c < p.cols4; c++) {
                acc += dot(w[r * p.cols4 + c], v[c]);
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
        for (var c = lid; c < p.cols4; c += WG) {
            var acc = vec4<f32>(0.0);
            for (var r = 0u; r < p.rows; r++) {
                acc += w[r * p.cols4 + c] * u[r];
            }
            v[c] = acc;
            sq += dot(acc, acc);
        }
        let inv_v = 1.0 / (sqrt(workgroup_sum(lid, sq)) + 1e-12);
        for (var c = lid; c < p.cols4; c += WG) {
            v[c] *= inv_v;
        }
        storageBarrier();
    }
}
