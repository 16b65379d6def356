//! `resflow bench --shape`: one kernel family timed at sizes the user gives, through the same
//! row functions as the fixed table, so the rows read (and compare) like the table's own.

use crate::gpu::Gpu;

use super::{conv_rows, matmul_row, peak_kernels, with_peak, Row};

pub const MATMUL_FORMAT: &str = "MxKxN, e.g. 2048x2048x2048";
pub const CONV_FORMAT: &str = "N,C,H,W:CO:K (input, output channels, odd kernel size), e.g. 16,64,32,32:64:3";

/// A size of one kernel family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelShape {
    /// [m, k] × [k, n].
    Matmul { m: usize, k: usize, n: usize },
    /// Input [N, C, H, W], `co` output channels, a `k`×`k` kernel (stride 1, same padding).
    Conv2d { x: [usize; 4], co: usize, k: usize },
}

/// The family `filter` names: `matmul`, or `conv2d` (and its `conv2d_grad_*` rows).
fn family(filter: &str) -> Result<&'static str, String> {
    if filter.contains("matmul") {
        Ok("matmul")
    } else if filter.starts_with("conv2d") {
        Ok("conv2d")
    } else {
        Err(format!(
            "--shape applies to matmul and conv2d (use --filter matmul or --filter conv2d; got --filter '{filter}')"
        ))
    }
}

/// Parses `s` as a size of the family `filter` names.
pub fn parse(filter: &str, s: &str) -> Result<KernelShape, String> {
    match family(filter)? {
        "matmul" => parse_matmul(s).ok_or_else(|| format!("bad matmul shape '{s}': expected {MATMUL_FORMAT}")),
        _ => parse_conv(s).ok_or_else(|| format!("bad conv2d shape '{s}': expected {CONV_FORMAT}")),
    }
}

/// A positive size.
fn size(s: &str) -> Option<usize> {
    s.trim().parse().ok().filter(|&v| v > 0)
}

fn parse_matmul(s: &str) -> Option<KernelShape> {
    let v: Vec<usize> = s.split(['x', 'X']).map(size).collect::<Option<_>>()?;
    match v[..] {
        [m, k, n] => Some(KernelShape::Matmul { m, k, n }),
        _ => None,
    }
}

fn parse_conv(s: &str) -> Option<KernelShape> {
    let parts: Vec<&str> = s.split(':').collect();
    let [x, co, k] = parts[..] else { return None };
    let x: Vec<usize> = x.split(',').map(size).collect::<Option<_>>()?;
    let (co, k) = (size(co)?, size(k)?);
    // Same padding k/2 keeps H×W only for odd k.
    (x.len() == 4 && k % 2 == 1).then(|| KernelShape::Conv2d { x: [x[0], x[1], x[2], x[3]], co, k })
}

impl KernelShape {
    /// Every tensor the rows allocate, in elements: each must fit one storage binding.
    fn operands(&self) -> Vec<(&'static str, usize)> {
        match *self {
            KernelShape::Matmul { m, k, n } => vec![("a", m * k), ("b", k * n), ("a·b", m * n)],
            KernelShape::Conv2d { x: [n, c, h, w], co, k } => {
                vec![("input", n * c * h * w), ("weight", co * c * k * k), ("output", n * co * h * w)]
            }
        }
    }

    /// An error naming the first operand larger than the device's storage binding limit.
    pub fn check_fits(&self, gpu: &Gpu) -> Result<(), String> {
        let limit = gpu.limits().max_storage_buffer_binding_size;
        for (name, elements) in self.operands() {
            let bytes = elements as u64 * 4;
            if bytes > limit {
                return Err(format!(
                    "--shape {self}: {name} is {} MiB, over this device's {} MiB storage binding",
                    bytes >> 20,
                    limit >> 20
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for KernelShape {
    /// The form `parse` reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelShape::Matmul { m, k, n } => write!(f, "{m}x{k}x{n}"),
            KernelShape::Conv2d { x: [n, c, h, w], co, k } => write!(f, "{n},{c},{h},{w}:{co}:{k}"),
        }
    }
}

/// The peak rows, then each shape's rows whose kernel contains `filter`.
pub fn run(gpu: &Gpu, filter: &str, shapes: &[KernelShape], reps: usize, mut emit: impl FnMut(&Row)) {
    crate::testing::settle(gpu);
    let (peaks, peak_rows) = peak_kernels(gpu, reps);
    for r in &peak_rows {
        emit(r);
    }
    for shape in shapes {
        let rows: Vec<Row> = match *shape {
            KernelShape::Matmul { m, k, n } => {
                let half = super::with_f16(gpu, || matmul_row(gpu, m, k, n, reps));
                std::iter::once(matmul_row(gpu, m, k, n, reps)).chain(half).collect()
            }
            KernelShape::Conv2d { x, co, k } => {
                let half = super::with_f16(gpu, || conv_rows(gpu, x, co, k, reps)).unwrap_or_default();
                conv_rows(gpu, x, co, k, reps).into_iter().chain(half).collect()
            }
        };
        for row in rows.into_iter().filter(|r| r.kernel.contains(filter)) {
            emit(&with_peak(row, &peaks));
        }
    }
}
