//! The log-determinant estimators of a residual block (docs/DESIGN.md §2).
//!
//! log det(I + J) = Σ_{k≥1} (−1)^{k+1}/k · tr(J^k), with Hutchinson traces vᵀJ^k v. The number of
//! terms is fixed (truncated, the biased i-ResNet estimator) or a Russian-roulette draw
//! K = N + E with term weights 1/P(N ≥ k − E) beyond the E exact terms (unbiased).

use rand::Rng;

/// The distribution of N in the Russian-roulette estimator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Roulette {
    /// Geometric(p) on {1, 2, …}: P(N ≥ m) = (1 − p)^{m−1}.
    Geometric(f64),
    /// Poisson(λ) on {0, 1, …}: P(N ≥ m) = 1 − Σ_{i<m} e^{−λ} λ^i / i!.
    Poisson(f64),
}

impl Roulette {
    /// P(N ≥ m); 1 for m ≤ the support's minimum.
    pub fn tail(self, m: i64) -> f64 {
        match self {
            Roulette::Geometric(p) => {
                if m <= 1 {
                    1.0
                } else {
                    (1.0 - p).powi((m - 1) as i32)
                }
            }
            Roulette::Poisson(lambda) => {
                if m <= 0 {
                    return 1.0;
                }
                let mut term = (-lambda).exp();
                let mut below = 0.0;
                for i in 0..m {
                    below += term;
                    term *= lambda / (i + 1) as f64;
                }
                (1.0 - below).max(0.0)
            }
        }
    }

    /// One draw of N.
    pub fn sample(self, rng: &mut impl Rng) -> usize {
        match self {
            Roulette::Geometric(p) => {
                let mut n = 1;
                while rng.random::<f64>() >= p {
                    n += 1;
                }
                n
            }
            Roulette::Poisson(lambda) => {
                // Knuth's multiplication method (λ is small here).
                let limit = (-lambda).exp();
                let (mut n, mut prod) = (0, rng.random::<f64>());
                while prod > limit {
                    n += 1;
                    prod *= rng.random::<f64>();
                }
                n
            }
        }
    }
}

/// Which estimator a block uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Estimator {
    /// Dense J from d JVPs, log|det(I + J)| (closed form for d = 2).
    Exact,
    /// The first K terms, weight 1 (biased).
    Truncated(usize),
    /// K = N + exact_terms, N ~ roulette (unbiased).
    Unbiased { roulette: Roulette, exact_terms: usize },
}

/// Hutchinson probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Gaussian,
    Rademacher,
    /// Every basis vector (an exact trace; for tests and tiny d).
    Basis,
}

/// The terms of one draw: K and the weights w_k for k = 0..=K (w_0 = 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    pub terms: usize,
    pub weights: Vec<f64>,
}

impl Draw {
    pub fn fixed(terms: usize) -> Draw {
        Draw { terms, weights: vec![1.0; terms + 1] }
    }

    pub fn roulette(roulette: Roulette, exact_terms: usize, n: usize) -> Draw {
        let terms = n + exact_terms;
        let weights = (0..=terms)
            .map(|k| if k <= exact_terms { 1.0 } else { 1.0 / roulette.tail((k - exact_terms) as i64) })
            .collect();
        Draw { terms, weights }
    }

    /// Coefficient of vᵀJ^k v in the log-det estimate: (−1)^{k+1} w_k / k.
    pub fn logdet_coeff(&self, k: usize) -> f64 {
        let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
        sign * self.weights[k] / k as f64
    }

    /// Coefficient of J^m v in the Neumann vector s: (−1)^m w_m.
    pub fn neumann_coeff(&self, m: usize) -> f64 {
        let sign = if m.is_multiple_of(2) { 1.0 } else { -1.0 };
        sign * self.weights[m]
    }
}

impl Estimator {
    /// Draws the terms for one forward (nothing random for the fixed estimators).
    pub fn draw(&self, rng: &mut impl Rng) -> Draw {
        match *self {
            Estimator::Exact => Draw::fixed(0),
            Estimator::Truncated(k) => Draw::fixed(k),
            Estimator::Unbiased { roulette, exact_terms } => {
                Draw::roulette(roulette, exact_terms, roulette.sample(rng))
            }
        }
    }

    /// The evaluation variant: 20 exact terms plus the unbiased rest (docs/DESIGN.md §2.7).
    pub fn for_evaluation(&self) -> Estimator {
        match *self {
            Estimator::Unbiased { roulette, .. } => Estimator::Unbiased { roulette, exact_terms: 20 },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_match_design_figures() {
        let p = Roulette::Poisson(2.0);
        for (m, want) in [(1, 0.8647), (2, 0.5940), (3, 0.3233), (4, 0.1429), (5, 0.0527)] {
            assert!((p.tail(m) - want).abs() < 1e-4, "P(N ≥ {m}) = {}", p.tail(m));
        }
        let g = Roulette::Geometric(0.5);
        let d = Draw::roulette(g, 0, 4);
        assert_eq!(d.weights, vec![1.0, 1.0, 2.0, 4.0, 8.0]);
        let d = Draw::roulette(p, 2, 2);
        assert_eq!(d.terms, 4);
        assert!((d.weights[3] - 1.0 / 0.8647).abs() < 1e-3 && d.weights[2] == 1.0);
    }

    #[test]
    fn samples_have_the_right_means() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let n = 200_000;
        let g: f64 = (0..n).map(|_| Roulette::Geometric(0.5).sample(&mut rng) as f64).sum::<f64>() / n as f64;
        let p: f64 = (0..n).map(|_| Roulette::Poisson(2.0).sample(&mut rng) as f64).sum::<f64>() / n as f64;
        assert!((g - 2.0).abs() < 0.02 && (p - 2.0).abs() < 0.02, "means {g} {p}");
    }
}
