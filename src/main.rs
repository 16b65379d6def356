//! The `resflow` command line.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
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
    /// Toy dataset: 8gaussians, checkerboard, 2spirals, pinwheel, rings, moons, circles, swissroll.
    #[arg(long)]
    dataset: Option<String>,
    /// Train on your own 2-D points instead: a CSV of `x,y` lines (an optional header).
    #[arg(long, conflicts_with = "dataset")]
    data_file: Option<PathBuf>,
    /// Residual blocks.
    #[arg(long)]
    blocks: Option<usize>,
    /// Hidden widths of each block's MLP, e.g. 64,64.
    #[arg(long, value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// lipswish, elu or softplus.
    #[arg(long)]
    activation: Option<String>,
    /// Lipschitz coefficient c of every layer.
    #[arg(long)]
    coeff: Option<f32>,
    /// Spectral-norm power iterations per step.
    #[arg(long)]
    power_iters: Option<usize>,
    /// Log-det estimator while training: exact (2×2), unbiased (Russian roulette), truncated.
    #[arg(long)]
    estimator: Option<String>,
    /// Series terms: the truncation length, or the exact terms of the unbiased estimator.
    #[arg(long)]
    terms: Option<usize>,
    /// naive, neumann or neumann-bif (series estimators only).
    #[arg(long)]
    grad_mode: Option<String>,
    /// ActNorm after every block (on by default; --no-actnorm turns it off).
    #[arg(long, overrides_with = "no_actnorm")]
    actnorm: bool,
    #[arg(long)]
    no_actnorm: bool,
    #[arg(long)]
    lr: Option<f32>,
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
}

impl TrainArgs {
    fn config(&self) -> resflow::toy::ToyConfig {
        let mut c = resflow::toy::ToyConfig::default();
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
    /// Draw samples from a toy checkpoint through the fixed-point inverse.
    Sample {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Number of samples.
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// samples.csv (one `x,y` per line) or samples.png (a histogram).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Test NLL of a toy checkpoint (EMA weights, exact log-det) on fresh samples.
    Eval {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Evaluate on another dataset than the one trained on.
        #[arg(long)]
        dataset: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        samples: usize,
        /// One JSON object (key `nll`).
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
        /// `kernels` (default), `memory`, or `toy` (seconds per training step of the toy model).
        #[arg(default_value = "kernels", value_parser = ["kernels", "memory", "toy"])]
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    quiet_vulkan_loader();
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

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(cli.adapter.as_deref())?;
    match cli.command {
        None => train(&gpu, &TrainArgs::default())?,
        Some(Command::Train(args)) => train(&gpu, &args)?,
        Some(Command::Sample { checkpoint, n, out, seed }) => {
            let run = resflow::toy::ToyRun::from_checkpoint(&gpu, &checkpoint)?;
            let store = run.eval_store();
            let (pts, iters) = resflow::toy::sample(&gpu, &run.flow, &store, n, seed)?;
            match out.extension().and_then(|e| e.to_str()) {
                Some("csv") => {
                    let mut s = String::from("x,y\n");
                    for p in pts.chunks_exact(2) {
                        s.push_str(&format!("{},{}\n", p[0], p[1]));
                    }
                    resflow::checkpoint::write_atomically(&out, s.as_bytes())?;
                }
                Some("png") => resflow::plot::Image::histogram(&pts, 4.0, 100).upscale(3).save_png(&out)?,
                _ => return Err(format!("--out must end in .csv or .png, got {}", out.display()).into()),
            }
            let max = iters.iter().max().copied().unwrap_or(0);
            eprintln!("wrote {n} samples to {} (fixed-point iterations per block: at most {max})", out.display());
        }
        Some(Command::Eval { checkpoint, dataset, samples, json }) => {
            let run = resflow::toy::ToyRun::from_checkpoint(&gpu, &checkpoint)?;
            let source = match dataset {
                Some(d) => resflow::toy::Source::Toy(resflow::data::ToyDataset::parse(&d)?),
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
        Some(Command::Bench { suite, json, models, terms, filter, reps }) => {
            if !json {
                print_info(&gpu);
                println!();
            }
            if suite == "toy" {
                for row in resflow::bench::toy_step(&gpu, reps.max(1)) {
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
    let mut run = match &args.resume {
        Some(path) => {
            let mut run = resflow::toy::ToyRun::from_checkpoint(gpu, path)?;
            if let Some(iters) = args.iters {
                run.config.iters = iters;
            }
            run
        }
        None => resflow::toy::ToyRun::new(gpu, args.config())?,
    };
    let name = run.config.dataset.strip_prefix("file:").map_or(run.config.dataset.clone(), |_| "custom".to_string());
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(name));
    if !args.quiet {
        let c = &run.config;
        eprintln!(
            "training on {} ({}): {} blocks of 2-{}-2, {} estimator, batch {}, {} steps → {}",
            c.dataset,
            gpu.info().name,
            c.blocks,
            c.hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("-"),
            c.estimator,
            c.batch,
            c.iters,
            out.display()
        );
    }
    let result = resflow::toy::train(&mut run, &out, args.quiet)?;
    if let Some(nll) = result.final_nll {
        let gap =
            run.source.entropy().map(|h| format!(", {:.3} above the true entropy {h:.3}", nll - h)).unwrap_or_default();
        println!("final test NLL {nll:.4} nats{gap}; pictures, log.csv and checkpoint in {}", result.dir.display());
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
