//! Elementwise fusion: elementwise ops (same-shape or broadcast operands, activations and
//! their derivatives, `full`, matmuls of at most three terms) are recorded lazily as an
//! expression over realized input buffers, and a chain of them runs as one generated WGSL
//! kernel when its result is first needed (a kernel binds it, it is read back, or the
//! expression grows past the limits below). A sum over an axis computes its input's pending
//! expression in the same kernel ([`sum`]), so the summed tensor is never stored.
//!
//! Why: on every adapter a dispatch has a fixed cost (on lavapipe ≈ 60 µs, a thread hand-off
//! per dispatch), and an elementwise chain is memory-bound, so one pass over the inputs beats
//! one pass per op. A generated kernel is cached by its text, which holds the op structure but
//! not the scalar constants or sizes (those travel in the uniform), so a training step
//! compiles its kernels once.
//!
//! Invariants: the leaves of an expression are realized, immutable buffers (no kernel writes
//! into a buffer another tensor already holds), so deferring the work cannot change its
//! result; a lazy input is either inlined into its consumer (recomputed there: elementwise
//! work is cheap next to a dispatch) or realized first.

//!
//! Layout: [`expr`] the expression tree, [`lazy`] lazy storage and recording, [`codegen`] the
//! pure WGSL generator, [`launch`] the sum and row-matmul kernels, [`staging`] where a kernel
//! reads its inputs. Fusion sits on the device layer (`gpu`) and under `tensor`; its per-device
//! settings live in the device's state map ([`Gpu::state`]).

mod codegen;
mod expr;
mod launch;
mod lazy;
pub mod staging;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::gpu::Gpu;
use crate::options::{Profile, RuntimeOptions};

pub use codegen::{example_sources, LIBRARY};
pub use expr::Role;
pub(crate) use expr::{Child, Node};
pub(crate) use launch::{matmul_rows, sum, ROW_MATMUL_MAX_N};
pub(crate) use lazy::{constant, record, Operand, Storage};
pub use staging::{elementwise_inputs_for, staging_probe, ElementwiseInputs, StagingProbe, TEXTURE_INPUTS_FROM};

/// Ops one fused kernel computes at most (larger chains are split). The chain of 1000 tiny
/// adds ended by one sync (the bench's `overhead` row, in-process medians of 100): 3.5–3.9 ms
/// at 32, 2.0–2.3 at 128, 1.9–2.1 at 256 and 2.0–2.1 as one kernel; a toy training step's CPU
/// time and the image block's memory peaks are the same at 32 and 128.
pub const MAX_OPS: usize = 128;
/// Distinct input buffers of one fused kernel at most (WebGPU guarantees 8 storage buffers
/// per stage: these plus the output).
pub const MAX_INPUTS: usize = 6;

/// The fusion settings of one device: read from [`RuntimeOptions`] when first needed, changed
/// by tests and benches through [`crate::testing`].
pub(crate) struct Settings {
    /// Ops one fused kernel may compute (1 = no fusion).
    limit: AtomicUsize,
    /// [`ElementwiseInputs`] as a number (see [`Settings::inputs`]).
    inputs: AtomicU8,
    /// Generated kernels store pairs of vec4s as one `vec4<u64>` (see [`packed_stores`]).
    packed_stores: AtomicBool,
    /// The staging probe's result, once measured.
    probe: OnceLock<StagingProbe>,
}

const INPUTS: [ElementwiseInputs; 4] = [
    ElementwiseInputs::Auto,
    ElementwiseInputs::Buffers,
    ElementwiseInputs::Textures,
    ElementwiseInputs::BuffersAndUniforms,
];

impl Settings {
    fn new(gpu: &Gpu) -> Settings {
        let o = RuntimeOptions::get();
        Settings {
            limit: AtomicUsize::new(if o.fusion { MAX_OPS } else { 1 }),
            inputs: AtomicU8::new(INPUTS.iter().position(|&m| m == o.elementwise).unwrap_or(0) as u8),
            packed_stores: AtomicBool::new(o.packed_stores && packed_stores_supported(gpu)),
            probe: OnceLock::new(),
        }
    }
    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }
    pub(crate) fn inputs(&self) -> ElementwiseInputs {
        INPUTS[self.inputs.load(Ordering::Relaxed) as usize]
    }
    pub(crate) fn packed_stores(&self) -> bool {
        self.packed_stores.load(Ordering::Relaxed)
    }
    pub(crate) fn set_fusion(&self, on: bool) {
        self.limit.store(if on { MAX_OPS } else { 1 }, Ordering::Relaxed);
    }
    pub(crate) fn set_inputs(&self, mode: ElementwiseInputs) {
        let v = INPUTS.iter().position(|&m| m == mode).expect("every mode is listed");
        self.inputs.store(v as u8, Ordering::Relaxed);
    }
    /// On only where supported; returns the setting now in force.
    pub(crate) fn set_packed_stores(&self, gpu: &Gpu, on: bool) -> bool {
        let on = on && packed_stores_supported(gpu);
        self.packed_stores.store(on, Ordering::Relaxed);
        on
    }
}

/// The fusion settings of `gpu`.
pub(crate) fn settings(gpu: &Gpu) -> Arc<Settings> {
    gpu.state(Settings::new)
}

/// Whether elementwise fusion is on for `gpu`.
pub fn enabled(gpu: &Gpu) -> bool {
    settings(gpu).limit() > 1
}

/// Whether generated elementwise kernels store their results as `vec4<u64>` pairs of vec4s.
/// On by default on CPU adapters with 64-bit shader integers: llvmpipe stores to a storage
/// buffer one lane and one component at a time, so 64-bit components halve that loop.
/// `RESFLOW_PACKED_STORES=0` turns it off.
pub fn packed_stores(gpu: &Gpu) -> bool {
    settings(gpu).packed_stores()
}

/// Packed 64-bit stores pay off where stores are per-lane loops (CPU adapters) and need the
/// device's 64-bit shader integers; GPUs store vec4s natively.
fn packed_stores_supported(gpu: &Gpu) -> bool {
    gpu.profile() == Profile::Cpu && gpu.features().contains(wgpu::Features::SHADER_INT64)
}
