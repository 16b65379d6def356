//! The fused power iteration of spectral normalisation: u ← Wv/‖Wv‖, v ← Wᵀu/‖Wᵀu‖ for many
//! iterations in one dispatch (`shaders/power_iteration/`).

use super::Tensor;
use crate::gpu::kernels::LOOP_BUDGET;
use crate::gpu::{Gpu, KernelSpec};
use crate::ops;
use crate::options::Profile;

/// Loop iterations one invocation of the fused power-iteration kernel runs per power iteration
/// at workgroup size `wg` (its row and column loops and the two tree reductions).
fn power_iteration_loops(rows: usize, cols: usize, wg: usize) -> usize {
    rows.div_ceil(wg) * (cols + 2) + cols.div_ceil(wg) * (rows + 2) + 2 * (wg.trailing_zeros() as usize + 1) + 1
}

/// The power-iteration kernel's workgroup size: on CPU adapters every barrier switches between
/// all of a workgroup's invocations, so small matrices run on few.
fn power_iteration_workgroup(gpu: &Gpu, rows: usize, cols: usize) -> usize {
    if gpu.profile() == Profile::Cpu && power_iteration_loops(rows, cols, 16) <= 16_384 {
        16
    } else {
        256
    }
}

/// `iters` power iterations on W from (u, v); returns the new (u, v).
pub(super) fn matrix_power_iteration(w: &Tensor, u: &Tensor, v: &Tensor, iters: usize) -> (Tensor, Tensor) {
    let (rows, cols) = (w.shape[0], w.shape[1]);
    // Rows of whole vec4s are read four values per load; the loop counts are in loads.
    let vec4 = cols.is_multiple_of(4);
    let (shader, width) = if vec4 { ("power_iteration_vec4", cols / 4) } else { ("power_iteration", cols) };
    let wg = power_iteration_workgroup(&w.gpu, rows, width);
    // Iterations per dispatch, within the per-invocation loop budget (LOOP_BUDGET); a
    // matrix too long for even one falls back to the op-by-op iteration.
    let per_dispatch = LOOP_BUDGET / power_iteration_loops(rows, width, wg);
    if per_dispatch == 0 {
        return ops::power_iteration_by_ops(w, u, v, iters);
    }
    // The kernel updates in place: work on copies, the inputs may be shared.
    let (u2, v2) = (u.copy(), v.copy());
    let k = w.gpu.kernel(&KernelSpec::new(shader, "main", 1, 2).with("WG", wg as f64));
    let mut done = 0;
    while done < iters {
        let n = per_dispatch.min(iters - done);
        let params = [rows as u32, width as u32, n as u32, 0];
        w.gpu.dispatch(&k, bytemuck::cast_slice(&params), &[w.binding(), u2.binding(), v2.binding()], [1, 1, 1]);
        done += n;
    }
    (u2, v2)
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    let words = |shader| super::ParamLayout::words(shader, 4, &[0, 1, 2]);
    vec![words("power_iteration"), words("power_iteration_vec4")]
}
