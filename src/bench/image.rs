//! `resflow bench image`: one training step of image Residual Flows — the PyTorch reference's
//! small MNIST configuration (its 0.59 s/step is the anchor) and the paper's configuration
//! (3 × 16 blocks of width 512 with the FC end) — as seconds per step, images per second and
//! the pool's peak live bytes during the step (parameters, optimiser state and EMA included).

use std::path::Path;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{images, ImageSet, Splits};
use crate::gpu::Gpu;
use crate::train::image::{ImageConfig, ImageRun};

use super::{Row, Work};

/// MNIST from `data_dir` when it has been fetched, else uniformly random 28×28 images (the
/// time of a step does not depend on the pixel values); the label says which.
fn mnist_or_synthetic(data_dir: &Path) -> (Splits, &'static str) {
    match images::load("mnist", data_dir) {
        Ok(s) => (s, "mnist"),
        Err(_) => {
            let mut rng = StdRng::seed_from_u64(0);
            let set = |n: usize, rng: &mut StdRng| ImageSet {
                name: "synthetic".into(),
                pixels: (0..n * 784).map(|_| rng.random()).collect(),
                labels: (0..n).map(|i| (i % 10) as u8).collect(),
                channels: 1,
                height: 28,
                width: 28,
                levels: 256,
                classes: 10,
            };
            (Splits { train: set(1024, &mut rng), test: set(64, &mut rng) }, "synthetic")
        }
    }
}

/// The configurations timed: (label, config). `paper_batch` sizes the paper's model so one
/// step fits a CPU adapter's patience.
pub fn configurations(paper_batch: usize) -> Vec<(&'static str, ImageConfig)> {
    let small = ImageConfig { warmup: 1000, iters: usize::MAX, ..ImageConfig::default() };
    let paper = ImageConfig { blocks: 16, width: 512, fc_blocks: 4, batch: paper_batch, ..small.clone() };
    vec![("small 3x1 w64 b64", small), ("paper 3x16 w512 fc4", paper)]
}

/// Median seconds per step over `reps` steps after one warm-up step (ActNorm initialisation,
/// kernel compilation and the first full power iterations happen there).
pub fn run(gpu: &Gpu, data_dir: &Path, which: &[String], paper_batch: usize, reps: usize) -> Vec<Row> {
    // One-time device work (the staging probe) before anything is timed or its memory counted.
    crate::testing::settle(gpu);
    let (data, source) = mnist_or_synthetic(data_dir);
    configurations(paper_batch)
        .into_iter()
        .filter(|(label, _)| which.iter().any(|w| label.starts_with(w.as_str())))
        .map(|(label, config)| {
            let batch = config.batch;
            let mut run = ImageRun::with_data(gpu, config, data.clone()).expect("valid configuration");
            run.train_step().expect("finite loss");
            let mut times = Vec::new();
            let mut peak = 0u64;
            for _ in 0..reps.max(1) {
                gpu.reset_peak();
                let start = Instant::now();
                run.train_step().expect("finite loss");
                gpu.sync();
                times.push(start.elapsed().as_secs_f64());
                peak = peak.max(gpu.pool_stats().peak_bytes);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            let s = times[times.len() / 2];
            Row {
                kernel: "image_step".into(),
                shape: format!("{label} {source} b{batch}"),
                ms: s * 1e3,
                work: Work::None,
                pct_peak: None,
                timer: "wall",
                extra: vec![("s_per_step", s), ("images_per_s", batch as f64 / s), ("peak_gb", peak as f64 / 1e9)],
                precision: gpu.precision(),
            }
        })
        .collect()
}
