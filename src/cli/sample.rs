//! `resflow sample`: samples of a checkpoint's model through the fixed-point inverse, as
//! `x,y` lines or a histogram for toy models, as a grid of images for image models.

use std::path::{Path, PathBuf};

use resflow::models::toy;
use resflow::train::checkpoint::write_atomically;
use resflow::train::image::ImageRun;
use resflow::train::plot::Image;
use resflow::train::toy::ToyRun;
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
        AnyRun::Toy(run) => toy_samples(gpu, &run, args),
        AnyRun::Image(run) => image_grid(&run, args),
    }
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

fn toy_samples(gpu: &Gpu, run: &ToyRun, args: &SampleArgs) -> Result {
    if args.raw {
        return Err("--raw applies to image checkpoints".into());
    }
    let n = args.n.unwrap_or(10_000);
    if n == 0 {
        return Err("--n must be positive".into());
    }
    let store = run.eval_store();
    let (pts, iters) = toy::sample(gpu, &run.flow, &store, n, args.seed)?;
    let out = &args.out;
    match extension(out) {
        Some("csv") => {
            let mut s = String::from("x,y\n");
            for p in pts.chunks_exact(2) {
                s.push_str(&format!("{},{}\n", p[0], p[1]));
            }
            write_atomically(out, s.as_bytes())?;
        }
        Some("png") => Image::histogram(&pts, 4.0, 100).upscale(3).save_png(out)?,
        _ => return Err(format!("--out must end in .csv or .png, got {}", out.display()).into()),
    }
    let max = iters.iter().max().copied().unwrap_or(0);
    eprintln!("wrote {n} samples to {} (fixed-point iterations per block: at most {max})", out.display());
    Ok(())
}

fn image_grid(run: &ImageRun, args: &SampleArgs) -> Result {
    let out = &args.out;
    if extension(out) != Some("png") {
        return Err(format!("--out must end in .png for an image model, got {}", out.display()).into());
    }
    let n = args.n.unwrap_or(run.config.samples);
    if n == 0 {
        return Err("--n must be positive".into());
    }
    let iters = run.sample_grid(&run.eval_store(!args.raw), n, args.seed, out)?;
    let mean = iters.iter().sum::<usize>() as f64 / iters.len().max(1) as f64;
    eprintln!(
        "wrote a grid of {n} samples to {} (fixed-point iterations per block: {iters:?}, mean {mean:.1})",
        out.display()
    );
    Ok(())
}
