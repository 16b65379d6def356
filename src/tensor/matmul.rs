//! Matrix products: the lazy elementwise form of tiny reductions, the skinny fused row kernel
//! (in `fusion`), and the scalar, vec4, tiled and texture kernels (`shaders/matmul/`).

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::tile_config::{self, Tiles};
use super::Tensor;
use crate::fusion::{self, Node, Operand, Role, Storage};
use crate::gpu::kernels::{grid_1d, with_texels, LOOP_BUDGET};
use crate::gpu::{Binding, DeviceBuffer, DeviceTexture, Gpu, KernelSpec, Slot, Texels};
use crate::ops::{self, Binary, ShapeError, TensorOps};
pub use crate::options::MatmulKernel;
use crate::options::{Precision, Profile};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    pad0: u32,
    lda: u32,
    ldb: u32,
    ldc: u32,
    pad1: u32,
    batch_a: u32,
    batch_b: u32,
    batch_c: u32,
    pad2: u32,
}

impl MatmulParams {
    /// The parameters of op(A)·op(B) for the buffer kernels: leading dimensions from the
    /// transposes, batch strides from which operands are 3-D.
    fn of(a: &Tensor, b: &Tensor, (m, k, n): (usize, usize, usize), (ta, tb): (bool, bool)) -> Self {
        MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            pad0: 0,
            lda: if ta { m } else { k } as u32,
            ldb: if tb { k } else { n } as u32,
            ldc: n as u32,
            pad1: 0,
            batch_a: if a.shape.len() == 3 { m * k } else { 0 } as u32,
            batch_b: if b.shape.len() == 3 { k * n } else { 0 } as u32,
            batch_c: (m * n) as u32,
            pad2: 0,
        }
    }
}

/// Matmuls with at most this many reduction terms run as elementwise expressions (each term
/// reads two broadcast operands: 2k inputs stay within `fusion::MAX_INPUTS`).
const MAX_ELEMENTWISE_K: usize = 3;

impl MatmulKernel {
    /// The adapter's default; `RESFLOW_MATMUL=scalar|vec4|tiled|texture` overrides it.
    pub fn default_for(gpu: &Gpu) -> MatmulKernel {
        match crate::options::RuntimeOptions::get().matmul {
            Some(kernel) => kernel,
            None if gpu.profile() == Profile::Cpu => MatmulKernel::Texture,
            None => MatmulKernel::Tiled,
        }
    }

    /// Whether the tiled kernels can load each operand as vec4s along its stored rows: their
    /// lengths (K for A, M for Aᵀ stored, N for B, K for Bᵀ stored) are multiples of 4, so every
    /// vec4 (and every batch's start) is aligned and lies wholly inside or outside the matrix.
    pub fn vec4_loads_fit(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> bool {
        let a_row = if ta { m } else { k };
        let b_row = if tb { k } else { n };
        a_row.is_multiple_of(4) && b_row.is_multiple_of(4)
    }

    /// Whether `Vec4` can run this problem: its vec4 loads need these sizes to be multiples of 4.
    pub fn vec4_fits(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> bool {
        k.is_multiple_of(4) && (!ta || m.is_multiple_of(4)) && (tb || n.is_multiple_of(4))
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StageParams {
    rows: u32,
    cols: u32,
    row_stride: u32,
    col_stride: u32,
    batch_stride: u32,
    width: u32,
    height: u32,
    layers: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct TexMatmulParams {
    m: u32,
    n: u32,
    k4: u32,
    ldc: u32,
    batch_c: u32,
    a_layer_step: u32,
    b_layer_step: u32,
    pad: u32,
}

impl Tensor {
    /// Matmul with an explicit kernel choice (tests and benches compare both).
    pub fn matmul_using(&self, other: &Tensor, ta: bool, tb: bool, kernel: MatmulKernel) -> Result<Tensor, ShapeError> {
        self.matmul_with(other, ta, tb, kernel, None)
    }

    /// The tiled matmul on the given tiles rather than the device's choice (the tile probe,
    /// and tests of each).
    pub fn matmul_with_tiles(&self, other: &Tensor, ta: bool, tb: bool, tiles: Tiles) -> Result<Tensor, ShapeError> {
        self.matmul_with(other, ta, tb, MatmulKernel::Tiled, Some(tiles))
    }

    fn matmul_with(
        &self,
        other: &Tensor,
        ta: bool,
        tb: bool,
        kernel: MatmulKernel,
        tiles: Option<Tiles>,
    ) -> Result<Tensor, ShapeError> {
        let (batch, m, k, n) = ops::matmul_shape(&self.shape, &other.shape, ta, tb)?;
        let batched = self.shape.len() == 3 || other.shape.len() == 3;
        let out = Tensor::empty(&self.gpu, &if batched { vec![batch, m, n] } else { vec![m, n] });
        let params = MatmulParams::of(self, other, (m, k, n), (ta, tb));
        // Staging costs two dispatches; with a tiny K the direct kernels are cheaper.
        let kernel = match kernel {
            MatmulKernel::Texture if !self.texture_fits(batch, m, k, n) || k < 8 => MatmulKernel::Vec4,
            other => other,
        };
        let kernel = match kernel {
            MatmulKernel::Vec4 if !MatmulKernel::vec4_fits(m, k, n, ta, tb) => MatmulKernel::Scalar,
            other => other,
        };
        if kernel == MatmulKernel::Texture {
            self.matmul_texture(other, &out, (batch, m, k, n), (ta, tb), Texels::F32);
            return Ok(out);
        }
        // Output tile per workgroup: 64×64 for Scalar/Tiled, 8×8 invocations × 16×16 for Vec4,
        // 128×128 for the large tiles.
        let large = kernel == MatmulKernel::Tiled
            && tile_config::large_tiles_fit(
                &self.gpu,
                m,
                n,
                tile_config::tiles_for(&self.gpu, m, n, tiles, |c| c.matmul),
            );
        let (shader, tile) = match kernel {
            MatmulKernel::Scalar => ("matmul", 64),
            MatmulKernel::Vec4 => ("matmul_vec4", 128),
            MatmulKernel::Tiled if large && MatmulKernel::vec4_loads_fit(m, k, n, ta, tb) => {
                ("matmul_tiled_large_vec4", 128)
            }
            MatmulKernel::Tiled if large => ("matmul_tiled_large", 128),
            MatmulKernel::Tiled if MatmulKernel::vec4_loads_fit(m, k, n, ta, tb) => ("matmul_tiled_vec4", 64),
            MatmulKernel::Tiled => ("matmul_tiled", 64),
            MatmulKernel::Texture => unreachable!("handled above"),
        };
        let spec =
            KernelSpec::new(shader, "main", 2, 1).with("TRANS_A", ta as u8 as f64).with("TRANS_B", tb as u8 as f64);
        let spec = if kernel == MatmulKernel::Vec4 { spec.with("RB", 4.0).with("CB", 4.0) } else { spec };
        let kern = self.gpu.kernel(&spec);
        let groups = [n.div_ceil(tile) as u32, m.div_ceil(tile) as u32, batch as u32];
        self.gpu.dispatch(
            &kern,
            bytemuck::bytes_of(&params),
            &[self.binding(), other.binding(), out.binding()],
            groups,
        );
        Ok(out)
    }

    /// op(A)·op(B) from f16 operands with f32 accumulation: staged into f16 textures for the
    /// `Texture` kernel, else stored as f16 buffers for `matmul_f16` (the other kernels' f16
    /// form). Needs an adapter with `SHADER_F16`.
    pub fn matmul_f16_using(
        &self,
        other: &Tensor,
        ta: bool,
        tb: bool,
        kernel: MatmulKernel,
    ) -> Result<Tensor, ShapeError> {
        let (batch, m, k, n) = ops::matmul_shape(&self.shape, &other.shape, ta, tb)?;
        let batched = self.shape.len() == 3 || other.shape.len() == 3;
        let out = Tensor::empty(&self.gpu, &if batched { vec![batch, m, n] } else { vec![m, n] });
        if kernel == MatmulKernel::Texture && self.texture_fits(batch, m, k, n) {
            self.matmul_texture(other, &out, (batch, m, k, n), (ta, tb), Texels::F16);
            return Ok(out);
        }
        let params = MatmulParams::of(self, other, (m, k, n), (ta, tb));
        let (a16, b16) = (self.to_half_buffer(), other.to_half_buffer());
        let half_binding = |buffer, t: &Tensor| Binding::Buffer { buffer, bytes: half_bytes(t.numel()) };
        let spec = KernelSpec::new("matmul_f16", "main", 2, 1)
            .with("TRANS_A", ta as u8 as f64)
            .with("TRANS_B", tb as u8 as f64);
        let kern = self.gpu.kernel(&spec);
        let groups = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, batch as u32];
        self.gpu.dispatch(
            &kern,
            bytemuck::bytes_of(&params),
            &[half_binding(&a16, self), half_binding(&b16, other), out.binding()],
            groups,
        );
        Ok(out)
    }

    /// This tensor's values stored as f16s (`to_half.wgsl`).
    fn to_half_buffer(&self) -> DeviceBuffer {
        let n = self.numel();
        let out = self.gpu.alloc(half_bytes(n));
        self.half_kernel("to_half", Binding::Buffer { buffer: &out, bytes: half_bytes(n) });
        out
    }

    /// Each value rounded to the nearest f16, as f32s (`round_half.wgsl`).
    pub(crate) fn round_to_f16_gpu(&self) -> Tensor {
        let out = Tensor::empty(&self.gpu, &self.shape);
        self.half_kernel("round_half", out.binding());
        out
    }

    /// One of the elementwise f16 conversions from this tensor into `dst`.
    fn half_kernel(&self, shader: &'static str, dst: Binding<'_>) {
        let n = self.numel() as u32;
        let kern = self.gpu.kernel(&KernelSpec::new(shader, "main", 1, 1));
        self.gpu.dispatch(&kern, bytemuck::cast_slice(&[n, 0, 0, 0]), &[self.binding(), dst], grid_1d(n.div_ceil(256)));
    }

    /// A matmul with a reduction of at most `MAX_ELEMENTWISE_K` terms as the lazy elementwise
    /// expression C = Σ_k A[:, k] ⊗ B[k, :] (each operand read through a strided broadcast),
    /// so it fuses with what follows, typically a bias and an activation.
    fn matmul_elementwise(&self, other: &Tensor, (m, k, n): (usize, usize, usize), ta: bool, tb: bool) -> Tensor {
        let mut operands = Vec::with_capacity(2 * k);
        for kk in 0..k {
            let a = if ta {
                Role::Broadcast { inner: n, len: m, stride: 1, offset: kk * m }
            } else {
                Role::Broadcast { inner: n, len: m, stride: k, offset: kk }
            };
            let b = if tb {
                Role::Broadcast { inner: 1, len: n, stride: k, offset: kk }
            } else {
                Role::Broadcast { inner: 1, len: n, stride: 1, offset: kk * n }
            };
            operands.push(Operand { store: &self.store, role: a });
            operands.push(Operand { store: &other.store, role: b });
        }
        let store = fusion::record(&self.gpu, m * n, &operands, |nodes| {
            let mut terms =
                nodes.chunks(2).map(|ab| Node::Binary(Binary::Mul, ab[0].clone().into(), ab[1].clone().into()));
            let first = terms.next().expect("k ≥ 1");
            terms.fold(first, |acc, t| Node::Binary(Binary::Add, acc.into(), t.into()))
        });
        Tensor { gpu: self.gpu.clone(), store, shape: vec![m, n] }
    }

    /// Whether the texture matmul's staged operands fit the adapter's texture limits.
    fn texture_fits(&self, batch: usize, m: usize, k: usize, n: usize) -> bool {
        let l = self.gpu.limits();
        let max = l.max_texture_dimension_2d as usize;
        m.div_ceil(64) * 64 <= max
            && k.div_ceil(4) * 4 <= max
            && n.div_ceil(64) * 16 <= max
            && batch <= l.max_texture_array_layers as usize
    }

    /// Copies this matrix (2-D, or 3-D batched) into a zero-padded texture of `width` texels
    /// and `height` rows per layer, as the logical `[rows, cols]` matrix (transposed if `trans`).
    fn stage_texture(
        &self,
        rows: usize,
        cols: usize,
        trans: bool,
        (width, height): (usize, usize),
        texels: Texels,
    ) -> DeviceTexture {
        let layers = if self.shape.len() == 3 { self.shape[0] } else { 1 };
        let tex = self.gpu.alloc_texture_of(texels, width as u32, height as u32, layers as u32);
        let params = StageParams {
            rows: rows as u32,
            cols: cols as u32,
            row_stride: if trans { 1 } else { cols } as u32,
            col_stride: if trans { rows } else { 1 } as u32,
            batch_stride: (rows * cols) as u32,
            width: width as u32,
            height: height as u32,
            layers: layers as u32,
        };
        let aligned = !trans && cols.is_multiple_of(4);
        let slots = vec![Slot::ReadOnly, Slot::StorageTexture.with_texels(texels)];
        let spec = KernelSpec::with_slots(with_texels("texture_stage", texels), "main", slots)
            .with("ALIGNED", aligned as u8 as f64);
        let k = self.gpu.kernel(&spec);
        let groups = [width.div_ceil(16) as u32, height.div_ceil(16) as u32, layers as u32];
        self.gpu.dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), Binding::Texture(&tex)], groups);
        tex
    }

    /// This (2-D, or 3-D batched) matrix of `[rows, cols]` per layer copied as stored into a
    /// texture (texel (x, row) = columns 4x..4x+3 of that row), when a row is a whole number of
    /// the copy's 256-byte row pitch and the reduction length `k` needs no zero padding.
    /// Texels past the matrix keep stale values: they only meet outputs that are not stored.
    fn copy_to_texture(&self, (rows, cols): (usize, usize), k: usize) -> Option<DeviceTexture> {
        let layers = if self.shape.len() == 3 { self.shape[0] } else { 1 };
        let l = self.gpu.limits();
        let (width, height) = (cols / 4, rows.div_ceil(64) * 64);
        let fits = width <= l.max_texture_dimension_2d as usize && height <= l.max_texture_dimension_2d as usize;
        if !cols.is_multiple_of(64) || !k.is_multiple_of(4) || !fits {
            return None;
        }
        let tex = self.gpu.alloc_texture(width as u32, height as u32, layers as u32);
        let buffer = self.buffer();
        self.gpu.with_encoder(|enc| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer: buffer.raw(),
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: 0,
                        bytes_per_row: Some((cols * 4) as u32),
                        rows_per_image: Some(rows as u32),
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: tex.raw(),
                    mip_level: 0,
                    origin: wgpu::Origin3d::ZERO,
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d { width: width as u32, height: rows as u32, depth_or_array_layers: layers as u32 },
            )
        });
        Some(tex)
    }

    /// The texture matmul, its operands staged as `texels`.
    fn matmul_texture(
        &self,
        other: &Tensor,
        out: &Tensor,
        (batch, m, k, n): (usize, usize, usize, usize),
        (ta, tb): (bool, bool),
        texels: Texels,
    ) {
        // A tall result with a few columns (a first layer's weight gradient, [64, 2]) as Cᵀ =
        // op(B)ᵀ·op(A)ᵀ stored transposed: blocks then span its columns, not its rows, and the
        // kernel skips the workgroup rows past Cᵀ's few rows (8× less work for [64, 2]).
        if n < 8 && m >= 8 && self.shape.len() == 2 && other.shape.len() == 2 {
            return other.matmul_texture_as(self, out, (1, n, k, m), (!tb, !ta), true, texels);
        }
        self.matmul_texture_as(other, out, (batch, m, k, n), (ta, tb), false, texels);
    }

    /// [`Tensor::matmul_texture`] storing C, or with `trans_c` Cᵀ (ldc = m then).
    fn matmul_texture_as(
        &self,
        other: &Tensor,
        out: &Tensor,
        (batch, m, k, n): (usize, usize, usize, usize),
        (ta, tb): (bool, bool),
        trans_c: bool,
        texels: Texels,
    ) {
        // Staged operands are zero-padded to whole 8×8 blocks of C, so no load leaves their
        // textures (blocks wholly past C return before loading).
        let (m_pad, k4, n_pad) = (m.div_ceil(8) * 8, k.div_ceil(4), n.div_ceil(8) * 8);
        // f32 operands whose stored rows fit a texture row exactly are copied as stored (no
        // dispatch; the kernel transposes); the others are staged by a kernel (which also
        // rounds f16 ones).
        let copy = |t: &Tensor, dims| if texels == Texels::F32 { t.copy_to_texture(dims, k) } else { None };
        let (ta_tex, a_stored) = match copy(self, if ta { (k, m) } else { (m, k) }) {
            Some(t) => (t, ta),
            None => (self.stage_texture(m, k, ta, (k4, m_pad), texels), false),
        };
        let (tb_tex, b_stored) = match copy(other, if tb { (n, k) } else { (k, n) }) {
            Some(t) => (t, tb),
            None => (other.stage_texture(k, n, tb, (n_pad / 4, k4 * 4), texels), false),
        };
        let params = TexMatmulParams {
            m: m as u32,
            n: n as u32,
            k4: k4 as u32,
            ldc: if trans_c { m } else { n } as u32,
            batch_c: (m * n) as u32,
            a_layer_step: (self.shape.len() == 3) as u32,
            b_layer_step: (other.shape.len() == 3) as u32,
            pad: 0,
        };
        let read = Slot::Texture.with_texels(texels);
        let slots = vec![read, read, Slot::ReadWrite];
        let vec_out = n.is_multiple_of(4) && !trans_c;
        let spec = KernelSpec::with_slots(with_texels("matmul_texture", texels), "main", slots)
            .with("TRANS_A", a_stored as u8 as f64)
            .with("TRANS_B", b_stored as u8 as f64)
            .with("VEC_OUT", vec_out as u8 as f64)
            .with("TRANS_C", trans_c as u8 as f64);
        let kern = self.gpu.kernel(&spec);
        let groups = [n.div_ceil(64) as u32, m.div_ceil(64) as u32, batch as u32];
        self.gpu.dispatch(
            &kern,
            bytemuck::bytes_of(&params),
            &[Binding::Texture(&ta_tex), Binding::Texture(&tb_tex), out.binding()],
            groups,
        );
    }
}

/// op(A)·op(B): the elementwise form for tiny reductions, the fused row kernel for skinny
/// results, else the adapter's matmul kernel.
pub(super) fn try_matmul(a: &Tensor, other: &Tensor, ta: bool, tb: bool) -> Result<Tensor, ShapeError> {
    // With f16 operands every matmul takes the f16 kernels: the fused forms read f32.
    if a.gpu.precision() == Precision::F16 {
        return a.matmul_f16_using(other, ta, tb, MatmulKernel::default_for(&a.gpu));
    }
    let (_, m, k, n) = ops::matmul_shape(&a.shape, &other.shape, ta, tb)?;
    let plain_2d = a.shape.len() == 2 && other.shape.len() == 2 && fusion::enabled(&a.gpu);
    if plain_2d && (1..=MAX_ELEMENTWISE_K).contains(&k) {
        return Ok(a.matmul_elementwise(other, (m, k, n), ta, tb));
    }
    // A skinny result (the 2-D models' last layer): rows of A dotted with B's columns, A's
    // pending expression computed on the way.
    if plain_2d && !ta && n <= fusion::ROW_MATMUL_MAX_N && k.is_multiple_of(4) && k / 4 <= LOOP_BUDGET {
        let out = fusion::matmul_rows(&a.gpu, &a.store, other.buffer(), (m, k, n), tb);
        return Ok(Tensor { gpu: a.gpu.clone(), store: Arc::new(Storage::realized(out, m * n)), shape: vec![m, n] });
    }
    a.matmul_using(other, ta, tb, MatmulKernel::default_for(&a.gpu))
}

/// Bytes of `n` f16s, whole 32-bit words.
fn half_bytes(n: usize) -> u64 {
    (n.div_ceil(2) * 4).max(4) as u64
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    let plain =
        |shader| super::param_layout!(shader, MatmulParams { m, n, k, lda, ldb, ldc, batch_a, batch_b, batch_c });
    vec![
        plain("matmul"),
        plain("matmul_vec4"),
        plain("matmul_tiled"),
        plain("matmul_tiled_vec4"),
        plain("matmul_tiled_large"),
        plain("matmul_tiled_large_vec4"),
        plain("matmul_f16"),
        super::ParamLayout::words("to_half", 4, &[0]),
        super::ParamLayout::words("round_half", 4, &[0]),
        super::param_layout!(
            "texture_stage",
            StageParams { rows, cols, row_stride, col_stride, batch_stride, width, height, layers }
        ),
        super::param_layout!("matmul_texture", TexMatmulParams { m, n, k4, ldc, batch_c, a_layer_step, b_layer_step }),
    ]
}

#[cfg(test)]
mod tests {
    use super::MatmulKernel;

    #[test]
    fn vec4_loads_need_each_stored_row_a_multiple_of_4() {
        assert!(MatmulKernel::vec4_loads_fit(130, 44, 260, false, false));
        assert!(!MatmulKernel::vec4_loads_fit(132, 45, 260, false, false));
        assert!(MatmulKernel::vec4_loads_fit(132, 45, 260, true, false));
        assert!(!MatmulKernel::vec4_loads_fit(130, 45, 260, true, false));
        assert!(!MatmulKernel::vec4_loads_fit(132, 44, 258, false, false));
        assert!(MatmulKernel::vec4_loads_fit(132, 44, 258, false, true));
        assert!(!MatmulKernel::vec4_loads_fit(132, 45, 260, true, true));
    }
}
