//! The one error of training runs: a message a user can act on, printed as one line.

use std::fmt;

/// A configuration, data, checkpoint or run error.
#[derive(Debug)]
pub struct TrainError(pub String);

impl fmt::Display for TrainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TrainError {}

impl TrainError {
    /// `value` as a result to report, or an error naming `what` if it is NaN or infinite: a
    /// non-finite number is never reported as a result.
    pub fn finite(what: &str, value: f64) -> Result<f64, TrainError> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(TrainError(format!("{what} came out {value}: the model's weights or its data are broken")))
        }
    }
}

/// The errors of the layers below carry their own messages; they pass through unchanged.
macro_rules! train_error_from {
    ($($t:ty),*) => { $(
        impl From<$t> for TrainError {
            fn from(e: $t) -> Self {
                TrainError(e.to_string())
            }
        }
    )* };
}
train_error_from!(
    String,
    crate::train::checkpoint::CheckpointError,
    crate::flow::InverseError,
    crate::models::toy::SampleError,
    std::io::Error,
    crate::data::idx::DataError,
    crate::data::toy::CsvError
);
