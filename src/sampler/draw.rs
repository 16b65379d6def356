//! `resflow-sample draw`: samples through the fixed-point inverse, a chunk at a time, so
//! memory does not grow with `--n`.

use std::path::PathBuf;

use resflow::data::npy;
use resflow::models::toy;
use resflow::train::image::{ImageRun, MAX_GRID_SAMPLES};
use resflow::train::plot::Histogram;
use resflow::train::toy::ToyRun;
use resflow::train::AnyRun;
use resflow::Gpu;

use super::model::ModelArgs;
use super::output::{csv_lines, Format, Output, READER_GONE};

#[derive(clap::Args)]
pub struct DrawArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Number of samples.
    #[arg(long)]
    n: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Standard deviation of the base distribution's samples (1: the model's own
    /// distribution; below 1 draws nearer its modes).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Toy models: samples.csv (`x,y` lines), samples.npy ([N, 2] f32), samples.png (a
    /// histogram) or - (CSV on standard output). Image models: grid.png or images.npy
    /// ([N, C, H, W] f32 in [0, 1]).
    #[arg(long)]
    out: PathBuf,
    /// Image models: the raw weights instead of their EMA.
    #[arg(long)]
    raw: bool,
}

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

pub fn run(gpu: &Gpu, args: &DrawArgs) -> Result {
    if args.n == 0 {
        return Err("--n must be at least 1".into());
    }
    if !(args.temperature > 0.0 && args.temperature <= 10.0) {
        return Err(format!("--temperature must be in (0, 10], got {}", args.temperature).into());
    }
    match args.model.load(gpu)? {
        AnyRun::Toy(run) => draw_points(&run, args),
        AnyRun::Image(run) => draw_images(&run, args),
    }
}

/// The iterations report on standard error.
fn report(n: usize, out: &std::path::Path, iters: &[usize]) {
    let to = if out == std::path::Path::new("-") { "standard output".to_string() } else { out.display().to_string() };
    eprintln!("drew {n} samples to {to} (fixed-point iterations per block: {iters:?})");
}

fn draw_points(run: &ToyRun, args: &DrawArgs) -> Result {
    if args.raw {
        return Err("--raw applies to image models".into());
    }
    let format = Format::of(&args.out, &[Format::Csv, Format::Npy, Format::Png])?;
    let store = run.eval_store();
    let draw = |sink: &mut dyn FnMut(&[f32]) -> std::result::Result<(), String>| {
        toy::sample_chunks(&run.gpu, &run.flow, &store, args.n, args.seed, args.temperature, run.chunk(), sink)
    };
    let iters = if format == Format::Png {
        let mut histogram = Histogram::new(4.0, 100);
        let iters = draw(&mut |pts| {
            histogram.add(pts);
            Ok(())
        })?;
        histogram.image().upscale(3).save_png(&args.out)?;
        iters
    } else {
        let mut out = Output::create(&args.out)?;
        out.write(&match format {
            Format::Npy => npy::f32_header(&[args.n, 2]),
            _ => b"x,y\n".to_vec(),
        })?;
        let drawn = draw(&mut |pts| match format {
            Format::Npy => out.write_f32s(pts),
            _ => out.write(csv_lines(pts).as_bytes()),
        });
        let iters = match drawn {
            Err(resflow::models::toy::SampleError::Sink(e)) if e == READER_GONE => return Ok(()),
            other => other?,
        };
        out.finish()?;
        iters
    };
    report(args.n, &args.out, &iters);
    Ok(())
}

fn draw_images(run: &ImageRun, args: &DrawArgs) -> Result {
    let format = Format::of(&args.out, &[Format::Png, Format::Npy])
        .map_err(|e| format!("{e} (an image model's samples are a PNG grid or an .npy array)"))?;
    let store = run.eval_store(!args.raw);
    let iters = if format == Format::Png {
        if args.n > MAX_GRID_SAMPLES {
            return Err(format!("--n must be at most {MAX_GRID_SAMPLES} for a PNG grid; draw more into an .npy").into());
        }
        run.sample_grid(&store, args.n, args.seed, args.temperature, &args.out)?
    } else {
        let mut out = Output::create(&args.out)?;
        let mut header = vec![args.n];
        header.extend(run.format.shape);
        out.write(&npy::f32_header(&header))?;
        let iters = run.sample_chunks(&store, args.n, args.seed, args.temperature, |x| out.write_f32s(x))?;
        out.finish()?;
        iters
    };
    report(args.n, &args.out, &iters);
    Ok(())
}
