//! Layers on the tape: a named parameter store, Linear and Conv2d, and the Lipschitz
//! constraints (spectral normalisation and induced mixed-norm normalisation).
//!
//! Every layer is generic over [`TensorOps`](crate::TensorOps), so the same model runs on the GPU
//! and on the f64 reference (which the tests use for dense-Jacobian oracles).

pub mod induced;
pub mod layers;
pub mod params;
pub mod spectral;

pub use induced::{InducedNorm, NormChain, Order};
pub use layers::{Constraint, Conv2d, Linear, Weight};
pub use params::{Binder, ParamId, ParamStore};
pub use spectral::{PowerIters, SpectralNorm};
