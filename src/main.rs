//! The `resflow` command line.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use resflow::train::choices::{Activation, Block, Estimator, GradMode, Hybrid, LrSchedule, Roulette};
use resflow::train::{AnyRun, Family};
use resflow::{Gpu, TensorOps};

#[derive(Parser)]
#[command(name = "resflow", version, about = "Residual Flows on a from-scratch wgpu/WGSL tensor engine")]
struct Cli {
    /// Use the GPU adapter whose name contains this (case-insensitive); also RESFLOW_ADAPTER.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Model and training flags of `resflow train` (defaults: the run `cargo run --release` does).
#[derive(clap::Args, Debug, Clone, Default)]
struct TrainArgs {
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
    #[arg(long, overrides_with = "no_actnorm")]
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
struct ImageArgs {
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
    fn is_image(&self) -> bool {
        self.dataset.as_deref().is_some_and(|d| resflow::data::IMAGE_DATASETS.contains(&d))
    }

    /// The image run's config; toy-only flags are refused rather than silently ignored.
    fn image_config(&self) -> Result<resflow::train::image::ImageConfig, String> {
        let toy_only = [
            ("--hidden", self.hidden.is_some()),
            ("--power-iters", self.power_iters.is_some()),
            ("--actnorm/--no-actnorm", self.actnorm || self.no_actnorm),
            ("--data-file", self.data_file.is_some()),
        ];
        if let Some((flag, _)) = toy_only.iter().find(|(_, set)| *set) {
            return Err(format!("{flag} applies to toy datasets only"));
        }
        let mut c = resflow::train::image::ImageConfig::default();
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
        Ok(c)
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
            Some((flag, _)) => {
                Err(format!("{flag} applies to image datasets only ({})", resflow::data::IMAGE_DATASETS.join(", ")))
            }
            None => Ok(()),
        }
    }

    fn config(&self) -> resflow::train::toy::ToyConfig {
        let mut c = resflow::train::toy::ToyConfig::default();
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
        c
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a residual flow on a 2-D toy density (the default command).
    Train(Box<TrainArgs>),
    /// Draw samples from a checkpoint (toy or image) through the fixed-point inverse.
    Sample {
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
    },
    /// Test NLL of a toy checkpoint (EMA weights, exact log-det) on fresh samples, or test
    /// bits/dim (± standard error, and accuracy for hybrids) of an image checkpoint.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Evaluate on another dataset than the one trained on.
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        samples: usize,
        /// Image models: the first this many test images (default: the run's --eval-images).
        #[arg(long)]
        images: Option<usize>,
        /// Image models: evaluate the raw weights instead of their EMA.
        #[arg(long)]
        raw: bool,
        /// One JSON object (key `nll`; image models: `bpd`, `bpd_se`, `accuracy`).
        #[arg(long)]
        json: bool,
    },
    /// Print the adapter, backend, driver and the limits in use.
    Info,
    /// Run each kernel family once against the f64 CPU reference.
    Selfcheck,
    /// Kernel throughput against the device's measured peak (`bench memory`: peak memory and
    /// time of a training step per gradient mode and number of series terms).
    Bench {
        /// `kernels` (default), `memory`, `toy` (seconds per training step of the toy model) or
        /// `image` (a training step of the image models: s/step, images/s, peak memory).
        #[arg(default_value = "kernels", value_parser = ["kernels", "memory", "toy", "image"])]
        suite: String,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        /// memory: which models (conv = one image block [16,3,32,32] width 512; mlp = 10 2-D blocks).
        #[arg(long, value_delimiter = ',', default_value = "conv,mlp")]
        models: Vec<String>,
        /// memory: numbers of series terms.
        #[arg(long, value_delimiter = ',', default_value = "2,5,10,20")]
        terms: Vec<usize>,
        /// Only kernels whose name contains this.
        #[arg(long, default_value = "")]
        filter: String,
        /// Timed repetitions per kernel (the median is reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
        /// image: which configurations (small = the reference's MNIST setup, paper = 3×16×512 + FC).
        #[arg(long, value_delimiter = ',', default_value = "small,paper")]
        configs: Vec<String>,
        /// image: batch of the paper configuration's step.
        #[arg(long, default_value_t = 4)]
        paper_batch: usize,
        /// image: where MNIST was fetched (synthetic 28×28 images are timed without it).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_vulkan_loader();
    if is_toy_training(&cli) {
        inline_software_driver();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan loader complains on stderr when XDG_RUNTIME_DIR is unset (headless machines,
/// CI); give it a private directory before any thread starts.
fn quiet_vulkan_loader() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("resflow-xdg-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            // SAFETY: called at the start of main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

/// Whether the command trains (or times the training of) a toy 2-D model.
fn is_toy_training(cli: &Cli) -> bool {
    match &cli.command {
        None => true,
        Some(Command::Train(args)) => {
            !args.is_image()
                && !args.resume.as_ref().is_some_and(|p| Family::of_checkpoint(p).ok() == Some(Family::Image))
        }
        Some(Command::Bench { suite, .. }) => suite == "toy",
        _ => false,
    }
}

/// Runs lavapipe's kernels on the calling thread (`LP_NUM_THREADS=0`) unless the user chose a
/// thread count. A toy training step is ~1800 dispatches of a few workgroups each, and
/// llvmpipe hands every dispatch to its worker threads and waits: that hand-off costs more
/// than the second core gains (README: toy step times either way). Other drivers ignore it.
fn inline_software_driver() {
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("LP_NUM_THREADS", "0") };
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(cli.adapter.as_deref())?;
    match cli.command {
        None => train(&gpu, &TrainArgs::default())?,
        Some(Command::Train(args)) => train(&gpu, &args)?,
        Some(Command::Sample { checkpoint, n, out, seed, raw })
            if Family::of_checkpoint(&checkpoint)? == Family::Image =>
        {
            let run = resflow::train::image::ImageRun::from_checkpoint(&gpu, &checkpoint)?;
            if out.extension().and_then(|e| e.to_str()) != Some("png") {
                return Err(format!("--out must end in .png for an image model, got {}", out.display()).into());
            }
            let n = n.unwrap_or(run.config.samples);
            if n == 0 {
                return Err("--n must be positive".into());
            }
            let iters = run.sample_grid(&run.eval_store(!raw), n, seed, &out)?;
            let mean = iters.iter().sum::<usize>() as f64 / iters.len().max(1) as f64;
            eprintln!(
                "wrote a grid of {n} samples to {} (fixed-point iterations per block: {iters:?}, mean {mean:.1})",
                out.display()
            );
        }
        Some(Command::Sample { checkpoint, n, out, seed, raw }) => {
            if raw {
                return Err("--raw applies to image checkpoints".into());
            }
            let n = n.unwrap_or(10_000);
            if n == 0 {
                return Err("--n must be positive".into());
            }
            let run = resflow::train::toy::ToyRun::from_checkpoint(&gpu, &checkpoint)?;
            let store = run.eval_store();
            let (pts, iters) = resflow::models::toy::sample(&gpu, &run.flow, &store, n, seed)?;
            match out.extension().and_then(|e| e.to_str()) {
                Some("csv") => {
                    let mut s = String::from("x,y\n");
                    for p in pts.chunks_exact(2) {
                        s.push_str(&format!("{},{}\n", p[0], p[1]));
                    }
                    resflow::train::checkpoint::write_atomically(&out, s.as_bytes())?;
                }
                Some("png") => resflow::train::plot::Image::histogram(&pts, 4.0, 100).upscale(3).save_png(&out)?,
                _ => return Err(format!("--out must end in .csv or .png, got {}", out.display()).into()),
            }
            let max = iters.iter().max().copied().unwrap_or(0);
            eprintln!("wrote {n} samples to {} (fixed-point iterations per block: at most {max})", out.display());
        }
        Some(Command::Eval { checkpoint, images, json, raw, .. })
            if Family::of_checkpoint(&checkpoint)? == Family::Image =>
        {
            let mut run = resflow::train::image::ImageRun::from_checkpoint(&gpu, &checkpoint)?;
            let images = images.unwrap_or(run.config.eval_images);
            if images == 0 {
                return Err("--images must be positive".into());
            }
            let store = run.eval_store(!raw);
            let e = run.evaluate(&store, images)?;
            if json {
                let acc = e.accuracy.map_or("null".to_string(), |a| format!("{a:.5}"));
                println!(
                    "{{\"bpd\":{:.5},\"bpd_se\":{:.5},\"accuracy\":{acc},\"images\":{},\"step\":{},\"weights\":\"{}\"}}",
                    e.bpd,
                    e.bpd_se,
                    e.images,
                    run.step(),
                    if raw { "raw" } else { "ema" }
                );
            } else {
                let acc = e.accuracy.map(|a| format!(", accuracy {:.2} %", 100.0 * a)).unwrap_or_default();
                println!(
                    "test bits/dim {:.4} ± {:.4} ({} weights) on {} {} test images{acc} (step {})",
                    e.bpd,
                    e.bpd_se,
                    if raw { "raw" } else { "EMA" },
                    e.images,
                    run.config.dataset,
                    run.step()
                );
            }
        }
        Some(Command::Eval { checkpoint, dataset, samples, json, raw, .. }) => {
            if raw {
                return Err("--raw applies to image checkpoints".into());
            }
            let run = resflow::train::toy::ToyRun::from_checkpoint(&gpu, &checkpoint)?;
            let source = match dataset {
                Some(d) => resflow::train::toy::Source::Toy(resflow::data::ToyDataset::parse(&d)?),
                None => run.source.clone(),
            };
            let store = run.eval_store();
            let nll = run.test_nll(&store, &source, samples);
            if json {
                let entropy = source.entropy().map_or("null".to_string(), |h| format!("{h:.4}"));
                println!("{{\"nll\":{nll:.5},\"samples\":{samples},\"step\":{},\"entropy\":{entropy}}}", run.step());
            } else {
                println!("test NLL {nll:.4} nats on {samples} fresh samples (step {})", run.step());
            }
        }
        Some(Command::Info) => print_info(&gpu),
        Some(Command::Selfcheck) => selfcheck(&gpu)?,
        Some(Command::Bench { suite, json, models, terms, filter, reps, configs, paper_batch, data_dir }) => {
            if !json {
                print_info(&gpu);
                println!();
            }
            if suite == "image" {
                for c in &configs {
                    if c != "small" && c != "paper" {
                        return Err(format!("unknown configuration {c:?}; choose small, paper").into());
                    }
                }
                // The paper configuration is slow on CPU adapters: time fewer of its steps.
                for row in resflow::bench::image::run(&gpu, &data_dir, &configs, paper_batch, reps.clamp(1, 3)) {
                    println!("{}", if json { row.json() } else { row.text() });
                }
            } else if suite == "toy" {
                for row in resflow::bench::toy_step(&gpu, reps.max(1))? {
                    println!("{}", if json { row.json() } else { row.text() });
                }
            } else if suite == "memory" {
                use resflow::bench::memory::{self, Model};
                let models = models
                    .iter()
                    .map(|m| match m.as_str() {
                        "conv" => Ok(Model::Conv),
                        "mlp" => Ok(Model::Mlp),
                        other => Err(format!("unknown model {other:?}; choose conv, mlp")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                memory::run(&gpu, &models, &terms, |row| {
                    println!("{}", if json { row.json() } else { row.text() });
                });
            } else {
                resflow::bench::run(&gpu, &filter, reps.max(1), |row| {
                    println!("{}", if json { row.json() } else { row.text() });
                });
            }
        }
    }
    Ok(())
}

fn train(gpu: &Gpu, args: &TrainArgs) -> Result<(), Box<dyn std::error::Error>> {
    let resumes_image = match &args.resume {
        Some(path) => Family::of_checkpoint(path)? == Family::Image,
        None => false,
    };
    let image = args.is_image() || resumes_image;
    if !image {
        args.check_toy()?;
    }
    let mut run = match (&args.resume, image) {
        (Some(path), _) => AnyRun::resume(gpu, path, args.iters)?,
        (None, true) => AnyRun::Image(Box::new(resflow::train::image::ImageRun::new(gpu, args.image_config()?)?)),
        (None, false) => AnyRun::Toy(Box::new(resflow::train::toy::ToyRun::new(gpu, args.config())?)),
    };
    let out = args.out.clone().unwrap_or_else(|| run.default_out());
    if !args.quiet {
        eprintln!("{}", run.banner(&gpu.info().name, &out));
    }
    if let Some(line) = run.train(&out, args.quiet)? {
        println!("{line}");
    }
    Ok(())
}

fn print_info(gpu: &Gpu) {
    let i = gpu.info();
    let l = gpu.limits();
    println!("adapter   {} ({:?})", i.name, i.device_type);
    println!("backend   {:?}", i.backend);
    println!("driver    {} {}", i.driver, i.driver_info);
    println!("features  {:?}", gpu.features());
    println!(
        "limits    storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB, invocations {}, \
         workgroups/dim {}",
        l.max_storage_buffer_binding_size >> 20,
        l.max_buffer_size >> 20,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroups_per_dimension
    );
    let from = resflow::gpu::TEXTURE_INPUTS_FROM;
    let probe = gpu.staging_probe().map_or(String::new(), |p| {
        let n = resflow::gpu::StagingProbe::ELEMENTS;
        format!(" (x + 1 over {n} floats: staged {:.2} ms, from buffers {:.2} ms)", p.staged_ms, p.buffer_ms)
    });
    println!("inputs    elementwise kernels of ≥ {from} elements: {:?}{probe}", gpu.elementwise_inputs_for(from));
}

/// A quick end-to-end check of each kernel family against the reference.
fn selfcheck(gpu: &Gpu) -> Result<(), Box<dyn std::error::Error>> {
    use resflow::{CpuTensor, Reduce, Tape, Tensor, Unary, Var};
    let data: Vec<f32> = (0..96).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let g = Tensor::from_slice(gpu, &data, &[8, 12])?;
    let c = CpuTensor::new(data.iter().map(|&v| v as f64).collect(), &[8, 12]);
    fn grad_of<T: TensorOps>(x: T) -> (f64, Vec<f64>) {
        let tape = Tape::new();
        let v = tape.leaf(x.clone());
        let w = Var::constant(x.permute(&[1, 0]));
        let h = tape.matmul(&v, &w, false, false);
        let s = tape.unary(&h, Unary::Tanh);
        let l = tape.reduce(&s, Reduce::LogSumExp, None, false);
        let grads = tape.backward(&l);
        (l.value.to_host()[0], grads.get_or_zeros(&v).to_host())
    }
    let (lg, gg) = grad_of(g);
    let (lc, gc) = grad_of(c);
    let err = gg.iter().zip(&gc).map(|(a, b)| (a - b).abs()).fold((lg - lc).abs(), f64::max);
    println!("selfcheck matmul → tanh → logsumexp and its gradient: max |GPU − f64 reference| = {err:.2e}");
    if err > 1e-4 {
        return Err(format!("selfcheck failed: GPU and reference differ by {err:.2e}").into());
    }
    let stats = gpu.pool_stats();
    println!(
        "selfcheck ok; pool: {} buffers created, {:.1} KiB peak",
        stats.allocations,
        stats.peak_bytes as f64 / 1024.0
    );
    Ok(())
}
