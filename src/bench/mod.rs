//! `resflow bench`: kernel throughput against the device's own measured peak.
//!
//! Each row is the median of several timed repetitions after a warm-up. A repetition is timed
//! with GPU timestamps where the adapter has them and is not a CPU adapter (see `GpuTimer`;
//! `RESFLOW_WALLCLOCK=1` forces wall-clock), otherwise by the wall-clock around a sync; the
//! `timer` key says which.

pub mod baseline;
pub mod image;
pub mod json;
pub mod memory;
pub mod series;
pub mod shape;
pub mod toy;

use std::time::Instant;

use crate::gpu::kernels::grid_1d;
use crate::gpu::{Gpu, GpuTimer, KernelSpec};
use crate::ops::{Dist, TensorOps, Unary};
use crate::options::Precision;
use crate::tensor::Tensor;

pub use json::{JsonObject, RunInfo};

/// One measured kernel.
#[derive(Debug, Clone)]
pub struct Row {
    pub kernel: String,
    pub shape: String,
    pub ms: f64,
    /// Work per run: flops for arithmetic kernels, bytes moved for memory-bound ones.
    pub work: Work,
    pub pct_peak: Option<f64>,
    pub timer: &'static str,
    pub extra: Vec<(&'static str, f64)>,
    /// Of the timed kernels' operands (`f16` for the `*_f16` rows).
    pub precision: Precision,
}

#[derive(Debug, Clone, Copy)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
    None,
}

impl Row {
    pub fn rate(&self) -> Option<f64> {
        match self.work {
            Work::Flops(f) => Some(f / (self.ms * 1e6)),
            Work::Bytes(b) => Some(b / (self.ms * 1e6)),
            Work::None => None,
        }
    }

    pub fn json(&self) -> String {
        self.json_object().line()
    }

    /// The row's keys, numbers at the fixed decimals scripts read (`ms` 4, rates 3, `pct_peak` 1).
    pub fn json_object(&self) -> JsonObject {
        let mut o = JsonObject::new()
            .str("kernel", &self.kernel)
            .str("shape", &self.shape)
            .num("ms", format!("{:.4}", self.ms))
            .str("timer", self.timer);
        match (self.work, self.rate()) {
            (Work::Flops(_), Some(r)) => o = o.num("gflops", format!("{r:.3}")),
            (Work::Bytes(_), Some(r)) => o = o.num("gbps", format!("{r:.3}")),
            _ => {}
        }
        if let Some(p) = self.pct_peak {
            o = o.num("pct_peak", format!("{p:.1}"));
        }
        for (k, v) in &self.extra {
            o = o.num(k, format!("{v:.3}"));
        }
        o.str("precision", self.precision.name())
    }

    pub fn text(&self) -> String {
        let rate = match (self.work, self.rate()) {
            (Work::Flops(_), Some(r)) => format!("{r:9.2} GFLOP/s"),
            (Work::Bytes(_), Some(r)) => format!("{r:9.2} GB/s   "),
            _ => " ".repeat(17),
        };
        let pct = self.pct_peak.map(|p| format!("{p:5.1} % of peak")).unwrap_or_default();
        let extra: Vec<String> = self.extra.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
        format!("{:<20} {:<26} {:>10.3} ms {rate} {pct} {}", self.kernel, self.shape, self.ms, extra.join(" "))
    }
}

/// Times `run` (which records work) `reps` times after `warmup` runs; returns the median ms.
pub fn time_median(gpu: &Gpu, warmup: usize, reps: usize, mut run: impl FnMut()) -> (f64, &'static str) {
    let timer = GpuTimer::new(gpu);
    for _ in 0..warmup {
        run();
    }
    gpu.sync();
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        match &timer {
            Some(t) => {
                t.start();
                run();
                times.push(t.stop_ms());
            }
            None => {
                let start = Instant::now();
                run();
                gpu.sync();
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[times.len() / 2], if timer.is_some() { "gpu" } else { "wall" })
}

/// The device's measured peaks: FMA throughput (GFLOP/s) and copy bandwidth (GB/s, the better
/// of a storage-buffer copy and a texture-staged copy).
#[derive(Debug, Clone, Copy)]
pub struct Peaks {
    pub gflops: f64,
    pub gbps: f64,
}

fn peak_kernels(gpu: &Gpu, reps: usize) -> (Peaks, Vec<Row>) {
    #[repr(C)]
    #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
    struct P {
        n: u32,
        iters: u32,
        mul: f32,
        add: f32,
    }
    let threads: u32 = if gpu.profile() == crate::options::Profile::Cpu { 1 << 14 } else { 1 << 20 };
    let iters: u32 = 512;
    let out = Tensor::empty(gpu, &[threads as usize * 4]);
    let unused_src = Tensor::full(gpu, &[4], 0.0);
    let fma = gpu.kernel(&KernelSpec::new("peak", "fma_peak", 1, 1));
    let params = P { n: threads, iters, mul: 0.999, add: 1e-3 };
    let (ms, timer) = time_median(gpu, 1, reps, || {
        gpu.dispatch(&fma, bytemuck::bytes_of(&params), &[unused_src.binding(), out.binding()], grid_1d(threads / 256))
    });
    // 8 vec4 chains × 4 steps = 128 FMAs = 256 flops per invocation per iteration.
    let flops = threads as f64 * iters as f64 * 256.0;
    let fma_row = Row {
        kernel: "peak_fma".into(),
        shape: format!("{threads}x{iters}"),
        ms,
        work: Work::Flops(flops),
        pct_peak: Some(100.0),
        timer,
        extra: vec![],
        precision: gpu.precision(),
    };

    let n_vec4: u32 = 1 << 22; // 16 M floats
    let src = Tensor::full(gpu, &[n_vec4 as usize * 4], 1.0);
    let dst = Tensor::empty(gpu, &[n_vec4 as usize * 4]);
    let copy = gpu.kernel(&KernelSpec::new("peak", "copy", 1, 1));
    let params = P { n: n_vec4, iters: 0, mul: 0.0, add: 0.0 };
    let (ms, timer) = time_median(gpu, 1, reps, || {
        gpu.dispatch(&copy, bytemuck::bytes_of(&params), &[src.binding(), dst.binding()], grid_1d(n_vec4 / 256))
    });
    let copy_row = Row {
        kernel: "peak_copy".into(),
        shape: "16M f32".into(),
        ms,
        work: Work::Bytes(n_vec4 as f64 * 32.0),
        pct_peak: Some(100.0),
        timer,
        extra: vec![],
        precision: gpu.precision(),
    };
    // The same copy through the staged-texture input path of the elementwise kernels (an
    // identity op): on CPU adapters the faster way to move data, so the peak is the better one.
    let (ms, timer) = time_median(gpu, 1, reps, || {
        crate::testing::set_elementwise_inputs(gpu, crate::fusion::ElementwiseInputs::Textures);
        crate::testing::copy_by_kernel(&src).realize();
        crate::testing::set_elementwise_inputs(gpu, crate::fusion::ElementwiseInputs::Auto);
    });
    let staged_row = Row { kernel: "peak_copy_texture".into(), ms, timer, ..copy_row.clone() };
    let gbps = copy_row.rate().unwrap().max(staged_row.rate().unwrap());
    let mut rows = vec![fma_row.clone(), copy_row, staged_row];
    for r in &mut rows[1..] {
        r.pct_peak = Some(100.0 * r.rate().unwrap() / gbps);
    }
    (Peaks { gflops: fma_row.rate().unwrap(), gbps }, rows)
}

fn with_peak(mut row: Row, peaks: &Peaks) -> Row {
    row.pct_peak = match (row.work, row.rate()) {
        (Work::Flops(_), Some(r)) => Some(100.0 * r / peaks.gflops),
        (Work::Bytes(_), Some(r)) => Some(100.0 * r / peaks.gbps),
        _ => None,
    };
    row
}

fn matmul_row(gpu: &Gpu, m: usize, k: usize, n: usize, reps: usize) -> Row {
    let a = Tensor::random(gpu, &[m, k], Dist::Normal { mean: 0.0, std: 1.0 }, 1, 0);
    let b = Tensor::random(gpu, &[k, n], Dist::Normal { mean: 0.0, std: 1.0 }, 2, 0);
    let (ms, timer) = time_median(gpu, 2, reps, || {
        let _ = a.matmul(&b, false, false);
    });
    let shape = if m == k && k == n { format!("{m}^3") } else { format!("{m}x{k}*{k}x{n}") };
    Row {
        kernel: format!("matmul{}", precision_suffix(gpu)),
        shape,
        ms,
        work: Work::Flops(2.0 * (m * k * n) as f64),
        pct_peak: None,
        timer,
        extra: vec![],
        precision: gpu.precision(),
    }
}

/// Elements of the memory-bound rows.
const STREAM: usize = 1 << 24;

/// A memory-bound kernel over 16 M floats moving `bytes_per_element` bytes per element.
fn stream_row(gpu: &Gpu, name: &str, bytes_per_element: f64, reps: usize, run: impl FnMut()) -> Row {
    let (ms, timer) = time_median(gpu, 2, reps, run);
    Row {
        kernel: name.into(),
        shape: "16M f32".into(),
        ms,
        work: Work::Bytes(bytes_per_element * STREAM as f64),
        pct_peak: None,
        timer,
        extra: vec![],
        precision: gpu.precision(),
    }
}

fn elementwise_row(gpu: &Gpu, name: &str, op: Unary, reps: usize) -> Row {
    let x = Tensor::random(gpu, &[STREAM], Dist::Normal { mean: 0.0, std: 1.0 }, 3, 0);
    stream_row(gpu, name, 8.0, reps, || {
        x.unary(op).realize();
    })
}

/// A chain of 1000 tiny dependent ops ended by one sync: the per-op cost of recording and
/// running it, with elementwise fusion on (`overhead`) or off (`overhead_unfused`: one
/// dispatch per op, the raw dispatch cost).
fn overhead_row(gpu: &Gpu, reps: usize, fused: bool) -> Row {
    let x = Tensor::full(gpu, &[1024], 0.0);
    x.realize();
    let ops = 1000;
    crate::testing::set_fusion(gpu, fused);
    let dispatches = gpu.record_stats().dispatches;
    let mut best = Vec::new();
    for _ in 0..reps.max(3) {
        gpu.sync();
        let start = Instant::now();
        let mut t = x.clone();
        for _ in 0..ops {
            t = t.unary(Unary::Affine(1.0, 1.0));
        }
        t.realize();
        gpu.sync();
        best.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let per_chain = (gpu.record_stats().dispatches - dispatches) as f64 / reps.max(3) as f64;
    crate::testing::set_fusion(gpu, true);
    best.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ms = best[best.len() / 2];
    Row {
        kernel: if fused { "overhead" } else { "overhead_unfused" }.into(),
        shape: "1000 x add [1024]".into(),
        ms,
        work: Work::None,
        pct_peak: None,
        timer: "wall",
        extra: vec![("us_per_op", ms * 1e3 / ops as f64), ("dispatches", per_chain)],
        precision: gpu.precision(),
    }
}

/// `_f16` on the names of rows timed with f16 operands.
fn precision_suffix(gpu: &Gpu) -> &'static str {
    match gpu.precision() {
        Precision::F32 => "",
        Precision::F16 => "_f16",
    }
}

/// `f`'s result with f16 operands (the f16 rows beside the f32 ones), or `None` where the
/// adapter has no `SHADER_F16` or the whole run is already in f16.
pub fn with_f16<R>(gpu: &Gpu, f: impl FnOnce() -> R) -> Option<R> {
    if gpu.precision() == Precision::F16 {
        return None;
    }
    gpu.set_precision(Precision::F16).ok()?;
    let result = f();
    gpu.set_precision(Precision::F32).expect("f32 needs no feature");
    Some(result)
}

/// Which rows to run: the kernel name must contain `filter` (empty = all).
pub fn run(gpu: &Gpu, filter: &str, reps: usize, mut emit: impl FnMut(&Row)) {
    // One-time device work (the staging probe) before anything is timed or its memory counted.
    crate::testing::settle(gpu);
    let wanted = |k: &str| filter.is_empty() || k.contains(filter);
    let (peaks, peak_rows) = peak_kernels(gpu, reps);
    for r in &peak_rows {
        emit(r);
    }
    if wanted("matmul") {
        for (m, k, n) in [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (500, 128, 128)] {
            emit(&with_peak(matmul_row(gpu, m, k, n, reps), &peaks));
            if let Some(row) = with_f16(gpu, || matmul_row(gpu, m, k, n, reps)) {
                emit(&with_peak(row, &peaks));
            }
        }
    }
    if wanted("silu") {
        emit(&with_peak(elementwise_row(gpu, "silu", Unary::Silu, reps), &peaks));
    }
    if wanted("add_scalar") {
        emit(&with_peak(elementwise_row(gpu, "add_scalar", Unary::Affine(1.0, 1.0), reps), &peaks));
        // What packed 64-bit stores gain, in the same run (CPU adapters only).
        if crate::fusion::packed_stores(gpu) {
            crate::testing::set_packed_stores(gpu, false);
            let row = elementwise_row(gpu, "add_scalar_unpacked", Unary::Affine(1.0, 1.0), reps);
            crate::testing::set_packed_stores(gpu, true);
            emit(&with_peak(row, &peaks));
        }
    }
    if wanted("sum") {
        let x = Tensor::random(gpu, &[STREAM], Dist::Uniform { lo: 0.0, hi: 1.0 }, 4, 0);
        emit(&with_peak(stream_row(gpu, "sum", 4.0, reps, || drop(x.sum_all())), &peaks));
    }
    if wanted("random") {
        let normal = Dist::Normal { mean: 0.0, std: 1.0 };
        let row = stream_row(gpu, "random_normal", 4.0, reps, || drop(Tensor::random(gpu, &[STREAM], normal, 5, 0)));
        emit(&with_peak(row, &peaks));
    }
    if wanted("overhead") {
        emit(&overhead_row(gpu, reps, true));
        emit(&overhead_row(gpu, reps, false));
    }
    if wanted("power_iteration") {
        emit(&with_peak(power_iteration_row(gpu, &[512, 512], None, "512x512", reps), &peaks));
        let row = power_iteration_row(gpu, &[512, 3, 3, 3], Some((32, 32)), "conv 3->512 k3 @32x32", reps);
        emit(&with_peak(row, &peaks));
    }
    if wanted("conv2d") {
        for (x, co, k) in [([16, 3, 32, 32], 512, 3), ([16, 512, 16, 16], 512, 1), ([8, 64, 16, 16], 64, 3)] {
            let half = with_f16(gpu, || conv_rows(gpu, x, co, k, reps)).unwrap_or_default();
            for row in conv_rows(gpu, x, co, k, reps).into_iter().chain(half) {
                emit(&with_peak(row, &peaks));
            }
        }
    }
}

/// One power-iteration step (u ← normalize(W v), v ← normalize(Wᵀ u)) of a spectral norm.
fn power_iteration_row(gpu: &Gpu, shape: &[usize], spatial: Option<(usize, usize)>, label: &str, reps: usize) -> Row {
    use crate::nn::{ParamStore, PowerIters, SpectralNorm};
    let mut store = ParamStore::new(Tensor::full(gpu, &[1], 0.0), 9);
    let w = store.random(shape, Dist::Normal { mean: 0.0, std: 0.05 });
    let w = store.add("w", w, true);
    let sn = SpectralNorm::new(&mut store, "w", w, 0.98, spatial);
    let (ms, timer) = time_median(gpu, 1, reps, || {
        sn.power_iterate(&mut store, PowerIters::Fixed(1));
    });
    // Two operator applications per step: W v and Wᵀ u.
    let flops = match spatial {
        Some((h, w)) => 4.0 * (shape.iter().product::<usize>() * h * w) as f64,
        None => 4.0 * shape.iter().product::<usize>() as f64,
    };
    Row {
        kernel: "power_iteration".into(),
        shape: label.into(),
        ms,
        work: Work::Flops(flops),
        pct_peak: None,
        timer,
        extra: vec![],
        precision: gpu.precision(),
    }
}

/// conv2d forward and both VJPs at one shape (stride 1, same padding).
fn conv_rows(gpu: &Gpu, x: [usize; 4], co: usize, k: usize, reps: usize) -> Vec<Row> {
    let [n, ci, h, w] = x;
    let input = Tensor::random(gpu, &x, Dist::Normal { mean: 0.0, std: 1.0 }, 6, 0);
    let weight = Tensor::random(gpu, &[co, ci, k, k], Dist::Normal { mean: 0.0, std: 0.1 }, 7, 0);
    let grad = Tensor::random(gpu, &[n, co, h, w], Dist::Normal { mean: 0.0, std: 1.0 }, 8, 0);
    let flops = 2.0 * (n * co * h * w * ci * k * k) as f64;
    let shape = format!("[{n},{ci},{h},{w}]->{co} k{k}");
    let mut rows = Vec::new();
    let mut push = |kernel: &str, (ms, timer): (f64, &'static str)| {
        rows.push(Row {
            kernel: kernel.into(),
            shape: shape.clone(),
            ms,
            work: Work::Flops(flops),
            pct_peak: None,
            timer,
            extra: vec![],
            precision: gpu.precision(),
        })
    };
    let suffix = precision_suffix(gpu);
    push(&format!("conv2d{suffix}"), time_median(gpu, 1, reps, || drop(input.conv2d(&weight))));
    push(&format!("conv2d_grad_input{suffix}"), time_median(gpu, 1, reps, || drop(grad.conv_transpose2d(&weight))));
    let grad_weight = time_median(gpu, 1, reps, || drop(input.conv2d_grad_weight(&grad, k)));
    push(&format!("conv2d_grad_weight{suffix}"), grad_weight);
    rows
}
