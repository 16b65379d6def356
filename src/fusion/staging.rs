//! Where a fused kernel reads its inputs: storage buffers (GPUs, small tensors), uniform
//! buffers (small broadcast operands on CPU adapters) or flat texture copies (large inputs on
//! CPU adapters, where the staging probe found the copies worth it). llvmpipe reads a storage
//! buffer lane by lane with a bounds check each, while a texture load is one vector gather;
//! how much that matters depends on the host CPU, so the choice is measured, once per device,
//! the first time it is needed.

use std::sync::Arc;

use super::expr::{Node, Role};
use super::lazy::{run_reading, InputList, Lazy, Storage};
use super::settings;
use crate::gpu::{Binding, DeviceTexture, Gpu, Slot};
use crate::ops::Unary;
pub use crate::options::ElementwiseInputs;
use crate::options::Profile;

/// Elements from which `Auto` uses the CPU adapters' input paths: below it the texture
/// copies' fixed cost outweighs the faster loads.
pub const TEXTURE_INPUTS_FROM: usize = 1 << 13;

/// What the staging probe of a CPU adapter measured: x + 1 over [`StagingProbe::ELEMENTS`]
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

/// Where an elementwise kernel over `n` elements reads its inputs on `gpu` (never `Auto`).
/// On a CPU adapter in `Auto` mode the first large kernel runs the staging probe.
pub fn elementwise_inputs_for(gpu: &Gpu, n: usize) -> ElementwiseInputs {
    match settings(gpu).inputs() {
        ElementwiseInputs::Auto if gpu.profile() == Profile::Gpu || n < TEXTURE_INPUTS_FROM => {
            ElementwiseInputs::Buffers
        }
        ElementwiseInputs::Auto if staging_probe(gpu).is_none_or(|p| p.staging_pays()) => ElementwiseInputs::Textures,
        ElementwiseInputs::Auto => ElementwiseInputs::BuffersAndUniforms,
        forced => forced,
    }
}

/// On CPU adapters in `Auto` mode, whether staging full-size inputs into textures beats
/// reading their storage buffers (measured on first call, then kept); `None` elsewhere.
pub fn staging_probe(gpu: &Gpu) -> Option<StagingProbe> {
    let s = settings(gpu);
    if gpu.profile() == Profile::Gpu || s.inputs() != ElementwiseInputs::Auto {
        return s.probe.get().copied();
    }
    Some(*s.probe.get_or_init(|| {
        let probe = probe_staging(gpu);
        // The probe's buffers and textures are of a size nothing else may ask for.
        gpu.trim_pool();
        probe
    }))
}

/// Measures [`StagingProbe`] on `gpu`: x + 1 over `StagingProbe::ELEMENTS` floats, its input
/// staged into a texture and read from its storage buffer, alternating, best of five each
/// (the first run of each compiles its kernel).
fn probe_staging(gpu: &Gpu) -> StagingProbe {
    let n = StagingProbe::ELEMENTS;
    let x = Arc::new(Storage::realized(gpu.upload(&vec![0; n * 4]), n));
    let node = Node::Unary(Unary::Affine(1.0, 1.0), Node::Input(0).into());
    let lazy = Lazy { node, inputs: vec![(x, Role::Full)] };
    let mut best = [f64::INFINITY; 2];
    for _ in 0..5 {
        for (ms, path) in best.iter_mut().zip([ElementwiseInputs::Textures, ElementwiseInputs::BuffersAndUniforms]) {
            gpu.sync();
            let start = std::time::Instant::now();
            drop(run_reading(gpu, &lazy, n, path));
            gpu.sync();
            *ms = ms.min(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    StagingProbe { staged_ms: best[0], buffer_ms: best[1] }
}

/// How a kernel reads one input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Read {
    /// From its storage buffer.
    Buffer,
    /// From its buffer bound as a uniform buffer.
    Uniform,
    /// From a flat texture copy (the index into `Staged::textures`).
    Texture(usize),
}

/// Largest broadcast input (in floats) that CPU adapters read from a uniform buffer rather
/// than a texture copy: no copy to make, and a one-element operand (LipSwish's β) read at a
/// literal index is one scalar load instead of a gather per SIMD batch.
const UNIFORM_INPUT_MAX: usize = 4096;

/// Flat texture copies of a kernel's inputs (CPU adapters): each storage is staged once,
/// however many roles read it (a matmul's operands appear once per reduction term). Small
/// broadcast inputs are read from uniform buffers instead.
pub(super) struct Staged {
    textures: Vec<DeviceTexture>,
    /// How each input is read.
    of_input: Vec<Read>,
}

pub(super) fn stage_inputs(gpu: &Gpu, inputs: &InputList, path: ElementwiseInputs) -> Staged {
    let mut staged = Staged { textures: Vec::new(), of_input: Vec::with_capacity(inputs.len()) };
    let uniform_max = UNIFORM_INPUT_MAX.min(gpu.limits().max_uniform_buffer_binding_size as usize / 4);
    for (i, (s, role)) in inputs.iter().enumerate() {
        let read = if path == ElementwiseInputs::Buffers {
            Read::Buffer
        } else if *role != Role::Full && s.numel <= uniform_max {
            Read::Uniform
        } else if path == ElementwiseInputs::BuffersAndUniforms {
            Read::Buffer
        } else {
            let earlier = inputs[..i].iter().zip(&staged.of_input).find(|((t, _), _)| Arc::ptr_eq(t, s));
            match earlier {
                Some((_, &Read::Texture(t))) => Read::Texture(t),
                _ => {
                    staged.textures.push(gpu.stage_flat(s.buf.get().expect("fused inputs are realized"), s.numel));
                    Read::Texture(staged.textures.len() - 1)
                }
            }
        };
        staged.of_input.push(read);
    }
    staged
}

pub(super) fn input_kinds(staged: &Staged, inputs: &InputList) -> Vec<(Slot, Role)> {
    let slot = |read: &Read| match read {
        Read::Buffer => Slot::ReadOnly,
        Read::Uniform => Slot::Uniform,
        Read::Texture(_) => Slot::Texture,
    };
    staged.of_input.iter().zip(inputs).map(|(read, (_, role))| (slot(read), *role)).collect()
}

pub(super) fn input_bindings<'a>(inputs: &'a InputList, staged: &'a Staged) -> Vec<Binding<'a>> {
    inputs
        .iter()
        .zip(&staged.of_input)
        .map(|((s, _), read)| match read {
            Read::Texture(t) => Binding::Texture(&staged.textures[*t]),
            Read::Buffer | Read::Uniform => {
                let buffer = s.buf.get().expect("fused inputs are realized");
                Binding::Buffer { buffer, bytes: (s.numel * 4) as u64 }
            }
        })
        .collect()
}
