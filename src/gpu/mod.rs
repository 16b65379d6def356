//! The GPU context: device, buffer pool, kernel cache and the pending command recorder.
//!
//! Ops never wait on their own: each dispatch is appended to one open compute pass of one
//! pending command encoder, which is submitted (without waiting) every [`SUBMIT_EVERY`]
//! dispatches, so the device starts on the first kernels while the host records the rest, and
//! by a readback or an explicit [`Gpu::sync`]. Per-dispatch parameters are packed into a uniform
//! arena that is written with one `write_buffer` right before the submit that uses it, so
//! `write_buffer`'s "runs before the next submit" rule cannot reorder them against the
//! dispatches.

mod device;
pub mod kernels;
mod pool;
mod texture;
mod timer;

pub use device::GpuError;
pub use kernels::{Kernel, KernelSpec, Slot};
pub use pool::{bucket_size, BufferKind, PoolStats};
pub use texture::{DeviceTexture, FLAT_ROWS, FLAT_WIDTH};
pub use timer::GpuTimer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pool::Pool;

/// Bytes of the uniform arena; at 256 B per dispatch this allows 16 384 dispatches per submit.
const ARENA_BYTES: u64 = 4 << 20;

/// Default dispatches per submit (`RESFLOW_SUBMIT_EVERY` overrides it; 0 submits only at a
/// readback or sync). Submitting in chunks lets the device run beside the host's recording:
/// lavapipe executes on its queue thread, and a batch-1024 toy training step went from 0.263 to
/// 0.230 s (`resflow train`, medians of four alternating 60-step runs; in a sweep 64 ≈ 128 beat
/// 32 and 256); large enough that a submit's own cost stays small against what it carries.
pub const SUBMIT_EVERY: u64 = 64;

/// A handle to the GPU; cheap to clone, shared by every tensor made on it.
#[derive(Clone)]
pub struct Gpu {
    pub(crate) inner: Arc<GpuInner>,
}

pub(crate) struct GpuInner {
    pub info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pool: Mutex<Pool>,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    layouts: Mutex<HashMap<Vec<kernels::Slot>, Arc<kernels::Layout>>>,
    runtime_checks: bool,
    /// `ElementwiseInputs` as a number (0 auto, 1 buffers, 2 textures, 3 buffers and uniforms).
    elementwise_inputs: std::sync::atomic::AtomicU8,
    /// The start-up probe's result on CPU adapters (`Auto` stages inputs without one).
    staging_probe: std::sync::OnceLock<StagingProbe>,
    /// Ops one fused elementwise kernel may compute (1 = no fusion).
    fusion_limit: std::sync::atomic::AtomicUsize,
    /// Dispatches per submit (0 = only at a readback or sync).
    submit_every: std::sync::atomic::AtomicU64,
    /// Generated elementwise kernels store pairs of vec4s as one `vec4<u64>` (see
    /// [`Gpu::packed_stores`]).
    packed_stores: std::sync::atomic::AtomicBool,
    rec: Mutex<Recorder>,
}

/// Where elementwise kernels read their inputs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementwiseInputs {
    /// Storage buffers on GPUs and for small tensors; on CPU adapters, for tensors of at least
    /// [`TEXTURE_INPUTS_FROM`] elements, `Textures` where the start-up probe found the copies
    /// worth it, else `BuffersAndUniforms` (see [`Gpu::staging_probe`]).
    Auto,
    /// Every input from its storage buffer.
    Buffers,
    /// Small broadcast operands from uniform buffers, full-size ones from flat texture copies.
    Textures,
    /// Small broadcast operands from uniform buffers, full-size ones from their storage buffers.
    BuffersAndUniforms,
}

/// Elements from which `Auto` uses the CPU adapters' input paths: below it the texture
/// copies' fixed cost outweighs the faster loads.
pub const TEXTURE_INPUTS_FROM: usize = 1 << 13;

/// What the start-up probe of a CPU adapter measured: x + 1 over [`StagingProbe::ELEMENTS`]
/// floats with its input staged into a texture and read from its storage buffer (best of
/// five each, alternating).
#[derive(Debug, Clone, Copy)]
pub struct StagingProbe {
    pub staged_ms: f64,
    pub buffer_ms: f64,
}

impl StagingProbe {
    pub const ELEMENTS: usize = 1 << 22;
    /// How much faster the staged path must be to be worth its copies: each staged input
    /// holds a texture as large as itself while its kernel runs (the image block's step peak
    /// 465 → 344 MiB without them on a host where both paths run equally fast). Wide enough
    /// that noise does not flip the choice there (ratios 0.68–1.36 in nine probes), narrow
    /// enough for the host where buffers were 2.5× slower.
    pub const MARGIN: f64 = 1.5;
    pub fn staging_pays(&self) -> bool {
        self.buffer_ms > Self::MARGIN * self.staged_ms
    }
}

struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    params: Vec<u8>,
    arena: wgpu::Buffer,
    align: usize,
    dispatches: u64,
    submits: u64,
    /// Dispatches recorded since the last submit.
    since_submit: u64,
    /// Open GPU-timer spans: no early submit splits a span's timestamps across submits.
    timed_spans: u32,
}

/// Counters of recorded work, for the batching tests and benches.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordStats {
    pub dispatches: u64,
    pub submits: u64,
}

/// A pooled device buffer; returns to the pool when dropped.
pub struct DeviceBuffer {
    gpu: Gpu,
    buffer: Option<wgpu::Buffer>,
    bucket: u64,
    kind: BufferKind,
}

impl DeviceBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
    pub fn bucket_bytes(&self) -> u64 {
        self.bucket
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.gpu.inner.pool.lock().unwrap().release(self.kind, self.bucket, b);
        }
    }
}

/// One binding of a dispatch: a buffer and the byte length the kernel may touch, or a texture.
pub enum Binding<'a> {
    Buffer { buffer: &'a DeviceBuffer, bytes: u64 },
    Texture(&'a DeviceTexture),
}

impl Gpu {
    /// Opens the preferred adapter, or the one whose name contains `adapter` (else the
    /// `RESFLOW_ADAPTER` environment variable).
    pub fn new(adapter: Option<&str>) -> Result<Gpu, GpuError> {
        let checks = std::env::var("RESFLOW_SHADER_CHECKS").is_ok_and(|v| v == "1");
        Gpu::with_runtime_checks(adapter, checks)
    }

    /// As [`Gpu::new`], choosing whether kernels are compiled with wgpu's injected bounds checks
    /// and loop bounds (a debugging aid; off by default, `RESFLOW_SHADER_CHECKS=1` turns it on).
    pub fn with_runtime_checks(adapter: Option<&str>, runtime_checks: bool) -> Result<Gpu, GpuError> {
        let env = std::env::var("RESFLOW_ADAPTER").ok().filter(|s| !s.is_empty());
        let name = adapter.map(str::to_string).or(env);
        let opened = device::open(name.as_deref())?;
        let arena = opened.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let align = opened.limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        let packed_stores = packed_stores_supported(&opened.adapter_info, opened.features)
            && !std::env::var("RESFLOW_PACKED_STORES").is_ok_and(|v| v == "0");
        let gpu = Gpu {
            inner: Arc::new(GpuInner {
                info: opened.adapter_info,
                device: opened.device,
                queue: opened.queue,
                limits: opened.limits,
                features: opened.features,
                pool: Mutex::new(Pool::default()),
                kernels: Mutex::new(HashMap::new()),
                layouts: Mutex::new(HashMap::new()),
                runtime_checks,
                elementwise_inputs: std::sync::atomic::AtomicU8::new(
                    match std::env::var("RESFLOW_ELEMENTWISE").as_deref() {
                        Ok("buffer") => 1,
                        Ok("texture") => 2,
                        Ok("uniform") => 3,
                        _ => 0,
                    },
                ),
                staging_probe: std::sync::OnceLock::new(),
                fusion_limit: std::sync::atomic::AtomicUsize::new(match std::env::var("RESFLOW_FUSION").as_deref() {
                    Ok("0" | "off") => 1,
                    _ => crate::fusion::MAX_OPS,
                }),
                submit_every: std::sync::atomic::AtomicU64::new(
                    std::env::var("RESFLOW_SUBMIT_EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(SUBMIT_EVERY),
                ),
                packed_stores: std::sync::atomic::AtomicBool::new(packed_stores),
                rec: Mutex::new(Recorder {
                    encoder: None,
                    pass: None,
                    params: Vec::new(),
                    arena,
                    align,
                    dispatches: 0,
                    submits: 0,
                    since_submit: 0,
                    timed_spans: 0,
                }),
            }),
        };
        if gpu.is_cpu() && gpu.inner.elementwise_inputs.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            let probe = crate::fusion::probe_staging(&gpu);
            let _ = gpu.inner.staging_probe.set(probe);
            // The probe's buffers and textures are of a size nothing else may ask for.
            gpu.trim_pool();
        }
        Ok(gpu)
    }

    /// The process-wide default GPU (opened once; honours `RESFLOW_ADAPTER`).
    pub fn shared() -> Result<Gpu, GpuError> {
        static SHARED: std::sync::OnceLock<Result<Gpu, GpuError>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Gpu::new(None)).clone()
    }

    /// Chooses where elementwise kernels read inputs (`RESFLOW_ELEMENTWISE=buffer|texture|uniform`
    /// sets it at start-up, and skips the probe; tests compare them all).
    pub fn set_elementwise_inputs(&self, mode: ElementwiseInputs) {
        let v = match mode {
            ElementwiseInputs::Auto => 0,
            ElementwiseInputs::Buffers => 1,
            ElementwiseInputs::Textures => 2,
            ElementwiseInputs::BuffersAndUniforms => 3,
        };
        self.inner.elementwise_inputs.store(v, std::sync::atomic::Ordering::Relaxed);
    }

    /// Turns elementwise fusion on (up to `fusion::MAX_OPS` ops per kernel) or off (one op
    /// per kernel, as `RESFLOW_FUSION=0` does at start-up; benches and tests compare both).
    pub fn set_fusion(&self, on: bool) {
        let limit = if on { crate::fusion::MAX_OPS } else { 1 };
        self.inner.fusion_limit.store(limit, std::sync::atomic::Ordering::Relaxed);
    }

    /// Submits pending work every `dispatches` dispatches (0: only at a readback or sync).
    pub fn set_submit_every(&self, dispatches: u64) {
        self.inner.submit_every.store(dispatches, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether generated elementwise kernels store their results as `vec4<u64>` pairs of
    /// vec4s. On by default on CPU adapters with 64-bit shader integers: llvmpipe stores to a
    /// storage buffer one lane and one component at a time, so 64-bit components halve that
    /// loop. `RESFLOW_PACKED_STORES=0` turns it off at start-up.
    pub fn packed_stores(&self) -> bool {
        self.inner.packed_stores.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Turns packed stores on or off (tests and benches compare both); on only where
    /// supported (a CPU adapter with `SHADER_INT64`). Returns the setting now in force.
    pub fn set_packed_stores(&self, on: bool) -> bool {
        let on = on && packed_stores_supported(&self.inner.info, self.inner.features);
        self.inner.packed_stores.store(on, std::sync::atomic::Ordering::Relaxed);
        on
    }

    pub(crate) fn fusion_limit(&self) -> usize {
        self.inner.fusion_limit.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Where an elementwise kernel over `n` elements reads its inputs (never `Auto`).
    pub fn elementwise_inputs_for(&self, n: usize) -> ElementwiseInputs {
        match self.inner.elementwise_inputs.load(std::sync::atomic::Ordering::Relaxed) {
            1 => ElementwiseInputs::Buffers,
            2 => ElementwiseInputs::Textures,
            3 => ElementwiseInputs::BuffersAndUniforms,
            _ if !self.is_cpu() || n < TEXTURE_INPUTS_FROM => ElementwiseInputs::Buffers,
            _ if self.staging_probe().is_none_or(|p| p.staging_pays()) => ElementwiseInputs::Textures,
            _ => ElementwiseInputs::BuffersAndUniforms,
        }
    }

    /// On CPU adapters in `Auto` mode, whether staging full-size inputs into textures beat
    /// reading their storage buffers at start-up. llvmpipe reads storage buffers lane by lane;
    /// how much that costs depends on the host CPU: 2–3× slower than the copy plus texture
    /// reads on the earlier CI host, as fast on an AMD EPYC host.
    pub fn staging_probe(&self) -> Option<StagingProbe> {
        self.inner.staging_probe.get().copied()
    }

    pub fn info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }
    pub fn features(&self) -> wgpu::Features {
        self.inner.features
    }
    /// True on software adapters (lavapipe, WARP), where kernels without workgroup memory win.
    pub fn is_cpu(&self) -> bool {
        self.inner.info.device_type == wgpu::DeviceType::Cpu
    }

    // ---------------------------------------------------------------- memory

    pub fn alloc(&self, bytes: u64) -> DeviceBuffer {
        self.alloc_kind(BufferKind::Storage, bytes)
    }

    pub(crate) fn alloc_kind(&self, kind: BufferKind, bytes: u64) -> DeviceBuffer {
        let (buffer, bucket) = self.inner.pool.lock().unwrap().acquire(&self.inner.device, kind, bytes);
        DeviceBuffer { gpu: self.clone(), buffer: Some(buffer), bucket, kind }
    }

    /// A pooled `rgba32float` 2-D array texture of `width × height` texels and `layers` layers.
    pub fn alloc_texture(&self, width: u32, height: u32, layers: u32) -> DeviceTexture {
        let (texture, view) =
            self.inner.pool.lock().unwrap().acquire_texture(&self.inner.device, width, height, layers);
        DeviceTexture::new(self.clone(), texture, view, [width, height, layers])
    }

    pub(crate) fn release_texture(&self, dims: [u32; 3], texture: wgpu::Texture, view: wgpu::TextureView) {
        self.inner.pool.lock().unwrap().release_texture(dims, texture, view);
    }

    pub fn pool_stats(&self) -> PoolStats {
        self.inner.pool.lock().unwrap().stats()
    }
    pub fn reset_peak(&self) {
        self.inner.pool.lock().unwrap().reset_peak()
    }
    pub fn trim_pool(&self) {
        self.inner.pool.lock().unwrap().trim()
    }
    pub fn record_stats(&self) -> RecordStats {
        let r = self.inner.rec.lock().unwrap();
        RecordStats { dispatches: r.dispatches, submits: r.submits }
    }

    /// A buffer holding `data`. Pending work is submitted first: `write_buffer` executes before
    /// the next submit's commands, so writing into a recycled buffer that queued dispatches
    /// still read would otherwise corrupt them.
    pub fn upload(&self, data: &[u8]) -> DeviceBuffer {
        let buf = self.alloc(data.len() as u64);
        if self.has_pending() {
            self.flush();
        }
        let padded_len = data.len().div_ceil(4) * 4;
        if padded_len == data.len() {
            self.inner.queue.write_buffer(buf.raw(), 0, data);
        } else {
            let mut padded = data.to_vec();
            padded.resize(padded_len, 0);
            self.inner.queue.write_buffer(buf.raw(), 0, &padded);
        }
        buf
    }

    /// Copies `bytes` from `src` into a CPU vector (submits and waits).
    pub fn read(&self, src: &DeviceBuffer, bytes: u64) -> Vec<u8> {
        let len = bytes.div_ceil(4) * 4;
        if len == 0 {
            return Vec::new();
        }
        let staging = self.alloc_kind(BufferKind::Readback, len);
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.raw(), 0, staging.raw(), 0, len));
        self.sync();
        let slice = staging.raw().slice(0..len);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait();
        rx.recv().expect("map callback ran").expect("mapping a readback buffer failed (device lost?)");
        let mut out = {
            let view = slice.get_mapped_range().expect("mapped range");
            view.to_vec()
        };
        staging.raw().unmap();
        out.truncate(bytes as usize);
        out
    }

    // ---------------------------------------------------------------- kernels

    /// The compiled kernel for `spec`, compiled on first use and cached after.
    pub fn kernel(&self, spec: &KernelSpec) -> Arc<Kernel> {
        let key = spec.cache_key();
        if let Some(k) = self.inner.kernels.lock().unwrap().get(&key) {
            return k.clone();
        }
        let layout = self.layout(&spec.slots);
        let kernel = Arc::new(kernels::compile(&self.inner.device, spec, layout, self.inner.runtime_checks));
        self.inner.kernels.lock().unwrap().insert(key, kernel.clone());
        kernel
    }

    fn layout(&self, slots: &[kernels::Slot]) -> Arc<kernels::Layout> {
        let mut layouts = self.inner.layouts.lock().unwrap();
        layouts.entry(slots.to_vec()).or_insert_with(|| Arc::new(kernels::layout(&self.inner.device, slots))).clone()
    }

    /// Records one dispatch of `kernel` with uniform `params` and storage `bindings`
    /// (read-only ones first, then read-write, as the kernel's spec declares).
    pub fn dispatch(&self, kernel: &Kernel, params: &[u8], bindings: &[Binding<'_>], groups: [u32; 3]) {
        assert_eq!(bindings.len(), kernel.slots.len(), "kernel {} takes {} bindings", kernel.name, kernel.slots.len());
        if groups.contains(&0) {
            return;
        }
        let max = self.inner.limits.max_compute_workgroups_per_dimension;
        assert!(groups.iter().all(|&g| g <= max), "kernel {}: grid {groups:?} exceeds {max}", kernel.name);
        let mut rec = self.inner.rec.lock().unwrap();
        let slot = rec.params.len().div_ceil(rec.align) * rec.align;
        if slot + params.len().max(16) > ARENA_BYTES as usize {
            self.submit_locked(&mut rec);
        }
        let offset = rec.params.len().div_ceil(rec.align) * rec.align;
        rec.params.resize(offset, 0);
        rec.params.extend_from_slice(params);
        // Uniform bindings are at least 16 bytes and a multiple of 16.
        let size = params.len().max(16).div_ceil(16) * 16;
        rec.params.resize(offset + size, 0);

        let mut entries = Vec::with_capacity(bindings.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.arena,
                offset: offset as u64,
                size: std::num::NonZeroU64::new(size as u64),
            }),
        });
        for (i, b) in bindings.iter().enumerate() {
            let resource = match b {
                Binding::Buffer { buffer, bytes } => {
                    // Whole vec4s, so vec4 kernels can read the last partial one (buckets are
                    // multiples of 16 bytes, so this stays inside the buffer).
                    let bytes = (bytes.div_ceil(16) * 16).clamp(16, buffer.bucket_bytes());
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buffer.raw(),
                        offset: 0,
                        size: std::num::NonZeroU64::new(bytes),
                    })
                }
                Binding::Texture(t) => wgpu::BindingResource::TextureView(t.view()),
            };
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        let bind_group = self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout.0,
            entries: &entries,
        });
        let pass = self.open_pass(&mut rec);
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        rec.dispatches += 1;
        rec.since_submit += 1;
        let every = self.inner.submit_every.load(std::sync::atomic::Ordering::Relaxed);
        if every > 0 && rec.since_submit >= every && rec.timed_spans == 0 {
            self.submit_locked(&mut rec);
        }
    }

    fn open_pass<'r>(&self, rec: &'r mut Recorder) -> &'r mut wgpu::ComputePass<'static> {
        if rec.pass.is_none() {
            let device = &self.inner.device;
            let enc = rec
                .encoder
                .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default()));
            let pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None })
                .forget_lifetime();
            rec.pass = Some(pass);
        }
        rec.pass.as_mut().unwrap()
    }

    /// Runs `f` on the pending encoder outside any compute pass (buffer copies).
    pub fn with_encoder(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut rec = self.inner.rec.lock().unwrap();
        rec.pass = None; // ends the open pass
        let device = &self.inner.device;
        let enc = rec
            .encoder
            .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default()));
        f(enc);
    }

    /// Records a device-side copy of `bytes` from `src` to `dst` (multiples of 4).
    pub fn copy(&self, src: &DeviceBuffer, dst: &DeviceBuffer, bytes: u64) {
        let len = bytes.div_ceil(4) * 4;
        if len > 0 {
            self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, len));
        }
    }

    fn has_pending(&self) -> bool {
        self.inner.rec.lock().unwrap().encoder.is_some()
    }

    /// Submits everything recorded so far (does not wait).
    pub fn flush(&self) {
        let mut rec = self.inner.rec.lock().unwrap();
        self.submit_locked(&mut rec);
    }

    /// Marks the start (`true`) or end of a GPU-timer span.
    pub(crate) fn set_timed_span(&self, open: bool) {
        let mut rec = self.inner.rec.lock().unwrap();
        rec.timed_spans = if open { rec.timed_spans + 1 } else { rec.timed_spans.saturating_sub(1) };
    }

    fn submit_locked(&self, rec: &mut Recorder) {
        rec.pass = None;
        rec.since_submit = 0;
        let Some(enc) = rec.encoder.take() else {
            return;
        };
        if !rec.params.is_empty() {
            self.inner.queue.write_buffer(&rec.arena, 0, &rec.params);
            rec.params.clear();
        }
        self.inner.queue.submit(Some(enc.finish()));
        rec.submits += 1;
    }

    /// Submits pending work and waits until the GPU has finished it.
    pub fn sync(&self) {
        self.flush();
        self.wait();
    }

    fn wait(&self) {
        self.inner
            .device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .expect("GPU device poll failed (device lost?)");
    }
}

/// Packed 64-bit stores pay off where stores are per-lane loops (CPU adapters) and need the
/// device's 64-bit shader integers; GPUs store vec4s natively.
fn packed_stores_supported(info: &wgpu::AdapterInfo, features: wgpu::Features) -> bool {
    info.device_type == wgpu::DeviceType::Cpu && features.contains(wgpu::Features::SHADER_INT64)
}
