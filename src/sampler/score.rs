//! `resflow-sample score`: the log-density of a user's points (toy models: exact log-det) or
//! the bits/dim of a user's images (image models: the series estimator, with its standard
//! error over draws), one line per point or image.

use std::path::PathBuf;

use resflow::data::images::load_images;
use resflow::data::toy::load_points;
use resflow::train::image::ImageRun;
use resflow::train::toy::ToyRun;
use resflow::train::AnyRun;
use resflow::Gpu;

use super::model::ModelArgs;
use super::output::{Format, Output, READER_GONE};

#[derive(clap::Args)]
pub struct ScoreArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Toy models: points as `x,y` CSV lines or an [N, 2] .npy. Image models: a .png, an
    /// .npy ([N, H, W] or [N, C, H, W]; bytes or floats in [0, 1]) or an IDX file (as MNIST's).
    #[arg(long, value_name = "P.csv")]
    points: PathBuf,
    /// logp.csv, or - for standard output: a `log_p` line (nats) per point, or a
    /// `bpd,bpd_se` line per image.
    #[arg(long, value_name = "logp.csv")]
    out: PathBuf,
    /// Image models: estimates per image (fresh dequantisation noise and series draws); the
    /// standard error is over these.
    #[arg(long, default_value_t = 4)]
    draws: usize,
    /// Image models: the first K terms of the log-det series (deterministic, biased low)
    /// instead of the unbiased estimator.
    #[arg(long, value_name = "K")]
    exact_terms: Option<usize>,
    /// Image models: the seed of the noise and the estimator's draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Image models: the raw weights instead of their EMA.
    #[arg(long)]
    raw: bool,
}

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

/// The longest series `--exact-terms` takes (each term is a JVP of every block).
const MAX_EXACT_TERMS: usize = 200;

pub fn run(gpu: &Gpu, args: &ScoreArgs) -> Result {
    Format::of(&args.out, &[Format::Csv])?;
    match args.model.load(gpu)? {
        AnyRun::Toy(run) => score_points(&run, args),
        AnyRun::Image(run) => score_images(&run, args),
    }
}

/// Writes the lines; a reader that closed standard output early is no error.
fn emit(args: &ScoreArgs, text: &str) -> Result {
    let mut out = Output::create(&args.out)?;
    match out.write(text.as_bytes()) {
        Err(e) if e == READER_GONE => Ok(()),
        r => {
            r?;
            Ok(out.finish()?)
        }
    }
}

fn score_points(run: &ToyRun, args: &ScoreArgs) -> Result {
    if args.raw || args.exact_terms.is_some() || args.draws != 4 {
        return Err("--raw, --draws and --exact-terms apply to image models; a toy model's log-density is exact".into());
    }
    let points = load_points(&args.points)?;
    let lp = run.log_density(&run.eval_store(), &points)?;
    let mut text = String::from("log_p\n");
    for v in &lp {
        text.push_str(&format!("{v}\n"));
    }
    emit(args, &text)?;
    let mean = lp.iter().sum::<f64>() / lp.len() as f64;
    eprintln!("scored {} points: mean log p {mean:.4} nats (NLL {:.4})", lp.len(), -mean);
    Ok(())
}

fn score_images(run: &ImageRun, args: &ScoreArgs) -> Result {
    if let Some(k) = args.exact_terms {
        if !(1..=MAX_EXACT_TERMS).contains(&k) {
            return Err(format!("--exact-terms must be in 1..={MAX_EXACT_TERMS}, got {k}").into());
        }
    }
    if !(1..=1000).contains(&args.draws) {
        return Err(format!("--draws must be in 1..=1000, got {}", args.draws).into());
    }
    let set = load_images(&args.points, run.format.shape, run.format.levels)?;
    let scores = run.score(&run.eval_store(!args.raw), &set, args.draws, args.exact_terms, args.seed)?;
    let mut text = String::from("bpd,bpd_se\n");
    for (bpd, se) in &scores {
        match se {
            Some(se) => text.push_str(&format!("{bpd:.6},{se:.6}\n")),
            None => text.push_str(&format!("{bpd:.6},\n")),
        }
    }
    emit(args, &text)?;
    let mean = scores.iter().map(|s| s.0).sum::<f64>() / scores.len() as f64;
    eprintln!("scored {} images: mean {mean:.4} bits/dim", scores.len());
    Ok(())
}
