//! The valid range of every numeric setting of a run. Flags and the configs inside
//! checkpoints are checked against the same bounds, so an absurd value is refused with the
//! flag's name and range before anything is built or allocated.

use std::ops::RangeInclusive;

use crate::train::TrainError;

/// `value` of `--flag` must lie in `range`.
pub fn count(flag: &str, value: usize, range: RangeInclusive<usize>) -> Result<(), TrainError> {
    if range.contains(&value) {
        return Ok(());
    }
    let (lo, hi) = (*range.start(), *range.end());
    let valid = if hi == usize::MAX { format!("at least {lo}") } else { format!("in {lo}..={hi}") };
    Err(TrainError(format!("--{flag} must be {valid}, got {value}")))
}

/// `value` of `--flag` must be finite and in `(lo, hi]` (`lo` excluded: a zero or negative
/// learning rate, clip or tolerance means nothing).
pub fn positive(flag: &str, value: f32, hi: f32) -> Result<(), TrainError> {
    if value.is_finite() && value > 0.0 && value <= hi {
        return Ok(());
    }
    Err(TrainError(format!("--{flag} must be in (0, {hi}], got {value}")))
}

/// `value` of `--flag` must be finite and in `[lo, hi)`.
pub fn fraction(flag: &str, value: f32, lo: f32, hi: f32, lo_included: bool) -> Result<(), TrainError> {
    let above = if lo_included { value >= lo } else { value > lo };
    if value.is_finite() && above && value < hi {
        return Ok(());
    }
    let open = if lo_included { '[' } else { '(' };
    Err(TrainError(format!("--{flag} must be in {open}{lo}, {hi}), got {value}")))
}

/// The largest number of parameters a model may have: far above any model this engine trains,
/// far below what would exhaust a machine's memory when a corrupt config asks for more.
pub const MAX_PARAMETERS: usize = 200_000_000;

/// Widths of layers (hidden units or channels).
pub const MAX_WIDTH: usize = 8192;

/// Steps, warm-up steps and evaluation intervals.
pub const MAX_STEPS: usize = usize::MAX;

/// Batches (and micro-batches); the device's own limit is checked where the model is known.
pub const MAX_BATCH: usize = 100_000_000;
