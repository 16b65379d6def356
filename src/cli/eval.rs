//! `resflow eval`: the test NLL of a toy checkpoint, or the test bits/dim (and accuracy) of an
//! image checkpoint, as a line of text or one JSON object.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::value::RawValue;

use resflow::data::ToyDataset;
use resflow::train::image::ImageRun;
use resflow::train::toy::{Source, ToyRun};
use resflow::train::AnyRun;
use resflow::Gpu;

#[derive(clap::Args)]
pub struct EvalArgs {
    #[arg(long)]
    checkpoint: PathBuf,
    /// Evaluate on another dataset than the one trained on.
    #[arg(long)]
    dataset: Option<String>,
    /// Toy models: fresh samples to score (default 10 000).
    #[arg(long, conflicts_with = "data_file")]
    samples: Option<usize>,
    /// Toy models: score these points (`x,y` CSV lines or an [N, 2] `.npy`) instead of fresh
    /// samples of the dataset.
    #[arg(long, value_name = "P.csv", conflicts_with = "dataset")]
    data_file: Option<PathBuf>,
    /// Image models: the first this many test images (default: the run's --eval-images).
    #[arg(long)]
    images: Option<usize>,
    /// Image models: evaluate the raw weights instead of their EMA.
    #[arg(long)]
    raw: bool,
    /// One JSON object (key `nll`; image models: `bpd`, `bpd_se`, `accuracy`).
    #[arg(long)]
    json: bool,
}

type Result = std::result::Result<(), Box<dyn std::error::Error>>;

pub fn run(gpu: &Gpu, args: &EvalArgs) -> Result {
    match AnyRun::load(gpu, &args.checkpoint)? {
        AnyRun::Toy(run) => toy(&run, args),
        AnyRun::Image(mut run) => image(&mut run, args),
    }
}

/// A number with `decimals` fixed decimals, as JSON: the digits the text output shows
/// (serde_json alone would print the shortest form, 3.7897 for 3.78970). Results are checked
/// finite before they get here; null keeps the output valid JSON should one slip through.
fn fixed(x: f64, decimals: usize) -> Box<RawValue> {
    let text = if x.is_finite() { format!("{x:.decimals$}") } else { "null".to_string() };
    RawValue::from_string(text).expect("a finite number is valid JSON")
}

/// `--json` of a toy model.
#[derive(Serialize)]
struct ToyJson {
    nll: Box<RawValue>,
    samples: usize,
    step: usize,
    /// The dataset's true entropy, where known.
    entropy: Option<Box<RawValue>>,
    /// The points scored, with `--data-file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_file: Option<String>,
}

/// `--json` of an image model.
#[derive(Serialize)]
struct ImageJson {
    bpd: Box<RawValue>,
    bpd_se: Box<RawValue>,
    /// Hybrid models only.
    accuracy: Option<Box<RawValue>>,
    images: usize,
    step: usize,
    /// `ema` or `raw`.
    weights: &'static str,
}

fn toy(run: &ToyRun, args: &EvalArgs) -> Result {
    if args.raw {
        return Err("--raw applies to image checkpoints".into());
    }
    if args.images.is_some() {
        return Err("--images applies to image checkpoints; toy models take --samples".into());
    }
    if let Some(path) = &args.data_file {
        let points = resflow::data::toy::load_points(path)?;
        let (n, step) = (points.len() / 2, run.step());
        let nll = run.nll_of(&run.eval_store(), &points)?;
        if args.json {
            let data_file = Some(path.display().to_string());
            println!(
                "{}",
                serde_json::to_string(&ToyJson { nll: fixed(nll, 5), samples: n, step, entropy: None, data_file })?
            );
        } else {
            println!("NLL {nll:.4} nats on the {n} points of {} (step {step})", path.display());
        }
        return Ok(());
    }
    let source = match &args.dataset {
        Some(d) => Source::Toy(ToyDataset::parse(d)?),
        None => run.source.clone(),
    };
    let (samples, step) = (args.samples.unwrap_or(10_000), run.step());
    let nll = run.test_nll(&run.eval_store(), &source, samples)?;
    if args.json {
        let entropy = source.entropy().map(|h| fixed(h, 4));
        println!(
            "{}",
            serde_json::to_string(&ToyJson { nll: fixed(nll, 5), samples, step, entropy, data_file: None })?
        );
    } else {
        println!("test NLL {nll:.4} nats on {samples} fresh samples (step {step})");
    }
    Ok(())
}

fn image(run: &mut ImageRun, args: &EvalArgs) -> Result {
    if args.dataset.is_some() {
        return Err(format!(
            "--dataset applies to toy checkpoints; this image model is evaluated on {}",
            run.config.dataset
        )
        .into());
    }
    if args.samples.is_some() {
        return Err("--samples applies to toy checkpoints; image models take --images".into());
    }
    if args.data_file.is_some() {
        return Err("--data-file applies to toy checkpoints; score images with `resflow-sample score`".into());
    }
    let images = args.images.unwrap_or(run.config.eval_images);
    if images == 0 {
        return Err("--images must be positive".into());
    }
    let store = run.eval_store(!args.raw);
    let e = run.evaluate(&store, images)?;
    if args.json {
        let json = ImageJson {
            bpd: fixed(e.bpd, 5),
            bpd_se: fixed(e.bpd_se, 5),
            accuracy: e.accuracy.map(|a| fixed(a, 5)),
            images: e.images,
            step: run.step(),
            weights: if args.raw { "raw" } else { "ema" },
        };
        println!("{}", serde_json::to_string(&json)?);
    } else {
        let acc = e.accuracy.map(|a| format!(", accuracy {:.2} %", 100.0 * a)).unwrap_or_default();
        let weights = if args.raw { "raw" } else { "EMA" };
        println!(
            "test bits/dim {:.4} ± {:.4} ({weights} weights) on {} {} test images{acc} (step {})",
            e.bpd,
            e.bpd_se,
            e.images,
            run.config.dataset,
            run.step()
        );
    }
    Ok(())
}
