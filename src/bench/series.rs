//! `resflow bench series`: the unrecorded power series of the paper's image block, timed term
//! by term: where a long series spends its time, and how many entries of each vector Jᵏv
//! have become f32 subnormals (which many CPUs, llvmpipe's among them, process far slower).
//!
//! Each term is what the Neumann series runs: one JVP through g, then the term's share of the
//! log-det estimate and of the Neumann vector, waited on before the next starts.

use std::time::Instant;

use crate::flow::{Draw, Estimator, GradMode, ResidualBlock};
use crate::gpu::Gpu;
use crate::nn::{Binder, ParamStore, PowerIters};
use crate::ops::{Dist, TensorOps};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;

use super::{memory, JsonObject};

/// One term k of the series.
#[derive(Debug, Clone)]
pub struct SeriesRow {
    pub term: usize,
    pub ms: f64,
    /// Of the entries of Jᵏv: the fraction that are subnormal, and that are exactly zero.
    pub subnormal: f64,
    pub zero: f64,
    /// The largest |entry| of Jᵏv.
    pub max_abs: f64,
}

impl SeriesRow {
    pub fn json_object(&self) -> JsonObject {
        JsonObject::new()
            .str("kernel", "series_term")
            .str("shape", &format!("conv [16,3,32,32] w512 k={}", self.term))
            .num("term", self.term.to_string())
            .num("ms", format!("{:.2}", self.ms))
            .num("subnormal_fraction", format!("{:.6}", self.subnormal))
            .num("zero_fraction", format!("{:.6}", self.zero))
            .num("max_abs", format!("{:.3e}", self.max_abs))
    }

    pub fn text(&self) -> String {
        format!(
            "term {:>3}   {:>9.2} ms   subnormal {:>6.2} %   zero {:>6.2} %   max |Jᵏv| {:.2e}",
            self.term,
            self.ms,
            100.0 * self.subnormal,
            100.0 * self.zero,
            self.max_abs
        )
    }
}

/// The share of subnormal and of zero entries, and the largest magnitude.
fn census(values: &[f32]) -> (f64, f64, f64) {
    let n = values.len().max(1) as f64;
    let subnormal = values.iter().filter(|v| v.is_subnormal()).count() as f64 / n;
    let zero = values.iter().filter(|v| **v == 0.0).count() as f64 / n;
    let max_abs = values.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
    (subnormal, zero, max_abs)
}

/// Times terms 1..=`terms` of one probe's series through the conv block at its initialisation.
pub fn run(gpu: &Gpu, terms: usize, mut emit: impl FnMut(&SeriesRow)) {
    crate::testing::settle(gpu);
    let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), 1);
    let (g, x) = memory::conv_block(gpu, &mut store);
    g.power_iterate(&mut store, PowerIters::Fixed(5));
    let block = ResidualBlock::new("block", g, Estimator::Truncated(terms), GradMode::Neumann);
    let tape = Tape::no_grad();
    let binder = Binder::new(&store, &tape);
    let w = block.g.weights(&binder);
    let pre = block.g.apply(&tape, &w, &Var::constant(x.clone())).1;
    let v = Tensor::random(gpu, x.shape(), Dist::Normal { mean: 0.0, std: 1.0 }, 3, 0);
    // A truncated draw: every term weighs 1, so the accumulations are those of any series.
    let draw = Draw::fixed(terms);
    // Warm-up: compile every kernel a term runs.
    block.observed_series(&tape, &w, &pre, &v, &Draw::fixed(1), |_| ());
    gpu.sync();
    let mut start = Instant::now();
    block.observed_series(&tape, &w, &pre, &v, &draw, |term| {
        let _ = (term.jkv.buffer(), term.estimate.buffer(), term.neumann.buffer());
        gpu.sync();
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let (subnormal, zero, max_abs) = census(&term.jkv.to_vec());
        emit(&SeriesRow { term: term.k, ms, subnormal, zero, max_abs });
        start = Instant::now();
    });
}
