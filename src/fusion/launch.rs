//! Launches of generated kernels that do more than store an expression: a sum over an axis
//! that computes its input's expression while it adds ([`sum`]), and the skinny matmul that
//! computes its left operand's expression along each row ([`matmul_rows`]).

use std::sync::Arc;

use super::codegen::{row_matmul_source, sum_source, uniform, SumShape, LIBRARY};
use super::expr::{Node, Role};
use super::lazy::{build_within_limits, InputList, Operand, Storage};
use super::staging::{elementwise_inputs_for, input_bindings, input_kinds, stage_inputs, Staged};
use crate::gpu::kernels::grid_1d;
use crate::gpu::{Binding, DeviceBuffer, Gpu, KernelSpec, Slot};
use crate::options::Profile;

/// Vec4s one invocation of a generated elementwise kernel computes. On CPU adapters every
/// invocation carries a fixed cost (llvmpipe runs the workgroup as a loop of SIMD batches), and
/// four consecutive vec4s each measured 20 % faster than one (x+1 over 16 M floats, kernel
/// alone: 17.4 vs 22.3 ms); GPUs keep one, which keeps neighbouring threads on neighbouring
/// addresses.
pub(super) fn vec4s_per_invocation(gpu: &Gpu) -> usize {
    if gpu.profile() == Profile::Cpu {
        4
    } else {
        1
    }
}

/// Rows (or vec4 rows) one invocation of a fused sum adds up; keeps its loop far below
/// `gpu::kernels::LOOP_BUDGET`.
const SUM_CHUNK: usize = 32;

/// Sums over at most this many rows run in one pass (one invocation per output vec4), which
/// saves the second dispatch that adds up the chunks: the small sums of a training step (bias
/// gradients, gradient norms) are dominated by per-dispatch cost, not by their loops.
const SINGLE_PASS_ROWS: usize = 1024;

/// Σ over the middle axis of an expression viewed as `[outer, n, inner]`, as one generated
/// kernel that computes the expression while it sums (the summed tensor is never stored).
/// Returns the partial sums, `[outer, chunks, inner]`, and `chunks` (the caller sums the
/// chunks when there is more than one), or `None` when vec4s would straddle outputs
/// (`inner` not a multiple of 4, and not 1 with `n` a multiple of 4).
pub(crate) fn sum(
    gpu: &Gpu,
    input: &Arc<Storage>,
    (outer, n, inner): (usize, usize, usize),
) -> Option<(DeviceBuffer, usize)> {
    let columns = inner.is_multiple_of(4);
    if !(columns || inner == 1 && n.is_multiple_of(4)) {
        return None;
    }
    let operand = [Operand { store: input, role: Role::Full }];
    let make = |mut k: Vec<Node>| k.remove(0);
    let (node, inputs) = build_within_limits(gpu, &operand, &make);
    let numel = outer * n * inner;
    let staged = stage_inputs(gpu, &inputs, elementwise_inputs_for(gpu, numel));
    let kinds = input_kinds(&staged, &inputs);

    // Invocation (o, c, j4): chunk c of the rows of output block o, vec4 column j4.
    let (rows, cols4) = if columns { (n, inner / 4) } else { (n / 4, 1) };
    let chunk = if rows <= SINGLE_PASS_ROWS { rows.max(1) } else { SUM_CHUNK };
    let chunks = rows.div_ceil(chunk);
    let mut consts = Vec::new();
    let src = sum_source(&node, &kinds, &mut consts, &SumShape { rows, cols4, chunk, chunks, columns });
    let invocations = outer * chunks * cols4;
    let out = gpu.alloc((outer * chunks * inner * 4).max(4) as u64);
    let extra = [(Slot::ReadWrite, Binding::Buffer { buffer: &out, bytes: (outer * chunks * inner * 4) as u64 })];
    let groups = grid_1d((invocations as u32).div_ceil(256));
    dispatch_generated(gpu, src, (&inputs, &staged, &kinds), extra, uniform(invocations, &consts), groups);
    Some((out, chunks))
}

/// Output columns of [`matmul_rows`] at most.
pub const ROW_MATMUL_MAX_N: usize = 4;

/// C = A·B for a skinny result (`n` ≤ [`ROW_MATMUL_MAX_N`] columns, `k` a multiple of 4): one
/// invocation per row of C computes A's pending expression along its row while it takes the
/// dot products, so A (say an activation) is never stored. B is read at the same index by every
/// invocation, which drivers serve as one broadcast load (B sits in a uniform buffer where it fits).
/// `b_stored_nk` says B is stored transposed, as `[n, k]`.
pub(crate) fn matmul_rows(
    gpu: &Gpu,
    a: &Arc<Storage>,
    b: &DeviceBuffer,
    (m, k, n): (usize, usize, usize),
    b_stored_nk: bool,
) -> DeviceBuffer {
    debug_assert!(n <= ROW_MATMUL_MAX_N && k.is_multiple_of(4));
    let operand = [Operand { store: a, role: Role::Full }];
    let (node, inputs) = build_within_limits(gpu, &operand, &|mut k: Vec<Node>| k.remove(0));
    let staged = stage_inputs(gpu, &inputs, elementwise_inputs_for(gpu, m * k));
    let kinds = input_kinds(&staged, &inputs);
    let mut consts = Vec::new();
    // B in a uniform buffer where it fits: lavapipe reads storage buffers lane by lane, with a
    // bounds check each (5.7× slower here for the toy models' last layer, 1024×64 · 64×2).
    let b_bytes = (k * n * 4) as u64;
    let b_uniform = b_bytes <= gpu.limits().max_uniform_buffer_binding_size;
    let src = row_matmul_source(&node, &kinds, &mut consts, (k, n), b_uniform, b_stored_nk);
    let b_slot = if b_uniform { Slot::Uniform } else { Slot::ReadOnly };
    let out = gpu.alloc((m * n * 4).max(4) as u64);
    let extra = [
        (b_slot, Binding::Buffer { buffer: b, bytes: b_bytes }),
        (Slot::ReadWrite, Binding::Buffer { buffer: &out, bytes: (m * n * 4) as u64 }),
    ];
    let groups = grid_1d((m as u32).div_ceil(256));
    dispatch_generated(gpu, src, (&inputs, &staged, &kinds), extra, uniform(m, &consts), groups);
    out
}

/// Compiles (or finds) the generated kernel `src` and dispatches it over the expression's
/// inputs followed by `extra` bindings (outputs, other operands).
pub(super) fn dispatch_generated<'a, const E: usize>(
    gpu: &Gpu,
    src: String,
    (inputs, staged, kinds): (&'a InputList, &'a Staged, &[(Slot, Role)]),
    extra: [(Slot, Binding<'a>); E],
    params: Vec<u32>,
    groups: [u32; 3],
) {
    let mut slots: Vec<Slot> = kinds.iter().map(|k| k.0).collect();
    let mut bindings = input_bindings(inputs, staged);
    for (slot, binding) in extra {
        slots.push(slot);
        bindings.push(binding);
    }
    let kernel = gpu.kernel(&KernelSpec::generated(LIBRARY, src, slots));
    gpu.dispatch(&kernel, bytemuck::cast_slice(&params), &bindings, groups);
}
