//! Pooled `rgba32float` (and, for f16 operands, `rgba16float`) textures: staging for matmul
//! and convolution operands and elementwise inputs on CPU adapters, where `textureLoad` is a
//! vectorised gather while every storage-buffer load is a per-invocation loop.

use super::{DeviceBuffer, Gpu};

/// Texels per row and rows per layer of a flat texture (the fused kernels' `flat_xy` and `flat_layer` in
/// `shaders/elementwise/elementwise_ops.wgsl` and their generated loads agree).
pub const FLAT_WIDTH: u32 = 1024;
pub const FLAT_ROWS: u32 = 1024;

/// What a texel holds: four f32s, or four f16s (half the bytes; loads still return f32s, so
/// kernels reading either accumulate in f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Texels {
    F32,
    F16,
}

impl Texels {
    pub fn format(self) -> wgpu::TextureFormat {
        match self {
            Texels::F32 => wgpu::TextureFormat::Rgba32Float,
            Texels::F16 => wgpu::TextureFormat::Rgba16Float,
        }
    }
    pub fn bytes(self) -> u64 {
        match self {
            Texels::F32 => 16,
            Texels::F16 => 8,
        }
    }
}

pub struct DeviceTexture {
    gpu: Gpu,
    texture: Option<(wgpu::Texture, wgpu::TextureView)>,
    dims: [u32; 3],
    texels: Texels,
}

impl DeviceTexture {
    pub(crate) fn new(
        gpu: Gpu,
        texture: wgpu::Texture,
        view: wgpu::TextureView,
        dims: [u32; 3],
        texels: Texels,
    ) -> Self {
        DeviceTexture { gpu, texture: Some((texture, view)), dims, texels }
    }
    pub fn view(&self) -> &wgpu::TextureView {
        &self.texture.as_ref().expect("texture present until drop").1
    }
    pub fn raw(&self) -> &wgpu::Texture {
        &self.texture.as_ref().expect("texture present until drop").0
    }
    /// Width and height in texels, and layers.
    pub fn dims(&self) -> [u32; 3] {
        self.dims
    }
    pub fn texels(&self) -> Texels {
        self.texels
    }
}

impl Drop for DeviceTexture {
    fn drop(&mut self) {
        if let Some((t, v)) = self.texture.take() {
            self.gpu.release_texture(self.dims, self.texels, t, v);
        }
    }
}

impl Gpu {
    /// The first `floats` values of `buf` as a flat rgba32float texture: texel t (values
    /// 4t..4t+3) at (t mod W, (t / W) mod R) of layer t / (W·R). Only transfer commands are
    /// recorded (a memcpy on CPU adapters), in at most three copies: whole layers, whole rows,
    /// the last partial row; nothing past the buffer's last texel is read.
    pub fn stage_flat(&self, buf: &DeviceBuffer, floats: usize) -> DeviceTexture {
        let (w, r) = (FLAT_WIDTH as u64, FLAT_ROWS as u64);
        let texels = (floats as u64).div_ceil(4).max(1);
        let rows = texels.div_ceil(w);
        let layers = rows.div_ceil(r);
        // Power-of-two heights keep the texture pool's buckets few.
        let height = if layers > 1 { r } else { rows.next_power_of_two().min(r) };
        let tex = self.alloc_texture(w as u32, height as u32, layers as u32);
        let per_layer = w * r;
        let full_layers = texels / per_layer;
        let rest = texels - full_layers * per_layer;
        let (full_rows, tail) = (rest / w, rest % w);
        let pieces = [
            (0, [0, 0, 0], [w, r, full_layers]),
            (full_layers * per_layer, [0, 0, full_layers], [w, full_rows, 1]),
            (full_layers * per_layer + full_rows * w, [0, full_rows, full_layers], [tail, 1, 1]),
        ];
        self.with_encoder(|enc| {
            for (first, origin, size) in pieces {
                if size.contains(&0) {
                    continue;
                }
                enc.copy_buffer_to_texture(
                    wgpu::TexelCopyBufferInfo {
                        buffer: buf.raw(),
                        layout: wgpu::TexelCopyBufferLayout {
                            offset: first * 16,
                            bytes_per_row: Some((w * 16) as u32),
                            rows_per_image: Some(r as u32),
                        },
                    },
                    wgpu::TexelCopyTextureInfo {
                        texture: tex.raw(),
                        mip_level: 0,
                        origin: wgpu::Origin3d { x: origin[0] as u32, y: origin[1] as u32, z: origin[2] as u32 },
                        aspect: wgpu::TextureAspect::All,
                    },
                    wgpu::Extent3d {
                        width: size[0] as u32,
                        height: size[1] as u32,
                        depth_or_array_layers: size[2] as u32,
                    },
                );
            }
        });
        tex
    }
}
