//! `resflow bench`: the kernel, memory, toy-step and image-step benchmarks, as text or one
//! JSON object per line.

use std::path::PathBuf;

use clap::ValueEnum;
use resflow::bench::{self, memory};
use resflow::Gpu;

/// Which benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    Kernels,
    Memory,
    Toy,
    Image,
}

/// The models of `bench memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemoryModel {
    Conv,
    Mlp,
}

/// The configurations of `bench image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImageConfiguration {
    Small,
    Paper,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// `kernels` (default), `memory`, `toy` (seconds per training step of the toy model) or
    /// `image` (a training step of the image models: s/step, images/s, peak memory).
    #[arg(value_enum, default_value_t = Suite::Kernels)]
    pub suite: Suite,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// memory: which models (conv = one image block [16,3,32,32] width 512; mlp = 10 2-D blocks).
    #[arg(long, value_delimiter = ',', default_value = "conv,mlp", hide_possible_values = true)]
    models: Vec<MemoryModel>,
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
    #[arg(long, value_delimiter = ',', default_value = "small,paper", hide_possible_values = true)]
    configs: Vec<ImageConfiguration>,
    /// image: batch of the paper configuration's step.
    #[arg(long, default_value_t = 4)]
    paper_batch: usize,
    /// image: where MNIST was fetched (synthetic 28×28 images are timed without it).
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
}

pub fn run(gpu: &Gpu, args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    if !args.json {
        super::info::print_info(gpu);
        println!();
    }
    let json = args.json;
    match args.suite {
        Suite::Image => {
            let configs: Vec<String> = args.configs.iter().map(|c| name(*c)).collect();
            // The paper configuration is slow on CPU adapters: time fewer of its steps.
            for row in bench::image::run(gpu, &args.data_dir, &configs, args.paper_batch, args.reps.clamp(1, 3)) {
                println!("{}", if json { row.json() } else { row.text() });
            }
        }
        Suite::Toy => {
            for row in bench::toy_step(gpu, args.reps.max(1))? {
                println!("{}", if json { row.json() } else { row.text() });
            }
        }
        Suite::Memory => {
            let models: Vec<memory::Model> = args
                .models
                .iter()
                .map(|m| match m {
                    MemoryModel::Conv => memory::Model::Conv,
                    MemoryModel::Mlp => memory::Model::Mlp,
                })
                .collect();
            memory::run(gpu, &models, &args.terms, |row| println!("{}", if json { row.json() } else { row.text() }));
        }
        Suite::Kernels => {
            bench::run(gpu, &args.filter, args.reps.max(1), |row| {
                println!("{}", if json { row.json() } else { row.text() });
            });
        }
    }
    Ok(())
}

/// A choice's command-line name.
fn name(choice: impl ValueEnum) -> String {
    choice.to_possible_value().expect("no choice is skipped").get_name().to_string()
}
