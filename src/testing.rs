//! Knobs for tests and benches: they switch engine paths that are otherwise chosen per adapter
//! (or by the `RESFLOW_*` switches), so a test can run every path and compare the results.
//! Not for applications: the defaults are what the engine is tuned and tested for.

use crate::fusion::{self, ElementwiseInputs};
use crate::gpu::Gpu;
use crate::tensor::Tensor;

/// Runs the one-time work the engine does on first use of a device (the CPU adapters' staging
/// probe), so that dispatch counts, submits and memory peaks measured afterwards are those of
/// the ops alone.
pub fn settle(gpu: &Gpu) {
    fusion::staging_probe(gpu);
}

/// Turns elementwise fusion on (up to `fusion::MAX_OPS` ops per kernel) or off (one op per
/// kernel, as `RESFLOW_FUSION=0` does).
pub fn set_fusion(gpu: &Gpu, on: bool) {
    fusion::settings(gpu).set_fusion(on);
}

/// Chooses where elementwise kernels read their inputs (`Auto`: the adapter's choice).
pub fn set_elementwise_inputs(gpu: &Gpu, mode: ElementwiseInputs) {
    fusion::settings(gpu).set_inputs(mode);
}

/// Turns packed 64-bit stores of elementwise results on or off; on only where supported (a CPU
/// adapter with `SHADER_INT64`). Returns the setting now in force.
pub fn set_packed_stores(gpu: &Gpu, on: bool) -> bool {
    fusion::settings(gpu).set_packed_stores(gpu, on)
}

/// Submits pending work every `dispatches` dispatches (0: only at a readback or sync).
pub fn set_submit_every(gpu: &Gpu, dispatches: u64) {
    gpu.set_submit_every(dispatches);
}

/// A copy of `t` made by an elementwise kernel (not a buffer copy).
pub fn copy_by_kernel(t: &Tensor) -> Tensor {
    t.copy_by_kernel()
}

/// Generated elementwise kernels for representative expressions, for shader validation.
pub fn example_sources() -> Vec<String> {
    fusion::example_sources()
}

/// The uniform parameter structs of the kernels as Rust lays them out, for the test that
/// reflects the WGSL structs with naga and compares.
pub fn param_layouts() -> Vec<crate::tensor::ParamLayout> {
    crate::tensor::param_layouts()
}
