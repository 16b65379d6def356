//! Pooled `rgba32float` textures: staging for matmul operands on CPU adapters, where
//! `textureLoad` is a vectorised gather while every storage-buffer load is a per-invocation loop.

use super::Gpu;

pub struct DeviceTexture {
    gpu: Gpu,
    texture: Option<(wgpu::Texture, wgpu::TextureView)>,
    dims: [u32; 3],
}

impl DeviceTexture {
    pub(crate) fn new(gpu: Gpu, texture: wgpu::Texture, view: wgpu::TextureView, dims: [u32; 3]) -> Self {
        DeviceTexture { gpu, texture: Some((texture, view)), dims }
    }
    pub fn view(&self) -> &wgpu::TextureView {
        &self.texture.as_ref().expect("texture present until drop").1
    }
    /// Width and height in texels, and layers.
    pub fn dims(&self) -> [u32; 3] {
        self.dims
    }
}

impl Drop for DeviceTexture {
    fn drop(&mut self) {
        if let Some((t, v)) = self.texture.take() {
            self.gpu.release_texture(self.dims, t, v);
        }
    }
}
