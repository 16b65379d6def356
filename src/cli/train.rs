//! `resflow train`: its flags, the run they configure (toy or image, by the dataset or the
//! checkpoint resumed), and the lines it prints around the training loop.

use std::path::PathBuf;

use resflow::data::IMAGE_DATASETS;
use resflow::train::choices::{Activation, Block, Estimator, GradMode, Hybrid, LrSchedule, Roulette};
use resflow::train::image::{ImageConfig, ImageRun};
use resflow::train::toy::{ToyConfig, ToyRun};
use resflow::train::{AnyRun, Family};
use resflow::Gpu;

/// Model and training flags of `resflow train` (defaults: the run `cargo run --release` does).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TrainArgs {
    /// Toy dataset: 8gaussians, checkerboard, 2spirals, pinwheel, rings, moons, circles, swissroll;
    /// or an image dataset: mnist, fashion-mnist, digits (8×8, built in).
    #[arg(long)]
    dataset: Option<String>,
    /// Train on your own 2-D points instead: a CSV of `x,y` lines (an optional header).
    #[arg(long, conflicts_with = "dataset")]
    data_file: Option<PathBuf>,
    /// Residual blocks (images: blocks per scale).
    #[arg(long)]
    blocks: Option<usize>,
    /// Hidden widths of each block's MLP, e.g. 64,64 (toy only).
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// lipswish, elu or softplus.
    #[arg(long, hide_possible_values = true)]
    activation: Option<Activation>,
    /// Lipschitz coefficient c of every layer.
    #[arg(long)]
    coeff: Option<f32>,
    /// Spectral-norm power iterations per step.
    #[arg(long)]
    power_iters: Option<usize>,
    /// Log-det estimator while training: exact (2×2), unbiased (Russian roulette), truncated.
    #[arg(long, hide_possible_values = true)]
    estimator: Option<Estimator>,
    /// Series terms: the truncation length, or the exact terms of the unbiased estimator.
    #[arg(long)]
    terms: Option<usize>,
    /// naive, neumann or neumann-bif (series estimators only).
    #[arg(long, hide_possible_values = true)]
    grad_mode: Option<GradMode>,
    /// ActNorm after every block (on by default; --no-actnorm turns it off).
    #[arg(long, conflicts_with = "no_actnorm")]
    actnorm: bool,
    #[arg(long)]
    no_actnorm: bool,
    #[arg(long)]
    lr: Option<f32>,
    /// constant, or cosine (decays to zero at the last step).
    #[arg(long, hide_possible_values = true)]
    lr_schedule: Option<LrSchedule>,
    /// Linear learning-rate warm-up steps.
    #[arg(long)]
    warmup: Option<usize>,
    /// Gradient-norm clipping threshold.
    #[arg(long)]
    clip: Option<f32>,
    /// EMA decay of the evaluation weights.
    #[arg(long)]
    ema: Option<f32>,
    #[arg(long)]
    batch: Option<usize>,
    /// Training steps.
    #[arg(long)]
    iters: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate (test NLL, pictures, checkpoint) every this many steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Output directory (default runs/<dataset>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from a checkpoint (its config is used; --iters may extend the run).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    image: ImageArgs,
}

/// Flags of image runs only (`--dataset mnist|fashion-mnist|digits`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageArgs {
    /// Where scripts/fetch-data.sh put the datasets.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Scales of the multi-scale model (a squeeze between consecutive ones).
    #[arg(long)]
    scales: Option<usize>,
    /// Hidden channels of every block.
    #[arg(long)]
    width: Option<usize>,
    /// Fully connected residual blocks after the last scale (the paper: 4).
    #[arg(long)]
    fc_blocks: Option<usize>,
    #[arg(long)]
    fc_width: Option<usize>,
    /// Factor out half the channels after every squeeze.
    #[arg(long)]
    factor_out: bool,
    /// residual (the paper's model) or coupling (the Real NVP baseline).
    #[arg(long, hide_possible_values = true)]
    block: Option<Block>,
    /// Russian-roulette distribution: poisson (λ = 2) or geometric (p = 0.5).
    #[arg(long, hide_possible_values = true)]
    roulette: Option<Roulette>,
    /// Spectral-norm power-iteration tolerance per step.
    #[arg(long)]
    power_tol: Option<f32>,
    /// α of the logit transform.
    #[arg(long)]
    alpha: Option<f32>,
    /// Hybrid model λ in λ·(−log p(x)) + CE: none, 0, 1/D or 1.
    #[arg(long, ignore_case = true, hide_possible_values = true)]
    hybrid: Option<Hybrid>,
    /// Channels of each classifier head's convolution.
    #[arg(long)]
    head_width: Option<usize>,
    /// Micro-batches per step (gradient accumulation; --batch is the whole step).
    #[arg(long)]
    accumulate: Option<usize>,
    /// Test images for bits/dim.
    #[arg(long)]
    eval_images: Option<usize>,
    /// Images in the sample grid.
    #[arg(long)]
    samples: Option<usize>,
}

impl TrainArgs {
    fn family(&self) -> Family {
        self.dataset.as_deref().map_or(Family::Toy, Family::of_dataset)
    }

    /// Whether this trains a toy model (an unreadable checkpoint counts as one: its error
    /// comes later).
    pub fn trains_a_toy_model(&self) -> bool {
        let resumes_image = self.resume.as_ref().is_some_and(|p| Family::of_checkpoint(p).ok() == Some(Family::Image));
        self.family() == Family::Toy && !resumes_image
    }

    /// The run to train: the checkpoint's when resuming, else a new one of the dataset's family.
    fn new_run(&self, gpu: &Gpu) -> Result<AnyRun, Box<dyn std::error::Error>> {
        let resumes = match &self.resume {
            Some(path) => Some((path, Family::of_checkpoint(path)?)),
            None => None,
        };
        let image = self.family() == Family::Image || resumes.is_some_and(|(_, f)| f == Family::Image);
        if !image {
            self.check_toy()?;
        }
        Ok(match (resumes, image) {
            (Some((path, _)), _) => {
                if image {
                    self.image_config()?;
                }
                let mut run = AnyRun::load(gpu, path)?;
                self.check_resume(&run, path)?;
                run.continue_to(self.iters)?;
                run
            }
            (None, true) => AnyRun::Image(Box::new(ImageRun::new(gpu, self.image_config()?)?)),
            (None, false) => AnyRun::Toy(Box::new(ToyRun::new(gpu, self.toy_config())?)),
        })
    }

    /// The image run's config; toy-only flags are refused rather than silently ignored.
    fn image_config(&self) -> Result<ImageConfig, String> {
        let toy_only = [
            ("--hidden", self.hidden.is_some()),
            ("--power-iters", self.power_iters.is_some()),
            ("--actnorm/--no-actnorm", self.actnorm || self.no_actnorm),
            ("--data-file", self.data_file.is_some()),
        ];
        if let Some((flag, _)) = toy_only.iter().find(|(_, set)| *set) {
            return Err(format!("{flag} applies to toy datasets only"));
        }
        let mut c = ImageConfig::default();
        self.apply_image(&mut c);
        Ok(c)
    }

    /// The image flags given, set in `c`.
    fn apply_image(&self, c: &mut ImageConfig) {
        if let Some(d) = &self.dataset {
            c.dataset = d.clone();
        }
        macro_rules! set {
            ($src:expr; $($field:ident),*) => { $( if let Some(v) = &$src.$field { c.$field = v.clone(); } )* };
        }
        set!(self; blocks, activation, coeff, estimator, terms, grad_mode, lr, lr_schedule, warmup, clip, ema, batch, iters, seed, eval_every);
        let i = &self.image;
        set!(i; data_dir, scales, width, fc_blocks, fc_width, block, roulette, power_tol, alpha, hybrid, head_width, accumulate, eval_images, samples);
        c.factor_out |= i.factor_out;
    }

    /// Image-only flags on a toy run are an error.
    fn check_toy(&self) -> Result<(), String> {
        let i = &self.image;
        let image_only = [
            ("--data-dir", i.data_dir.is_some()),
            ("--scales", i.scales.is_some()),
            ("--width", i.width.is_some()),
            ("--fc-blocks", i.fc_blocks.is_some()),
            ("--fc-width", i.fc_width.is_some()),
            ("--factor-out", i.factor_out),
            ("--block", i.block.is_some()),
            ("--roulette", i.roulette.is_some()),
            ("--power-tol", i.power_tol.is_some()),
            ("--alpha", i.alpha.is_some()),
            ("--hybrid", i.hybrid.is_some()),
            ("--head-width", i.head_width.is_some()),
            ("--accumulate", i.accumulate.is_some()),
            ("--eval-images", i.eval_images.is_some()),
            ("--samples", i.samples.is_some()),
        ];
        match image_only.iter().find(|(_, set)| *set) {
            Some((flag, _)) => Err(format!("{flag} applies to image datasets only ({})", IMAGE_DATASETS.join(", "))),
            None => Ok(()),
        }
    }

    fn toy_config(&self) -> ToyConfig {
        let mut c = ToyConfig::default();
        self.apply_toy(&mut c);
        c
    }

    /// The toy flags given, set in `c`.
    fn apply_toy(&self, c: &mut ToyConfig) {
        if let Some(d) = &self.dataset {
            c.dataset = d.clone();
        }
        if let Some(f) = &self.data_file {
            c.dataset = format!("file:{}", f.display());
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { c.$field = v.clone(); } )* };
        }
        set!(
            blocks,
            hidden,
            activation,
            coeff,
            power_iters,
            estimator,
            terms,
            grad_mode,
            lr,
            lr_schedule,
            warmup,
            clip,
            ema,
            batch,
            iters,
            seed,
            eval_every
        );
        if self.no_actnorm {
            c.actnorm = false;
        } else if self.actnorm {
            c.actnorm = true;
        }
    }

    /// A resumed run keeps the configuration in its checkpoint (only `--iters` may extend
    /// it): a flag that would change it is an error naming the flag, not silently ignored.
    fn check_resume(&self, run: &AnyRun, path: &std::path::Path) -> Result<(), String> {
        let (saved, wanted) = match run {
            AnyRun::Toy(r) => {
                let mut c = r.config.clone();
                self.apply_toy(&mut c);
                c.iters = r.config.iters;
                (fields(&r.config), fields(&c))
            }
            AnyRun::Image(r) => {
                let mut c = r.config.clone();
                self.apply_image(&mut c);
                c.iters = r.config.iters;
                (fields(&r.config), fields(&c))
            }
        };
        let differing = saved.iter().find(|(key, value)| wanted.get(*key) != Some(value));
        match differing {
            None => Ok(()),
            Some((key, value)) => Err(format!(
                "--{} {} differs from the checkpoint {}'s {value}: a resumed run keeps its configuration \
                 (only --iters may change)",
                key.replace('_', "-"),
                wanted[key],
                path.display()
            )),
        }
    }
}

/// Trains the run `args` describe, between an opening line (unless quiet) and a closing one.
pub fn run(gpu: &Gpu, args: &TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut run = args.new_run(gpu)?;
    let out = args.out.clone().unwrap_or_else(|| run.default_out());
    if !args.quiet {
        eprintln!("{}", run.banner(&gpu.info().name, &out));
    }
    if let Some(line) = run.train(&out, args.quiet)? {
        println!("{line}");
    }
    Ok(())
}

/// A config's fields as a JSON object, to compare field by field whatever the config's type.
fn fields(config: &impl serde::Serialize) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}
