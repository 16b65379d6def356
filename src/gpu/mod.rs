//! The GPU context: the device and queue, the buffer pool, the kernel cache and the pending
//! command recorder ([`recorder`]). This is the bottom layer of the engine: it knows buffers,
//! textures, kernels and dispatches, and nothing of the ops built on them. Upper layers keep
//! per-device state of their own with [`Gpu::state`].

mod device;
pub mod kernels;
mod pool;
mod readback;
mod recorder;
mod texture;
mod timer;

pub use device::GpuError;
pub use kernels::{Kernel, KernelSpec, Slot};
pub use pool::{bucket_size, BufferKind, PoolStats};
pub use recorder::{FamilyCensus, RecordStats};
pub use texture::{DeviceTexture, Texels, FLAT_ROWS, FLAT_WIDTH};
pub use timer::GpuTimer;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::options::{Precision, Profile, RuntimeOptions};
use pool::Pool;
use recorder::Recorder;

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
    errors: device::DeviceErrors,
    pool: Mutex<Pool>,
    kernels: Mutex<HashMap<String, Arc<Kernel>>>,
    layouts: Mutex<HashMap<Vec<kernels::Slot>, Arc<kernels::Layout>>>,
    runtime_checks: bool,
    profile: Profile,
    /// Whether matmul and convolution operands are stored as f16 (see [`Gpu::set_precision`]).
    half_operands: AtomicBool,
    /// Dispatches per submit (0 = only at a readback or sync).
    submit_every: AtomicU64,
    /// Per-device state of upper layers, one value per type (see [`Gpu::state`]).
    states: Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
    rec: Mutex<Recorder>,
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
        Gpu::with_runtime_checks(adapter, RuntimeOptions::get().shader_checks)
    }

    /// As [`Gpu::new`], choosing whether kernels are compiled with wgpu's injected bounds checks
    /// and loop bounds (a debugging aid; off by default, `RESFLOW_SHADER_CHECKS=1` turns it on).
    pub fn with_runtime_checks(adapter: Option<&str>, runtime_checks: bool) -> Result<Gpu, GpuError> {
        Gpu::open(adapter, runtime_checks, wgpu::Features::empty())
    }

    /// As [`Gpu::new`] without the optional `withheld` features, as if the adapter lacked them.
    pub fn without_features(withheld: wgpu::Features) -> Result<Gpu, GpuError> {
        Gpu::open(None, RuntimeOptions::get().shader_checks, withheld)
    }

    /// Opens the preferred adapter as a future: what a browser, where opening a device cannot
    /// block, awaits.
    pub async fn open_async(adapter: Option<&str>) -> Result<Gpu, GpuError> {
        Gpu::open_with(adapter, RuntimeOptions::get().shader_checks, wgpu::Features::empty()).await
    }

    fn open(adapter: Option<&str>, runtime_checks: bool, withheld: wgpu::Features) -> Result<Gpu, GpuError> {
        pollster::block_on(Gpu::open_with(adapter, runtime_checks, withheld))
    }

    async fn open_with(adapter: Option<&str>, runtime_checks: bool, withheld: wgpu::Features) -> Result<Gpu, GpuError> {
        let options = RuntimeOptions::get();
        let name = adapter.map(str::to_string).or_else(|| options.adapter.clone());
        let opened = device::open(name.as_deref(), withheld).await?;
        let rec = Recorder::new(&opened.device, &opened.limits);
        let adapter_profile =
            if opened.adapter_info.device_type == wgpu::DeviceType::Cpu { Profile::Cpu } else { Profile::Gpu };
        Ok(Gpu {
            inner: Arc::new(GpuInner {
                info: opened.adapter_info,
                device: opened.device,
                queue: opened.queue,
                limits: opened.limits,
                features: opened.features,
                errors: opened.errors,
                pool: Mutex::new(Pool::default()),
                kernels: Mutex::new(HashMap::new()),
                layouts: Mutex::new(HashMap::new()),
                runtime_checks,
                profile: options.profile.unwrap_or(adapter_profile),
                half_operands: AtomicBool::new(false),
                submit_every: AtomicU64::new(options.submit_every),
                states: Mutex::new(Vec::new()),
                rec: Mutex::new(rec),
            }),
        })
    }

    /// The process-wide default GPU (opened once; honours `RESFLOW_ADAPTER`).
    pub fn shared() -> Result<Gpu, GpuError> {
        static SHARED: std::sync::OnceLock<Result<Gpu, GpuError>> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Gpu::new(None)).clone()
    }

    /// This device's value of `T`, made by `init` on first use. Upper layers keep their
    /// per-device settings here (the fusion layer its limits and input policy), so this layer
    /// needs to know nothing of them. `init` must not call `state` itself.
    pub fn state<T: Any + Send + Sync>(&self, init: impl FnOnce(&Gpu) -> T) -> Arc<T> {
        // A short list, not a map: a device holds a state or two, and the fusion layer asks for
        // its own on every op.
        let key = TypeId::of::<T>();
        let find = |states: &[(TypeId, Arc<dyn Any + Send + Sync>)]| {
            states.iter().find(|(k, _)| *k == key).map(|(_, s)| s.clone().downcast().expect("stored under its type"))
        };
        if let Some(s) = find(&self.inner.states.lock().unwrap()) {
            return s;
        }
        let made = Arc::new(init(self));
        let mut states = self.inner.states.lock().unwrap();
        if let Some(s) = find(&states) {
            return s;
        }
        states.push((key, made.clone()));
        made
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
    /// True on software adapters (lavapipe, WARP). Tuning follows [`Gpu::profile`]; this is for
    /// what the driver itself does (its bugs and its timers).
    pub fn is_cpu(&self) -> bool {
        self.inner.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The profile the engine's policies follow: `RESFLOW_PROFILE`, else the adapter's type.
    pub fn profile(&self) -> Profile {
        self.inner.profile
    }

    /// The precision of matmul and convolution operands from now on. `F16` needs the adapter's
    /// `SHADER_F16` feature: without it this is an error, and no f16 code is ever compiled.
    pub fn set_precision(&self, precision: Precision) -> Result<(), GpuError> {
        if precision == Precision::F16 && !self.features().contains(wgpu::Features::SHADER_F16) {
            return Err(GpuError::NoShaderF16 { adapter: self.info().name.clone() });
        }
        self.inner.half_operands.store(precision == Precision::F16, Ordering::Relaxed);
        Ok(())
    }

    pub fn precision(&self) -> Precision {
        if self.inner.half_operands.load(Ordering::Relaxed) {
            Precision::F16
        } else {
            Precision::F32
        }
    }

    /// The most items one pass can take when each needs `floats` f32s of one buffer: that
    /// buffer must fit one storage binding, and one dispatch (elementwise kernels run 64
    /// threads a workgroup, one element a thread at the least). Work on more is split.
    pub fn items_per_pass(&self, floats: usize) -> usize {
        let limits = &self.inner.limits;
        let binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let dispatch = limits.max_compute_workgroups_per_dimension as u64 * 64;
        ((binding / 4).min(dispatch) / floats.max(1) as u64) as usize
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
        self.alloc_texture_of(Texels::F32, width, height, layers)
    }

    /// As [`Gpu::alloc_texture`], of the given texels.
    pub fn alloc_texture_of(&self, texels: Texels, width: u32, height: u32, layers: u32) -> DeviceTexture {
        let dims = [width, height, layers];
        let (texture, view) = self.inner.pool.lock().unwrap().acquire_texture(&self.inner.device, dims, texels);
        DeviceTexture::new(self.clone(), texture, view, dims, texels)
    }

    pub(crate) fn release_texture(
        &self,
        dims: [u32; 3],
        texels: Texels,
        texture: wgpu::Texture,
        view: wgpu::TextureView,
    ) {
        self.inner.pool.lock().unwrap().release_texture(dims, texels, texture, view);
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

    /// Copies `bytes` from `src` into a CPU vector (submits and waits). A browser cannot wait
    /// for the device: there, use [`Gpu::read_async`].
    pub fn read(&self, src: &DeviceBuffer, bytes: u64) -> Vec<u8> {
        if cfg!(target_arch = "wasm32") {
            panic!("a blocking readback in the browser, where it would never complete (read_async is the one to use)");
        }
        pollster::block_on(self.read_async(src, bytes))
    }

    /// [`Gpu::read`] as a future: natively it is ready when first polled (the device is
    /// waited for), in a browser when the page's event loop has mapped the buffer.
    pub async fn read_async(&self, src: &DeviceBuffer, bytes: u64) -> Vec<u8> {
        let len = bytes.div_ceil(4) * 4;
        if len == 0 {
            return Vec::new();
        }
        let staging = self.alloc_kind(BufferKind::Readback, len);
        self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.raw(), 0, staging.raw(), 0, len));
        self.flush();
        let slice = staging.raw().slice(0..len);
        let mapping = readback::Mapping::default();
        let done = mapping.clone();
        slice.map_async(wgpu::MapMode::Read, move |r| done.complete(r.map_err(|e| e.to_string())));
        if !cfg!(target_arch = "wasm32") {
            self.wait();
        }
        let mapped = mapping.await;
        if let Err(e) = mapped {
            self.raise_device_errors();
            std::panic::panic_any(GpuError::Device(format!("mapping a readback buffer failed: {e}")));
        }
        let mut out = {
            let view = slice.get_mapped_range().expect("mapped range");
            view.to_vec()
        };
        staging.raw().unmap();
        out.truncate(bytes as usize);
        out
    }

    /// Raises the first error wgpu reported since the last call as a panic carrying a
    /// [`GpuError::Device`] (readbacks and waits call this).
    pub fn raise_device_errors(&self) {
        self.inner.errors.raise();
    }

    // ---------------------------------------------------------------- kernels

    /// How many kernels have been compiled (each distinct spec once).
    pub fn compiled_kernels(&self) -> usize {
        self.inner.kernels.lock().unwrap().len()
    }

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
}
