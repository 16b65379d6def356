//! `resflow bench memory`: peak pool bytes, bytes held after the forward, and time of one
//! training step (forward + backward of the mean NLL) per gradient mode and number of terms.
//!
//! Memory is the buffer pool's own count of live bytes (buffers and textures handed out),
//! measured above what was live before the step (parameters, the input batch). The series is
//! truncated so n is exact.

use std::time::Instant;

use crate::flow::{Estimator, Flow, FlowCtx, FlowLayer, GradMode, LipschitzNet, NetSpec, ResidualBlock};
use crate::gpu::Gpu;
use crate::nn::{Binder, ParamStore, PowerIters};
use crate::ops::{Activation, Dist};
use crate::tape::Tape;
use crate::tensor::Tensor;

use super::JsonObject;

/// One measured cell.
#[derive(Debug, Clone)]
pub struct MemoryRow {
    pub model: &'static str,
    pub mode: GradMode,
    pub terms: usize,
    pub peak_bytes: u64,
    pub held_bytes: u64,
    pub ms: f64,
}

impl MemoryRow {
    pub fn json(&self) -> String {
        self.json_object().line()
    }

    pub fn json_object(&self) -> JsonObject {
        JsonObject::new()
            .str("model", self.model)
            .str("mode", self.mode.label())
            .num("terms", self.terms.to_string())
            .num("peak_bytes", self.peak_bytes.to_string())
            .num("held_bytes", self.held_bytes.to_string())
            .num("ms", format!("{:.1}", self.ms))
    }

    pub fn text(&self) -> String {
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        format!(
            "{:<5} {:<12} n={:<3} peak {:>9.1} MiB   held after forward {:>8.1} MiB   {:>9.1} ms/step",
            self.model,
            self.mode.label(),
            self.terms,
            mib(self.peak_bytes),
            mib(self.held_bytes),
            self.ms
        )
    }
}

/// Which models: the paper's image block at [16, 3, 32, 32] with width 512, and a 2-D stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Conv,
    Mlp,
}

fn spec(coeff: f32) -> NetSpec {
    NetSpec { activation: Activation::LipSwish, coeff, leading_activation: false, gain: 1.0, last_gain: 1.0 }
}

/// The paper's image block, LipSwish→3×3(3→512)→LipSwish→1×1(512→512)→LipSwish→3×3(512→3),
/// and an input batch [16, 3, 32, 32].
pub(super) fn conv_block(gpu: &Gpu, store: &mut ParamStore<Tensor>) -> (LipschitzNet, Tensor) {
    let g = LipschitzNet::cnn(store, "block.g", &[3, 512, 512, 3], &[3, 1, 3], (32, 32), &spec(0.98));
    let x = Tensor::random(gpu, &[16, 3, 32, 32], Dist::Normal { mean: 0.0, std: 1.0 }, 2, 0);
    (g, x)
}

fn build(gpu: &Gpu, model: Model, mode: GradMode, terms: usize) -> (ParamStore<Tensor>, Flow<Tensor>, Tensor) {
    let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), 1);
    let estimator = Estimator::Truncated(terms);
    let (layers, x): (Vec<Box<dyn FlowLayer<Tensor>>>, Tensor) = match model {
        Model::Conv => {
            let (g, x) = conv_block(gpu, &mut store);
            (vec![Box::new(ResidualBlock::new("block", g, estimator, mode))], x)
        }
        Model::Mlp => {
            let layers = (0..10)
                .map(|i| {
                    let g = LipschitzNet::mlp(&mut store, &format!("b{i}.g"), &[2, 64, 64, 64, 2], &spec(0.9));
                    Box::new(ResidualBlock::new(&format!("b{i}"), g, estimator, mode)) as Box<dyn FlowLayer<Tensor>>
                })
                .collect();
            let x = Tensor::random(gpu, &[256, 2], Dist::Normal { mean: 0.0, std: 1.0 }, 2, 0);
            (layers, x)
        }
    };
    let flow = Flow::new(layers);
    flow.power_iterate(&mut store, PowerIters::Fixed(5));
    (store, flow, x)
}

/// One training step; returns (peak, held after forward, ms), bytes above the starting level.
fn step(gpu: &Gpu, store: &ParamStore<Tensor>, flow: &Flow<Tensor>, x: &Tensor, seed: u64) -> (u64, u64, f64) {
    gpu.sync();
    gpu.reset_peak();
    let base = gpu.pool_stats().live_bytes;
    let start = Instant::now();
    let tape = Tape::new();
    let b = Binder::new(store, &tape);
    let ctx = FlowCtx::new(&b, seed, false);
    let xv = crate::tape::Var::constant(x.clone());
    let lp = flow.log_prob(&ctx, &xv);
    let nll = tape.affine(&tape.mean(&lp), -1.0, 0.0);
    let held = gpu.pool_stats().live_bytes.saturating_sub(base);
    let grads = tape.backward(&nll);
    let g = b.gradients(&grads);
    drop(grads);
    // Finishing the step means the gradients exist on the device.
    gpu.sync();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let peak = gpu.pool_stats().peak_bytes.saturating_sub(base);
    drop(g);
    (peak, held, ms)
}

/// Runs every (model, mode, terms) cell. One warm-up step per model compiles the kernels;
/// peaks count live bytes, so a warm pool does not change them.
pub fn run(gpu: &Gpu, models: &[Model], terms: &[usize], mut emit: impl FnMut(&MemoryRow)) {
    // One-time device work (the staging probe) before anything is timed or its memory counted.
    crate::testing::settle(gpu);
    for &model in models {
        let (store, flow, x) = build(gpu, model, GradMode::Neumann, 1);
        step(gpu, &store, &flow, &x, 1);
        drop((store, flow, x));
        for mode in [GradMode::Naive, GradMode::Neumann, GradMode::NeumannBif] {
            for &n in terms {
                let (store, flow, x) = build(gpu, model, mode, n);
                let (peak_bytes, held_bytes, ms) = step(gpu, &store, &flow, &x, 2);
                let name = match model {
                    Model::Conv => "conv",
                    Model::Mlp => "mlp",
                };
                emit(&MemoryRow { model: name, mode, terms: n, peak_bytes, held_bytes, ms });
            }
        }
    }
}
