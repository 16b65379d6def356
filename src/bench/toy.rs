//! `resflow bench toy`: seconds per training step of the reference's small toy configuration
//! (10 blocks of 2-64-64-64-2, batch 256, Adam), with the exact 2×2 log-det and with the
//! unbiased estimator, and the dispatches one step records, by kernel family.

use std::time::Instant;

use super::{Row, Work};
use crate::gpu::{FamilyCensus, Gpu};
use crate::train::choices::Estimator;
use crate::train::toy::{ToyConfig, ToyRun};
use crate::train::TrainError;

/// One estimator's step: its timing row and the dispatches of one step.
pub struct ToyStep {
    pub row: Row,
    pub census: Vec<(String, FamilyCensus)>,
}

impl ToyStep {
    /// The census as indented text lines: family, dispatches, workgroups per dispatch.
    pub fn census_text(&self) -> String {
        let mut out = String::new();
        for (family, c) in &self.census {
            let per = c.workgroups as f64 / c.dispatches.max(1) as f64;
            out.push_str(&format!("    {family:<40} {:>5} dispatches  {per:>8.1} workgroups each\n", c.dispatches));
        }
        out
    }
}

/// Times `reps` steps (at least 3; the median is reported) after one warm-up step, then
/// takes the census of one more. A step that fails (a non-finite loss) ends the bench.
pub fn run(gpu: &Gpu, reps: usize) -> Result<Vec<ToyStep>, TrainError> {
    // One-time device work (the staging probe) before anything is timed or its memory counted.
    crate::testing::settle(gpu);
    [Estimator::Exact, Estimator::Unbiased]
        .iter()
        .map(|&est| {
            let config = ToyConfig {
                blocks: 10,
                hidden: vec![64, 64, 64],
                batch: 256,
                estimator: est,
                iters: usize::MAX,
                ..ToyConfig::default()
            };
            let mut run = ToyRun::new(gpu, config)?;
            run.train_step()?;
            let mut times = Vec::new();
            for _ in 0..reps.max(3) {
                let start = Instant::now();
                run.train_step()?;
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            let ms = times[times.len() / 2];

            gpu.sync();
            let _ = gpu.take_census();
            let before = gpu.record_stats();
            run.train_step()?;
            let after = gpu.record_stats();
            let census = gpu.take_census();
            let row = Row {
                kernel: "toy_step".into(),
                shape: format!("10x2-64-64-64-2 b256 {est}"),
                ms,
                work: Work::None,
                pct_peak: None,
                timer: "wall",
                extra: vec![
                    ("s_per_step", ms / 1e3),
                    ("dispatches_per_step", (after.dispatches - before.dispatches) as f64),
                    ("submits_per_step", (after.submits - before.submits) as f64),
                ],
                precision: gpu.precision(),
            };
            Ok(ToyStep { row, census })
        })
        .collect()
}
