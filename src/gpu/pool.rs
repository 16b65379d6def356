//! Size-bucketed reuse of `wgpu::Buffer`s, with the byte counts that memory claims rest on.
//!
//! A freed buffer goes straight back to its bucket's free list. That is safe without waiting
//! for the GPU because every later use is recorded after the earlier ones on the same queue; the
//! one exception, `queue.write_buffer`, is handled by the uploader (it flushes pending work first).

use std::collections::HashMap;

use super::texture::Texels;

/// Counters of the pool; `live` and `peak` count bucket (allocated) sizes, not requested ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes of buffers currently handed out.
    pub live_bytes: u64,
    /// Largest `live_bytes` seen since the last `reset_peak`.
    pub peak_bytes: u64,
    /// Bytes held in free lists, ready for reuse.
    pub cached_bytes: u64,
    /// Real `create_buffer` calls made so far.
    pub allocations: u64,
}

/// What a buffer is for; each kind has its own free lists since usages differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BufferKind {
    /// Tensor storage: read/written by kernels, copy source and destination; small ones can
    /// also be bound as uniform buffers (`Slot::Uniform`).
    Storage,
    /// CPU-readable staging for readback.
    Readback,
}

impl BufferKind {
    fn usage(self) -> wgpu::BufferUsages {
        match self {
            BufferKind::Storage => {
                wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::UNIFORM
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST
            }
            BufferKind::Readback => wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        }
    }
}

/// Rounds a request up to its bucket: 256 B minimum, then quarter steps between powers of two,
/// so at most 25 % of a buffer is slack while similar sizes still share buckets.
pub fn bucket_size(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let pow = bytes.next_power_of_two();
    if pow <= 1024 {
        return pow;
    }
    let step = pow / 8; // quarter steps of the lower power of two
    bytes.div_ceil(step) * step
}

/// A free texture and its 2-D array view.
type PooledTexture = (wgpu::Texture, wgpu::TextureView);

#[derive(Default)]
pub(crate) struct Pool {
    free: HashMap<(BufferKind, u64), Vec<wgpu::Buffer>>,
    free_textures: HashMap<([u32; 3], Texels), Vec<PooledTexture>>,
    stats: PoolStats,
}

/// Bytes of a texture of `texels`.
pub fn texture_bytes(dims: [u32; 3], texels: Texels) -> u64 {
    dims.iter().map(|&d| d as u64).product::<u64>() * texels.bytes()
}

impl Pool {
    pub fn acquire(&mut self, device: &wgpu::Device, kind: BufferKind, bytes: u64) -> (wgpu::Buffer, u64) {
        let size = bucket_size(bytes);
        let buffer = match self.free.get_mut(&(kind, size)).and_then(Vec::pop) {
            Some(b) => {
                self.stats.cached_bytes -= size;
                b
            }
            None => {
                self.stats.allocations += 1;
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: None,
                    size,
                    usage: kind.usage(),
                    mapped_at_creation: false,
                })
            }
        };
        self.stats.live_bytes += size;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.live_bytes);
        (buffer, size)
    }

    pub fn release(&mut self, kind: BufferKind, size: u64, buffer: wgpu::Buffer) {
        self.stats.live_bytes -= size;
        self.stats.cached_bytes += size;
        self.free.entry((kind, size)).or_default().push(buffer);
    }

    /// Textures are reused by exact size and format (they stage matmul operands of recurring
    /// shapes).
    pub fn acquire_texture(
        &mut self,
        device: &wgpu::Device,
        dims: [u32; 3],
        texels: Texels,
    ) -> (wgpu::Texture, wgpu::TextureView) {
        let [width, height, layers] = dims;
        let bytes = texture_bytes(dims, texels);
        let pair = match self.free_textures.get_mut(&(dims, texels)).and_then(Vec::pop) {
            Some(pair) => {
                self.stats.cached_bytes -= bytes;
                pair
            }
            None => {
                self.stats.allocations += 1;
                let texture = device.create_texture(&wgpu::TextureDescriptor {
                    label: None,
                    size: wgpu::Extent3d { width, height, depth_or_array_layers: layers },
                    mip_level_count: 1,
                    sample_count: 1,
                    dimension: wgpu::TextureDimension::D2,
                    format: texels.format(),
                    usage: wgpu::TextureUsages::TEXTURE_BINDING
                        | wgpu::TextureUsages::STORAGE_BINDING
                        | wgpu::TextureUsages::COPY_DST,
                    view_formats: &[],
                });
                let view = texture.create_view(&wgpu::TextureViewDescriptor {
                    dimension: Some(wgpu::TextureViewDimension::D2Array),
                    ..Default::default()
                });
                (texture, view)
            }
        };
        self.stats.live_bytes += bytes;
        self.stats.peak_bytes = self.stats.peak_bytes.max(self.stats.live_bytes);
        pair
    }

    pub fn release_texture(&mut self, dims: [u32; 3], texels: Texels, texture: wgpu::Texture, view: wgpu::TextureView) {
        let bytes = texture_bytes(dims, texels);
        self.stats.live_bytes -= bytes;
        self.stats.cached_bytes += bytes;
        self.free_textures.entry((dims, texels)).or_default().push((texture, view));
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    pub fn reset_peak(&mut self) {
        self.stats.peak_bytes = self.stats.live_bytes;
    }

    /// Drops every cached buffer (the memory goes back to the driver).
    pub fn trim(&mut self) {
        self.free.clear();
        self.free_textures.clear();
        self.stats.cached_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::bucket_size;

    #[test]
    fn buckets_round_up_with_bounded_slack() {
        assert_eq!(bucket_size(1), 256);
        assert_eq!(bucket_size(256), 256);
        assert_eq!(bucket_size(257), 512);
        assert_eq!(bucket_size(1025), 1280);
        for bytes in [1000u64, 4097, 65_537, 1 << 20, 33_554_433, 123_456_789] {
            let b = bucket_size(bytes);
            assert!(b >= bytes && (b as f64) <= bytes as f64 * 1.25 + 256.0, "{bytes} -> {b}");
        }
    }
}
