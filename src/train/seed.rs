//! Seeds of a run's random streams. Every random number of step t comes from generators
//! seeded by (run seed, t, stream), so a run resumed at step t continues exactly as an
//! uninterrupted one would.

/// A seed for step `step` of stream `which` (data, estimator draws, …) of a run seeded `seed`
/// (a SplitMix-style finaliser decorrelates neighbouring steps and streams).
pub fn step_seed(seed: u64, step: usize, which: u64) -> u64 {
    let mut x = seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ which.wrapping_mul(0xD1B5_4A32_D192_ED03);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}
