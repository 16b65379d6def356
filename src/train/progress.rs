//! The progress bar of training runs (step, message, elapsed and ETA).

/// A progress bar over the steps of a training run, starting at `done` (hidden when quiet).
pub fn step_bar(total: usize, done: usize, quiet: bool) -> indicatif::ProgressBar {
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total as u64) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {msg}  [{elapsed} < {eta}]")
            .expect("valid template"),
    );
    bar.set_position(done as u64);
    bar
}
