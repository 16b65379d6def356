//! resflow: Residual Flows on a from-scratch wgpu/WGSL tensor engine.
//!
//! Layers, bottom up (each uses only those before it; `tests/layers.rs` checks it):
//! - [`options`], [`ops`], [`activation`]: the runtime switches, the op set (shared by the GPU
//!   tensor and the f64 reference) and the activations, the vocabulary every layer may name;
//! - [`gpu`]: device, pooled buffers, cached kernels, batched dispatch ([`process`]: how a
//!   resflow program starts and reports its errors);
//! - [`fusion`]: elementwise ops recorded lazily and run as one generated kernel per chain;
//! - [`tensor`]: the GPU tensor and the kernels behind each op family ([`testing`]: knobs
//!   that let tests and benches force an engine path);
//! - [`reference`]: the f64 CPU reference, the oracle for tests;
//! - [`tape`]: the explicit reverse-mode tape and the VJP rules;
//! - [`nn`]: parameters, layers and Lipschitz constraints;
//! - [`flow`]: invertible layers, the residual block and its log-det estimators, the image
//!   layers (logit, squeeze, coupling);
//! - [`models`]: the model families: the 2-D toy flow, the multi-scale image flow;
//! - [`train`]: one training loop over a run of either family (2-D density estimation, image
//!   density and hybrid models), their checkpoints, pictures and optimiser; [`data`]: the
//!   datasets; [`bench`]: the benchmarks behind `resflow bench`.

pub mod activation;
pub mod bench;
pub mod data;
pub mod flow;
pub mod fusion;
pub mod gpu;
pub mod models;
pub mod nn;
pub mod ops;
pub mod options;
pub mod process;
pub mod reference;
pub mod tape;
pub mod tensor;
pub mod testing;
pub mod train;

pub use gpu::{Gpu, GpuError};
pub use ops::{ActFn, Activation, AdamStep, Binary, Dist, Reduce, TensorOps, Unary};
pub use reference::CpuTensor;
pub use tape::{Gradients, Tape, Var};
pub use tensor::{ConvKernel, MatmulKernel, Tensor, TileSource, Tiles};
