//! Lazy storage: a tensor's memory is a realized buffer or a pending expression over realized
//! buffers, and a new elementwise op extends its operands' expressions (inlining them) until
//! the result is needed or the expression passes the limits of one kernel.

use std::sync::{Arc, Mutex, OnceLock};

use super::codegen::{generate, uniform};
use super::expr::{Node, Role};
use super::launch::{dispatch_generated, vec4s_per_invocation};
use super::staging::{elementwise_inputs_for, input_kinds, stage_inputs, ElementwiseInputs};
use super::{settings, MAX_INPUTS};
use crate::gpu::kernels::grid_1d;
use crate::gpu::{Binding, DeviceBuffer, Gpu, Slot};

/// A kernel's inputs: realized storages and how each is read.
pub(super) type InputList = [(Arc<Storage>, Role)];

/// A pending expression and the realized storages its inputs refer to, with their roles.
pub(crate) struct Lazy {
    pub(super) node: Node,
    pub(super) inputs: Vec<(Arc<Storage>, Role)>,
}

/// A tensor's memory: a realized buffer, or an expression that computes it on first use.
pub(crate) struct Storage {
    pub(super) numel: usize,
    pub(super) buf: OnceLock<DeviceBuffer>,
    lazy: Mutex<Option<Lazy>>,
}

impl Storage {
    pub fn realized(buf: DeviceBuffer, numel: usize) -> Storage {
        Storage { numel, buf: OnceLock::from(buf), lazy: Mutex::new(None) }
    }

    pub fn is_realized(&self) -> bool {
        self.buf.get().is_some()
    }

    /// The buffer, running the pending expression first if there is one.
    pub fn buffer(&self, gpu: &Gpu) -> &DeviceBuffer {
        self.buf.get_or_init(|| {
            let lazy = self.lazy.lock().unwrap().take().expect("an unrealized storage holds an expression");
            run(gpu, &lazy, self.numel)
        })
    }
}

/// An operand of a new elementwise op and how it maps onto the result.
pub(crate) struct Operand<'a> {
    pub store: &'a Arc<Storage>,
    pub role: Role,
}

/// Builds the expression of a new op over `operands` (see [`build_within_limits`]) and returns
/// it as a lazy storage of `numel` elements. `make` turns the operands' nodes into the op's.
pub(crate) fn record(
    gpu: &Gpu,
    numel: usize,
    operands: &[Operand<'_>],
    make: impl Fn(Vec<Node>) -> Node,
) -> Arc<Storage> {
    let (node, inputs) = build_within_limits(gpu, operands, &make);
    Arc::new(Storage { numel, buf: OnceLock::new(), lazy: Mutex::new(Some(Lazy { node, inputs })) })
}

/// [`build`] inlining lazy operands, or, when that passes the op or input limits (or fusion
/// is off), realizing them.
pub(super) fn build_within_limits(
    gpu: &Gpu,
    operands: &[Operand<'_>],
    make: &impl Fn(Vec<Node>) -> Node,
) -> (Node, Vec<(Arc<Storage>, Role)>) {
    let limit = settings(gpu).limit();
    let (node, inputs) = build(gpu, operands, limit > 1, make);
    if node.ops() > limit || inputs.len() > MAX_INPUTS {
        build(gpu, operands, false, make)
    } else {
        (node, inputs)
    }
}

/// A lazy storage of `numel` copies of `value`.
pub(crate) fn constant(numel: usize, value: f32) -> Arc<Storage> {
    let lazy = Lazy { node: Node::Const(value), inputs: Vec::new() };
    Arc::new(Storage { numel, buf: OnceLock::new(), lazy: Mutex::new(Some(lazy)) })
}

fn build(
    gpu: &Gpu,
    operands: &[Operand<'_>],
    inline: bool,
    make: &impl Fn(Vec<Node>) -> Node,
) -> (Node, Vec<(Arc<Storage>, Role)>) {
    let mut inputs: Vec<(Arc<Storage>, Role)> = Vec::new();
    let mut leaf = |s: &Arc<Storage>, role: Role| match inputs.iter().position(|(t, r)| Arc::ptr_eq(t, s) && *r == role)
    {
        Some(i) => i,
        None => {
            inputs.push((s.clone(), role));
            inputs.len() - 1
        }
    };
    let mut nodes = Vec::with_capacity(operands.len());
    for op in operands {
        // Only full-size operands inline: their inputs' roles then hold for the result too.
        let pending = if inline && op.role == Role::Full {
            op.store.lazy.lock().unwrap().as_ref().map(|l| {
                let map: Vec<usize> = l.inputs.iter().map(|(s, r)| leaf(s, *r)).collect();
                l.node.remap(&map)
            })
        } else {
            None
        };
        nodes.push(match pending {
            Some(node) => node,
            None => {
                // A leaf: realized now if it is still lazy.
                op.store.buffer(gpu);
                Node::Input(leaf(op.store, op.role))
            }
        });
    }
    (make(nodes), inputs)
}

/// Runs `lazy` as one generated kernel into a new buffer of `numel` elements.
fn run(gpu: &Gpu, lazy: &Lazy, numel: usize) -> DeviceBuffer {
    run_reading(gpu, lazy, numel, elementwise_inputs_for(gpu, numel))
}

/// [`run`] with its inputs read as `path` says.
pub(super) fn run_reading(gpu: &Gpu, lazy: &Lazy, numel: usize, path: ElementwiseInputs) -> DeviceBuffer {
    let out = gpu.alloc((numel * 4).max(4) as u64);
    let staged = stage_inputs(gpu, &lazy.inputs, path);
    let kinds = input_kinds(&staged, &lazy.inputs);
    let mut consts = Vec::new();
    let per = vec4s_per_invocation(gpu);
    let packed = settings(gpu).packed_stores() && per.is_multiple_of(2);
    let body = generate(&lazy.node, &kinds, &mut consts, per, packed);
    // Whole vec4<u64>s when packed (buckets are multiples of 256 bytes, so this fits).
    let bytes = (numel as u64 * 4).div_ceil(32) * 32;
    let extra = [(Slot::ReadWrite, Binding::Buffer { buffer: &out, bytes })];
    let groups = grid_1d((numel as u32).div_ceil(1024 * per as u32));
    dispatch_generated(gpu, body, (&lazy.inputs, &staged, &kinds), extra, uniform(numel, &consts), groups);
    out
}
