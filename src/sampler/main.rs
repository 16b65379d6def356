//! `resflow-sample`: draws samples from a trained residual flow and scores points under it.
//! A program of its own that links only what inference needs (the engine, the flows and
//! checkpoint loading), and that can carry its model inside it: built with
//! `RESFLOW_EMBED_CHECKPOINT=path`, it needs no `--checkpoint`.

mod draw;
mod model;
mod output;
mod score;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use resflow::Gpu;

#[derive(Parser)]
#[command(name = "resflow-sample", version, about = "Sample and score a trained residual flow")]
struct Cli {
    /// Use the GPU adapter whose name contains this (case-insensitive); also RESFLOW_ADAPTER.
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Draw samples through the fixed-point inverse, streamed in chunks.
    Draw(draw::DrawArgs),
    /// The log-density of each given point (toy models, exact) or the bits/dim of each given
    /// image (image models, with its standard error).
    Score(score::ScoreArgs),
    /// The model: where it comes from, its family, configuration and training step.
    Info(model::ModelArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    resflow::process::run_main(|| {
        let gpu = Gpu::new(cli.adapter.as_deref())?;
        match &cli.command {
            Command::Draw(args) => draw::run(&gpu, args),
            Command::Score(args) => score::run(&gpu, args),
            Command::Info(args) => model::info(&gpu, args),
        }
    })
}
