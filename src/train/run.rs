//! What a model family provides to the training loop: its step, its log rows, its evaluation
//! and pictures, and its checkpoint. The loop itself (in `trainer`) is written once.

use std::path::{Path, PathBuf};

use super::checkpoint::Checkpoint;
use super::TrainError;

/// One row of `log.csv`; the rows are also kept in the checkpoint, so a resumed run continues
/// its log.
pub trait LogRow {
    /// The header line of `log.csv` (without its newline).
    const HEADER: &'static str;
    /// This row as one line of `log.csv` (without its newline).
    fn csv(&self) -> String;
    /// Wall-clock seconds since the run began, resumed sessions included.
    fn seconds(&self) -> f64;
}

/// How fast the run goes, for the progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub step: usize,
    /// Seconds since the run began, earlier sessions included.
    pub seconds: f64,
    /// Steps taken in this session, and the seconds they took.
    pub session_steps: usize,
    pub session_seconds: f64,
}

/// A training run of one model family.
pub trait Run {
    /// What one training step reports.
    type Stats;
    type Row: LogRow;
    /// What one evaluation found, with what the pictures need (the evaluated weights).
    type Evaluation;

    /// Steps taken so far.
    fn step(&self) -> usize;
    /// The step the run ends at.
    fn iters(&self) -> usize;
    /// Evaluate (and write pictures, log and checkpoint) every this many steps.
    fn eval_every(&self) -> usize;
    fn log(&self) -> &[Self::Row];
    fn log_mut(&mut self) -> &mut Vec<Self::Row>;

    /// What is written once before the first step of a session.
    fn begin(&mut self, _out: &Path) -> Result<(), TrainError> {
        Ok(())
    }
    /// One optimisation step; a non-finite loss is an error that leaves the weights untouched.
    fn train_step(&mut self) -> Result<Self::Stats, TrainError>;
    /// The log row of the step just taken (no test figures yet).
    fn row(&self, stats: &Self::Stats, seconds: f64) -> Self::Row;
    /// The progress bar's message after the steps in `recent` (oldest first).
    fn progress(recent: &[Self::Stats], pace: &Pace) -> String;

    /// Test figures of the weights used for evaluation.
    fn evaluate(&mut self) -> Result<Self::Evaluation, TrainError>;
    /// Puts the test figures into `row`; returns the line that reports them.
    fn record(&self, eval: &Self::Evaluation, row: &mut Self::Row) -> String;
    /// The pictures after an evaluation (the log already holds its row); returns lines to print.
    fn pictures(&self, eval: &Self::Evaluation, out: &Path) -> Result<Vec<String>, TrainError>;
    fn to_checkpoint(&self) -> Checkpoint;

    /// Moves the end of the run to `iters` (a resumed run); a cosine schedule stretches with it.
    fn extend_to(&mut self, iters: usize);
    /// Where `resflow train` writes when not told: `runs/<dataset>`.
    fn default_out(&self) -> PathBuf;
    /// The opening line of `resflow train` on the adapter named `adapter`.
    fn banner(&self, adapter: &str, out: &Path) -> String;
    /// The closing line of `resflow train`, from the last evaluation in the log.
    fn summary(&self, out: &Path) -> Option<String>;
}
