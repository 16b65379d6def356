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
}

/// Picks an adapter (by `name` substring, case-insensitive, if given) and opens a device with the
/// adapter's real limits and the optional features we can use, less `withheld` (tests of what
/// happens on adapters without a feature).
pub(crate) fn open(name: Option<&str>, withheld: wgpu::Features) -> Result<Opened, GpuError> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12;
    let instance = wgpu::Instance::new(desc);
    let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
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
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("resflow"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features: wgpu::ExperimentalFeatures::disabled(),
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }))
    .map_err(|e| GpuError::RequestDevice(e.to_string()))?;
    Ok(Opened { adapter_info: adapter.get_info(), device, queue, limits, features })
}
