//! The 2-D toy densities of the Residual Flows paper (docs/DESIGN.md §2), generated with a seeded
//! RNG, and user-supplied CSV files of 2-D points.

use std::f64::consts::PI;
use std::fmt;

use rand::rngs::StdRng;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToyDataset {
    EightGaussians,
    Checkerboard,
    TwoSpirals,
    Pinwheel,
    Rings,
    Moons,
    Circles,
    SwissRoll,
}

pub const ALL: [ToyDataset; 8] = [
    ToyDataset::EightGaussians,
    ToyDataset::Checkerboard,
    ToyDataset::TwoSpirals,
    ToyDataset::Pinwheel,
    ToyDataset::Rings,
    ToyDataset::Moons,
    ToyDataset::Circles,
    ToyDataset::SwissRoll,
];

/// A standard normal draw (Box–Muller; one of the pair is enough here).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
}

fn uniform(rng: &mut StdRng) -> f64 {
    rng.random()
}

/// Shuffles points (pairs) in place.
fn shuffle(points: &mut [[f64; 2]], rng: &mut StdRng) {
    for i in (1..points.len()).rev() {
        let j = rng.random_range(0..=i);
        points.swap(i, j);
    }
}

impl ToyDataset {
    pub fn name(self) -> &'static str {
        match self {
            ToyDataset::EightGaussians => "8gaussians",
            ToyDataset::Checkerboard => "checkerboard",
            ToyDataset::TwoSpirals => "2spirals",
            ToyDataset::Pinwheel => "pinwheel",
            ToyDataset::Rings => "rings",
            ToyDataset::Moons => "moons",
            ToyDataset::Circles => "circles",
            ToyDataset::SwissRoll => "swissroll",
        }
    }

    /// The dataset called `name`, or an error listing the valid names.
    pub fn parse(name: &str) -> Result<ToyDataset, String> {
        ALL.iter().copied().find(|d| d.name() == name).ok_or_else(|| {
            let names: Vec<&str> = ALL.iter().map(|d| d.name()).collect();
            format!("unknown dataset {name:?}; valid datasets: {}", names.join(", "))
        })
    }

    /// The true differential entropy in nats, where known: the floor of the test NLL.
    pub fn entropy(self) -> Option<f64> {
        match self {
            ToyDataset::Checkerboard => Some(32f64.ln()),
            ToyDataset::EightGaussians => Some(2.829),
            _ => None,
        }
    }

    /// `n` points as a flat [x0, y0, x1, y1, …] vector.
    pub fn sample(self, n: usize, rng: &mut StdRng) -> Vec<f32> {
        let mut pts: Vec<[f64; 2]> = match self {
            ToyDataset::EightGaussians => (0..n)
                .map(|_| {
                    let k = rng.random_range(0..8) as f64;
                    let (s, c) = (k * PI / 4.0).sin_cos();
                    [(4.0 * c + 0.5 * normal(rng)) / 1.414, (4.0 * s + 0.5 * normal(rng)) / 1.414]
                })
                .collect(),
            ToyDataset::Checkerboard => (0..n)
                .map(|_| {
                    let x1 = uniform(rng) * 4.0 - 2.0;
                    let x2 = uniform(rng) - 2.0 * rng.random_range(0..2) as f64 + x1.floor().rem_euclid(2.0);
                    [2.0 * x1, 2.0 * x2]
                })
                .collect(),
            ToyDataset::TwoSpirals => two_spirals(n, rng),
            ToyDataset::Pinwheel => (0..n)
                .map(|i| {
                    let arm = (i % 5) as f64;
                    let f0 = 0.3 * normal(rng) + 1.0;
                    let f1 = 0.1 * normal(rng);
                    let angle = arm * 2.0 * PI / 5.0 + 0.25 * f0.exp();
                    let (s, c) = angle.sin_cos();
                    [2.0 * (f0 * c - f1 * s), 2.0 * (f0 * s + f1 * c)]
                })
                .collect(),
            ToyDataset::Rings => rings(n, rng),
            ToyDataset::Moons => moons(n, rng),
            ToyDataset::Circles => circles(n, rng),
            ToyDataset::SwissRoll => (0..n)
                .map(|_| {
                    let t = 1.5 * PI * (1.0 + 2.0 * uniform(rng));
                    [(t * t.cos() + normal(rng)) / 5.0, (t * t.sin() + normal(rng)) / 5.0]
                })
                .collect(),
        };
        shuffle(&mut pts, rng);
        pts.iter().flat_map(|p| [p[0] as f32, p[1] as f32]).collect()
    }
}

/// Two interleaved spirals, one the mirror image of the other.
fn two_spirals(n: usize, rng: &mut StdRng) -> Vec<[f64; 2]> {
    let half = n / 2;
    let mut v = Vec::with_capacity(n);
    for _ in 0..half {
        let t = uniform(rng).sqrt() * 540.0 * 2.0 * PI / 360.0;
        let dx = -t.cos() * t + uniform(rng) * 0.5;
        let dy = t.sin() * t + uniform(rng) * 0.5;
        v.push([dx, dy]);
    }
    let mirrored: Vec<[f64; 2]> = v.iter().map(|p| [-p[0], -p[1]]).collect();
    v.extend(mirrored);
    while v.len() < n {
        v.push(v[0]);
    }
    v.iter().map(|p| [p[0] / 3.0 + 0.1 * normal(rng), p[1] / 3.0 + 0.1 * normal(rng)]).collect()
}

/// Four concentric rings, the outermost holding the remainder.
fn rings(n: usize, rng: &mut StdRng) -> Vec<[f64; 2]> {
    let quarter = n / 4;
    let counts = [n - 3 * quarter, quarter, quarter, quarter];
    let radii = [1.0, 0.75, 0.5, 0.25];
    let mut v = Vec::with_capacity(n);
    for (count, r) in counts.iter().zip(radii) {
        for j in 0..*count {
            let t = 2.0 * PI * j as f64 / *count as f64;
            v.push([3.0 * r * t.cos() + 0.08 * normal(rng), 3.0 * r * t.sin() + 0.08 * normal(rng)]);
        }
    }
    v
}

/// Two interleaving half circles.
fn moons(n: usize, rng: &mut StdRng) -> Vec<[f64; 2]> {
    let outer = n / 2;
    let inner = n - outer;
    let mut v = Vec::with_capacity(n);
    for j in 0..outer {
        let t = PI * j as f64 / (outer.max(2) - 1) as f64;
        v.push([t.cos(), t.sin()]);
    }
    for j in 0..inner {
        let t = PI * j as f64 / (inner.max(2) - 1) as f64;
        v.push([1.0 - t.cos(), 1.0 - t.sin() - 0.5]);
    }
    v.iter().map(|p| [2.0 * (p[0] + 0.1 * normal(rng)) - 1.0, 2.0 * (p[1] + 0.1 * normal(rng)) - 0.2]).collect()
}

/// Two concentric circles.
fn circles(n: usize, rng: &mut StdRng) -> Vec<[f64; 2]> {
    let outer = n / 2;
    let inner = n - outer;
    let mut v = Vec::with_capacity(n);
    for (count, r) in [(outer, 1.0), (inner, 0.5)] {
        for j in 0..count {
            let t = 2.0 * PI * j as f64 / count as f64;
            v.push([3.0 * (r * t.cos() + 0.08 * normal(rng)), 3.0 * (r * t.sin() + 0.08 * normal(rng))]);
        }
    }
    v
}

/// Why a CSV file could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvError(pub String);

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for CsvError {}

/// The fewest points a CSV may hold: fewer cannot describe a 2-D density (a model would
/// shrink onto them and report an NLL without meaning).
pub const MIN_CSV_POINTS: usize = 10;

/// Points from a CSV of `x,y` lines (an optional header first: a first line none of whose
/// fields is a number). A UTF-8 byte-order mark is skipped. A malformed row, or a number that
/// is not a finite f32 (`1e39`, `nan`), is an error naming `file:line`; too few points, or
/// points that do not spread in two dimensions (all equal, all on one line), are an error.
pub fn load_csv(path: &std::path::Path) -> Result<Vec<f32>, CsvError> {
    let text = std::fs::read_to_string(path).map_err(|e| CsvError(format!("cannot read {}: {e}", path.display())))?;
    parse_csv(&text, &path.display().to_string())
}

/// The `x,y` rows of a CSV (an optional header first; a UTF-8 byte-order mark skipped), any
/// number of them: a malformed row, or a number that is not a finite f32, is an error naming
/// `file:line`. [`parse_csv`] adds the checks that points to train on must pass.
pub fn parse_points(text: &str, what: &str) -> Result<Vec<f32>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let is_header = first && fields.iter().all(|f| f.parse::<f64>().is_err());
        first = false;
        if is_header {
            continue;
        }
        let at = || format!("{what}:{}", i + 1);
        let numbers: Option<Vec<f64>> =
            (fields.len() == 2).then(|| fields.iter().map(|f| f.parse::<f64>().ok()).collect()).flatten();
        let Some(numbers) = numbers else {
            return Err(CsvError(format!("{}: expected two numbers `x,y`, found {line:?}", at())));
        };
        for (v, text) in numbers.into_iter().zip(&fields) {
            let v32 = v as f32;
            if !v32.is_finite() {
                return Err(CsvError(format!("{}: {text} is not a finite 32-bit number (found {line:?})", at())));
            }
            out.push(v32);
        }
    }
    Ok(out)
}

/// [`load_csv`] of text already read; `what` names the source in errors.
pub fn parse_csv(text: &str, what: &str) -> Result<Vec<f32>, CsvError> {
    let out = parse_points(text, what)?;
    let n = out.len() / 2;
    if n < MIN_CSV_POINTS {
        return Err(CsvError(format!("{what}: {n} points; a 2-D density needs at least {MIN_CSV_POINTS}")));
    }
    if !spreads_in_two_dimensions(&out) {
        return Err(CsvError(format!(
            "{what}: the points are all equal or all on one line; a 2-D density needs points that spread in both directions"
        )));
    }
    Ok(out)
}

/// Whether the points' covariance is non-singular (relative to its own scale).
fn spreads_in_two_dimensions(points: &[f32]) -> bool {
    let n = (points.len() / 2) as f64;
    let (mut mx, mut my) = (0.0, 0.0);
    for p in points.chunks_exact(2) {
        mx += p[0] as f64 / n;
        my += p[1] as f64 / n;
    }
    let (mut sxx, mut syy, mut sxy) = (0.0f64, 0.0f64, 0.0f64);
    for p in points.chunks_exact(2) {
        let (dx, dy) = (p[0] as f64 - mx, p[1] as f64 - my);
        sxx += dx * dx;
        syy += dy * dy;
        sxy += dx * dy;
    }
    sxx > 0.0 && syy > 0.0 && sxx * syy - sxy * sxy > 1e-9 * sxx * syy
}

/// 2-D points to score, from `x,y` CSV lines or a `.npy` array of shape [N, 2] (by the
/// extension); at least one point, every coordinate finite.
pub fn load_points(path: &std::path::Path) -> Result<Vec<f32>, CsvError> {
    let what = path.display().to_string();
    let points = if path.extension().is_some_and(|e| e == "npy") {
        let a = super::npy::read_npy(path).map_err(|e| CsvError(e.0))?;
        let super::npy::NpyValues::Float(v) = a.values else {
            return Err(CsvError(format!("{what}: points must be floats, found bytes")));
        };
        if a.shape.len() != 2 || a.shape[1] != 2 {
            return Err(CsvError(format!("{what}: points must have shape [N, 2], found {:?}", a.shape)));
        }
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(CsvError(format!("{what}: point {} holds {}", i / 2, v[i])));
        }
        v
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| CsvError(format!("cannot read {what}: {e}")))?;
        parse_points(&text, &what)?
    };
    if points.is_empty() {
        return Err(CsvError(format!("{what} holds no points")));
    }
    Ok(points)
}
