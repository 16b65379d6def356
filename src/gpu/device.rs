//! Instance, adapter choice and device creation: the one place that talks to wgpu's setup API.

use std::fmt;

/// Why no usable GPU context could be made. Printed as one line that names the fix.
#[derive(Debug, Clone)]
pub enum GpuError {
    NoAdapter {
        wanted: Option<String>,
        found: Vec<String>,
    },
    RequestDevice(String),
    /// `--precision f16` on an adapter without the `SHADER_F16` feature.
    NoShaderF16 {
        adapter: String,
    },
    /// wgpu reported an error on a working device (validation, out of memory, device lost).
    /// Raised at the next readback or wait as a panic whose payload is this error, which the
    /// command line turns into its one-line message: the ops above return plain values.
    Device(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoAdapter { wanted: None, .. } => write!(
                f,
                "no GPU adapter found (Vulkan/Metal/DX12): install a GPU driver, or Mesa's software \
                 Vulkan driver on Debian/Ubuntu with `apt-get install -y mesa-vulkan-drivers`"
            ),
            GpuError::NoAdapter { wanted: Some(name), found } => write!(
                f,
                "no GPU adapter matches {name:?} (from --adapter / RESFLOW_ADAPTER); available: {}",
                if found.is_empty() { "none".to_string() } else { found.join(", ") }
            ),
            GpuError::RequestDevice(e) => write!(f, "the GPU adapter refused to create a device: {e}"),
            GpuError::NoShaderF16 { adapter } => write!(
                f,
                "--precision f16 needs the SHADER_F16 feature, which {adapter} does not offer; use --precision f32"
            ),
            GpuError::Device(e) => write!(f, "the GPU device reported an error: {e}"),
        }
    }
}

impl std::error::Error for GpuError {}

/// How an adapter ranks when none is asked for by name: discrete, integrated, then the rest.
fn preference(kind: wgpu::DeviceType) -> u32 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

pub(crate) struct Opened {
    pub adapter_info: wgpu::AdapterInfo,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The first error wgpu reported since the last check (see [`DeviceErrors`]).
    pub errors: DeviceErrors,
}

/// Errors wgpu reports outside any error scope (its default handler would panic with them),
/// kept until the next readback or wait raises the first as a [`GpuError::Device`].
#[derive(Clone, Default)]
pub(crate) struct DeviceErrors(std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl DeviceErrors {
    fn record(&self, error: String) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(error);
    }

    /// Raises the first error recorded, if any, as a panic carrying a [`GpuError`].
    pub fn raise(&self) {
        let first = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(error) = first {
            std::panic::panic_any(GpuError::Device(error));
        }
    }
}

/// Picks an adapter (by `name` substring, case-insensitive, if given) and opens a device with the
/// adapter's real limits and the optional features we can use, less `withheld` (tests of what
/// happens on adapters without a feature).
pub(crate) async fn open(name: Option<&str>, withheld: wgpu::Features) -> Result<Opened, GpuError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = if cfg!(target_arch = "wasm32") {
        wgpu::Backends::BROWSER_WEBGPU
    } else {
        wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12
    };
    let instance = wgpu::Instance::new(desc);
    let adapters = adapters(&instance).await;
    let describe = |a: &wgpu::Adapter| {
        let i = a.get_info();
        format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
    };
    let found: Vec<String> = adapters.iter().map(describe).collect();
    let wanted = name.map(|s| s.to_lowercase());
    let mut candidates: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| match &wanted {
            Some(w) => a.get_info().name.to_lowercase().contains(w.as_str()),
            None => true,
        })
        .collect();
    candidates.sort_by_key(|a| preference(a.get_info().device_type));
    let adapter =
        candidates.into_iter().next().ok_or_else(|| GpuError::NoAdapter { wanted: name.map(str::to_string), found })?;

    let limits = adapter.limits();
    let optional = wgpu::Features::TIMESTAMP_QUERY
        | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SHADER_INT64
        | wgpu::Features::SUBGROUP;
    let features = adapter.features() & optional & !withheld;
    let (device, queue) = adapter
        .request_device(&wgpu::DeviceDescriptor {
            label: Some("resflow"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        })
        .await
        .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
    let errors = DeviceErrors::default();
    let recorder = errors.clone();
    device.on_uncaptured_error(std::sync::Arc::new(move |e: wgpu::Error| recorder.record(one_line(&e.to_string()))));
    let lost = errors.clone();
    device.set_device_lost_callback(move |reason, message| {
        if reason != wgpu::DeviceLostReason::Destroyed {
            lost.record(format!("device lost ({reason:?}): {message}"));
        }
    });
    Ok(Opened { adapter_info: adapter.get_info(), device, queue, limits, features, errors })
}

/// Every adapter the instance offers; a browser offers one, on request.
async fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    if cfg!(target_arch = "wasm32") {
        let options = wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        };
        instance.request_adapter(&options).await.into_iter().collect()
    } else {
        instance.enumerate_adapters(wgpu::Backends::all()).await
    }
}

/// wgpu's multi-line error reports as one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
