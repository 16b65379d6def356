//! The training loop shared by every model family: steps under a progress bar, and every
//! `eval_every` steps (and at the last) an evaluation, pictures, `log.csv` and an atomic
//! checkpoint. A failed step stops the run and keeps the last checkpoint.

use std::path::Path;
use std::time::Instant;

use super::run::{LogRow, Pace, Run};
use super::{checkpoint, progress, TrainError};

/// Trains `run` up to its last step, writing its outputs to `out`; a hidden bar (`quiet`, or
/// stderr not a terminal) prints the evaluation lines to stderr instead.
pub fn train<R: Run>(run: &mut R, out: &Path, quiet: bool) -> Result<(), TrainError> {
    std::fs::create_dir_all(out).map_err(|e| TrainError(format!("cannot create {}: {e}", out.display())))?;
    run.begin(out)?;
    let total = run.iters();
    let bar = progress::step_bar(total, run.step(), quiet);
    let say = |line: String| if quiet || bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let start = Instant::now();
    let offset = run.log().last().map_or(0.0, |r| r.seconds());
    let first = run.step();
    let mut recent = Vec::new();
    while run.step() < total {
        let stats = run.train_step().inspect_err(|_| bar.abandon())?;
        let step = run.step();
        let session_seconds = start.elapsed().as_secs_f64();
        let pace = Pace { step, seconds: offset + session_seconds, session_steps: step - first, session_seconds };
        let mut row = run.row(&stats, pace.seconds);
        recent.push(stats);
        bar.set_message(R::progress(&recent, &pace));
        bar.set_position(step as u64);
        if step.is_multiple_of(run.eval_every().max(1)) || step == total {
            let eval = run.evaluate()?;
            say(run.record(&eval, &mut row));
            run.log_mut().push(row);
            run.pictures(&eval, out)?.into_iter().for_each(&say);
            write_log(run.log(), &out.join("log.csv"))?;
            run.to_checkpoint().save(&out.join("checkpoint.safetensors"))?;
        } else {
            run.log_mut().push(row);
        }
    }
    bar.finish();
    Ok(())
}

/// `log.csv`: the header, then one line per step.
pub fn write_log<R: LogRow>(rows: &[R], path: &Path) -> Result<(), TrainError> {
    let mut s = format!("{}\n", R::HEADER);
    for r in rows {
        s.push_str(&r.csv());
        s.push('\n');
    }
    checkpoint::write_atomically(path, s.as_bytes()).map_err(|e| TrainError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// A run without a model: step t has loss t, an evaluation reports the step, and the step
    /// after `fail_at` fails.
    struct Counter {
        step: usize,
        iters: usize,
        fail_at: usize,
        log: Vec<Row>,
    }

    #[derive(Clone)]
    struct Row {
        step: usize,
        test: Option<usize>,
    }

    impl LogRow for Row {
        const HEADER: &'static str = "step,test";
        fn csv(&self) -> String {
            format!("{},{}", self.step, self.test.map(|t| t.to_string()).unwrap_or_default())
        }
        fn seconds(&self) -> f64 {
            0.0
        }
    }

    impl Run for Counter {
        type Stats = f64;
        type Row = Row;
        type Evaluation = usize;
        fn step(&self) -> usize {
            self.step
        }
        fn iters(&self) -> usize {
            self.iters
        }
        fn eval_every(&self) -> usize {
            2
        }
        fn log(&self) -> &[Row] {
            &self.log
        }
        fn log_mut(&mut self) -> &mut Vec<Row> {
            &mut self.log
        }
        fn train_step(&mut self) -> Result<f64, TrainError> {
            if self.step == self.fail_at {
                return Err(TrainError(format!("the loss became NaN at step {}", self.step)));
            }
            self.step += 1;
            Ok(self.step as f64)
        }
        fn row(&self, _: &f64, _: f64) -> Row {
            Row { step: self.step, test: None }
        }
        fn progress(_: &[f64], _: &Pace) -> String {
            String::new()
        }
        fn evaluate(&mut self) -> Result<usize, TrainError> {
            Ok(self.step)
        }
        fn record(&self, eval: &usize, row: &mut Row) -> String {
            row.test = Some(*eval);
            String::new()
        }
        fn pictures(&self, _: &usize, _: &Path) -> Result<Vec<String>, TrainError> {
            Ok(Vec::new())
        }
        fn to_checkpoint(&self) -> crate::train::checkpoint::Checkpoint {
            let mut ck = crate::train::checkpoint::Checkpoint::default();
            ck.metadata.insert("step".into(), self.step.to_string());
            ck
        }
        fn extend_to(&mut self, iters: usize) {
            self.iters = iters;
        }
        fn default_out(&self) -> PathBuf {
            PathBuf::from("unused")
        }
        fn banner(&self, _: &str, _: &Path) -> String {
            String::new()
        }
        fn summary(&self, _: &Path) -> Option<String> {
            None
        }
    }

    #[test]
    fn the_loop_evaluates_on_its_cadence_and_at_the_end_and_stops_on_a_failed_step() {
        let out = std::env::temp_dir().join(format!("resflow-trainer-{}", std::process::id()));
        let mut run = Counter { step: 0, iters: 5, fail_at: usize::MAX, log: Vec::new() };
        train(&mut run, &out, true).unwrap();
        let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
        assert_eq!(log, "step,test\n1,\n2,2\n3,\n4,4\n5,5\n");

        // Resumed and extended, the run continues its log; a failed step keeps the last checkpoint.
        run.extend_to(9);
        run.fail_at = 7;
        let e = train(&mut run, &out, true).unwrap_err();
        assert!(e.0.contains("step 7"), "{e}");
        let ck = crate::train::checkpoint::Checkpoint::read_metadata(&out.join("checkpoint.safetensors")).unwrap();
        assert_eq!(ck["step"], "6");
        assert!(std::fs::read_to_string(out.join("log.csv")).unwrap().ends_with("5,5\n6,6\n"));
        std::fs::remove_dir_all(&out).ok();
    }
}
