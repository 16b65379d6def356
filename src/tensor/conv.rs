//! The GPU convolution and squeeze ops, and the choice of convolution kernel.
//!
//! On CPU adapters convolutions are implicit GEMMs over staged textures (see `shaders/conv/`):
//! the input goes into a zero-bordered, channel-packed texture once, the weights into a
//! [rows, taps·C] texture, and the GEMM reads shifted windows straight from the input texture
//! (on lavapipe texture loads are the only ones that vectorise). The GPU profile runs the
//! storage-buffer implicit GEMMs of `conv_tiled` instead. Under `Precision::F16`
//! convolutions take the texture path with f16 texels (half the memory and bandwidth), whose
//! GEMMs still accumulate in f32.

use bytemuck::{Pod, Zeroable};

use crate::gpu::kernels::{grid_1d, with_texels};
use crate::gpu::{Binding, DeviceTexture, Gpu, KernelSpec, Slot, Texels};
use crate::ops::{self, numel, ShapeError, TensorOps};
pub use crate::options::ConvKernel;
use crate::options::{Precision, Profile, RuntimeOptions};
use crate::tensor::Tensor;

impl ConvKernel {
    /// The profile's default; `RESFLOW_CONV=texture|tiled` overrides it. f16 operands take the
    /// texture kernels, whose f16 form stages f16 texels.
    pub fn default_for(gpu: &crate::gpu::Gpu) -> ConvKernel {
        match RuntimeOptions::get().conv {
            _ if gpu.precision() == Precision::F16 => ConvKernel::Texture,
            Some(kernel) => kernel,
            None if gpu.profile() == Profile::Cpu => ConvKernel::Texture,
            None => ConvKernel::Tiled,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params8 {
    v: [u32; 8],
}

/// Workgroup shape for a GEMM with `rows` output rows: 8 rows per invocation and 64
/// invocations, as tall as the rows need (so few rows are not padded to 64).
fn workgroup_for(rows: usize) -> (u32, u32) {
    match rows.div_ceil(8) {
        1 => (64, 1),
        2 => (32, 2),
        3..=4 => (16, 4),
        _ => (8, 8),
    }
}

/// The texels convolution operands are staged in: f16 under `Precision::F16`.
fn operand_texels(gpu: &Gpu) -> Texels {
    if gpu.precision() == Precision::F16 {
        Texels::F16
    } else {
        Texels::F32
    }
}

/// A staging kernel (buffer → texture) in its form for `texels`.
fn stage_spec(shader: &'static str, texels: Texels) -> KernelSpec {
    let slots = vec![Slot::ReadOnly, Slot::StorageTexture.with_texels(texels)];
    KernelSpec::with_slots(with_texels(shader, texels), "main", slots)
}

/// A GEMM over two staged textures of `texels` into a buffer.
fn gemm_spec(shader: &'static str, texels: Texels, (wg_x, wg_y): (u32, u32)) -> KernelSpec {
    let read = Slot::Texture.with_texels(texels);
    KernelSpec::with_slots(with_texels(shader, texels), "main", vec![read, read, Slot::ReadWrite])
        .with("WG_X", wg_x as f64)
        .with("WG_Y", wg_y as f64)
}

impl Tensor {
    /// Images `first .. first + n` of the batch as a zero-bordered, channel-packed texture
    /// (conv_stage_input.wgsl).
    fn stage_image(&self, pad: usize, first: usize, n: usize) -> DeviceTexture {
        let (c, h, w) = (self.shape()[1], self.shape()[2], self.shape()[3]);
        let (c4, hp, wp) = (c.div_ceil(4), h + 2 * pad, w + 2 * pad);
        let texels = operand_texels(self.gpu());
        let tex = self.gpu().alloc_texture_of(texels, wp as u32, (c4 * hp) as u32, n as u32);
        let params = Params8 { v: [n as u32, c as u32, h as u32, w as u32, pad as u32, c4 as u32, first as u32, 0] };
        let k = self.gpu().kernel(&stage_spec("conv_stage_input", texels));
        let groups = [wp.div_ceil(16) as u32, (c4 * hp).div_ceil(16) as u32, n as u32];
        self.gpu().dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), Binding::Texture(&tex)], groups);
        tex
    }

    /// Weights [co, ci, k, k] as the GEMM's row matrix, flipped and transposed with `flip`.
    fn stage_weights(&self, flip: bool, rows_padded: usize) -> DeviceTexture {
        let (co, ci, k) = (self.shape()[0], self.shape()[1], self.shape()[2]);
        let chans = if flip { co } else { ci };
        let c4 = chans.div_ceil(4);
        let width = k * k * c4;
        let texels = operand_texels(self.gpu());
        let tex = self.gpu().alloc_texture_of(texels, width as u32, rows_padded as u32, 1);
        let params = Params8 { v: [co as u32, ci as u32, k as u32, c4 as u32, rows_padded as u32, 0, 0, 0] };
        let spec = stage_spec("conv_stage_weight", texels).with("FLIP", flip as u8 as f64);
        let k = self.gpu().kernel(&spec);
        let groups = [width.div_ceil(16) as u32, rows_padded.div_ceil(16) as u32, 1];
        self.gpu().dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), Binding::Texture(&tex)], groups);
        tex
    }

    /// Images per pass, so one staged image texture stays near 8 MiB (bounding the transient
    /// memory a large batch would otherwise need all at once) and within the texture limits.
    fn images_per_pass(&self, pad: usize) -> usize {
        let (c, h, w) = (self.shape()[1], self.shape()[2], self.shape()[3]);
        let per_image = c.div_ceil(4) * (h + 2 * pad) * (w + 2 * pad) * 16;
        let by_memory = (8 << 20) / per_image.max(1);
        let by_layers = self.gpu().limits().max_texture_array_layers as usize;
        by_memory.clamp(1, by_layers)
    }

    /// out = conv(self, weights) with weights staged (flipped for the transposed convolution).
    fn conv_gemm(&self, w: &Tensor, flip: bool) -> Tensor {
        let (n, h, wd) = (self.shape()[0], self.shape()[2], self.shape()[3]);
        let k = w.shape()[2];
        let rows = if flip { w.shape()[1] } else { w.shape()[0] };
        let chans = self.shape()[1];
        let (wg_x, wg_y) = workgroup_for(rows);
        let rows_padded = rows.div_ceil(8 * wg_y as usize) * 8 * wg_y as usize;
        let weights = w.stage_weights(flip, rows_padded);
        let out = Tensor::empty(self.gpu(), &[n, rows, h, wd]);
        let kern = self.gpu().kernel(&gemm_spec("conv_gemm", operand_texels(self.gpu()), (wg_x, wg_y)));
        let chunk = self.images_per_pass(k / 2);
        let mut first = 0;
        while first < n {
            let count = chunk.min(n - first);
            let image = self.stage_image(k / 2, first, count);
            let pixels = count * h * wd;
            let params = Params8 {
                v: [
                    rows as u32,
                    chans.div_ceil(4) as u32,
                    k as u32,
                    h as u32,
                    wd as u32,
                    pixels as u32,
                    (h + 2 * (k / 2)) as u32,
                    first as u32,
                ],
            };
            let groups = [pixels.div_ceil(8 * wg_x as usize) as u32, (rows_padded / (8 * wg_y as usize)) as u32, 1];
            self.gpu().dispatch(
                &kern,
                bytemuck::bytes_of(&params),
                &[Binding::Texture(&weights), Binding::Texture(&image), out.binding()],
                groups,
            );
            first += count;
        }
        out
    }

    /// Images per weight-gradient pass: their pixels must fit one texture row, and the staged
    /// textures stay near 8 MiB each.
    fn grad_weight_chunk(&self, gy: &Tensor, pad: usize) -> usize {
        let plane = self.shape()[2] * self.shape()[3];
        let max_pixels = 4 * self.gpu().limits().max_texture_dimension_2d as usize;
        let gy_per_image = gy.shape()[1].div_ceil(8) * 8 * plane * 4;
        let by_memory = (8 << 20) / gy_per_image.max(1);
        (max_pixels / plane).min(self.images_per_pass(pad)).min(by_memory).max(1)
    }

    /// The weight gradient from images `first .. first + n`.
    fn conv_grad_weight_chunk(x: &Tensor, gy: &Tensor, k: usize, first: usize, n: usize) -> Tensor {
        let (ci, h, wd) = (x.shape()[1], x.shape()[2], x.shape()[3]);
        let co = gy.shape()[1];
        let plane = h * wd;
        let pixels = n * plane;
        let (wg_x, wg_y) = workgroup_for(co);
        let rows_padded = co.div_ceil(8 * wg_y as usize) * 8 * wg_y as usize;
        // gY as [co, pixels].
        let steps = pixels.div_ceil(4);
        let texels = operand_texels(x.gpu());
        let g_tex = x.gpu().alloc_texture_of(texels, steps as u32, rows_padded as u32, 1);
        let params =
            Params8 { v: [n as u32, co as u32, plane as u32, steps as u32, rows_padded as u32, first as u32, 0, 0] };
        let kern = x.gpu().kernel(&stage_spec("conv_stage_output", texels));
        let groups = [steps.div_ceil(16) as u32, rows_padded.div_ceil(16) as u32, 1];
        x.gpu().dispatch(&kern, bytemuck::bytes_of(&params), &[gy.binding(), Binding::Texture(&g_tex)], groups);
        let image = x.stage_image(k / 2, first, n);
        let c4 = ci.div_ceil(4);
        let quads = k * k * c4;
        let out = Tensor::empty(x.gpu(), &[co, ci, k, k]);
        let params = Params8 {
            v: [
                co as u32,
                ci as u32,
                k as u32,
                c4 as u32,
                wd as u32,
                plane as u32,
                pixels as u32,
                (h + 2 * (k / 2)) as u32,
            ],
        };
        let kern = x.gpu().kernel(&gemm_spec("conv_grad_weight", texels, (wg_x, wg_y)));
        let groups = [quads.div_ceil(2 * wg_x as usize) as u32, (rows_padded / (8 * wg_y as usize)) as u32, 1];
        x.gpu().dispatch(
            &kern,
            bytemuck::bytes_of(&params),
            &[Binding::Texture(&g_tex), Binding::Texture(&image), out.binding()],
            groups,
        );
        out
    }

    /// conv2d with an explicit kernel choice (tests and benches compare both).
    pub fn conv2d_using(&self, w: &Tensor, kernel: ConvKernel) -> Result<Tensor, ShapeError> {
        ops::conv_shape(self.shape(), w.shape())?;
        Ok(match kernel {
            ConvKernel::Texture => self.conv_gemm(w, false),
            ConvKernel::Tiled => self.conv_tiled(w, false, None),
        })
    }

    /// conv_transpose2d (the input VJP) with an explicit kernel choice.
    pub fn conv_transpose2d_using(&self, w: &Tensor, kernel: ConvKernel) -> Tensor {
        assert!(
            self.shape().len() == 4 && w.shape().len() == 4 && self.shape()[1] == w.shape()[0],
            "conv_transpose2d of {:?} with weights {:?}",
            self.shape(),
            w.shape()
        );
        match kernel {
            ConvKernel::Texture => self.conv_gemm(w, true),
            ConvKernel::Tiled => self.conv_tiled(w, true, None),
        }
    }

    /// The weight VJP of conv2d (self the input, `gy` the output's gradient) with an explicit
    /// kernel choice.
    pub fn conv2d_grad_weight_using(&self, gy: &Tensor, k: usize, kernel: ConvKernel) -> Tensor {
        match kernel {
            ConvKernel::Texture => self.conv_grad_weight_texture(gy, k),
            ConvKernel::Tiled => self.conv_grad_weight_tiled(gy, k, None),
        }
    }

    pub(crate) fn conv2d_gpu(&self, w: &Tensor) -> Result<Tensor, ShapeError> {
        self.conv2d_using(w, ConvKernel::default_for(self.gpu()))
    }

    pub(crate) fn conv_transpose2d_gpu(&self, w: &Tensor) -> Tensor {
        self.conv_transpose2d_using(w, ConvKernel::default_for(self.gpu()))
    }

    pub(crate) fn conv2d_grad_weight_gpu(&self, gy: &Tensor, k: usize) -> Tensor {
        self.conv2d_grad_weight_using(gy, k, ConvKernel::default_for(self.gpu()))
    }

    fn conv_grad_weight_texture(&self, gy: &Tensor, k: usize) -> Tensor {
        let n = self.shape()[0];
        let chunk = self.grad_weight_chunk(gy, k / 2);
        // Batch chunks (texture limits, bounded staging memory): their gradients add up.
        let mut total: Option<Tensor> = None;
        let mut start = 0;
        while start < n {
            let len = chunk.min(n - start);
            let part = Tensor::conv_grad_weight_chunk(self, gy, k, start, len);
            total = Some(match total {
                Some(t) => t.add(&part),
                None => part,
            });
            start += len;
        }
        total.expect("at least one image")
    }

    pub(crate) fn squeeze_gpu(&self, inverse: bool) -> Tensor {
        let shape = if inverse { ops::unsqueeze_shape(self.shape()) } else { ops::squeeze_shape(self.shape()) };
        let squeezed = if inverse { self.shape().to_vec() } else { shape.clone() };
        let out = Tensor::empty(self.gpu(), &shape);
        let n = numel(&shape) as u32;
        let params = [n, (squeezed[1] / 4) as u32, squeezed[2] as u32, squeezed[3] as u32];
        let kern = self.gpu().kernel(&KernelSpec::new("squeeze", "main", 1, 1).with("INVERSE", inverse as u8 as f64));
        self.gpu().dispatch(
            &kern,
            bytemuck::cast_slice(&params),
            &[self.binding(), out.binding()],
            grid_1d(n.div_ceil(256)),
        );
        out
    }
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    use super::ParamLayout;
    vec![
        ParamLayout::words("conv_stage_input", 8, &[0, 1, 2, 3, 4, 5, 6]),
        ParamLayout::words("conv_stage_weight", 8, &[0, 1, 2, 3, 4]),
        ParamLayout::words("conv_gemm", 8, &[0, 1, 2, 3, 4, 5, 6, 7]),
        ParamLayout::words("conv_stage_output", 8, &[0, 1, 2, 3, 4, 5]),
        ParamLayout::words("conv_grad_weight", 8, &[0, 1, 2, 3, 4, 5, 6, 7]),
    ]
}
