//! The `resflow` command line: the subcommands, one module each, over the library. Nothing
//! here trains or evaluates itself.

mod bench;
mod eval;
mod info;
mod sample;
mod selfcheck;
mod train;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resflow::options::Precision;
use resflow::Gpu;

#[derive(Parser)]
#[command(name = "resflow", version, about = "Residual Flows on a from-scratch wgpu/WGSL tensor engine")]
struct Cli {
    /// Use the GPU adapter whose name contains this (case-insensitive); also RESFLOW_ADAPTER.
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Operand precision of matmuls and convolutions: f16 stores them as half floats and
    /// accumulates in f32 (needs an adapter with SHADER_F16); weights, optimiser state and
    /// log-dets stay f32.
    #[arg(long, global = true, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a residual flow on a 2-D toy density (the default command).
    Train(Box<train::TrainArgs>),
    /// Draw samples from a checkpoint (toy or image) through the fixed-point inverse.
    Sample(sample::SampleArgs),
    /// Test NLL of a toy checkpoint (EMA weights, exact log-det) on fresh samples, or test
    /// bits/dim (± standard error, and accuracy for hybrids) of an image checkpoint.
    Eval(eval::EvalArgs),
    /// Print the adapter, backend, driver and the limits in use.
    Info,
    /// Run each kernel family once against the f64 CPU reference.
    Selfcheck,
    /// Kernel throughput against the device's measured peak (`bench memory`: peak memory and
    /// time of a training step per gradient mode and number of series terms).
    Bench(bench::BenchArgs),
}

/// Parses the command line, runs the command, and prints its error as one line.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if trains_a_toy_model(&cli) {
        inline_software_driver();
    }
    resflow::process::run_main(|| run(cli))
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let gpu = Gpu::new(cli.adapter.as_deref())?;
    gpu.set_precision(cli.precision)?;
    match cli.command {
        None => train::run(&gpu, &train::TrainArgs::default()),
        Some(Command::Train(args)) => train::run(&gpu, &args),
        Some(Command::Sample(args)) => sample::run(&gpu, &args),
        Some(Command::Eval(args)) => eval::run(&gpu, &args),
        Some(Command::Info) => {
            info::print_info(&gpu);
            Ok(())
        }
        Some(Command::Selfcheck) => selfcheck::run(&gpu),
        Some(Command::Bench(args)) => bench::run(&gpu, &args),
    }
}

/// Whether the command trains (or times the training of) a toy 2-D model.
fn trains_a_toy_model(cli: &Cli) -> bool {
    match &cli.command {
        None => true,
        Some(Command::Train(args)) => args.trains_a_toy_model(),
        Some(Command::Bench(args)) => args.suite == bench::Suite::Toy,
        _ => false,
    }
}

/// Runs lavapipe's kernels on the calling thread (`LP_NUM_THREADS=0`) unless the user chose a
/// thread count. A toy training step is ~1800 dispatches of a few workgroups each, and
/// llvmpipe hands every dispatch to its worker threads and waits: that hand-off costs more
/// than the second core gains (docs/LAVAPIPE.md: toy step times either way). Other drivers ignore it.
fn inline_software_driver() {
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        // SAFETY: called at the start of main, before any other thread exists.
        unsafe { std::env::set_var("LP_NUM_THREADS", "0") };
    }
}
