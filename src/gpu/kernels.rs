//! WGSL kernels: the registry of shader files, their bind-group convention and compilation.
//!
//! Convention for every kernel: `@binding(0)` is a uniform of parameters, then the kernel's
//! slots in order (storage buffers, read-only and write-only storage textures), all in `@group(0)`.

/// Loop iterations a kernel invocation may run in all its loops together. llvmpipe (lavapipe)
/// silently ends every loop of an invocation after 65 535 iterations shared between all loops
/// (a guard against runaway shaders), so kernels that loop over data split their work across
/// dispatches to stay well under it.
pub const LOOP_BUDGET: usize = 32_768;

/// Every kernel shader of the project, by name, as the files it is made of (grouped by op
/// family under `shaders/`). A file of functions that several kernels share comes first. The
/// naga test validates each of them, and samples of the generated kernels.
pub const SHADERS: &[(&str, &[&str])] = &[
    ("broadcast", &[ELEMENTWISE_OPS, include_str!("../../shaders/elementwise/broadcast.wgsl")]),
    ("reduce", &[REDUCE]),
    // Subgroup builtins need the device's `SUBGROUP` feature (naga takes them without an
    // `enable` directive); only such devices are sent this shader.
    ("reduce_subgroup", &[REDUCE, include_str!("../../shaders/reduce/reduce_subgroup.wgsl")]),
    ("matmul", &[MATMUL_COMMON, include_str!("../../shaders/matmul/matmul.wgsl")]),
    ("matmul_vec4", &[MATMUL_COMMON_VEC4, include_str!("../../shaders/matmul/matmul_vec4.wgsl")]),
    ("matmul_texture", &[include_str!("../../shaders/matmul/matmul_texture.wgsl")]),
    ("texture_stage", &[TEXEL_F32, include_str!("../../shaders/matmul/texture_stage.wgsl")]),
    ("matmul_tiled", &[MATMUL_COMMON, MATMUL_TILED_FETCH, MATMUL_TILED]),
    ("matmul_tiled_vec4", &[MATMUL_COMMON_VEC4, MATMUL_TILED_FETCH_VEC4, MATMUL_TILED]),
    ("matmul_tiled_large", &[MATMUL_COMMON, MATMUL_TILED_LARGE_FETCH, MATMUL_TILED_LARGE]),
    ("matmul_tiled_large_vec4", &[MATMUL_COMMON_VEC4, MATMUL_TILED_LARGE_FETCH_VEC4, MATMUL_TILED_LARGE]),
    ("strided_copy", &[include_str!("../../shaders/layout/strided_copy.wgsl")]),
    ("squeeze", &[include_str!("../../shaders/layout/squeeze.wgsl")]),
    ("random", &[include_str!("../../shaders/random/random.wgsl")]),
    ("peak", &[include_str!("../../shaders/bench/peak.wgsl")]),
    ("conv_stage_input", &[TEXEL_F32, include_str!("../../shaders/conv/conv_stage_input.wgsl")]),
    ("conv_stage_weight", &[TEXEL_F32, include_str!("../../shaders/conv/conv_stage_weight.wgsl")]),
    ("conv_stage_output", &[TEXEL_F32, include_str!("../../shaders/conv/conv_stage_output.wgsl")]),
    ("conv_gemm", &[include_str!("../../shaders/conv/conv_gemm.wgsl")]),
    ("conv_grad_weight", &[include_str!("../../shaders/conv/conv_grad_weight.wgsl")]),
    // The storage-buffer convolutions: the tiled matmul kernels with im2col loads.
    ("conv_tiled", &[CONV_TILED_COMMON, CONV_TILED_LOADS, MATMUL_TILED_FETCH, MATMUL_TILED]),
    ("conv_tiled_large", &[CONV_TILED_COMMON, CONV_TILED_LOADS, MATMUL_TILED_LARGE_FETCH, MATMUL_TILED_LARGE]),
    ("conv_grad_weight_tiled", &[CONV_TILED_COMMON, CONV_GRAD_WEIGHT_LOADS, MATMUL_TILED_FETCH, MATMUL_TILED]),
    (
        "conv_grad_weight_tiled_large",
        &[CONV_TILED_COMMON, CONV_GRAD_WEIGHT_LOADS, MATMUL_TILED_LARGE_FETCH, MATMUL_TILED_LARGE],
    ),
    ("power_iteration", &[WORKGROUP_SUM, include_str!("../../shaders/power_iteration/power_iteration.wgsl")]),
    ("power_iteration_vec4", &[WORKGROUP_SUM, include_str!("../../shaders/power_iteration/power_iteration_vec4.wgsl")]),
    ("adam", &[include_str!("../../shaders/adam/adam.wgsl")]),
    // These need the device's `SHADER_F16` feature (`enable f16;`); only such devices are sent
    // them (`Gpu::set_precision` refuses f16 elsewhere).
    ("to_half", &[include_str!("../../shaders/precision/to_half.wgsl")]),
    ("round_half", &[include_str!("../../shaders/precision/round_half.wgsl")]),
    ("matmul_f16", &[include_str!("../../shaders/matmul/matmul_f16.wgsl")]),
];

/// The f16 forms of the texture-staged kernels, by name and the shader they are made from: the
/// same files with `rgba16float` texels for `rgba32float`, and the staging kernels' `texel`
/// rounding to f16 (`texel_f16.wgsl` for `texel_f32.wgsl`). Loads return f32 vectors, so the
/// operands take half the memory and the arithmetic stays f32.
pub const HALF_TEXEL_SHADERS: &[(&str, &str)] = &[
    ("texture_stage_f16", "texture_stage"),
    ("matmul_texture_f16", "matmul_texture"),
    ("conv_stage_input_f16", "conv_stage_input"),
    ("conv_stage_weight_f16", "conv_stage_weight"),
    ("conv_stage_output_f16", "conv_stage_output"),
    ("conv_gemm_f16", "conv_gemm"),
    ("conv_grad_weight_f16", "conv_grad_weight"),
];

/// `shader`, or its f16-texel form (from [`HALF_TEXEL_SHADERS`]) when `texels` is f16.
pub fn with_texels(shader: &'static str, texels: super::Texels) -> &'static str {
    if texels == super::Texels::F32 {
        return shader;
    }
    HALF_TEXEL_SHADERS
        .iter()
        .find(|(_, base)| *base == shader)
        .map(|(half, _)| *half)
        .unwrap_or_else(|| panic!("{shader} has no f16-texel form"))
}

/// The name of every kernel shader: [`SHADERS`], then [`HALF_TEXEL_SHADERS`].
pub fn shader_names() -> impl Iterator<Item = &'static str> {
    SHADERS.iter().map(|(n, _)| *n).chain(HALF_TEXEL_SHADERS.iter().map(|(n, _)| *n))
}

/// Libraries of functions without an entry point, which generated kernels start with.
pub const LIBRARIES: &[(&str, &[&str])] = &[("elementwise_ops", &[ELEMENTWISE_OPS])];

const ELEMENTWISE_OPS: &str = include_str!("../../shaders/elementwise/elementwise_ops.wgsl");
const MATMUL_COMMON: &str = include_str!("../../shaders/matmul/matmul_common.wgsl");
const MATMUL_COMMON_VEC4: &str = include_str!("../../shaders/matmul/matmul_common_vec4.wgsl");
const MATMUL_TILED: &str = include_str!("../../shaders/matmul/matmul_tiled.wgsl");
const MATMUL_TILED_FETCH: &str = include_str!("../../shaders/matmul/matmul_tiled_fetch.wgsl");
const MATMUL_TILED_FETCH_VEC4: &str = include_str!("../../shaders/matmul/matmul_tiled_fetch_vec4.wgsl");
const MATMUL_TILED_LARGE: &str = include_str!("../../shaders/matmul/matmul_tiled_large.wgsl");
const MATMUL_TILED_LARGE_FETCH: &str = include_str!("../../shaders/matmul/matmul_tiled_large_fetch.wgsl");
const MATMUL_TILED_LARGE_FETCH_VEC4: &str = include_str!("../../shaders/matmul/matmul_tiled_large_fetch_vec4.wgsl");
const CONV_TILED_COMMON: &str = include_str!("../../shaders/conv/conv_tiled_common.wgsl");
const CONV_TILED_LOADS: &str = include_str!("../../shaders/conv/conv_tiled_loads.wgsl");
const CONV_GRAD_WEIGHT_LOADS: &str = include_str!("../../shaders/conv/conv_tiled_grad_weight_loads.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce/reduce.wgsl");
const TEXEL_F32: &str = include_str!("../../shaders/precision/texel_f32.wgsl");
const TEXEL_F16: &str = include_str!("../../shaders/precision/texel_f16.wgsl");
const WORKGROUP_SUM: &str = include_str!("../../shaders/power_iteration/workgroup_sum.wgsl");

/// The text of the shader or library `name`: its `enable` directives (which WGSL wants before
/// any declaration), the op codes as WGSL constants (the one table in
/// `crate::ops::op_code_constants`, so Rust and WGSL cannot disagree), then its files.
pub fn source(name: &str) -> &'static str {
    static SOURCES: std::sync::OnceLock<std::collections::HashMap<&'static str, String>> = std::sync::OnceLock::new();
    let sources = SOURCES.get_or_init(|| {
        let header = crate::ops::op_code_constants();
        let assemble = |files: &[&str]| {
            let text = files.concat();
            let (enables, rest): (Vec<&str>, Vec<&str>) = text.lines().partition(|l| l.starts_with("enable "));
            let enables: String = enables.iter().map(|l| format!("{l}\n")).collect();
            format!("{enables}{header}{}\n", rest.join("\n"))
        };
        let mut sources: std::collections::HashMap<&'static str, String> =
            SHADERS.iter().chain(LIBRARIES).map(|(n, files)| (*n, assemble(files))).collect();
        for (half, base) in HALF_TEXEL_SHADERS {
            let (_, files) = SHADERS.iter().find(|(n, _)| n == base).expect("an f16 form of a listed shader");
            let files: Vec<&str> = files.iter().map(|&f| if f == TEXEL_F32 { TEXEL_F16 } else { f }).collect();
            sources.insert(half, assemble(&files).replace("rgba32float", "rgba16float"));
        }
        sources
    });
    sources.get(name).map(String::as_str).unwrap_or_else(|| panic!("no shader named {name}"))
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
    /// `texture_storage_2d_array<rgba16float, read>`: f16 operands, loaded as f32 vectors.
    HalfTexture,
    /// `texture_storage_2d_array<rgba16float, write>`.
    HalfStorageTexture,
}

impl Slot {
    /// This slot with its texels as `texels` (buffers are unchanged).
    pub fn with_texels(self, texels: super::Texels) -> Slot {
        match (self, texels) {
            (Slot::Texture | Slot::HalfTexture, super::Texels::F32) => Slot::Texture,
            (Slot::Texture | Slot::HalfTexture, super::Texels::F16) => Slot::HalfTexture,
            (Slot::StorageTexture | Slot::HalfStorageTexture, super::Texels::F32) => Slot::StorageTexture,
            (Slot::StorageTexture | Slot::HalfStorageTexture, super::Texels::F16) => Slot::HalfStorageTexture,
            (buffer, _) => buffer,
        }
    }
}

/// What to compile: a shader's entry point, its binding slots and its override constants.
#[derive(Debug, Clone)]
pub struct KernelSpec {
    pub shader: &'static str,
    /// The text of a generated kernel, compiled after `shader`'s text (a library of functions
    /// the generated text calls; see [`KernelSpec::generated`]).
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
    /// A generated kernel (entry `main`) over `slots`: `library`'s text followed by `body`.
    /// Cached by `library`'s name and `body`.
    pub fn generated(library: &'static str, body: String, slots: Vec<Slot>) -> Self {
        KernelSpec { generated: Some(body.into()), ..KernelSpec::with_slots(library, "main", slots) }
    }
    pub fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value));
        self
    }
    pub(crate) fn cache_key(&self) -> String {
        if let Some(body) = &self.generated {
            return format!("{}+{body}", self.shader);
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
    /// The shader and entry point (`fused` for every generated kernel): what a dispatch census
    /// groups by.
    pub family: std::sync::Arc<str>,
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
            Slot::Texture | Slot::HalfTexture | Slot::StorageTexture | Slot::HalfStorageTexture => {
                let read = matches!(slot, Slot::Texture | Slot::HalfTexture);
                let half = matches!(slot, Slot::HalfTexture | Slot::HalfStorageTexture);
                wgpu::BindingType::StorageTexture {
                    access: if read {
                        wgpu::StorageTextureAccess::ReadOnly
                    } else {
                        wgpu::StorageTextureAccess::WriteOnly
                    },
                    format: if half { super::Texels::F16 } else { super::Texels::F32 }.format(),
                    view_dimension: wgpu::TextureViewDimension::D2Array,
                }
            }
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
        Some(body) => format!("{}{body}", source(spec.shader)).into(),
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
    let family = match spec.generated {
        Some(_) => "fused".into(),
        None => format!("{}:{}", spec.shader, spec.entry).into(),
    };
    Kernel { name: spec.cache_key(), family, pipeline, layout, slots: spec.slots.clone() }
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
