//! The enumerated choices of a run's configuration, typed once for the command line (clap's
//! `ValueEnum`) and for checkpoints (serde), spelt the same in both: the names below are the
//! strings checkpoints have always stored (`"exact"`, `"neumann-bif"`, `"1/D"`, …).

use std::fmt;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::flow;
use crate::models::image::BlockKind;

/// The activation of every Lipschitz network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    Lipswish,
    Elu,
    Softplus,
}

/// How the training loss estimates log|det(I + J_g)|.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// The exact log-det of a 2×2 Jacobian (toy models only).
    Exact,
    /// The power series with a Russian-roulette number of terms.
    Unbiased,
    /// The power series cut after a fixed number of terms.
    Truncated,
}

/// How the log-det's gradient is computed (series estimators only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GradMode {
    Naive,
    Neumann,
    NeumannBif,
}

/// The learning rate after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LrSchedule {
    /// What checkpoints written before schedules existed used.
    #[default]
    Constant,
    /// Decays to zero at the last step.
    Cosine,
}

/// The invertible block of image models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Block {
    Residual,
    Coupling,
}

/// The distribution of the unbiased estimator's number of series terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Roulette {
    /// Poisson with λ = 2.
    Poisson,
    /// Geometric with p = 0.5.
    Geometric,
}

/// λ of the hybrid model's loss λ·(−log p(x)) + CE, or a pure density model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
pub enum Hybrid {
    #[value(name = "none")]
    #[serde(rename = "none")]
    None,
    #[value(name = "0")]
    #[serde(rename = "0")]
    Zero,
    /// One over the number of dimensions of an image. `--hybrid` ignored case, so older
    /// checkpoints may hold `1/d`.
    #[value(name = "1/D")]
    #[serde(rename = "1/D", alias = "1/d")]
    InverseDim,
    #[value(name = "1")]
    #[serde(rename = "1")]
    One,
}

/// Every choice prints as its command-line name.
macro_rules! display_as_value_name {
    ($($t:ty),*) => { $(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let value = self.to_possible_value().expect("no choice is skipped");
                f.write_str(value.get_name())
            }
        }
    )* };
}
display_as_value_name!(Activation, Estimator, GradMode, LrSchedule, Block, Roulette, Hybrid);

impl From<Activation> for crate::ops::Activation {
    fn from(a: Activation) -> Self {
        match a {
            Activation::Lipswish => crate::ops::Activation::LipSwish,
            Activation::Elu => crate::ops::Activation::Elu,
            Activation::Softplus => crate::ops::Activation::Softplus,
        }
    }
}

impl From<GradMode> for flow::GradMode {
    fn from(g: GradMode) -> Self {
        match g {
            GradMode::Naive => flow::GradMode::Naive,
            GradMode::Neumann => flow::GradMode::Neumann,
            GradMode::NeumannBif => flow::GradMode::NeumannBif,
        }
    }
}

impl From<Block> for BlockKind {
    fn from(b: Block) -> Self {
        match b {
            Block::Residual => BlockKind::Residual,
            Block::Coupling => BlockKind::Coupling,
        }
    }
}

impl From<Roulette> for flow::Roulette {
    fn from(r: Roulette) -> Self {
        match r {
            Roulette::Poisson => flow::Roulette::Poisson(2.0),
            Roulette::Geometric => flow::Roulette::Geometric(0.5),
        }
    }
}

impl Estimator {
    /// The estimator with `terms` series terms (the truncation length, or the exact terms of
    /// the unbiased estimator) and the roulette of the unbiased one.
    pub fn with_terms(self, terms: usize, roulette: Roulette) -> flow::Estimator {
        match self {
            Estimator::Exact => flow::Estimator::Exact,
            Estimator::Truncated => flow::Estimator::Truncated(terms.max(1)),
            Estimator::Unbiased => flow::Estimator::Unbiased { roulette: roulette.into(), exact_terms: terms },
        }
    }
}

impl LrSchedule {
    /// The step at which the learning rate of a run of `iters` steps reaches zero (0: never).
    pub fn cosine_steps(self, iters: usize) -> usize {
        match self {
            LrSchedule::Constant => 0,
            LrSchedule::Cosine => iters,
        }
    }
}

impl Hybrid {
    /// λ for images of `dim` dimensions; None for a pure density model.
    pub fn lambda(self, dim: usize) -> Option<f32> {
        match self {
            Hybrid::None => None,
            Hybrid::Zero => Some(0.0),
            Hybrid::InverseDim => Some(1.0 / dim as f32),
            Hybrid::One => Some(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_serialise_to_their_command_line_names() {
        let json = serde_json::to_string(&(GradMode::NeumannBif, Activation::Lipswish, Hybrid::InverseDim)).unwrap();
        assert_eq!(json, r#"["neumann-bif","lipswish","1/D"]"#);
        assert_eq!(serde_json::from_str::<Hybrid>(r#""1/d""#).unwrap(), Hybrid::InverseDim);
        assert_eq!(Estimator::Exact.to_string(), "exact");
        assert_eq!(Hybrid::from_str("1/d", true), Ok(Hybrid::InverseDim));
    }
}
