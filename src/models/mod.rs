//! The model families trained by `resflow`, built from the flow layers: each knows its
//! parameters, its log-density and how to sample, and nothing of training.

pub mod image;
pub mod toy;
