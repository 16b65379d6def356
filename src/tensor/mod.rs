//! The GPU tensor: contiguous f32 in a pooled buffer (or a pending elementwise expression), a
//! shape, and the kernels behind each op. One file per op family: [`elementwise`], [`reduce`],
//! [`matmul`], [`layout`], [`random`], [`conv`], [`power_iteration`], [`adam`]; each holds its
//! host code and names its shaders (`shaders/<family>/`). Their VJPs are in `tape`, their f64
//! references in `reference`, and this file's [`TensorOps`] impl is the table joining them.

mod adam;
mod conv;
mod conv_tiled;
mod elementwise;
mod layout;
mod matmul;
mod power_iteration;
mod random;
mod reduce;
mod tile_cache;
pub mod tile_config;

pub use conv::ConvKernel;
pub use matmul::MatmulKernel;
pub use tile_config::{TileChoice, TileConfig, TileSource, Tiles};

/// The byte layout of a kernel's uniform parameter struct as Rust lays it out: its size and
/// the offsets of its fields (padding left out), to be checked against the WGSL `Params`
/// struct of `shader` (the shaders test reflects that with naga).
#[derive(Debug, Clone)]
pub struct ParamLayout {
    pub shader: &'static str,
    pub size: usize,
    pub fields: Vec<(&'static str, usize)>,
}

/// [`ParamLayout`] of `$ty` for `$shader`, listing the fields that shader reads.
macro_rules! param_layout {
    ($shader:expr, $ty:ty { $($field:ident),* $(,)? }) => {
        crate::tensor::ParamLayout {
            shader: $shader,
            size: std::mem::size_of::<$ty>(),
            fields: vec![$((stringify!($field), std::mem::offset_of!($ty, $field))),*],
        }
    };
}
use param_layout;

impl ParamLayout {
    /// The layout of parameters passed as an array of `words` u32s of which those at `used`
    /// carry values.
    pub(crate) fn words(shader: &'static str, words: usize, used: &[usize]) -> ParamLayout {
        const NAMES: [&str; 8] = ["word 0", "word 1", "word 2", "word 3", "word 4", "word 5", "word 6", "word 7"];
        ParamLayout { shader, size: 4 * words, fields: used.iter().map(|&i| (NAMES[i], 4 * i)).collect() }
    }
}

/// Every parameter struct shared by Rust and WGSL, with the shader that reads it.
pub(crate) fn param_layouts() -> Vec<ParamLayout> {
    let mut all = Vec::new();
    all.extend(elementwise::param_layouts());
    all.extend(layout::param_layouts());
    all.extend(reduce::param_layouts());
    all.extend(matmul::param_layouts());
    all.extend(random::param_layouts());
    all.extend(conv::param_layouts());
    all.extend(conv_tiled::param_layouts());
    all.extend(power_iteration::param_layouts());
    all.extend(adam::param_layouts());
    all
}

use std::sync::Arc;

use crate::fusion::{self, Node, Operand, Role, Storage};
use crate::gpu::{Binding, DeviceBuffer, Gpu};
use crate::ops::{numel, ActFn, Activation, AdamStep, Binary, Dist, Reduce, ShapeError, TensorOps, Unary};

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

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    /// The f32 values (submits pending work and waits).
    pub fn to_vec(&self) -> Vec<f32> {
        let bytes = self.gpu.read(self.buffer(), bytes_of(self.numel()));
        bytemuck::cast_slice(&bytes).to_vec()
    }

    /// [`Tensor::to_vec`] as a future (see [`TensorOps::to_host_async`]).
    pub async fn to_vec_async(&self) -> Vec<f32> {
        let bytes = self.gpu.read_async(self.buffer(), bytes_of(self.numel())).await;
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
    pub(crate) fn copy_by_kernel(&self) -> Tensor {
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

    /// A deep copy into a fresh buffer.
    pub fn copy(&self) -> Tensor {
        let out = Tensor::empty(&self.gpu, &self.shape);
        self.gpu.copy(self.buffer(), out.buffer(), bytes_of(self.numel()));
        out
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
    fn to_host_async(&self) -> crate::ops::HostFuture<'_> {
        Box::pin(async move { self.to_vec_async().await.into_iter().map(f64::from).collect() })
    }
    fn half_operands(&self) -> bool {
        self.gpu.precision() == crate::options::Precision::F16
    }
    fn round_to_f16(&self) -> Self {
        self.round_to_f16_gpu()
    }
    fn at_full_precision<R>(&self, f: impl FnOnce() -> R) -> R {
        use crate::options::Precision;
        let before = self.gpu.precision();
        if before == Precision::F32 {
            return f();
        }
        self.gpu.set_precision(Precision::F32).expect("f32 needs no feature");
        let result = f();
        self.gpu.set_precision(before).expect("the precision in use before is allowed");
        result
    }
    fn realize(&self) -> &Self {
        self.buffer();
        self
    }
    fn unary(&self, op: Unary) -> Self {
        elementwise::unary(self, op)
    }
    fn unary_grad(op: Unary, x: &Self, y: &Self, gy: &Self) -> Self {
        elementwise::unary_grad(op, x, y, gy)
    }
    fn try_binary(&self, op: Binary, other: &Self) -> Result<Self, ShapeError> {
        elementwise::try_binary(self, op, other)
    }
    fn reduce(&self, op: Reduce, axis: Option<usize>, keepdim: bool) -> Self {
        reduce::reduce(self, op, axis, keepdim)
    }
    fn try_matmul(&self, other: &Self, ta: bool, tb: bool) -> Result<Self, ShapeError> {
        matmul::try_matmul(self, other, ta, tb)
    }
    fn try_reshape(&self, shape: &[usize]) -> Result<Self, ShapeError> {
        layout::try_reshape(self, shape)
    }
    fn permute(&self, perm: &[usize]) -> Self {
        layout::permute(self, perm)
    }
    fn slice(&self, axis: usize, start: usize, len: usize) -> Self {
        layout::slice(self, axis, start, len)
    }
    fn unslice(&self, full: &[usize], axis: usize, start: usize) -> Self {
        layout::unslice(self, full, axis, start)
    }
    fn concat(parts: &[&Self], axis: usize) -> Self {
        layout::concat(parts, axis)
    }
    fn broadcast_to(&self, shape: &[usize]) -> Self {
        layout::broadcast_to(self, shape)
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
        elementwise::activation(self, act, f, beta, gy)
    }
    fn adam_step(&self, grad: &Self, m: &Self, v: &Self, clip: &Self, h: AdamStep) -> (Self, Self, Self) {
        adam::adam_step(self, grad, m, v, clip, h)
    }
    fn lerp(&self, other: &Self, t: f32) -> Self {
        elementwise::lerp(self, other, t)
    }
    fn matrix_power_iteration(w: &Self, u: &Self, v: &Self, iters: usize) -> (Self, Self) {
        power_iteration::matrix_power_iteration(w, u, v, iters)
    }
}
