//! The runtime switches (`RESFLOW_*` environment variables), read once into one typed struct.
//!
//! This module sits below every layer and depends on none: each layer reads the switches that
//! concern it from [`RuntimeOptions::get`], so the names, their values and their defaults are
//! written down in exactly one place.

use std::sync::OnceLock;

/// Where elementwise kernels read their inputs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementwiseInputs {
    /// Storage buffers on GPUs and for small tensors; on CPU adapters, for large tensors,
    /// `Textures` where the staging probe found the copies worth it, else `BuffersAndUniforms`.
    Auto,
    /// Every input from its storage buffer.
    Buffers,
    /// Small broadcast operands from uniform buffers, full-size ones from flat texture copies.
    Textures,
    /// Small broadcast operands from uniform buffers, full-size ones from their storage buffers.
    BuffersAndUniforms,
}

/// The matmul kernels: `Scalar` (register-blocked, any shape), `Vec4` (register-blocked with
/// vec4 loads, 16×16 outputs per invocation), `Tiled` (workgroup-memory tiles; the default on
/// real GPUs) and `Texture` (operands staged in textures; the default on CPU adapters, where
/// texture loads are vector gathers and buffer loads are not). Each falls back to the next
/// general one when the shape does not fit it (Texture → Vec4 → Scalar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    Scalar,
    Vec4,
    Tiled,
    Texture,
}

/// The convolution kernels: `Texture` (input and weights staged in textures; the default on
/// CPU adapters) and `Tiled` (implicit GEMMs on the tiled matmul's tiles, reading the storage
/// buffers directly; the default on real GPUs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    Texture,
    Tiled,
}

/// `RESFLOW_TILE_PROBE`: how the tiled GEMMs' tile configuration is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileProbe {
    /// From the cache under the user's cache directory, else by the probe (then cached).
    Auto,
    /// No probe and no cache: the large tiles wherever they fit.
    Off,
    /// Probe again, ignoring the cache, and rewrite it.
    Force,
}

/// Which kind of device the engine's policies are tuned for. Every choice made by adapter
/// *type* (matmul kernel, where elementwise inputs come from, vec4s per invocation, packed
/// stores, power-iteration workgroups) follows the profile; workarounds for a driver's bugs
/// follow the driver. `RESFLOW_PROFILE=gpu` runs the discrete-GPU choices on any adapter, so
/// they are tested on CPU adapters too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Software adapters (lavapipe, WARP): kernels without workgroup memory, texture staging.
    Cpu,
    /// Discrete and integrated GPUs.
    Gpu,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Cpu => "cpu",
            Profile::Gpu => "gpu",
        }
    }
}

/// The precision of matmul and convolution operands. `F16` stores them as IEEE half floats
/// (staged textures and buffers) and accumulates in f32; everything else (elementwise ops,
/// reductions, log-dets, optimiser state, power iteration) stays f32. Only adapters with
/// `SHADER_F16` are sent f16 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    #[default]
    F32,
    F16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

/// Default dispatches per submit (see [`RuntimeOptions::submit_every`]). Submitting in chunks
/// lets the device run beside the host's recording: lavapipe executes on its queue thread, and
/// a batch-1024 toy training step went from 0.263 to 0.230 s (`resflow train`, medians of four
/// alternating 60-step runs; in a sweep 64 ≈ 128 beat 32 and 256); large enough that a
/// submit's own cost stays small against what it carries.
pub const SUBMIT_EVERY: u64 = 64;

/// Every `RESFLOW_*` switch, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// `RESFLOW_ADAPTER=substring`: the adapter whose name contains it.
    pub adapter: Option<String>,
    /// `RESFLOW_PROFILE=gpu|cpu|auto`: the policies' profile (`None`, auto: the adapter's type).
    pub profile: Option<Profile>,
    /// `RESFLOW_SHADER_CHECKS=1`: compile kernels with wgpu's injected bounds checks.
    pub shader_checks: bool,
    /// `RESFLOW_MATMUL=scalar|vec4|tiled|texture`: the matmul kernel instead of the adapter's.
    pub matmul: Option<MatmulKernel>,
    /// `RESFLOW_CONV=texture|tiled`: the convolution kernel instead of the profile's.
    pub conv: Option<ConvKernel>,
    /// `RESFLOW_TILE_PROBE=off|force`: skip the tile probe, or probe again past the cache.
    pub tile_probe: TileProbe,
    /// `RESFLOW_WALLCLOCK=1` (any value): benches time with wall-clock, not GPU timestamps.
    pub wallclock: bool,
    /// `RESFLOW_FUSION=0|off` turns elementwise fusion off.
    pub fusion: bool,
    /// `RESFLOW_ELEMENTWISE=buffer|texture|uniform`: where elementwise kernels read inputs.
    pub elementwise: ElementwiseInputs,
    /// `RESFLOW_SUBMIT_EVERY=N`: submit recorded work every N dispatches (0: only at a
    /// readback or sync).
    pub submit_every: u64,
    /// `RESFLOW_PACKED_STORES=0` turns off the CPU adapters' 64-bit packed stores.
    pub packed_stores: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            adapter: None,
            profile: None,
            shader_checks: false,
            matmul: None,
            conv: None,
            tile_probe: TileProbe::Auto,
            wallclock: false,
            fusion: true,
            elementwise: ElementwiseInputs::Auto,
            submit_every: SUBMIT_EVERY,
            packed_stores: true,
        }
    }
}

impl RuntimeOptions {
    /// The options of this process, read from the environment on first use. In a browser,
    /// where there is no environment, no clock to time probes with and no blocking readback,
    /// every adapter takes the GPU profile's storage-buffer kernels and no tile probe runs.
    pub fn get() -> &'static RuntimeOptions {
        static OPTIONS: OnceLock<RuntimeOptions> = OnceLock::new();
        OPTIONS.get_or_init(|| {
            if cfg!(target_arch = "wasm32") {
                RuntimeOptions { profile: Some(Profile::Gpu), tile_probe: TileProbe::Off, ..RuntimeOptions::default() }
            } else {
                RuntimeOptions::parse(|name| std::env::var(name).ok())
            }
        })
    }

    /// The options from a lookup of variable names (the environment, or a test's table).
    /// Unknown values fall back to the default, as an unset variable does.
    pub fn parse(var: impl Fn(&str) -> Option<String>) -> RuntimeOptions {
        let d = RuntimeOptions::default();
        RuntimeOptions {
            adapter: var("RESFLOW_ADAPTER").filter(|s| !s.is_empty()),
            profile: match var("RESFLOW_PROFILE").as_deref() {
                Some("gpu") => Some(Profile::Gpu),
                Some("cpu") => Some(Profile::Cpu),
                _ => None,
            },
            shader_checks: var("RESFLOW_SHADER_CHECKS").is_some_and(|v| v == "1"),
            matmul: match var("RESFLOW_MATMUL").as_deref() {
                Some("tiled") => Some(MatmulKernel::Tiled),
                Some("scalar") => Some(MatmulKernel::Scalar),
                Some("vec4") => Some(MatmulKernel::Vec4),
                Some("texture") => Some(MatmulKernel::Texture),
                _ => None,
            },
            conv: match var("RESFLOW_CONV").as_deref() {
                Some("texture") => Some(ConvKernel::Texture),
                Some("tiled") => Some(ConvKernel::Tiled),
                _ => None,
            },
            tile_probe: match var("RESFLOW_TILE_PROBE").as_deref() {
                Some("off" | "0") => TileProbe::Off,
                Some("force") => TileProbe::Force,
                _ => TileProbe::Auto,
            },
            wallclock: var("RESFLOW_WALLCLOCK").is_some(),
            fusion: !matches!(var("RESFLOW_FUSION").as_deref(), Some("0" | "off")),
            elementwise: match var("RESFLOW_ELEMENTWISE").as_deref() {
                Some("buffer") => ElementwiseInputs::Buffers,
                Some("texture") => ElementwiseInputs::Textures,
                Some("uniform") => ElementwiseInputs::BuffersAndUniforms,
                _ => ElementwiseInputs::Auto,
            },
            submit_every: var("RESFLOW_SUBMIT_EVERY").and_then(|v| v.parse().ok()).unwrap_or(d.submit_every),
            packed_stores: var("RESFLOW_PACKED_STORES").is_none_or(|v| v != "0"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_variables_give_the_defaults() {
        assert_eq!(RuntimeOptions::parse(|_| None), RuntimeOptions::default());
    }

    #[test]
    fn every_switch_parses() {
        let table = [
            ("RESFLOW_ADAPTER", "nvidia"),
            ("RESFLOW_PROFILE", "gpu"),
            ("RESFLOW_SHADER_CHECKS", "1"),
            ("RESFLOW_MATMUL", "vec4"),
            ("RESFLOW_CONV", "tiled"),
            ("RESFLOW_TILE_PROBE", "force"),
            ("RESFLOW_WALLCLOCK", "1"),
            ("RESFLOW_FUSION", "off"),
            ("RESFLOW_ELEMENTWISE", "uniform"),
            ("RESFLOW_SUBMIT_EVERY", "0"),
            ("RESFLOW_PACKED_STORES", "0"),
        ];
        let o = RuntimeOptions::parse(|n| table.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()));
        assert_eq!(o.adapter.as_deref(), Some("nvidia"));
        assert_eq!(o.profile, Some(Profile::Gpu));
        assert!(o.shader_checks && o.wallclock && !o.fusion && !o.packed_stores);
        assert_eq!(o.matmul, Some(MatmulKernel::Vec4));
        assert_eq!(o.conv, Some(ConvKernel::Tiled));
        assert_eq!(o.tile_probe, TileProbe::Force);
        assert_eq!(o.elementwise, ElementwiseInputs::BuffersAndUniforms);
        assert_eq!(o.submit_every, 0);
    }
}
