//! Evaluating an image run: bits/dim ± standard error and the accuracy of hybrids on test
//! images, and samples through the fixed-point inverse of every scale.

use std::path::Path;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::run::images_per_pass;
use super::ImageRun;
use crate::data::ImageSet;
use crate::flow::{Estimator, FlowCtx};
use crate::nn::{Binder, ParamStore, PowerIters};
use crate::ops::{Dist, TensorOps};
use crate::tape::{Tape, Var};
use crate::tensor::Tensor;
use crate::train::plot::Image;
use crate::train::seed::step_seed;
use crate::train::TrainError;

/// Test figures: bits/dim mean ± standard error over images, and accuracy for hybrids.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    pub bpd: f64,
    pub bpd_se: f64,
    pub accuracy: Option<f64>,
    pub images: usize,
}

impl ImageRun {
    /// The EMA weights (or the raw ones), power-iterated to convergence for evaluation.
    pub fn eval_store(&self, ema: bool) -> ParamStore<Tensor> {
        self.eval_store_with(ema, PowerIters::Tolerance { atol: 1e-4, rtol: 1e-4, max: 500 })
    }

    /// [`ImageRun::eval_store`] with other power iterations (a browser, which cannot read the
    /// convergence back while it waits, runs a fixed number).
    pub fn eval_store_with(&self, ema: bool, iters: PowerIters) -> ParamStore<Tensor> {
        let mut s = if ema { self.ema.apply_to(&self.store) } else { self.store.clone() };
        self.model.power_iterate(&mut s, iters);
        s
    }

    /// Bits/dim (evaluation estimator: 20 exact terms + the unbiased rest) of the first
    /// `images` test images, its standard error over images, and the accuracy of hybrids.
    pub fn evaluate(&mut self, store: &ParamStore<Tensor>, images: usize) -> Result<Evaluation, TrainError> {
        let test = self.data()?.test.take(images);
        let n = test.len();
        let chunk = (self.config.batch / self.config.accumulate).max(1);
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, usize::MAX, 3));
        let (mut bpds, mut correct) = (Vec::with_capacity(n), 0usize);
        for (k, start) in (0..n).step_by(chunk).enumerate() {
            let idx: Vec<usize> = (start..(start + chunk).min(n)).collect();
            let x = self.tensor(&test.dequantize(&idx, &mut rng), idx.len());
            let tape = Tape::no_grad();
            let b = Binder::new(store, &tape);
            let ctx = FlowCtx::new(&b, step_seed(self.config.seed, usize::MAX, 100 + k as u64), true);
            let out = self.model.forward(&ctx, &Var::constant(x));
            let lp = self.model.log_prob(&out, &ctx).value.to_host();
            bpds.extend(lp.iter().map(|&l| self.format.bits_per_dim(l)));
            if let Some(logits) = &out.logits {
                let k = self.format.classes;
                let values = logits.value.to_host();
                for (row, &i) in values.chunks_exact(k).zip(&idx) {
                    let best = (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).expect("classes");
                    correct += (best == test.labels[i] as usize) as usize;
                }
            }
        }
        if let Some(bad) = bpds.iter().find(|v| !v.is_finite()) {
            return Err(TrainError(format!("evaluation produced a non-finite bits/dim ({bad}); the model diverged")));
        }
        if n == 0 {
            return Err(TrainError("--images must be at least 1 (the test split is empty?)".into()));
        }
        let mean = TrainError::finite("the test bits/dim", bpds.iter().sum::<f64>() / n as f64)?;
        let var = bpds.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        Ok(Evaluation {
            bpd: mean,
            bpd_se: TrainError::finite("the standard error of bits/dim", (var / n as f64).sqrt())?,
            accuracy: self.lambda.map(|_| correct as f64 / n as f64),
            images: n,
        })
    }

    /// Bits/dim of every image of `set` (the model's shape and levels), estimated `draws`
    /// times with fresh dequantisation noise and estimator draws: each image's mean and the
    /// standard error of that mean (`None` for one draw). The estimator is the evaluation one
    /// (20 exact terms and the unbiased rest), or the first `exact_terms` terms of the series.
    pub fn score(
        &self,
        store: &ParamStore<Tensor>,
        set: &ImageSet,
        draws: usize,
        exact_terms: Option<usize>,
        seed: u64,
    ) -> Result<Vec<(f64, Option<f64>)>, TrainError> {
        if set.shape() != self.format.shape || set.levels != self.format.levels {
            return Err(TrainError(format!(
                "{}: images of shape {:?} with {} levels; this model scores {:?} with {} levels",
                set.name,
                set.shape(),
                set.levels,
                self.format.shape,
                self.format.levels
            )));
        }
        if draws == 0 {
            return Err(TrainError("--draws must be at least 1".into()));
        }
        let n = set.len();
        let chunk = images_per_pass(&self.gpu, &self.config, &self.format).clamp(1, 1024);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sums = vec![(0.0f64, 0.0f64); n];
        for draw in 0..draws {
            for (k, start) in (0..n).step_by(chunk).enumerate() {
                let idx: Vec<usize> = (start..(start + chunk).min(n)).collect();
                let x = self.tensor(&set.dequantize(&idx, &mut rng), idx.len());
                let tape = Tape::no_grad();
                let b = Binder::new(store, &tape);
                let stream = step_seed(seed, draw, 1 + k as u64);
                let mut ctx = FlowCtx::new(&b, stream, true);
                if let Some(terms) = exact_terms {
                    ctx = ctx.with_estimator(Estimator::Truncated(terms));
                }
                let out = self.model.forward(&ctx, &Var::constant(x));
                for (i, lp) in idx.iter().zip(self.model.log_prob(&out, &ctx).value.to_host()) {
                    let bpd = self.format.bits_per_dim(lp);
                    if !bpd.is_finite() {
                        return Err(TrainError(format!("image {i} of {} scored {bpd} bits/dim", set.name)));
                    }
                    sums[*i].0 += bpd;
                    sums[*i].1 += bpd * bpd;
                }
            }
        }
        let r = draws as f64;
        Ok(sums
            .into_iter()
            .map(|(s, s2)| {
                let mean = s / r;
                let se = (draws > 1).then(|| ((s2 - r * mean * mean).max(0.0) / (r - 1.0) / r).sqrt());
                (mean, se)
            })
            .collect())
    }

    /// `n` samples through the fixed-point inverse of every scale (values in [0, 1],
    /// [n, C, H, W]) and the most iterations each residual block took, in passes that fit the
    /// device (pass k draws streams k·L.. of `seed` for L latents: one pass is the old draw).
    /// The latents have standard deviation `temperature` (1: the model's own distribution).
    pub fn sample(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
        temperature: f32,
    ) -> Result<(Vec<f32>, Vec<usize>), TrainError> {
        let mut out = Vec::with_capacity(n * self.format.dim());
        let iters = self.sample_chunks(store, n, seed, temperature, |x| {
            out.extend_from_slice(x);
            Ok(())
        })?;
        Ok((out, iters))
    }

    /// [`ImageRun::sample`] a pass at a time: each pass's images are checked finite and handed
    /// to `sink` before the next is drawn, so memory does not grow with `n`.
    pub fn sample_chunks(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
        temperature: f32,
        sink: impl FnMut(&[f32]) -> Result<(), String>,
    ) -> Result<Vec<usize>, TrainError> {
        pollster::block_on(self.sample_chunks_async(store, n, seed, temperature, sink))
    }

    /// [`ImageRun::sample_chunks`] as a future, for callers that cannot block on a readback.
    pub async fn sample_chunks_async(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
        temperature: f32,
        mut sink: impl FnMut(&[f32]) -> Result<(), String>,
    ) -> Result<Vec<usize>, TrainError> {
        let latents = self.model.latent_shapes();
        let chunk = images_per_pass(&self.gpu, &self.config, &self.format).clamp(1, 1024);
        let mut most: Vec<usize> = Vec::new();
        for (k, start) in (0..n).step_by(chunk).enumerate() {
            let m = chunk.min(n - start);
            let parts: Vec<Tensor> = latents
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut shape = vec![m];
                    shape.extend(s);
                    let stream = (k * latents.len() + i) as u64;
                    Tensor::random(&self.gpu, &shape, Dist::Normal { mean: 0.0, std: temperature }, seed, stream)
                })
                .collect();
            let (x, iters) = self.model.inverse_async(store, &parts).await?;
            let x = x.to_vec_async().await;
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                return Err(TrainError(format!(
                    "sampled image {} holds {}: the model produces non-finite samples (are its weights finite?)",
                    start + i / self.format.dim(),
                    x[i]
                )));
            }
            most.resize(iters.len(), 0);
            for (a, b) in most.iter_mut().zip(&iters) {
                *a = (*a).max(*b);
            }
            sink(&x).map_err(TrainError)?;
        }
        Ok(most)
    }

    /// A PNG grid of `n` samples at `temperature`; returns the iterations per residual block.
    pub fn sample_grid(
        &self,
        store: &ParamStore<Tensor>,
        n: usize,
        seed: u64,
        temperature: f32,
        path: &Path,
    ) -> Result<Vec<usize>, TrainError> {
        let (x, iters) = self.sample(store, n, seed, temperature)?;
        let cols = (n as f64).sqrt().ceil() as usize;
        let scale = (96 / self.format.shape[1]).max(1);
        Image::grid(&x, self.format.shape, cols, scale).save_png(path).map_err(|e| TrainError(e.to_string()))?;
        Ok(iters)
    }
}
