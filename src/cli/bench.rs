//! `resflow bench`: the kernel, memory, toy-step and image-step benchmarks, as text or one
//! JSON object per line.

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use resflow::bench::{self, baseline, memory, shape, JsonObject, RunInfo};
use resflow::Gpu;

/// Which benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    Kernels,
    Memory,
    Toy,
    Image,
    Series,
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
    /// `kernels` (default), `memory`, `toy` (seconds per training step of the toy model),
    /// `image` (a training step of the image models: s/step, images/s, peak memory) or `series`
    /// (the power series of the image block, term by term: ms and subnormal entries).
    #[arg(value_enum, default_value_t = Suite::Kernels)]
    pub suite: Suite,
    /// One JSON object per line (each also names the adapter, driver, backend, profile and
    /// precision it was measured with).
    #[arg(long)]
    json: bool,
    /// Also save the rows, as `--json` prints them, to this file (written atomically).
    #[arg(long, value_name = "F.json")]
    out: Option<PathBuf>,
    /// Print each row beside the row of the same kernel and shape in this saved run (`--out`
    /// or `--json`), with the ratio (> 1 is faster); fail if a row is slower than `--tolerance`
    /// allows. With `--json` the comparison goes to stderr.
    #[arg(long, value_name = "F.json")]
    baseline: Option<PathBuf>,
    /// The slowdown against `--baseline` allowed per row, as a fraction.
    #[arg(long, default_value_t = 0.10)]
    tolerance: f64,
    /// kernels: time the `--filter` family at this size instead of the table's: matmul MxKxN
    /// (2048x2048x2048), conv2d N,C,H,W:CO:K (16,64,32,32:64:3). Repeatable.
    #[arg(long)]
    shape: Vec<String>,
    /// memory: which models (conv = one image block [16,3,32,32] width 512; mlp = 10 2-D blocks).
    #[arg(long, value_delimiter = ',', default_value = "conv,mlp", hide_possible_values = true)]
    models: Vec<MemoryModel>,
    /// memory: numbers of series terms; series: its largest one is the terms timed.
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

/// The longest series the memory and series suites run (a term of the image block is seconds).
const MAX_TERMS: usize = 200;

pub fn run(gpu: &Gpu, args: &BenchArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Everything that can be wrong with the arguments fails before anything is timed.
    let shapes = parse_shapes(args)?;
    if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
        return Err(
            format!("--tolerance must be a fraction ≥ 0 (0.10 allows 10% slower), got {}", args.tolerance).into()
        );
    }
    if let Some(n) = args.terms.iter().find(|n| !(1..=MAX_TERMS).contains(*n)) {
        return Err(format!("--terms takes numbers of series terms from 1 to {MAX_TERMS}, got {n}").into());
    }
    let base = args.baseline.as_deref().map(baseline::load).transpose()?;
    for s in &shapes {
        s.check_fits(gpu)?;
    }
    if !args.json {
        super::info::print_info(gpu);
        println!();
    }
    let mut sink = Sink { json: args.json, run: RunInfo::of(gpu), lines: Vec::new() };
    run_suite(gpu, args, &shapes, &mut sink)?;
    if let Some(path) = &args.out {
        write_atomically(path, &sink.lines)?;
    }
    if let (Some(base), Some(path)) = (base, &args.baseline) {
        let new = baseline::parse_lines(&sink.lines.join("\n"))?;
        let comparison = baseline::compare(&new, &base, args.tolerance);
        let header = format!("vs baseline {}{}", path.display(), adapter_note(&base, &sink.run));
        let table = format!("{header}\n{}", comparison.text());
        // stdout stays JSON lines under --json.
        if args.json {
            eprint!("{table}");
        } else {
            print!("\n{table}");
        }
        comparison.verdict()?;
    }
    Ok(())
}

fn parse_shapes(args: &BenchArgs) -> Result<Vec<shape::KernelShape>, String> {
    if !args.shape.is_empty() && args.suite != Suite::Kernels {
        return Err("--shape applies to the kernels suite (with --filter matmul or --filter conv2d)".into());
    }
    args.shape.iter().map(|s| shape::parse(&args.filter, s)).collect()
}

/// Says when the baseline was measured on another adapter: its ratios then compare devices.
fn adapter_note(base: &[baseline::Record], run: &RunInfo) -> String {
    match base.iter().find_map(|r| r.adapter.as_deref()) {
        Some(a) if a != run.adapter => format!(" (measured on {a}; this run: {})", run.adapter),
        _ => String::new(),
    }
}

/// Prints rows as text or JSON lines, and keeps the JSON lines for `--out` and `--baseline`.
struct Sink {
    json: bool,
    run: RunInfo,
    lines: Vec<String>,
}

impl Sink {
    fn row(&mut self, text: String, object: JsonObject) {
        let line = object.with_run(&self.run).line();
        println!("{}", if self.json { &line } else { &text });
        self.lines.push(line);
    }
}

fn run_suite(
    gpu: &Gpu,
    args: &BenchArgs,
    shapes: &[shape::KernelShape],
    sink: &mut Sink,
) -> Result<(), Box<dyn std::error::Error>> {
    match args.suite {
        Suite::Image => {
            let configs: Vec<String> = args.configs.iter().map(|c| name(*c)).collect();
            // The paper configuration is slow on CPU adapters: time fewer of its steps.
            for row in bench::image::run(gpu, &args.data_dir, &configs, args.paper_batch, args.reps.clamp(1, 3)) {
                sink.row(row.text(), row.json_object());
            }
        }
        Suite::Series => {
            let terms = args.terms.iter().copied().max().unwrap_or(20);
            bench::series::run(gpu, terms, |row| sink.row(row.text(), row.json_object()));
        }
        Suite::Toy => {
            for step in bench::toy::run(gpu, args.reps.max(1))? {
                sink.row(step.row.text(), step.row.json_object());
                if !args.json {
                    print!("  one step's dispatches by kernel family:\n{}", step.census_text());
                }
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
            memory::run(gpu, &models, &args.terms, |row| sink.row(row.text(), row.json_object()));
        }
        Suite::Kernels if !shapes.is_empty() => {
            shape::run(gpu, &args.filter, shapes, args.reps.max(1), |row| sink.row(row.text(), row.json_object()));
        }
        Suite::Kernels => {
            bench::run(gpu, &args.filter, args.reps.max(1), |row| sink.row(row.text(), row.json_object()));
        }
    }
    Ok(())
}

/// Writes the lines to a temporary file beside `path`, then renames it over `path`, so a
/// reader never sees half a run.
fn write_atomically(path: &Path, lines: &[String]) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| format!("--out {} names no file", path.display()))?;
    let tmp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        for line in lines {
            writeln!(f, "{line}")?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(fail)
}

/// A choice's command-line name.
fn name(choice: impl ValueEnum) -> String {
    choice.to_possible_value().expect("no choice is skipped").get_name().to_string()
}
