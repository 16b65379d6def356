//! The op set shared by the GPU tensor and the f64 CPU reference.
//!
//! Both implement [`TensorOps`]; the tape's VJP rules are written once against this trait, so
//! the rules themselves are checked by finite differences on the f64 reference, and the GPU
//! kernels are checked against the reference op by op.

mod shape;

pub use shape::{
    broadcast_shape, broadcast_strides, conv_shape, matmul_shape, numel, pad4, pad4_strides, reduced_shape, split_axis,
    squeeze_shape, strides, unsqueeze_shape, ShapeError,
};

pub use crate::activation::{ActFn, Activation};

/// Elementwise unary ops. `Affine(a, b)` is `a·x + b` (scalar add, scale, negation in one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    Neg,
    Exp,
    Log,
    Sigmoid,
    Softplus,
    Tanh,
    Relu,
    Square,
    Sqrt,
    Recip,
    Affine(f32, f32),
    Silu,
    Abs,
    /// sign(x)·|x|^e: the dual maps of the induced-norm power iteration.
    SignedPow(f32),
    /// The power of two 2^m (m ≥ 0) that brings |x| into [1, 2); 1 where |x| ≥ 1, and where x is
    /// zero, subnormal or not finite. Multiplying by it is exact: the power series rescales its
    /// vectors with it so they never reach the subnormal range.
    UnitScale,
}

impl Unary {
    /// Every unary op (with zero parameters) and its name in WGSL: an op's code is its index
    /// here, and the WGSL library switches on constants generated from this table
    /// ([`op_code_constants`]).
    pub const TABLE: [(Unary, &'static str); 15] = [
        (Unary::Neg, "NEG"),
        (Unary::Exp, "EXP"),
        (Unary::Log, "LOG"),
        (Unary::Sigmoid, "SIGMOID"),
        (Unary::Softplus, "SOFTPLUS"),
        (Unary::Tanh, "TANH"),
        (Unary::Relu, "RELU"),
        (Unary::Square, "SQUARE"),
        (Unary::Sqrt, "SQRT"),
        (Unary::Recip, "RECIP"),
        (Unary::Affine(0.0, 0.0), "AFFINE"),
        (Unary::Silu, "SILU"),
        (Unary::Abs, "ABS"),
        (Unary::SignedPow(0.0), "SIGNED_POW"),
        (Unary::UnitScale, "UNIT_SCALE"),
    ];

    /// The op code the WGSL kernels switch on.
    pub fn code(self) -> u32 {
        // A static, not the const: a const array is materialised at every use, and op codes are
        // looked up for every node of every generated kernel.
        static TABLE: [(Unary, &str); 15] = Unary::TABLE;
        let same = |u: &Unary| std::mem::discriminant(u) == std::mem::discriminant(&self);
        TABLE.iter().position(|(u, _)| same(u)).expect("every unary op is in the table") as u32
    }

    /// The WGSL constant holding [`Unary::code`].
    pub fn wgsl_name(self) -> String {
        format!("UNARY_{}", Self::TABLE[self.code() as usize].1)
    }

    pub fn eval(self, x: f64) -> f64 {
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        match self {
            Unary::Neg => -x,
            Unary::Exp => x.exp(),
            Unary::Log => x.ln(),
            Unary::Sigmoid => sigmoid(x),
            Unary::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            Unary::Tanh => x.tanh(),
            Unary::Relu => x.max(0.0),
            Unary::Square => x * x,
            Unary::Sqrt => x.sqrt(),
            Unary::Recip => 1.0 / x,
            Unary::Affine(a, b) => a as f64 * x + b as f64,
            Unary::Silu => x * sigmoid(x),
            Unary::Abs => x.abs(),
            Unary::SignedPow(e) => x.signum() * x.abs().powf(e as f64),
            Unary::UnitScale => {
                // From the bits, as the kernel does: log2 can round across a power of two.
                let e = ((x as f32).abs().to_bits() >> 23) & 0xff;
                if (1..=126).contains(&e) {
                    (127.0 - e as f64).exp2()
                } else {
                    1.0
                }
            }
        }
    }

    /// f'(x), given x and y = f(x).
    pub fn derivative(self, x: f64, y: f64) -> f64 {
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        match self {
            Unary::Neg => -1.0,
            Unary::Exp => y,
            Unary::Log => 1.0 / x,
            Unary::Sigmoid => y * (1.0 - y),
            Unary::Softplus => sigmoid(x),
            Unary::Tanh => 1.0 - y * y,
            Unary::Relu => (x > 0.0) as u8 as f64,
            Unary::Square => 2.0 * x,
            Unary::Sqrt => 0.5 / y,
            Unary::Recip => -y * y,
            Unary::Affine(a, _) => a as f64,
            Unary::Silu => {
                let s = sigmoid(x);
                s + x * s * (1.0 - s)
            }
            Unary::Abs => x.signum() * (x != 0.0) as u8 as f64,
            Unary::SignedPow(e) => e as f64 * x.abs().powf(e as f64 - 1.0),
            // Piecewise constant.
            Unary::UnitScale => 0.0,
        }
    }

    pub fn params(self) -> (f32, f32) {
        match self {
            Unary::Affine(a, b) => (a, b),
            Unary::SignedPow(e) => (e, 0.0),
            _ => (0.0, 0.0),
        }
    }
}

/// Elementwise binary ops with broadcasting. `Ge` is the mask `a >= b` as 1.0 / 0.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Ge,
}

impl Binary {
    /// Every binary op and its name in WGSL (codes as for [`Unary::TABLE`]). The WGSL library
    /// has one more, [`Binary::LERP_CODE`].
    pub const TABLE: [(Binary, &'static str); 7] = [
        (Binary::Add, "ADD"),
        (Binary::Sub, "SUB"),
        (Binary::Mul, "MUL"),
        (Binary::Div, "DIV"),
        (Binary::Max, "MAX"),
        (Binary::Min, "MIN"),
        (Binary::Ge, "GE"),
    ];
    /// The code of the interpolation u + t·(v − u) in the WGSL library's `binary_op`.
    pub const LERP_CODE: u32 = Self::TABLE.len() as u32;

    pub fn code(self) -> u32 {
        static TABLE: [(Binary, &str); 7] = Binary::TABLE;
        TABLE.iter().position(|(b, _)| *b == self).expect("every binary op is in the table") as u32
    }

    /// The WGSL constant holding [`Binary::code`].
    pub fn wgsl_name(self) -> String {
        format!("BINARY_{}", Self::TABLE[self.code() as usize].1)
    }

    pub fn eval(self, a: f64, b: f64) -> f64 {
        match self {
            Binary::Add => a + b,
            Binary::Sub => a - b,
            Binary::Mul => a * b,
            Binary::Div => a / b,
            Binary::Max => a.max(b),
            Binary::Min => a.min(b),
            Binary::Ge => (a >= b) as u8 as f64,
        }
    }
}

/// Reductions along one axis (or all elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
    LogSumExp,
}

impl Reduce {
    /// The reductions of the reduce kernel by WGSL name (a mean is a scaled sum); its `OP`
    /// is the index here.
    pub const KERNEL_OPS: [(Reduce, &'static str); 3] =
        [(Reduce::Sum, "REDUCE_SUM"), (Reduce::Max, "REDUCE_MAX"), (Reduce::LogSumExp, "REDUCE_LOG_SUM_EXP")];

    /// The reduce kernel's `OP` for this reduction.
    pub fn kernel_code(self) -> u32 {
        let op = if self == Reduce::Mean { Reduce::Sum } else { self };
        Self::KERNEL_OPS.iter().position(|(r, _)| *r == op).expect("every kernel reduction is listed") as u32
    }
}

/// Hyper-parameters of one Adam step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

/// Distributions of the counter-based generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    Uniform { lo: f32, hi: f32 },
    Normal { mean: f32, std: f32 },
    Rademacher,
}

/// The values of a readback, when they arrive.
pub type HostFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<f64>> + 'a>>;

/// The op set. Shapes are checked by the implementations and reported as [`ShapeError`]
/// panics only at the API edge (`try_*` variants return them); internal callers pass valid shapes.
pub trait TensorOps: Clone + Sized + 'static {
    fn shape(&self) -> &[usize];
    fn numel(&self) -> usize {
        numel(self.shape())
    }
    /// A new tensor on the same device filled with `value`.
    fn full_like(&self, shape: &[usize], value: f32) -> Self;
    fn zeros_like(&self, shape: &[usize]) -> Self {
        self.full_like(shape, 0.0)
    }
    /// Counter-based random numbers on the same device: `(seed, stream)` names the numbers.
    fn random_like(&self, shape: &[usize], dist: Dist, seed: u64, stream: u64) -> Self;
    /// A tensor on the same device from host values.
    fn tensor_like(&self, data: &[f32], shape: &[usize]) -> Self;
    /// The same from f64 host values (kept exact on the reference, rounded to f32 on the GPU).
    fn tensor_like_f64(&self, data: &[f64], shape: &[usize]) -> Self {
        let narrow: Vec<f32> = data.iter().map(|&v| v as f32).collect();
        self.tensor_like(&narrow, shape)
    }
    /// The values, widened to f64, on the host (a readback on the GPU).
    fn to_host(&self) -> Vec<f64>;
    /// [`TensorOps::to_host`] as a future: in a browser a readback completes only once the
    /// page's event loop has run, so code that must run there awaits this instead.
    fn to_host_async(&self) -> HostFuture<'_> {
        Box::pin(std::future::ready(self.to_host()))
    }
    /// Whether matmuls and convolutions on this tensor's device read f16 operands
    /// (`Precision::F16`): weight norms are then measured on the f16-rounded weights.
    fn half_operands(&self) -> bool {
        false
    }
    /// `f` with f32 matmul and convolution operands on this tensor's device, whatever the
    /// precision in use (power iterations and norm bounds are always computed in f32).
    fn at_full_precision<R>(&self, f: impl FnOnce() -> R) -> R {
        f()
    }
    /// Each value rounded to the nearest IEEE half float.
    fn round_to_f16(&self) -> Self {
        let rounded: Vec<f64> = self.to_host().iter().map(|&x| half::f16::from_f64(x).to_f64()).collect();
        self.tensor_like_f64(&rounded, self.shape())
    }

    fn unary(&self, op: Unary) -> Self;
    /// gx = gy · f'(x) with y = f(x) saved from the forward.
    fn unary_grad(op: Unary, x: &Self, y: &Self, gy: &Self) -> Self;
    /// Runs pending lazy work now (GPU elementwise chains, see `crate::fusion`; a no-op where
    /// ops are eager). Long-lived state such as weight averages calls it, so a lazy chain
    /// does not keep every earlier version of its inputs alive.
    fn realize(&self) -> &Self {
        self
    }
    fn try_binary(&self, op: Binary, other: &Self) -> Result<Self, ShapeError>;
    fn binary(&self, op: Binary, other: &Self) -> Self {
        self.try_binary(op, other).unwrap_or_else(|e| panic!("{e}"))
    }
    /// Reduces `axis` (or every element, giving shape `[]`), keeping it as size 1 if `keepdim`.
    fn reduce(&self, op: Reduce, axis: Option<usize>, keepdim: bool) -> Self;
    fn try_matmul(&self, other: &Self, trans_a: bool, trans_b: bool) -> Result<Self, ShapeError>;
    fn matmul(&self, other: &Self, trans_a: bool, trans_b: bool) -> Self {
        self.try_matmul(other, trans_a, trans_b).unwrap_or_else(|e| panic!("{e}"))
    }
    fn try_reshape(&self, shape: &[usize]) -> Result<Self, ShapeError>;
    fn reshape(&self, shape: &[usize]) -> Self {
        self.try_reshape(shape).unwrap_or_else(|e| panic!("{e}"))
    }
    fn permute(&self, perm: &[usize]) -> Self;
    /// Elements `start..start+len` along `axis`.
    fn slice(&self, axis: usize, start: usize, len: usize) -> Self;
    /// Zeros of `full` shape with `self` written at `start` along `axis` (the VJP of slice).
    fn unslice(&self, full: &[usize], axis: usize, start: usize) -> Self;
    fn concat(parts: &[&Self], axis: usize) -> Self;
    /// Repeats along broadcast axes (size-1 or missing on the left) to reach `shape`.
    fn broadcast_to(&self, shape: &[usize]) -> Self;

    /// 2-D convolution, stride 1, "same" padding k/2: x [N, Ci, H, W], w [Co, Ci, k, k] (odd k)
    /// → [N, Co, H, W].
    fn try_conv2d(&self, w: &Self) -> Result<Self, ShapeError>;
    fn conv2d(&self, w: &Self) -> Self {
        self.try_conv2d(w).unwrap_or_else(|e| panic!("{e}"))
    }
    /// The adjoint of `conv2d(·, w)`: u [N, Co, H, W] → [N, Ci, H, W] (the input VJP, and the
    /// transposed convolution of the power iteration).
    fn conv_transpose2d(&self, w: &Self) -> Self;
    /// The weight VJP of `conv2d`: x [N, Ci, H, W] and gy [N, Co, H, W] → [Co, Ci, k, k].
    fn conv2d_grad_weight(&self, gy: &Self, k: usize) -> Self;
    /// Space-to-depth ×2: [B, C, 2H, 2W] → [B, 4C, H, W], channel 4c + 2i + j.
    fn squeeze2(&self) -> Self;
    /// Depth-to-space ×2, the inverse of `squeeze2`.
    fn unsqueeze2(&self) -> Self;
    /// `[gy ·] F(x; β)` for an activation piece (β: a one-element tensor, LipSwish only).
    fn activation(&self, act: Activation, f: ActFn, beta: Option<&Self>, gy: Option<&Self>) -> Self;

    /// One Adam step: (param, m, v) updated from `grad` scaled by the one-element `clip`
    /// (bias corrections folded into `h.lr` and `h.eps` by the caller).
    fn adam_step(&self, grad: &Self, m: &Self, v: &Self, clip: &Self, h: AdamStep) -> (Self, Self, Self) {
        let g = grad.mul(&clip.reshape(&[]));
        let m2 = m.scale(h.beta1).add(&g.scale(1.0 - h.beta1));
        let v2 = v.scale(h.beta2).add(&g.unary(Unary::Square).scale(1.0 - h.beta2));
        let step = m2.div(&v2.unary(Unary::Sqrt).unary(Unary::Affine(1.0, h.eps))).scale(h.lr);
        (self.sub(&step), m2, v2)
    }
    /// self + t·(other − self) (weight EMAs).
    fn lerp(&self, other: &Self, t: f32) -> Self {
        self.add(&other.sub(self).scale(t))
    }
    /// `iters` power iterations u ← normalize(W v), v ← normalize(Wᵀ u) of a matrix W [rows,
    /// cols], u [rows, 1], v [cols, 1].
    fn matrix_power_iteration(w: &Self, u: &Self, v: &Self, iters: usize) -> (Self, Self) {
        power_iteration_by_ops(w, u, v, iters)
    }

    // Conveniences built from the ops above.
    fn add(&self, o: &Self) -> Self {
        self.binary(Binary::Add, o)
    }
    fn sub(&self, o: &Self) -> Self {
        self.binary(Binary::Sub, o)
    }
    fn mul(&self, o: &Self) -> Self {
        self.binary(Binary::Mul, o)
    }
    fn div(&self, o: &Self) -> Self {
        self.binary(Binary::Div, o)
    }
    fn scale(&self, a: f32) -> Self {
        self.unary(Unary::Affine(a, 0.0))
    }
    fn sum_all(&self) -> Self {
        self.reduce(Reduce::Sum, None, false)
    }
    /// Sums broadcast axes away so the result has `shape` (the VJP of broadcasting).
    fn sum_to_shape(&self, shape: &[usize]) -> Self {
        if self.shape() == shape {
            return self.clone();
        }
        let pad = self.shape().len() - shape.len();
        let mut t = self.clone();
        for axis in 0..self.shape().len() {
            let target = if axis < pad { 1 } else { shape[axis - pad] };
            if t.shape()[axis] != target {
                t = t.reduce(Reduce::Sum, Some(axis), true);
            }
        }
        t.reshape(shape)
    }
}

/// Matrix power iteration from ordinary ops (matmuls and normalisations): the definition, and
/// the fallback of fused kernels.
pub fn power_iteration_by_ops<T: TensorOps>(w: &T, u: &T, v: &T, iters: usize) -> (T, T) {
    let normalize = |x: &T| {
        let n = x.unary(Unary::Square).sum_all().unary(Unary::Affine(1.0, 1e-24)).unary(Unary::Sqrt);
        x.div(&n)
    };
    let (mut u, mut v) = (u.clone(), v.clone());
    for _ in 0..iters {
        u = normalize(&w.matmul(&v, false, false));
        v = normalize(&w.matmul(&u, true, false));
    }
    (u, v)
}

/// The op codes of every elementwise op, activation and kernel reduction as WGSL `const` declarations. Every
/// shader starts with them (`gpu::kernels::source`), so the WGSL switches and the Rust codes
/// come from the same tables.
pub fn op_code_constants() -> String {
    let mut out = String::from("// Op codes, generated from the tables in src/ops/mod.rs and src/activation.rs.\n");
    let mut push = |name: String, code: u32| out.push_str(&format!("const {name}: u32 = {code}u;\n"));
    for (op, _) in Unary::TABLE {
        push(op.wgsl_name(), op.code());
    }
    for (op, _) in Binary::TABLE {
        push(op.wgsl_name(), op.code());
    }
    push("BINARY_LERP".into(), Binary::LERP_CODE);
    for (act, name) in Activation::TABLE {
        push(format!("ACT_{name}"), act.code());
    }
    for (f, name) in ActFn::TABLE {
        push(format!("ACT_FN_{name}"), f.code());
    }
    for (r, name) in Reduce::KERNEL_OPS {
        push(name.into(), r.kernel_code());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_codes_are_the_table_indices_and_names_are_unique() {
        for (i, (op, _)) in Unary::TABLE.iter().enumerate() {
            assert_eq!(op.code() as usize, i);
        }
        for (i, (op, _)) in Binary::TABLE.iter().enumerate() {
            assert_eq!(op.code() as usize, i);
        }
        assert_eq!(Unary::Affine(2.0, 3.0).code(), Unary::Affine(0.0, 0.0).code(), "parameters do not change the code");
        let text = op_code_constants();
        let names: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("const ")?.split(':').next()).collect();
        let unique: std::collections::HashSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate WGSL names in {text}");
        assert!(text.contains("const BINARY_LERP: u32 = 7u;") && text.contains("const UNARY_SIGNED_POW: u32 = 13u;"));
    }
}
