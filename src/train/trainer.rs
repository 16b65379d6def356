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
    checkpoint::write_atomically(path, s.as_bytes())
        .map_err(|e| TrainError(format!("cannot write {}: {e}", path.display())))
}
