//! WGSL kernels: the registry of shader files, their bind-group convention and compilation.
//!
//! Convention for every kernel: `@binding(0)` is a uniform of parameters, then the kernel's
//! slots in order (storage buffers, read-only and write-only storage textures), all in `@group(0)`.

/// Loop iterations a kernel invocation may run in all its loops together. llvmpipe (lavapipe)
/// silently ends every loop of an invocation after 65 535 iterations shared between all loops
/// (a guard against runaway shaders), so kernels that loop over data split their work across
/// dispatches to stay well under it.
pub const LOOP_BUDGET: usize = 32_768;

/// Every shader of the project, by name (the generated elementwise kernels of `crate::fusion`
/// aside). The naga test validates each of them, and samples of the generated ones.
pub const SHADERS: &[(&str, &str)] = &[
    (
        "broadcast",
        concat!(include_str!("../../shaders/elementwise_ops.wgsl"), include_str!("../../shaders/broadcast.wgsl")),
    ),
    ("reduce", include_str!("../../shaders/reduce.wgsl")),
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("matmul_vec4", include_str!("../../shaders/matmul_vec4.wgsl")),
    ("matmul_texture", include_str!("../../shaders/matmul_texture.wgsl")),
    ("texture_stage", include_str!("../../shaders/texture_stage.wgsl")),
    ("matmul_tiled", include_str!("../../shaders/matmul_tiled.wgsl")),
    ("strided_copy", include_str!("../../shaders/strided_copy.wgsl")),
    ("random", include_str!("../../shaders/random.wgsl")),
    ("peak", include_str!("../../shaders/peak.wgsl")),
    ("conv_stage_input", include_str!("../../shaders/conv_stage_input.wgsl")),
    ("conv_stage_weight", include_str!("../../shaders/conv_stage_weight.wgsl")),
    ("conv_stage_output", include_str!("../../shaders/conv_stage_output.wgsl")),
    ("conv_gemm", include_str!("../../shaders/conv_gemm.wgsl")),
    ("conv_grad_weight", include_str!("../../shaders/conv_grad_weight.wgsl")),
    ("squeeze", include_str!("../../shaders/squeeze.wgsl")),
    (
        "power_iteration",
        concat!(include_str!("../../shaders/workgroup_sum.wgsl"), include_str!("../../shaders/power_iteration.wgsl")),
    ),
    (
        "power_iteration_vec4",
        concat!(
            include_str!("../../shaders/workgroup_sum.wgsl"),
            include_str!("../../shaders/power_iteration_vec4.wgsl")
        ),
    ),
    ("adam", include_str!("../../shaders/adam.wgsl")),
];

pub fn source(name: &str) -> &'static str {
    SHADERS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).unwrap_or_else(|| panic!("no shader named {name}"))
}

/// One binding of a kernel after its uniform parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `var<storage, read>` buffer.
    ReadOnly,
    /// `var<storage, read_write>` buffer.
    ReadWrite,
    /// `var<uniform>` buffer (a small operand, ≤ the uniform binding limit): llvmpipe reads a
    /// storage buffer lane by lane with a bounds check each, but a uniform buffer with one
    /// vector gather, or with one scalar load at a literal index.
    Uniform,
    /// `texture_storage_2d_array<rgba32float, read>`, read with `textureLoad`. A read-only
    /// storage texture rather than a sampled one: rgba32float guarantees both, and llvmpipe
    /// fetches storage texels with less addressing work (no per-lane mip-level lookups): a
    /// kernel that only loads 16 M floats took 14.1 instead of 22.2 ms.
    Texture,
    /// `texture_storage_2d_array<rgba32float, write>`.
    StorageTexture,
}

/// What to compile: a shader's entry point, its binding slots and its override constants.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    pub shader: &'static str,
    /// The text of a generated kernel (`crate::fusion`), appended to the op library.
    pub generated: Option<std::sync::Arc<str>>,
    pub entry: &'static str,
    pub slots: Vec<Slot>,
    pub constants: Vec<(&'static str, f64)>,
}

impl KernelSpec {
    /// A kernel over `read_only` then `read_write` storage buffers.
    pub fn new(shader: &'static str, entry: &'static str, read_only: u32, read_write: u32) -> Self {
        let mut slots = vec![Slot::ReadOnly; read_only as usize];
        slots.extend(std::iter::repeat_n(Slot::ReadWrite, read_write as usize));
        KernelSpec::with_slots(shader, entry, slots)
    }
    pub fn with_slots(shader: &'static str, entry: &'static str, slots: Vec<Slot>) -> Self {
        KernelSpec { shader, entry, slots, constants: Vec::new(), generated: None }
    }
    /// A generated elementwise kernel (entry `main`) over `slots`.
    pub fn generated(body: String, slots: Vec<Slot>) -> Self {
        KernelSpec { generated: Some(body.into()), ..KernelSpec::with_slots("fused", "main", slots) }
    }
    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value));
        self
    }
    pub(crate) fn cache_key(&self) -> String {
        if let Some(body) = &self.generated {
            return format!("fused:{body}");
        }
        let mut key = format!("{}:{}", self.shader, self.entry);
        for (n, v) in &self.constants {
            key.push_str(&format!(":{n}={v}"));
        }
        key
    }
}

/// A bind-group layout and the pipeline layout made of it, shared by kernels of one signature.
pub type Layout = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

pub struct Kernel {
    pub name: String,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: std::sync::Arc<Layout>,
    pub slots: Vec<Slot>,
}

pub(crate) fn layout(device: &wgpu::Device, slots: &[Slot]) -> Layout {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for (i, slot) in slots.iter().enumerate() {
        let buffer = |read_only| wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        };
        let ty = match slot {
            Slot::ReadOnly => buffer(true),
            Slot::ReadWrite => buffer(false),
            Slot::Uniform => wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            Slot::Texture => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::ReadOnly,
                format: wgpu::TextureFormat::Rgba32Float,
                view_dimension: wgpu::TextureViewDimension::D2Array,
            },
            Slot::StorageTexture => wgpu::BindingType::StorageTexture {
                access: wgpu::StorageTextureAccess::WriteOnly,
                format: wgpu::TextureFormat::Rgba32Float,
                view_dimension: wgpu::TextureViewDimension::D2Array,
            },
        };
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: i as u32 + 1,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty,
            count: None,
        });
    }
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: None, entries: &entries });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: None,
        bind_group_layouts: &[Some(&bgl)],
        immediate_size: 0,
    });
    (bgl, pl)
}

pub(crate) fn compile(
    device: &wgpu::Device,
    spec: &KernelSpec,
    layout: std::sync::Arc<Layout>,
    runtime_checks: bool,
) -> Kernel {
    let text: std::borrow::Cow<'_, str> = match &spec.generated {
        Some(body) => format!("{}{body}", crate::fusion::LIBRARY).into(),
        None => source(spec.shader).into(),
    };
    let desc = wgpu::ShaderModuleDescriptor { label: Some(spec.shader), source: wgpu::ShaderSource::Wgsl(text) };
    let module = if runtime_checks {
        device.create_shader_module(desc)
    } else {
        // SAFETY: every kernel in `shaders/`, and every generated one, guards its indices
        // itself (each invocation checks `i < n`, matmul clamps its loads), and
        // `Gpu::dispatch` binds every buffer with at least the bytes the op's shape implies,
        // so no access leaves its binding. The injected per-access clamps and loop counters
        // cost time on every access; a kernel test runs the ops with them too and requires
        // bit-identical results.
        unsafe { device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
    };
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(spec.entry),
        layout: Some(&layout.1),
        module: &module,
        entry_point: Some(spec.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &spec.constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    Kernel { name: spec.cache_key(), pipeline, layout, slots: spec.slots.clone() }
}

/// Workgroup grid for `groups` 1-D workgroups, folded into y when x would exceed the
/// 65 535 per-dimension limit. Shaders recover the linear index from `num_workgroups`.
pub fn grid_1d(groups: u32) -> [u32; 3] {
    const MAX: u32 = 65_535;
    if groups <= MAX {
        [groups, 1, 1]
    } else {
        [MAX, groups.div_ceil(MAX), 1]
    }
}
