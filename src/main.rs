//! The `resflow` command line.

use std::process::ExitCode;

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

#[derive(Subcommand)]
enum Command {
    /// Print the adapter, backend, driver and the limits in use.
    Info,
    /// Run each kernel family once against the f64 CPU reference.
    Selfcheck,
    /// Kernel throughput against the device's measured peak (`bench memory`: peak memory and
    /// time of a training step per gradient mode and number of series terms).
    Bench {
        /// `kernels` (default) or `memory`.
        #[arg(default_value = "kernels", value_parser = ["kernels", "memory"])]
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
        None => {
            print_info(&gpu);
            selfcheck(&gpu)?;
        }
        Some(Command::Info) => print_info(&gpu),
        Some(Command::Selfcheck) => selfcheck(&gpu)?,
        Some(Command::Bench { suite, json, models, terms, filter, reps }) => {
            if !json {
                print_info(&gpu);
                println!();
            }
            if suite == "memory" {
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
