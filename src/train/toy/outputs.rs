//! What a toy run shows the training loop: its log rows, its evaluation (test NLL of the EMA
//! weights) and its pictures (data histogram, model density on [-4, 4]², samples, loss).

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::ToyRun;
use crate::models::toy;
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use crate::train::checkpoint::Checkpoint;
use crate::train::plot::Image;
use crate::train::run::{self, Pace, Run};
use crate::train::seed::step_seed;
use crate::train::TrainError;

/// One row of `log.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LogRow {
    pub step: usize,
    pub loss: f64,
    pub test_nll: Option<f64>,
    pub seconds: f64,
}

impl run::LogRow for LogRow {
    const HEADER: &'static str = "step,loss,test_nll,seconds";
    fn csv(&self) -> String {
        let t = self.test_nll.map(|v| format!("{v:.5}")).unwrap_or_default();
        format!("{},{:.5},{},{:.2}", self.step, self.loss, t, self.seconds)
    }
    fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// An evaluation: the test NLL of the evaluation weights, kept for the pictures.
pub struct Evaluation {
    pub nll: f64,
    pub store: ParamStore<Tensor>,
}

impl Run for ToyRun {
    /// The loss (mean NLL in nats).
    type Stats = f64;
    type Row = LogRow;
    type Evaluation = Evaluation;

    fn step(&self) -> usize {
        self.adam.step
    }
    fn iters(&self) -> usize {
        self.config.iters
    }
    fn eval_every(&self) -> usize {
        self.config.eval_every
    }
    fn log(&self) -> &[LogRow] {
        &self.log
    }
    fn log_mut(&mut self) -> &mut Vec<LogRow> {
        &mut self.log
    }
    fn train_step(&mut self) -> Result<f64, TrainError> {
        ToyRun::train_step(self)
    }
    fn row(&self, loss: &f64, seconds: f64) -> LogRow {
        LogRow { step: self.step(), loss: *loss, test_nll: None, seconds }
    }
    fn progress(recent: &[f64], pace: &Pace) -> String {
        let avg = recent.iter().rev().take(50).sum::<f64>() / recent.len().min(50) as f64;
        let rate = pace.step as f64 / pace.seconds.max(1e-9);
        format!("loss {avg:.3}  {rate:.1} it/s")
    }

    fn evaluate(&mut self) -> Result<Evaluation, TrainError> {
        let store = self.eval_store();
        let nll = self.test_nll(&store, &self.source, self.config.eval_samples)?;
        Ok(Evaluation { nll, store })
    }
    fn record(&self, eval: &Evaluation, row: &mut LogRow) -> String {
        row.test_nll = Some(eval.nll);
        let gap = self.source.entropy().map(|h| format!(" (gap to the true entropy {:.3})", eval.nll - h));
        format!("step {}: test NLL {:.4} nats{}", row.step, eval.nll, gap.unwrap_or_default())
    }
    fn pictures(&self, eval: &Evaluation, out: &Path) -> Result<Vec<String>, TrainError> {
        let io = |e: std::io::Error| TrainError(e.to_string());
        let (data, density, samples) = self.panels(&eval.store)?;
        data.save_png(&out.join("data.png")).map_err(io)?;
        density.save_png(&out.join("density.png")).map_err(io)?;
        samples.save_png(&out.join("samples.png")).map_err(io)?;
        Image::side_by_side(&[&data, &density, &samples]).save_png(&out.join("figure.png")).map_err(io)?;
        let loss: Vec<(f64, f64)> = self.log.iter().map(|r| (r.step as f64, r.loss)).collect();
        let test: Vec<(f64, f64)> = self.log.iter().filter_map(|r| r.test_nll.map(|v| (r.step as f64, v))).collect();
        Image::plot(&[&loss, &test], 600, 300).save_png(&out.join("loss.png")).map_err(io)?;
        Ok(Vec::new())
    }
    fn to_checkpoint(&self) -> Checkpoint {
        ToyRun::to_checkpoint(self)
    }
    fn extend_to(&mut self, iters: usize) {
        self.config.iters = iters;
        self.adam.config.cosine_steps = self.config.lr_schedule.cosine_steps(iters);
    }
    fn default_out(&self) -> PathBuf {
        let name = if self.config.dataset.starts_with("file:") { "custom" } else { &self.config.dataset };
        PathBuf::from("runs").join(name)
    }
    fn banner(&self, adapter: &str, out: &Path) -> String {
        let c = &self.config;
        let hidden = c.hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("-");
        format!(
            "training on {} ({adapter}): {} blocks of 2-{hidden}-2, {} estimator, batch {}, {} steps → {}",
            c.dataset,
            c.blocks,
            c.estimator,
            c.batch,
            c.iters,
            out.display()
        )
    }
    fn summary(&self, out: &Path) -> Option<String> {
        let nll = self.log.last()?.test_nll?;
        let gap = self.source.entropy().map(|h| format!(", {:.3} above the true entropy {h:.3}", nll - h));
        let gap = gap.unwrap_or_default();
        Some(format!("final test NLL {nll:.4} nats{gap}; pictures, log.csv and checkpoint in {}", out.display()))
    }
}

impl ToyRun {
    /// The three panels of `figure.png`: a histogram of the data, the model's density and a
    /// histogram of its samples, each 200 pixels a side.
    fn panels(&self, store: &ParamStore<Tensor>) -> Result<(Image, Image, Image), TrainError> {
        let res = 200;
        let mut rng = StdRng::seed_from_u64(step_seed(self.config.seed, usize::MAX, 11));
        // 100 bins a side (shown at 2×) keep the sampled histograms from looking like noise.
        let data = Image::histogram(&self.source.sample(100_000, &mut rng), 4.0, res / 2).upscale(2);
        let grid: Vec<f32> = (0..res * res)
            .flat_map(|i| {
                let (row, col) = (i / res, i % res);
                let x = -4.0 + 8.0 * (col as f32 + 0.5) / res as f32;
                let y = 4.0 - 8.0 * (row as f32 + 0.5) / res as f32;
                [x, y]
            })
            .collect();
        let density: Vec<f64> =
            toy::log_density(&self.gpu, &self.flow, store, &grid, self.chunk()).iter().map(|lp| lp.exp()).collect();
        let density = Image::heatmap(&density, res);
        let (pts, _) = toy::sample(&self.gpu, &self.flow, store, 10_000, self.config.seed ^ 0x5A)?;
        let samples = Image::histogram(&pts, 4.0, res / 2).upscale(2);
        Ok((data, density, samples))
    }
}
