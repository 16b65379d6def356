//! What an image run shows the training loop: its log rows, its evaluation (bits/dim of the
//! EMA and of the raw weights) and its pictures (test images, a sample grid, the loss curve).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Evaluation, ImageRun, StepStats};
use crate::nn::ParamStore;
use crate::tensor::Tensor;
use crate::train::checkpoint::Checkpoint;
use crate::train::choices::Hybrid;
use crate::train::plot::Image;
use crate::train::run::{self, Pace, Run};
use crate::train::TrainError;

/// One row of `log.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageLogRow {
    pub step: usize,
    pub loss: f64,
    pub train_bpd: f64,
    pub ema: Option<Evaluation>,
    pub raw: Option<Evaluation>,
    pub seconds: f64,
}

impl run::LogRow for ImageLogRow {
    const HEADER: &'static str =
        "step,loss,train_bpd,test_bpd_ema,test_bpd_ema_se,test_bpd_raw,test_bpd_raw_se,accuracy_ema,seconds";
    fn csv(&self) -> String {
        let opt = |v: Option<f64>| v.map(|v| format!("{v:.5}")).unwrap_or_default();
        format!(
            "{},{:.5},{:.5},{},{},{},{},{},{:.2}",
            self.step,
            self.loss,
            self.train_bpd,
            opt(self.ema.map(|e| e.bpd)),
            opt(self.ema.map(|e| e.bpd_se)),
            opt(self.raw.map(|e| e.bpd)),
            opt(self.raw.map(|e| e.bpd_se)),
            opt(self.ema.and_then(|e| e.accuracy)),
            self.seconds
        )
    }
    fn seconds(&self) -> f64 {
        self.seconds
    }
}

/// The test figures of the EMA and of the raw weights, with the EMA weights for the samples.
pub struct Evaluations {
    pub ema: Evaluation,
    pub raw: Evaluation,
    pub ema_store: ParamStore<Tensor>,
}

/// `bits/dim ± se`, and the accuracy of a hybrid.
fn describe(e: &Evaluation) -> String {
    let acc = e.accuracy.map(|a| format!(", accuracy {:.2} %", 100.0 * a)).unwrap_or_default();
    format!("{:.4} ± {:.4} bits/dim{acc}", e.bpd, e.bpd_se)
}

impl Run for ImageRun {
    type Stats = StepStats;
    type Row = ImageLogRow;
    type Evaluation = Evaluations;

    fn step(&self) -> usize {
        self.adam.step
    }
    fn iters(&self) -> usize {
        self.config.iters
    }
    fn eval_every(&self) -> usize {
        self.config.eval_every
    }
    fn log(&self) -> &[ImageLogRow] {
        &self.log
    }
    fn log_mut(&mut self) -> &mut Vec<ImageLogRow> {
        &mut self.log
    }
    /// `data.png`: the first 64 test images.
    fn begin(&mut self, out: &Path) -> Result<(), TrainError> {
        let shape = self.format.shape;
        let test = &self.data()?.test;
        let idx: Vec<usize> = (0..test.len().min(64)).collect();
        let path = out.join("data.png");
        Image::grid(&test.unit(&idx), shape, 8, (96 / shape[1]).max(1))
            .save_png(&path)
            .map_err(|e| TrainError(e.to_string()))
    }
    fn train_step(&mut self) -> Result<StepStats, TrainError> {
        ImageRun::train_step(self)
    }
    fn row(&self, stats: &StepStats, seconds: f64) -> ImageLogRow {
        let (loss, train_bpd) = (stats.loss, stats.bpd);
        ImageLogRow { step: self.step(), loss, train_bpd, ema: None, raw: None, seconds }
    }
    fn progress(recent: &[StepStats], pace: &Pace) -> String {
        let avg = recent.iter().rev().take(20).map(|s| s.bpd).sum::<f64>() / recent.len().min(20) as f64;
        let ce = recent.last().and_then(|s| s.ce).map(|c| format!("  CE {c:.3}")).unwrap_or_default();
        let rate = pace.session_steps as f64 / pace.session_seconds.max(1e-9);
        format!("{avg:.3} bits/dim{ce}  {:.2} s/step", 1.0 / rate.max(1e-9))
    }

    fn evaluate(&mut self) -> Result<Evaluations, TrainError> {
        let images = self.config.eval_images;
        let ema_store = self.eval_store(true);
        let ema = ImageRun::evaluate(self, &ema_store, images)?;
        let raw_store = self.eval_store(false);
        let raw = ImageRun::evaluate(self, &raw_store, images)?;
        Ok(Evaluations { ema, raw, ema_store })
    }
    fn record(&self, eval: &Evaluations, row: &mut ImageLogRow) -> String {
        (row.ema, row.raw) = (Some(eval.ema), Some(eval.raw));
        let (ema, raw) = (describe(&eval.ema), describe(&eval.raw));
        format!("step {}: test {ema} (EMA), {raw} (raw) on {} images", row.step, eval.ema.images)
    }
    fn pictures(&self, eval: &Evaluations, out: &Path) -> Result<Vec<String>, TrainError> {
        let c = &self.config;
        let iters = self.sample_grid(&eval.ema_store, c.samples, c.seed ^ 0x5A, 1.0, &out.join("samples.png"))?;
        let curve: Vec<(f64, f64)> = self.log.iter().map(|r| (r.step as f64, r.train_bpd)).collect();
        let test: Vec<(f64, f64)> = self.log.iter().filter_map(|r| r.ema.map(|e| (r.step as f64, e.bpd))).collect();
        let path = out.join("loss.png");
        Image::plot(&[&curve, &test], 600, 300).save_png(&path).map_err(|e| TrainError(e.to_string()))?;
        Ok(vec![format!("  samples.png: fixed-point iterations per block {iters:?}")])
    }
    fn to_checkpoint(&self) -> Checkpoint {
        ImageRun::to_checkpoint(self)
    }

    fn extend_to(&mut self, iters: usize) {
        self.config.iters = iters;
        self.adam.config.cosine_steps = self.config.lr_schedule.cosine_steps(iters);
    }
    fn default_out(&self) -> PathBuf {
        PathBuf::from("runs").join(&self.config.dataset)
    }
    fn banner(&self, adapter: &str, out: &Path) -> String {
        let c = &self.config;
        let [ch, h, w] = self.format.shape;
        let fc = if c.fc_blocks > 0 { format!(", {} FC blocks", c.fc_blocks) } else { String::new() };
        let hybrid = if c.hybrid != Hybrid::None { format!(", hybrid λ = {}", c.hybrid) } else { String::new() };
        let micro = if c.accumulate > 1 { format!(" ({} micro-batches)", c.accumulate) } else { String::new() };
        format!(
            "training on {} {ch}×{h}×{w} ({adapter}): {} scales × {} {} blocks, width {}{fc}{hybrid}, batch {}{micro}, \
             {} steps → {}",
            c.dataset,
            c.scales,
            c.blocks,
            c.block,
            c.width,
            c.batch,
            c.iters,
            out.display()
        )
    }
    fn summary(&self, out: &Path) -> Option<String> {
        let row = self.log.last()?;
        let (ema, raw) = (row.ema?, row.raw?);
        let acc = ema.accuracy.map(|a| format!(", accuracy {:.2} %", 100.0 * a)).unwrap_or_default();
        Some(format!(
            "final test bits/dim {:.4} ± {:.4} (EMA), {:.4} ± {:.4} (raw) on {} images{acc}; samples, log.csv and \
             checkpoint in {}",
            ema.bpd,
            ema.bpd_se,
            raw.bpd,
            raw.bpd_se,
            ema.images,
            out.display()
        ))
    }
}
