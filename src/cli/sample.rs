//! `resflow sample`: samples of a checkpoint's model through the fixed-point inverse, as
//! `x,y` lines or a histogram for toy models, as a grid of images for image models.

use std::path::{Path, PathBuf};

use resflow::train::image::{ImageRun, MAX_GRID_SAMPLES};
use resflow::train::toy::{SampleFile, ToyRun};
use resflow::train::AnyRun;
use resflow::Gpu;

#[derive(clap::Args)]
pub struct SampleArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Number of samples (default 10 000 for toy models, the run's --samples for images).
    #[arg(long)]
    n: Option<usize>,
    /// samples.csv (one `x,y` per line) or samples.png (a histogram; for image models a grid).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image models: sample with the raw weights instead of their EMA.
    #[arg(long)]
    raw: bool,
}

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

pub fn run(gpu: &Gpu, args: &SampleArgs) -> Result {
    match AnyRun::load(gpu, &args.checkpoint)? {
        AnyRun::Toy(run) => toy_samples(&run, args),
        AnyRun::Image(run) => image_grid(&run, args),
    }
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

/// Streams the samples to the file (any `--n`: memory does not grow with it).
fn toy_samples(run: &ToyRun, args: &SampleArgs) -> Result {
    if args.raw {
        return Err("--raw applies to image checkpoints".into());
    }
    SampleFile::of(&args.out)?;
    let n = args.n.unwrap_or(10_000);
    if n == 0 {
        return Err("--n must be at least 1".into());
    }
    let iters = run.write_samples(&run.eval_store(), n, args.seed, &args.out)?;
    let max = iters.iter().max().copied().unwrap_or(0);
    eprintln!("wrote {n} samples to {} (fixed-point iterations per block: at most {max})", args.out.display());
    Ok(())
}

fn image_grid(run: &ImageRun, args: &SampleArgs) -> Result {
    let out = &args.out;
    if extension(out) != Some("png") {
        return Err(format!("--out must end in .png for an image model, got {}", out.display()).into());
    }
    let n = args.n.unwrap_or(run.config.samples);
    if !(1..=MAX_GRID_SAMPLES).contains(&n) {
        return Err(format!("--n must be in 1..={MAX_GRID_SAMPLES} for an image grid, got {n}").into());
    }
    let iters = run.sample_grid(&run.eval_store(!args.raw), n, args.seed, 1.0, out)?;
    let mean = iters.iter().sum::<usize>() as f64 / iters.len().max(1) as f64;
    eprintln!(
        "wrote a grid of {n} samples to {} (fixed-point iterations per block: {iters:?}, mean {mean:.1})",
        out.display()
    );
    Ok(())
}
