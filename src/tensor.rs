//! The GPU tensor: contiguous f32 in a pooled buffer, a shape, and the kernels behind each op.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::fusion::{self, Child, Node, Operand, Role, Storage};
use crate::gpu::kernels::{grid_1d, LOOP_BUDGET};
use crate::gpu::{Binding, DeviceBuffer, DeviceTexture, Gpu, KernelSpec, Slot};
use crate::ops::{
    self, broadcast_shape, broadcast_strides, numel, pad4, pad4_strides, strides, ActFn, Activation, AdamStep, Binary,
    Dist, Reduce, ShapeError, TensorOps, Unary,
};
use crate::reference::{reduced_shape, split_axis};

#[derive(Clone)]
pub struct Tensor {
    gpu: Gpu,
    store: Arc<Storage>,
    shape: Vec<usize>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

fn bytes_of(n: usize) -> u64 {
    (n * 4) as u64
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct IndexedParams {
    n: u32,
    offset_a: u32,
    offset_b: u32,
    pad: u32,
    shape: [u32; 4],
    strides_a: [u32; 4],
    strides_b: [u32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ReduceParams {
    outer: u32,
    n: u32,
    inner: u32,
    seg_len: u32,
    segs: u32,
    scale: f32,
    pad: [u32; 2],
}

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

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RandomParams {
    n: u32,
    pad: u32,
    seed: [u32; 2],
    stream: [u32; 2],
    lo: f32,
    hi: f32,
}

/// Matmuls with at most this many reduction terms run as elementwise expressions (each term
/// reads two broadcast operands: 2k inputs stay within `fusion::MAX_INPUTS`).
const MAX_ELEMENTWISE_K: usize = 3;

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

/// Loop iterations one invocation of the fused power-iteration kernel runs per power iteration
/// at workgroup size `wg` (its row and column loops and the two tree reductions).
fn power_iteration_loops(rows: usize, cols: usize, wg: usize) -> usize {
    rows.div_ceil(wg) * (cols + 2) + cols.div_ceil(wg) * (rows + 2) + 2 * (wg.trailing_zeros() as usize + 1) + 1
}

/// The power-iteration kernel's workgroup size: on CPU adapters every barrier switches between
/// all of a workgroup's invocations, so small matrices run on few.
fn power_iteration_workgroup(gpu: &Gpu, rows: usize, cols: usize) -> usize {
    if gpu.is_cpu() && power_iteration_loops(rows, cols, 16) <= 16_384 {
        16
    } else {
        256
    }
}

impl MatmulKernel {
    /// The adapter's default; `RESFLOW_MATMUL=scalar|vec4|tiled|texture` overrides it.
    pub fn default_for(gpu: &Gpu) -> MatmulKernel {
        match std::env::var("RESFLOW_MATMUL").as_deref() {
            Ok("tiled") => MatmulKernel::Tiled,
            Ok("scalar") => MatmulKernel::Scalar,
            Ok("vec4") => MatmulKernel::Vec4,
            Ok("texture") => MatmulKernel::Texture,
            _ if gpu.is_cpu() => MatmulKernel::Texture,
            _ => MatmulKernel::Tiled,
        }
    }

    /// Whether `Vec4` can run this problem: its vec4 loads need these sizes to be multiples of 4.
    pub fn vec4_fits(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> bool {
        k.is_multiple_of(4) && (!ta || m.is_multiple_of(4)) && (tb || n.is_multiple_of(4))
    }
}

impl Tensor {
    /// Uploads `data` with `shape`.
    pub fn from_slice(gpu: &Gpu, data: &[f32], shape: &[usize]) -> Result<Tensor, ShapeError> {
        if data.len() != numel(shape) {
            return Err(ShapeError(format!("{} values do not fill shape {shape:?}", data.len())));
        }
        let buf = gpu.upload(bytemuck::cast_slice(data));
        Ok(Tensor { gpu: gpu.clone(), store: Arc::new(Storage::realized(buf, data.len())), shape: shape.to_vec() })
    }

    /// An uninitialised tensor (pooled memory; every kernel writing into it covers all of it).
    pub fn empty(gpu: &Gpu, shape: &[usize]) -> Tensor {
        let buf = gpu.alloc(bytes_of(numel(shape)).max(4));
        Tensor { gpu: gpu.clone(), store: Arc::new(Storage::realized(buf, numel(shape))), shape: shape.to_vec() }
    }

    /// A tensor of `value`s (lazy: it fuses into the elementwise ops that consume it).
    pub fn full(gpu: &Gpu, shape: &[usize], value: f32) -> Tensor {
        Tensor { gpu: gpu.clone(), store: fusion::constant(numel(shape), value), shape: shape.to_vec() }
    }

    pub fn random(gpu: &Gpu, shape: &[usize], dist: Dist, seed: u64, stream: u64) -> Tensor {
        let out = Tensor::empty(gpu, shape);
        let n = out.numel() as u32;
        let (mode, lo, hi) = match dist {
            Dist::Uniform { lo, hi } => (0, lo, hi),
            Dist::Normal { mean, std } => (1, mean, std),
            Dist::Rademacher => (2, 0.0, 0.0),
        };
        let k = gpu.kernel(&KernelSpec::new("random", "main", 0, 1).with("MODE", mode as f64));
        let params = RandomParams {
            n,
            pad: 0,
            seed: [seed as u32, (seed >> 32) as u32],
            stream: [stream as u32, (stream >> 32) as u32],
            lo,
            hi,
        };
        gpu.dispatch(&k, bytemuck::bytes_of(&params), &[out.binding()], grid_1d(n.div_ceil(4).div_ceil(256)));
        out
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The f32 values (submits pending work and waits).
    pub fn to_vec(&self) -> Vec<f32> {
        let bytes = self.gpu.read(self.buffer(), bytes_of(self.numel()));
        bytemuck::cast_slice(&bytes).to_vec()
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item() of a tensor of shape {:?}", self.shape);
        self.to_vec()[0]
    }

    /// The device buffer, running this tensor's pending elementwise kernel first if it is lazy.
    pub fn buffer(&self) -> &DeviceBuffer {
        self.store.buffer(&self.gpu)
    }

    pub fn binding(&self) -> Binding<'_> {
        Binding::Buffer { buffer: self.buffer(), bytes: bytes_of(self.numel()) }
    }

    /// Whether this tensor is still a pending (lazy) elementwise expression.
    pub fn is_lazy(&self) -> bool {
        !self.store.is_realized()
    }

    /// A copy made by an elementwise kernel (not a buffer copy): the bench's probe of the
    /// elementwise path's bandwidth.
    pub fn copy_by_kernel(&self) -> Tensor {
        self.realize();
        self.fused(&self.shape, &[self], |mut k| k.remove(0))
    }

    /// A lazy elementwise op of result `shape` over `operands`, each of the result's shape or
    /// broadcast in a way `fusion::Role::of` accepts.
    fn fused(&self, shape: &[usize], operands: &[&Tensor], make: impl Fn(Vec<Node>) -> Node) -> Tensor {
        let ops: Vec<Operand<'_>> = operands
            .iter()
            .map(|t| {
                let role =
                    Role::of(&t.shape, shape).unwrap_or_else(|| panic!("{:?} does not fuse into {shape:?}", t.shape));
                Operand { store: &t.store, role }
            })
            .collect();
        self.fused_operands(shape, &ops, make)
    }

    /// A lazy result of `shape` over operands whose roles are already chosen.
    fn fused_operands(&self, shape: &[usize], ops: &[Operand<'_>], make: impl Fn(Vec<Node>) -> Node) -> Tensor {
        Tensor {
            gpu: self.gpu.clone(),
            store: fusion::record(&self.gpu, numel(shape), ops, make),
            shape: shape.to_vec(),
        }
    }

    /// Matmul with an explicit kernel choice (tests and benches compare both).
    pub fn matmul_using(&self, other: &Tensor, ta: bool, tb: bool, kernel: MatmulKernel) -> Result<Tensor, ShapeError> {
        let (batch, m, k, n) = ops::matmul_shape(&self.shape, &other.shape, ta, tb)?;
        let batched = self.shape.len() == 3 || other.shape.len() == 3;
        let out = Tensor::empty(&self.gpu, &if batched { vec![batch, m, n] } else { vec![m, n] });
        let params = MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            pad0: 0,
            lda: if ta { m } else { k } as u32,
            ldb: if tb { k } else { n } as u32,
            ldc: n as u32,
            pad1: 0,
            batch_a: if self.shape.len() == 3 { m * k } else { 0 } as u32,
            batch_b: if other.shape.len() == 3 { k * n } else { 0 } as u32,
            batch_c: (m * n) as u32,
            pad2: 0,
        };
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
            self.matmul_texture(other, &out, (batch, m, k, n), ta, tb);
            return Ok(out);
        }
        // Output tile per workgroup: 64×64 for Scalar/Tiled, 8×8 invocations × 16×16 for Vec4.
        let (shader, tile) = match kernel {
            MatmulKernel::Scalar => ("matmul", 64),
            MatmulKernel::Vec4 => ("matmul_vec4", 128),
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
    fn stage_texture(&self, rows: usize, cols: usize, trans: bool, width: usize, height: usize) -> DeviceTexture {
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
        let layers = if self.shape.len() == 3 { self.shape[0] } else { 1 };
        let tex = self.gpu.alloc_texture(width as u32, height as u32, layers as u32);
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
        let spec = KernelSpec::with_slots("texture_stage", "main", vec![Slot::ReadOnly, Slot::StorageTexture])
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

    fn matmul_texture(
        &self,
        other: &Tensor,
        out: &Tensor,
        (batch, m, k, n): (usize, usize, usize, usize),
        ta: bool,
        tb: bool,
    ) {
        // A tall result with a few columns (a first layer's weight gradient, [64, 2]) as Cᵀ =
        // op(B)ᵀ·op(A)ᵀ stored transposed: blocks then span its columns, not its rows, and the
        // kernel skips the workgroup rows past Cᵀ's few rows (8× less work for [64, 2]).
        if n < 8 && m >= 8 && self.shape.len() == 2 && other.shape.len() == 2 {
            return other.matmul_texture_as(self, out, (1, n, k, m), (!tb, !ta), true);
        }
        self.matmul_texture_as(other, out, (batch, m, k, n), (ta, tb), false);
    }

    /// [`Tensor::matmul_texture`] storing C, or with `trans_c` Cᵀ (ldc = m then).
    fn matmul_texture_as(
        &self,
        other: &Tensor,
        out: &Tensor,
        (batch, m, k, n): (usize, usize, usize, usize),
        (ta, tb): (bool, bool),
        trans_c: bool,
    ) {
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
        // Staged operands are zero-padded to whole 8×8 blocks of C, so no load leaves their
        // textures (blocks wholly past C return before loading).
        let (m_pad, k4, n_pad) = (m.div_ceil(8) * 8, k.div_ceil(4), n.div_ceil(8) * 8);
        // Operands whose stored rows fit a texture row exactly are copied as stored (no
        // dispatch; the kernel transposes); the others are staged by a kernel.
        let (ta_tex, a_stored) = match self.copy_to_texture(if ta { (k, m) } else { (m, k) }, k) {
            Some(t) => (t, ta),
            None => (self.stage_texture(m, k, ta, k4, m_pad), false),
        };
        let (tb_tex, b_stored) = match other.copy_to_texture(if tb { (n, k) } else { (k, n) }, k) {
            Some(t) => (t, tb),
            None => (other.stage_texture(k, n, tb, n_pad / 4, k4 * 4), false),
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
        let slots = vec![Slot::Texture, Slot::Texture, Slot::ReadWrite];
        let vec_out = n.is_multiple_of(4) && !trans_c;
        let spec = KernelSpec::with_slots("matmul_texture", "main", slots)
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

    /// A deep copy into a fresh buffer.
    pub fn copy(&self) -> Tensor {
        let out = Tensor::empty(&self.gpu, &self.shape);
        self.gpu.copy(self.buffer(), out.buffer(), bytes_of(self.numel()));
        out
    }

    /// One strided copy (see `shaders/strided_copy.wgsl`) of a 4-D box from `self` into `dst`.
    fn strided_copy_into(
        &self,
        dst: &Tensor,
        box_shape: [usize; 4],
        src: (usize, [u32; 4]),
        dst_at: (usize, [u32; 4]),
    ) {
        let n = box_shape.iter().product::<usize>() as u32;
        let params = IndexedParams {
            n,
            offset_a: src.0 as u32,
            offset_b: dst_at.0 as u32,
            pad: 0,
            shape: box_shape.map(|v| v as u32),
            strides_a: src.1,
            strides_b: dst_at.1,
        };
        let k = self.gpu.kernel(&KernelSpec::new("strided_copy", "main", 1, 1));
        self.gpu.dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), dst.binding()], grid_1d(n.div_ceil(256)));
    }

    /// Sum or mean over the middle axis of `[outer, n, inner]`: one fused kernel computing
    /// this tensor's pending expression while it sums, then a sum of its partial sums; other
    /// reductions and shapes whose vec4s straddle outputs take the reduce kernel.
    fn reduce_axis(&self, op: Reduce, outer: usize, n: usize, inner: usize) -> Tensor {
        if matches!(op, Reduce::Sum | Reduce::Mean) && n > 1 && self.gpu.fusion_limit() > 1 {
            if let Some((partial, chunks)) = fusion::sum(&self.gpu, &self.store, (outer, n, inner)) {
                let shape = [outer * chunks * inner];
                let partial = Tensor {
                    gpu: self.gpu.clone(),
                    store: Arc::new(Storage::realized(partial, shape[0])),
                    shape: shape.to_vec(),
                };
                let total =
                    if chunks > 1 { partial.reduce_unfused(Reduce::Sum, outer, chunks, inner) } else { partial };
                return if op == Reduce::Mean { total.scale(1.0 / n as f32) } else { total };
            }
        }
        self.reduce_unfused(op, outer, n, inner)
    }

    fn reduce_unfused(&self, op: Reduce, outer: usize, n: usize, inner: usize) -> Tensor {
        let outputs = outer * inner;
        let (code, scale) = match op {
            Reduce::Sum => (0, 1.0),
            Reduce::Mean => (0, 1.0 / n as f32),
            Reduce::Max => (1, 1.0),
            Reduce::LogSumExp => (2, 1.0),
        };
        // Few outputs over a long axis: split the axis into segments reduced by whole
        // workgroups, then reduce the partial results (all three ops compose exactly). Segments
        // also keep each invocation's loop within LOOP_BUDGET.
        let per_group = outputs < 2048 && n > 256;
        let segs = if per_group {
            n.div_ceil(2048).min(64usize.div_ceil(outputs)).max(n.div_ceil(256 * (LOOP_BUDGET / 2))).max(1)
        } else {
            n.div_ceil(LOOP_BUDGET / 2).max(1)
        };
        let seg_len = n.div_ceil(segs);
        let out = Tensor::empty(&self.gpu, &[outer * segs * inner]);
        let first_scale = if segs > 1 { 1.0 } else { scale };
        let params = ReduceParams {
            outer: outer as u32,
            n: n as u32,
            inner: inner as u32,
            seg_len: seg_len as u32,
            segs: segs as u32,
            scale: first_scale,
            pad: [0; 2],
        };
        let entry = if per_group { "per_group" } else { "per_thread" };
        let k = self.gpu.kernel(&KernelSpec::new("reduce", entry, 1, 1).with("OP", code as f64));
        let total = (outer * segs * inner) as u32;
        let groups = if per_group { grid_1d(total) } else { grid_1d(total.div_ceil(256)) };
        self.gpu.dispatch(&k, bytemuck::bytes_of(&params), &[self.binding(), out.binding()], groups);
        if segs == 1 {
            return out;
        }
        let second = match op {
            Reduce::Mean => Reduce::Sum,
            other => other,
        };
        let merged = out.reduce_unfused(second, outer, segs, inner);
        if op == Reduce::Mean {
            merged.scale(scale)
        } else {
            merged
        }
    }
}

impl TensorOps for Tensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn full_like(&self, shape: &[usize], value: f32) -> Self {
        Tensor::full(&self.gpu, shape, value)
    }
    fn random_like(&self, shape: &[usize], dist: Dist, seed: u64, stream: u64) -> Self {
        Tensor::random(&self.gpu, shape, dist, seed, stream)
    }
    fn tensor_like(&self, data: &[f32], shape: &[usize]) -> Self {
        Tensor::from_slice(&self.gpu, data, shape).unwrap_or_else(|e| panic!("{e}"))
    }
    fn to_host(&self) -> Vec<f64> {
        self.to_vec().into_iter().map(f64::from).collect()
    }
    fn realize(&self) -> &Self {
        self.buffer();
        self
    }

    fn unary(&self, op: Unary) -> Self {
        self.fused(&self.shape, &[self], |mut k| Node::Unary(op, k.remove(0).into()))
    }
    fn unary_grad(op: Unary, x: &Self, y: &Self, gy: &Self) -> Self {
        x.fused(&x.shape, &[x, y, gy], |k| {
            let [x, y, gy]: [Node; 3] = k.try_into().expect("three operands");
            Node::UnaryGrad(op, [x.into(), y.into(), gy.into()])
        })
    }
    fn try_binary(&self, op: Binary, other: &Self) -> Result<Self, ShapeError> {
        let shape = broadcast_shape(&self.shape, &other.shape)?;
        if Role::of(&self.shape, &shape).is_some() && Role::of(&other.shape, &shape).is_some() {
            return Ok(self.fused(&shape, &[self, other], |mut k| {
                let b = k.pop().expect("two operands");
                Node::Binary(op, k.pop().expect("two operands").into(), b.into())
            }));
        }
        let out = Tensor::empty(&self.gpu, &shape);
        let params = IndexedParams {
            n: numel(&shape) as u32,
            offset_a: 0,
            offset_b: 0,
            pad: 0,
            shape: pad4(&shape, "binary op").map(|v| v as u32),
            strides_a: pad4_strides(&broadcast_strides(&self.shape, &shape)),
            strides_b: pad4_strides(&broadcast_strides(&other.shape, &shape)),
        };
        let k = self.gpu.kernel(&KernelSpec::new("broadcast", "main", 2, 1).with("OP", op.code() as f64));
        self.gpu.dispatch(
            &k,
            bytemuck::bytes_of(&params),
            &[self.binding(), other.binding(), out.binding()],
            grid_1d(params.n.div_ceil(256)),
        );
        Ok(out)
    }
    fn reduce(&self, op: Reduce, axis: Option<usize>, keepdim: bool) -> Self {
        match axis {
            None => {
                let r = self.reduce_axis(op, 1, self.numel(), 1);
                let shape = if keepdim { vec![1; self.shape.len()] } else { vec![] };
                r.reshape(&shape)
            }
            Some(axis) => {
                let (outer, n, inner) = split_axis(&self.shape, axis);
                self.reduce_axis(op, outer, n, inner).reshape(&reduced_shape(&self.shape, axis, keepdim))
            }
        }
    }
    fn try_matmul(&self, other: &Self, ta: bool, tb: bool) -> Result<Self, ShapeError> {
        let (_, m, k, n) = ops::matmul_shape(&self.shape, &other.shape, ta, tb)?;
        let plain_2d = self.shape.len() == 2 && other.shape.len() == 2 && self.gpu.fusion_limit() > 1;
        if plain_2d && (1..=MAX_ELEMENTWISE_K).contains(&k) {
            return Ok(self.matmul_elementwise(other, (m, k, n), ta, tb));
        }
        // A skinny result (the 2-D models' last layer): rows of A dotted with B's columns, A's
        // pending expression computed on the way.
        if plain_2d && !ta && n <= fusion::ROW_MATMUL_MAX_N && k.is_multiple_of(4) && k / 4 <= LOOP_BUDGET {
            let out = fusion::matmul_rows(&self.gpu, &self.store, other.buffer(), (m, k, n), tb);
            return Ok(Tensor {
                gpu: self.gpu.clone(),
                store: Arc::new(Storage::realized(out, m * n)),
                shape: vec![m, n],
            });
        }
        self.matmul_using(other, ta, tb, MatmulKernel::default_for(&self.gpu))
    }
    fn try_reshape(&self, shape: &[usize]) -> Result<Self, ShapeError> {
        if numel(shape) != self.numel() {
            return Err(ShapeError(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        Ok(Tensor { gpu: self.gpu.clone(), store: self.store.clone(), shape: shape.to_vec() })
    }
    fn permute(&self, perm: &[usize]) -> Self {
        assert_eq!(perm.len(), self.shape.len(), "permute {perm:?} of shape {:?}", self.shape);
        let out_shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let src = strides(&self.shape);
        let src_strides: Vec<usize> = perm.iter().map(|&p| src[p]).collect();
        let out = Tensor::empty(&self.gpu, &out_shape);
        let box_shape = pad4(&out_shape, "permute");
        self.strided_copy_into(
            &out,
            box_shape,
            (0, pad4_strides(&src_strides)),
            (0, pad4_strides(&strides(&out_shape))),
        );
        out
    }
    fn slice(&self, axis: usize, start: usize, len: usize) -> Self {
        let (outer, n, inner) = split_axis(&self.shape, axis);
        assert!(start + len <= n, "slice {start}..{} out of range for axis {axis} of {:?}", start + len, self.shape);
        let mut shape = self.shape.clone();
        shape[axis] = len;
        // A slice that is one index map away from its input (a contiguous range, or one column
        // of a matrix) is a lazy read, so its consumer fuses it; other slices copy.
        let view = if outer == 1 {
            Some(Role::Broadcast { inner: 1, len: len * inner, stride: 1, offset: start * inner })
        } else if len * inner == 1 {
            Some(Role::Broadcast { inner: 1, len: outer, stride: n, offset: start })
        } else {
            None
        };
        if let Some(role) = view {
            return self.fused_operands(&shape, &[Operand { store: &self.store, role }], |mut k| k.remove(0));
        }
        let out = Tensor::empty(&self.gpu, &shape);
        self.strided_copy_into(
            &out,
            [1, outer, len, inner],
            (start * inner, [0, (n * inner) as u32, inner as u32, 1]),
            (0, [0, (len * inner) as u32, inner as u32, 1]),
        );
        out
    }
    fn unslice(&self, full: &[usize], axis: usize, start: usize) -> Self {
        let (outer, n, inner) = split_axis(full, axis);
        let len = self.shape[axis];
        // Where one index map reads the slice back (one column of a matrix; a range that is
        // a whole multiple of its length from the start, e.g. a half), the result is a lazy
        // `Within` expression, which fuses into the gradient sums; otherwise a copy into zeros.
        let read = if len * inner == 1 {
            Some(Role::Broadcast { inner: n, len: outer, stride: 1, offset: 0 })
        } else if outer == 1 && start.is_multiple_of(len) {
            Some(Role::Broadcast { inner: 1, len: len * inner, stride: 1, offset: 0 })
        } else {
            None
        };
        if let Some(role) = read {
            let (lo, hi) = (start, start + len);
            return self.fused_operands(full, &[Operand { store: &self.store, role }], |mut k| Node::Within {
                value: k.remove(0).into(),
                inner,
                len: n,
                lo,
                hi,
            });
        }
        let out = Tensor::full(&self.gpu, full, 0.0);
        self.strided_copy_into(
            &out,
            [1, outer, len, inner],
            (0, [0, (len * inner) as u32, inner as u32, 1]),
            (start * inner, [0, (n * inner) as u32, inner as u32, 1]),
        );
        out
    }
    fn concat(parts: &[&Self], axis: usize) -> Self {
        let mut shape = parts[0].shape.clone();
        shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
        let (outer, n, inner) = split_axis(&shape, axis);
        let out = Tensor::empty(&parts[0].gpu, &shape);
        let mut start = 0;
        for p in parts {
            let len = p.shape[axis];
            p.strided_copy_into(
                &out,
                [1, outer, len, inner],
                (0, [0, (len * inner) as u32, inner as u32, 1]),
                (start * inner, [0, (n * inner) as u32, inner as u32, 1]),
            );
            start += len;
        }
        out
    }
    fn broadcast_to(&self, shape: &[usize]) -> Self {
        broadcast_shape(&self.shape, shape).expect("broadcast_to");
        // A broadcast that fused kernels can read directly is a lazy read, not a copy.
        if Role::of(&self.shape, shape).is_some() {
            return self.fused(shape, &[self], |mut k| k.remove(0));
        }
        let out = Tensor::empty(&self.gpu, shape);
        self.strided_copy_into(
            &out,
            pad4(shape, "broadcast_to"),
            (0, pad4_strides(&broadcast_strides(&self.shape, shape))),
            (0, pad4_strides(&strides(shape))),
        );
        out
    }
    fn try_conv2d(&self, w: &Self) -> Result<Self, ShapeError> {
        self.conv2d_gpu(w)
    }
    fn conv_transpose2d(&self, w: &Self) -> Self {
        self.conv_transpose2d_gpu(w)
    }
    fn conv2d_grad_weight(&self, gy: &Self, k: usize) -> Self {
        self.conv2d_grad_weight_gpu(gy, k)
    }
    fn squeeze2(&self) -> Self {
        self.squeeze_gpu(false)
    }
    fn unsqueeze2(&self) -> Self {
        self.squeeze_gpu(true)
    }
    fn activation(&self, act: Activation, f: ActFn, beta: Option<&Self>, gy: Option<&Self>) -> Self {
        let mut operands = vec![self];
        operands.extend(beta);
        operands.extend(gy);
        let (has_beta, has_gy) = (beta.is_some(), gy.is_some());
        self.fused(&self.shape, &operands, move |k| {
            let mut k = k.into_iter().map(Child::from);
            let x = k.next().expect("x");
            let beta = if has_beta { k.next() } else { None };
            let gy = if has_gy { k.next() } else { None };
            Node::Activation { act, f, x, beta, gy }
        })
    }
    fn adam_step(&self, grad: &Self, m: &Self, v: &Self, clip: &Self, h: AdamStep) -> (Self, Self, Self) {
        #[repr(C)]
        #[derive(Clone, Copy, Pod, Zeroable)]
        struct AdamParams {
            n: u32,
            lr: f32,
            beta1: f32,
            beta2: f32,
            eps: f32,
            pad: [u32; 3],
        }
        let (p2, m2, v2) = (
            Tensor::empty(&self.gpu, &self.shape),
            Tensor::empty(&self.gpu, &self.shape),
            Tensor::empty(&self.gpu, &self.shape),
        );
        let n = self.numel() as u32;
        let params = AdamParams { n, lr: h.lr, beta1: h.beta1, beta2: h.beta2, eps: h.eps, pad: [0; 3] };
        let k = self.gpu.kernel(&KernelSpec::new("adam", "main", 5, 3));
        let bindings = [
            self.binding(),
            grad.binding(),
            m.binding(),
            v.binding(),
            clip.binding(),
            p2.binding(),
            m2.binding(),
            v2.binding(),
        ];
        self.gpu.dispatch(&k, bytemuck::bytes_of(&params), &bindings, grid_1d(n.div_ceil(1024)));
        (p2, m2, v2)
    }
    fn lerp(&self, other: &Self, t: f32) -> Self {
        assert_eq!(self.shape, other.shape, "lerp of {:?} and {:?}", self.shape, other.shape);
        self.fused(&self.shape, &[self, other], |mut k| {
            let v = k.pop().expect("two operands");
            Node::Lerp(t, k.pop().expect("two operands").into(), v.into())
        })
    }
    fn matrix_power_iteration(w: &Self, u: &Self, v: &Self, iters: usize) -> (Self, Self) {
        let (rows, cols) = (w.shape[0], w.shape[1]);
        // Rows of whole vec4s are read four values per load; the loop counts are in loads.
        let vec4 = cols.is_multiple_of(4);
        let (shader, width) = if vec4 { ("power_iteration_vec4", cols / 4) } else { ("power_iteration", cols) };
        let wg = power_iteration_workgroup(&w.gpu, rows, width);
        // Iterations per dispatch, within the per-invocation loop budget (LOOP_BUDGET); a
        // matrix too long for even one falls back to the op-by-op iteration.
        let per_dispatch = LOOP_BUDGET / power_iteration_loops(rows, width, wg);
        if per_dispatch == 0 {
            return ops::power_iteration_by_ops(w, u, v, iters);
        }
        // The kernel updates in place: work on copies, the inputs may be shared.
        let (u2, v2) = (u.copy(), v.copy());
        let k = w.gpu.kernel(&KernelSpec::new(shader, "main", 1, 2).with("WG", wg as f64));
        let mut done = 0;
        while done < iters {
            let n = per_dispatch.min(iters - done);
            let params = [rows as u32, width as u32, n as u32, 0];
            w.gpu.dispatch(&k, bytemuck::cast_slice(&params), &[w.binding(), u2.binding(), v2.binding()], [1, 1, 1]);
            done += n;
        }
        (u2, v2)
    }
}
