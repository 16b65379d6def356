//! Elementwise fusion: elementwise ops (same-shape or broadcast operands, activations and
//! their derivatives, `full`, matmuls of at most three terms) are recorded lazily as an
//! expression over realized input buffers, and a chain of them runs as one generated WGSL
//! kernel when its result is first needed (a kernel binds it, it is read back, or the
//! expression grows past the limits below). A sum over an axis computes its input's pending
//! expression in the same kernel ([`sum`]), so the summed tensor is never stored.
//!
//! Why: on every adapter a dispatch has a fixed cost (on lavapipe ≈ 60 µs, a thread hand-off
//! per dispatch), and an elementwise chain is memory-bound, so one pass over the inputs beats
//! one pass per op. A generated kernel is cached by its text, which holds the op structure but
//! not the scalar constants or sizes (those travel in the uniform), so a training step
//! compiles its kernels once.
//!
//! Invariants: the leaves of an expression are realized, immutable buffers (no kernel writes
//! into a buffer another tensor already holds), so deferring the work cannot change its
//! result; a lazy input is either inlined into its consumer (recomputed there: elementwise
//! work is cheap next to a dispatch) or realized first.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use crate::activation::{ActFn, Activation};
use crate::gpu::kernels::grid_1d;
use crate::gpu::{Binding, DeviceBuffer, DeviceTexture, ElementwiseInputs, Gpu, KernelSpec, Slot, StagingProbe};
use crate::ops::{Binary, Unary};

/// Ops one fused kernel computes at most (larger chains are split). The chain of 1000 tiny
/// adds ended by one sync (the bench's `overhead` row, in-process medians of 100): 3.5–3.9 ms
/// at 32, 2.0–2.3 at 128, 1.9–2.1 at 256 and 2.0–2.1 as one kernel; a toy training step's CPU
/// time and the image block's memory peaks are the same at 32 and 128.
pub const MAX_OPS: usize = 128;
/// Distinct input buffers of one fused kernel at most (WebGPU guarantees 8 storage buffers
/// per stage: these plus the output).
pub const MAX_INPUTS: usize = 6;

/// How an input's elements map onto the result's: element `e` of the result reads element
/// `((e / inner) % len) · stride + offset` of the input. `Full` is the identity (same number
/// of elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Full,
    Broadcast { inner: usize, len: usize, stride: usize, offset: usize },
}

impl Role {
    /// The role of an operand of `shape` broadcast to `out`, when a fused kernel can read it
    /// with whole-vec4 indexing: the same elements, one element, a block of trailing dims
    /// (a bias row, `len` a multiple of 4), or a block of dims followed by ones over a
    /// multiple of 4 elements (a per-channel bias). `None`: use the general broadcast kernel.
    pub fn of(shape: &[usize], out: &[usize]) -> Option<Role> {
        let (n, total) = (shape.iter().product::<usize>(), out.iter().product::<usize>());
        if shape == out || (n == total && shape.iter().filter(|&&d| d != 1).eq(out.iter().filter(|&&d| d != 1))) {
            return Some(Role::Full);
        }
        if n == 1 {
            return Some(Role::broadcast(1, 1));
        }
        if shape.len() > out.len() {
            return None;
        }
        let padded: Vec<usize> = std::iter::repeat_n(1, out.len() - shape.len()).chain(shape.iter().copied()).collect();
        let kept: Vec<usize> = (0..out.len()).filter(|&d| padded[d] != 1).collect();
        let (first, last) = (kept[0], kept[kept.len() - 1]);
        if (first..=last).any(|d| padded[d] != out[d]) {
            return None;
        }
        let inner: usize = out[last + 1..].iter().product();
        let fits = if inner == 1 { n.is_multiple_of(4) } else { inner.is_multiple_of(4) };
        fits.then_some(Role::broadcast(inner, n))
    }

    /// Element `(e / inner) % len` of a contiguous input.
    pub fn broadcast(inner: usize, len: usize) -> Role {
        Role::Broadcast { inner, len, stride: 1, offset: 0 }
    }
}

/// An expression node; `Input(i)` is the kernel's i-th input, read as its role says.
/// Children are shared, counted subexpressions ([`Sub`]).
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Input(usize),
    Const(f32),
    Unary(Unary, Child),
    Binary(Binary, Child, Child),
    /// u + t·(v − u).
    Lerp(f32, Child, Child),
    /// gy · f'(x) given x, y = f(x) and gy (the VJP of a unary op).
    UnaryGrad(Unary, [Child; 3]),
    /// `value` where the element's index along an axis, `(e / inner) % len`, lies in
    /// `lo..hi`, else 0 (the VJP of a slice: a gradient placed into zeros).
    Within {
        value: Child,
        inner: usize,
        len: usize,
        lo: usize,
        hi: usize,
    },
    /// [gy ·] piece `f` of activation `act` at x, with β (LipSwish) a one-element input.
    Activation {
        act: Activation,
        f: ActFn,
        x: Child,
        beta: Option<Child>,
        gy: Option<Child>,
    },
}

/// A subexpression shared between the pending expressions that inlined it, with its op
/// count. Inlining a pending operand into the next op is then O(1): a chain of a thousand
/// tiny ops copied and counted its whole tree per op before (host time 2.1 µs per op at 32
/// ops per kernel, 4–6 at 128; now 0.95 and 0.8). The expression is still a tree: a
/// subexpression used twice is computed twice by the kernel.
#[derive(Debug)]
pub(crate) struct Sub {
    ops: usize,
    node: Node,
}

pub(crate) type Child = Arc<Sub>;

impl std::ops::Deref for Sub {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl From<Node> for Child {
    fn from(node: Node) -> Child {
        Arc::new(Sub { ops: node.ops(), node })
    }
}

impl Node {
    fn children(&self) -> impl Iterator<Item = &Child> {
        let (one, two, three): (Option<&Child>, Option<&Child>, Option<&Child>) = match self {
            Node::Input(_) | Node::Const(_) => (None, None, None),
            Node::Unary(_, a) | Node::Within { value: a, .. } => (Some(a), None, None),
            Node::Binary(_, a, b) | Node::Lerp(_, a, b) => (Some(a), Some(b), None),
            Node::UnaryGrad(_, [x, y, gy]) => (Some(x), Some(y), Some(gy)),
            Node::Activation { x, beta, gy, .. } => (Some(x), beta.as_ref(), gy.as_ref()),
        };
        one.into_iter().chain(two).chain(three)
    }

    /// Ops of the whole expression (its children's counts are stored with them).
    fn ops(&self) -> usize {
        let own = !matches!(self, Node::Input(_) | Node::Const(_)) as usize;
        own + self.children().map(|c| c.ops).sum::<usize>()
    }

    /// The same expression with input indices mapped through `map`; shared as it is where
    /// `map` keeps every index (a chain's operand always does).
    fn remap(&self, map: &[usize]) -> Node {
        if map.iter().enumerate().all(|(i, &m)| i == m) {
            return self.clone();
        }
        let r = |n: &Child| Child::from(n.remap(map));
        match self {
            Node::Input(i) => Node::Input(map[*i]),
            Node::Const(v) => Node::Const(*v),
            Node::Unary(op, a) => Node::Unary(*op, r(a)),
            Node::Binary(op, a, b) => Node::Binary(*op, r(a), r(b)),
            Node::Lerp(t, a, b) => Node::Lerp(*t, r(a), r(b)),
            &Node::Within { ref value, inner, len, lo, hi } => Node::Within { value: r(value), inner, len, lo, hi },
            Node::UnaryGrad(op, k) => Node::UnaryGrad(*op, k.each_ref().map(r)),
            Node::Activation { act, f, x, beta, gy } => {
                Node::Activation { act: *act, f: *f, x: r(x), beta: beta.as_ref().map(r), gy: gy.as_ref().map(r) }
            }
        }
    }
}

/// A kernel's inputs: realized storages and how each is read.
type InputList = [(Arc<Storage>, Role)];

/// A pending expression and the realized storages its inputs refer to, with their roles.
pub(crate) struct Lazy {
    node: Node,
    inputs: Vec<(Arc<Storage>, Role)>,
}

/// A tensor's memory: a realized buffer, or an expression that computes it on first use.
pub(crate) struct Storage {
    numel: usize,
    buf: OnceLock<DeviceBuffer>,
    lazy: Mutex<Option<Lazy>>,
}

impl Storage {
    pub fn realized(buf: DeviceBuffer, numel: usize) -> Storage {
        Storage { numel, buf: OnceLock::from(buf), lazy: Mutex::new(None) }
    }

    pub fn is_realized(&self) -> bool {
        self.buf.get().is_some()
    }

    /// The buffer, running the pending expression first if there is one.
    pub fn buffer(&self, gpu: &Gpu) -> &DeviceBuffer {
        self.buf.get_or_init(|| {
            let lazy = self.lazy.lock().unwrap().take().expect("an unrealized storage holds an expression");
            run(gpu, &lazy, self.numel)
        })
    }
}

/// An operand of a new elementwise op and how it maps onto the result.
pub(crate) struct Operand<'a> {
    pub store: &'a Arc<Storage>,
    pub role: Role,
}

/// Builds the expression of a new op over `operands` (see [`build_within_limits`]) and returns
/// it as a lazy storage of `numel` elements. `make` turns the operands' nodes into the op's.
pub(crate) fn record(
    gpu: &Gpu,
    numel: usize,
    operands: &[Operand<'_>],
    make: impl Fn(Vec<Node>) -> Node,
) -> Arc<Storage> {
    let (node, inputs) = build_within_limits(gpu, operands, &make);
    Arc::new(Storage { numel, buf: OnceLock::new(), lazy: Mutex::new(Some(Lazy { node, inputs })) })
}

/// [`build`] inlining lazy operands, or, when that passes the op or input limits (or fusion
/// is off), realizing them.
fn build_within_limits(
    gpu: &Gpu,
    operands: &[Operand<'_>],
    make: &impl Fn(Vec<Node>) -> Node,
) -> (Node, Vec<(Arc<Storage>, Role)>) {
    let limit = gpu.fusion_limit();
    let (node, inputs) = build(gpu, operands, limit > 1, make);
    if node.ops() > limit || inputs.len() > MAX_INPUTS {
        build(gpu, operands, false, make)
    } else {
        (node, inputs)
    }
}

/// A lazy storage of `numel` copies of `value`.
pub(crate) fn constant(numel: usize, value: f32) -> Arc<Storage> {
    let lazy = Lazy { node: Node::Const(value), inputs: Vec::new() };
    Arc::new(Storage { numel, buf: OnceLock::new(), lazy: Mutex::new(Some(lazy)) })
}

fn build(
    gpu: &Gpu,
    operands: &[Operand<'_>],
    inline: bool,
    make: &impl Fn(Vec<Node>) -> Node,
) -> (Node, Vec<(Arc<Storage>, Role)>) {
    let mut inputs: Vec<(Arc<Storage>, Role)> = Vec::new();
    let mut leaf = |s: &Arc<Storage>, role: Role| match inputs.iter().position(|(t, r)| Arc::ptr_eq(t, s) && *r == role)
    {
        Some(i) => i,
        None => {
            inputs.push((s.clone(), role));
            inputs.len() - 1
        }
    };
    let mut nodes = Vec::with_capacity(operands.len());
    for op in operands {
        // Only full-size operands inline: their inputs' roles then hold for the result too.
        let pending = if inline && op.role == Role::Full {
            op.store.lazy.lock().unwrap().as_ref().map(|l| {
                let map: Vec<usize> = l.inputs.iter().map(|(s, r)| leaf(s, *r)).collect();
                l.node.remap(&map)
            })
        } else {
            None
        };
        nodes.push(match pending {
            Some(node) => node,
            None => {
                // A leaf: realized now if it is still lazy.
                op.store.buffer(gpu);
                Node::Input(leaf(op.store, op.role))
            }
        });
    }
    (make(nodes), inputs)
}

/// Runs `lazy` as one generated kernel into a new buffer of `numel` elements.
fn run(gpu: &Gpu, lazy: &Lazy, numel: usize) -> DeviceBuffer {
    run_reading(gpu, lazy, numel, gpu.elementwise_inputs_for(numel))
}

/// [`run`] with its inputs read as `path` says.
fn run_reading(gpu: &Gpu, lazy: &Lazy, numel: usize, path: ElementwiseInputs) -> DeviceBuffer {
    let out = gpu.alloc((numel * 4).max(4) as u64);
    let staged = stage_inputs(gpu, &lazy.inputs, path);
    let kinds = input_kinds(&staged, &lazy.inputs);
    let mut consts = Vec::new();
    let per = vec4s_per_invocation(gpu);
    let packed = gpu.packed_stores() && per.is_multiple_of(2);
    let body = generate(&lazy.node, &kinds, &mut consts, per, packed);
    // Whole vec4<u64>s when packed (buckets are multiples of 256 bytes, so this fits).
    let bytes = (numel as u64 * 4).div_ceil(32) * 32;
    let extra = [(Slot::ReadWrite, Binding::Buffer { buffer: &out, bytes })];
    let groups = grid_1d((numel as u32).div_ceil(1024 * per as u32));
    dispatch_generated(gpu, body, (&lazy.inputs, &staged, &kinds), extra, uniform(numel, &consts), groups);
    out
}

/// Appends `v` to the uniform's constants and returns the WGSL expression reading it.
fn constant_slot(v: f32, consts: &mut Vec<f32>) -> String {
    consts.push(v);
    let j = consts.len() - 1;
    format!("p.c[{}][{}]", j / 4, j % 4)
}

/// The pieces of a generated kernel: input bindings, the loads of every input at vec4 index
/// `i` (and texture coordinates `tc`, `tl` when an input is a texture), the statements of the
/// expression and the value holding it.
struct Parts {
    bindings: String,
    loads: String,
    lines: String,
    result: String,
}

fn parts(node: &Node, inputs: &[(Slot, Role)], consts: &mut Vec<f32>) -> Parts {
    let (mut bindings, mut loads) = (String::new(), String::new());
    if inputs.iter().any(|(k, _)| *k == Slot::Texture) {
        // Flat texture copies (Gpu::stage_flat): texel t at (t mod 1024, t / 1024 mod 1024,
        // layer t / 1024²).
        loads.push_str("    let tc = flat_xy(i);\n    let tl = flat_layer(i);\n");
    }
    for (i, (kind, role)) in inputs.iter().enumerate() {
        let (space, ty) = match kind {
            Slot::Texture => ("", "texture_storage_2d_array<rgba32float, read>".to_string()),
            Slot::Uniform => ("<uniform>", format!("array<vec4<f32>, {}>", uniform_vec4s(*role))),
            _ => ("<storage, read>", "array<vec4<f32>>".to_string()),
        };
        let _ = writeln!(bindings, "@group(0) @binding({}) var{space} in{i}: {ty};", i + 1);
        // Element loads from a buffer, or from a flat texture copy (on CPU adapters texture
        // loads are vector gathers).
        let tex = *kind == Slot::Texture;
        let texel = |t: &str| {
            if tex {
                format!("textureLoad(in{i}, flat_xy({t}), flat_layer({t}))")
            } else {
                format!("in{i}[{t}]")
            }
        };
        let elem = |e: &str| {
            if tex {
                format!("textureLoad(in{i}, flat_xy({e} / 4u), flat_layer({e} / 4u))[{e} % 4u]")
            } else {
                format!("in{i}[{e} / 4u][{e} % 4u]")
            }
        };
        let _ = match *role {
            Role::Full if tex => writeln!(loads, "    let x{i} = textureLoad(in{i}, tc, tl);"),
            Role::Full => writeln!(loads, "    let x{i} = in{i}[i];"),
            // One element for every lane: a literal index, which a uniform buffer serves as
            // one scalar load.
            Role::Broadcast { len: 1, offset, .. } => {
                let (v4, lane) = (literal_u32(offset / 4), literal_u32(offset % 4));
                let value = if tex { format!("{}[{lane}]", texel(&v4)) } else { format!("in{i}[{v4}][{lane}]") };
                writeln!(loads, "    let x{i} = vec4<f32>({value});")
            }
            // Four consecutive elements of a row: one vec4 load.
            Role::Broadcast { inner: 1, len, stride: 1, offset } if len % 4 == 0 && offset % 4 == 0 => {
                let (len4, off4) = (literal_u32(len / 4), literal_u32(offset / 4));
                writeln!(loads, "    let x{i} = {};", texel(&format!("i % {len4} + {off4}")))
            }
            // One element for all four lanes (inner a multiple of 4, or a single element).
            Role::Broadcast { inner, len, stride, offset } if len == 1 || inner % 4 == 0 => {
                let e = role_index("4u * i", (inner, len, stride, offset));
                writeln!(loads, "    let e{i} = {e};\n    let x{i} = vec4<f32>({});", elem(&format!("e{i}")))
            }
            // Anything else: one load per lane.
            Role::Broadcast { inner, len, stride, offset } => {
                let e = role_index("e", (inner, len, stride, offset));
                writeln!(
                    loads,
                    "    var x{i}: vec4<f32>;\n    for (var l = 0u; l < 4u; l++) {{ let e = 4u * i + l; let k = {e}; x{i}[l] = {}; }}",
                    elem("k")
                )
            }
        };
    }
    let mut lines = String::new();
    let result = emit(node, &mut lines, &mut 0, consts);
    Parts { bindings, loads, lines, result }
}

/// Vec4s of an input that a broadcast role reads (its highest element is
/// `(len − 1) · stride + offset`): the length of its uniform-buffer array.
fn uniform_vec4s(role: Role) -> usize {
    match role {
        Role::Full => unreachable!("full-size inputs are never uniform buffers"),
        Role::Broadcast { len, stride, offset, .. } => ((len - 1) * stride + offset + 1).div_ceil(4),
    }
}

/// The WGSL index `((elem / inner) % len) · stride + offset` with the sizes in the uniform.
fn role_index(elem: &str, (inner, len, stride, offset): (usize, usize, usize, usize)) -> String {
    let [inner, len, stride, offset] = [inner, len, stride, offset].map(literal_u32);
    format!("(({elem} / {inner}) % {len}) * {stride} + {offset}")
}

/// The uniform: the element count and the constants.
fn header(consts: &[f32]) -> String {
    format!(
        "struct Params {{ n: u32, pad0: u32, pad1: u32, pad2: u32, c: array<vec4<f32>, {}> }}\n\
         @group(0) @binding(0) var<uniform> p: Params;\n",
        consts.len().div_ceil(4).max(1)
    )
}

/// A size or index as a WGSL literal. Sizes are written into the kernel text rather than read
/// from the uniform because the index arithmetic divides by them: a division by a literal
/// compiles to a multiply and shift, while one by a uniform value is a true integer division,
/// which CPU adapters have no vector instruction for (`resflow bench toy`, exact, measured
/// alternately: 277 → 246 and 217 → 176 ms per step). Kernels are cached by text, so each
/// distinct shape compiles once.
fn literal_u32(v: usize) -> String {
    format!("{v}u")
}

const MAIN: &str = "@compute @workgroup_size(256)\n\
    fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n\
    \x20   let g = gid.x + gid.y * nwg.x * 256u;\n";

/// The generated elementwise kernel after the op library: bindings, the uniform, `value(i)`
/// computing `node` at vec4 `i`, and the main function storing `per_invocation` consecutive
/// vec4s per invocation, as vec4s or (`packed`) as pairs in one `vec4<u64>` each. Scalar
/// constants are appended to `consts` and read from the uniform, so the text depends only on
/// the expression's structure, the inputs' kinds and the broadcast sizes (see
/// [`literal_u32`]).
pub(crate) fn generate(
    node: &Node,
    inputs: &[(Slot, Role)],
    consts: &mut Vec<f32>,
    per_invocation: usize,
    packed: bool,
) -> String {
    assert!(!packed || per_invocation.is_multiple_of(2), "packed stores take vec4s in pairs");
    let parts = parts(node, inputs, consts);
    let mut src = header(consts);
    src.push_str(&parts.bindings);
    let out_ty = if packed { "vec4<u64>" } else { "vec4<f32>" };
    let _ = writeln!(src, "@group(0) @binding({}) var<storage, read_write> out: array<{out_ty}>;", inputs.len() + 1);
    let _ = writeln!(
        src,
        "fn value(i: u32) -> vec4<f32> {{\n{}{}    return {};\n}}",
        parts.loads, parts.lines, parts.result
    );
    if packed {
        src.push_str(PACK_PAIR);
    }
    src.push_str(MAIN);
    let step = if packed { 2 } else { 1 };
    if per_invocation == 1 {
        src.push_str("    {\n    let i = g;\n");
    } else {
        // Consecutive vec4s per invocation.
        let _ = writeln!(
            src,
            "    for (var k = 0u; k < {per_invocation}u; k += {step}u) {{\n    let i = g * {per_invocation}u + k;"
        );
    }
    src.push_str("    if i * 4u >= p.n { return; }\n");
    if packed {
        // The pair's second vec4 lies past the end when the count of vec4s is odd: it
        // stores zeros there, inside the binding (rounded up to 32 bytes by `run`).
        src.push_str(
            "    var second = vec4<f32>(0.0);\n    if (i + 1u) * 4u < p.n { second = value(i + 1u); }\n    out[i / 2u] = pack_pair(value(i), second);\n",
        );
    } else {
        src.push_str("    out[i] = value(i);\n");
    }
    src.push_str("    }\n}\n");
    src
}

/// Two vec4s as four 64-bit words, each holding two floats' bits (low word first, so the
/// bytes in memory are those of the eight floats in order).
const PACK_PAIR: &str = "fn pack_pair(a: vec4<f32>, b: vec4<f32>) -> vec4<u64> {\n\
    \x20   let x = bitcast<vec4<u32>>(a);\n\
    \x20   let y = bitcast<vec4<u32>>(b);\n\
    \x20   return vec4<u64>(u64(x.x) | (u64(x.y) << 32u), u64(x.z) | (u64(x.w) << 32u),\n\
    \x20                    u64(y.x) | (u64(y.y) << 32u), u64(y.z) | (u64(y.w) << 32u));\n\
    }\n";

/// Vec4s one invocation of a generated elementwise kernel computes. On CPU adapters every
/// invocation carries a fixed cost (llvmpipe runs the workgroup as a loop of SIMD batches), and
/// four consecutive vec4s each measured 20 % faster than one (x+1 over 16 M floats, kernel
/// alone: 17.4 vs 22.3 ms); GPUs keep one, which keeps neighbouring threads on neighbouring
/// addresses.
fn vec4s_per_invocation(gpu: &Gpu) -> usize {
    if gpu.is_cpu() {
        4
    } else {
        1
    }
}

/// Rows (or vec4 rows) one invocation of a fused sum adds up; keeps its loop far below
/// `gpu::kernels::LOOP_BUDGET`.
const SUM_CHUNK: usize = 32;

/// Sums over at most this many rows run in one pass (one invocation per output vec4), which
/// saves the second dispatch that adds up the chunks: the small sums of a training step (bias
/// gradients, gradient norms) are dominated by per-dispatch cost, not by their loops.
const SINGLE_PASS_ROWS: usize = 1024;

/// Σ over the middle axis of an expression viewed as `[outer, n, inner]`, as one generated
/// kernel that computes the expression while it sums (the summed tensor is never stored).
/// Returns the partial sums, `[outer, chunks, inner]`, and `chunks` (the caller sums the
/// chunks when there is more than one), or `None` when vec4s would straddle outputs
/// (`inner` not a multiple of 4, and not 1 with `n` a multiple of 4).
pub(crate) fn sum(
    gpu: &Gpu,
    input: &Arc<Storage>,
    (outer, n, inner): (usize, usize, usize),
) -> Option<(DeviceBuffer, usize)> {
    let columns = inner.is_multiple_of(4);
    if !(columns || inner == 1 && n.is_multiple_of(4)) {
        return None;
    }
    let operand = [Operand { store: input, role: Role::Full }];
    let make = |mut k: Vec<Node>| k.remove(0);
    let (node, inputs) = build_within_limits(gpu, &operand, &make);
    let numel = outer * n * inner;
    let staged = stage_inputs(gpu, &inputs, gpu.elementwise_inputs_for(numel));
    let kinds = input_kinds(&staged, &inputs);

    // Invocation (o, c, j4): chunk c of the rows of output block o, vec4 column j4.
    let (rows, vec4_cols) = if columns { (n, inner / 4) } else { (n / 4, 1) };
    let chunk = if rows <= SINGLE_PASS_ROWS { rows.max(1) } else { SUM_CHUNK };
    let chunks = rows.div_ceil(chunk);
    let mut consts = Vec::new();
    let parts = parts(&node, &kinds, &mut consts);
    let (cols4, nchunks, nrows, row_step) =
        (literal_u32(vec4_cols), literal_u32(chunks), literal_u32(rows), literal_u32(rows * vec4_cols));
    let mut src = header(&consts);
    src.push_str(&parts.bindings);
    let out_ty = if columns { "vec4<f32>" } else { "f32" };
    let _ = writeln!(src, "@group(0) @binding({}) var<storage, read_write> out: array<{out_ty}>;", kinds.len() + 1);
    src.push_str(MAIN);
    let _ = write!(
        src,
        "    if g >= p.n {{ return; }}\n\
         \x20   let j4 = g % {cols4};\n    let c = (g / {cols4}) % {nchunks};\n    let o = g / ({cols4} * {nchunks});\n\
         \x20   var acc = vec4<f32>(0.0);\n\
         \x20   for (var r = c * {chunk}u; r < min(c * {chunk}u + {chunk}u, {nrows}); r++) {{\n\
         \x20   let i = o * {row_step} + r * {cols4} + j4;\n"
    );
    src.push_str(&parts.loads);
    src.push_str(&parts.lines);
    let _ = writeln!(src, "    acc += {};\n    }}", parts.result);
    let store = if columns { "acc" } else { "acc.x + acc.y + acc.z + acc.w" };
    let _ = writeln!(src, "    out[g] = {store};\n}}");
    let invocations = outer * chunks * vec4_cols;
    let out = gpu.alloc((outer * chunks * inner * 4).max(4) as u64);
    let extra = [(Slot::ReadWrite, Binding::Buffer { buffer: &out, bytes: (outer * chunks * inner * 4) as u64 })];
    let groups = grid_1d((invocations as u32).div_ceil(256));
    dispatch_generated(gpu, src, (&inputs, &staged, &kinds), extra, uniform(invocations, &consts), groups);
    Some((out, chunks))
}

/// Output columns of [`matmul_rows`] at most.
pub const ROW_MATMUL_MAX_N: usize = 4;

/// C = A·B for a skinny result (`n` ≤ [`ROW_MATMUL_MAX_N`] columns, `k` a multiple of 4): one
/// invocation per row of C computes A's pending expression along its row while it takes the
/// dot products, so A (say an activation) is never stored. B is read at the same index by every
/// invocation, which drivers serve as one broadcast load (B sits in a uniform buffer where it fits).
/// `b_stored_nk` says B is stored transposed, as `[n, k]`.
pub(crate) fn matmul_rows(
    gpu: &Gpu,
    a: &Arc<Storage>,
    b: &DeviceBuffer,
    (m, k, n): (usize, usize, usize),
    b_stored_nk: bool,
) -> DeviceBuffer {
    debug_assert!(n <= ROW_MATMUL_MAX_N && k.is_multiple_of(4));
    let operand = [Operand { store: a, role: Role::Full }];
    let (node, inputs) = build_within_limits(gpu, &operand, &|mut k: Vec<Node>| k.remove(0));
    let staged = stage_inputs(gpu, &inputs, gpu.elementwise_inputs_for(m * k));
    let kinds = input_kinds(&staged, &inputs);
    let mut consts = Vec::new();
    let parts = parts(&node, &kinds, &mut consts);
    let k4 = literal_u32(k / 4);
    let mut src = header(&consts);
    src.push_str(&parts.bindings);
    // B in a uniform buffer where it fits: lavapipe reads storage buffers lane by lane, with a
    // bounds check each (5.7× slower here for the toy models' last layer, 1024×64 · 64×2).
    let b_bytes = (k * n * 4) as u64;
    let b_slot = if b_bytes <= gpu.limits().max_uniform_buffer_binding_size {
        let _ =
            writeln!(src, "@group(0) @binding({}) var<uniform> bm: array<vec4<f32>, {}>;", kinds.len() + 1, k * n / 4);
        Slot::Uniform
    } else {
        let _ = writeln!(src, "@group(0) @binding({}) var<storage, read> bm: array<vec4<f32>>;", kinds.len() + 1);
        Slot::ReadOnly
    };
    let _ = writeln!(src, "@group(0) @binding({}) var<storage, read_write> out: array<f32>;", kinds.len() + 2);
    src.push_str(MAIN);
    let _ = writeln!(src, "    if g >= p.n {{ return; }}");
    for j in 0..n {
        let _ = writeln!(src, "    var acc{j} = vec4<f32>(0.0);");
    }
    let _ = writeln!(src, "    for (var r = 0u; r < {k4}; r++) {{\n    let i = g * {k4} + r;");
    src.push_str(&parts.loads);
    src.push_str(&parts.lines);
    for j in 0..n {
        // B[4r .. 4r+4, j]: a row piece of the stored [n, k], or four elements of [k, n].
        let bj = if b_stored_nk {
            format!("bm[{j}u * {k4} + r]")
        } else {
            let e = |l: usize| format!("(4u * r + {l}u) * {n}u + {j}u");
            let el = |l: usize| format!("bm[({}) / 4u][({}) % 4u]", e(l), e(l));
            format!("vec4<f32>({}, {}, {}, {})", el(0), el(1), el(2), el(3))
        };
        let _ = writeln!(src, "    acc{j} += {} * {bj};", parts.result);
    }
    src.push_str("    }\n");
    for j in 0..n {
        let _ = writeln!(src, "    out[g * {n}u + {j}u] = dot(acc{j}, vec4<f32>(1.0));");
    }
    src.push_str("}\n");
    let out = gpu.alloc((m * n * 4).max(4) as u64);
    let extra = [
        (b_slot, Binding::Buffer { buffer: b, bytes: b_bytes }),
        (Slot::ReadWrite, Binding::Buffer { buffer: &out, bytes: (m * n * 4) as u64 }),
    ];
    let groups = grid_1d((m as u32).div_ceil(256));
    dispatch_generated(gpu, src, (&inputs, &staged, &kinds), extra, uniform(m, &consts), groups);
    out
}

/// How a kernel reads one input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
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
struct Staged {
    textures: Vec<DeviceTexture>,
    /// How each input is read.
    of_input: Vec<Read>,
}

/// Measures [`StagingProbe`] on `gpu`: x + 1 over `StagingProbe::ELEMENTS` floats, its input
/// staged into a texture and read from its storage buffer, alternating, best of five each
/// (the first run of each compiles its kernel).
pub(crate) fn probe_staging(gpu: &Gpu) -> StagingProbe {
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

fn stage_inputs(gpu: &Gpu, inputs: &InputList, path: ElementwiseInputs) -> Staged {
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

fn input_kinds(staged: &Staged, inputs: &InputList) -> Vec<(Slot, Role)> {
    let slot = |read: &Read| match read {
        Read::Buffer => Slot::ReadOnly,
        Read::Uniform => Slot::Uniform,
        Read::Texture(_) => Slot::Texture,
    };
    staged.of_input.iter().zip(inputs).map(|(read, (_, role))| (slot(read), *role)).collect()
}

fn input_bindings<'a>(inputs: &'a InputList, staged: &'a Staged) -> Vec<Binding<'a>> {
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

/// Compiles (or finds) the generated kernel `src` and dispatches it over the expression's
/// inputs followed by `extra` bindings (outputs, other operands).
fn dispatch_generated<'a, const E: usize>(
    gpu: &Gpu,
    src: String,
    (inputs, staged, kinds): (&'a InputList, &'a Staged, &[(Slot, Role)]),
    extra: [(Slot, Binding<'a>); E],
    params: Vec<u32>,
    groups: [u32; 3],
) {
    let mut slots: Vec<Slot> = kinds.iter().map(|k| k.0).collect();
    let mut bindings = input_bindings(inputs, staged);
    for (slot, binding) in extra {
        slots.push(slot);
        bindings.push(binding);
    }
    let kernel = gpu.kernel(&KernelSpec::generated(src, slots));
    gpu.dispatch(&kernel, bytemuck::cast_slice(&params), &bindings, groups);
}

/// The uniform's words: the count, padding, then the constants (at least one vec4 of them).
fn uniform(n: usize, consts: &[f32]) -> Vec<u32> {
    let mut params: Vec<u32> = vec![n as u32, 0, 0, 0];
    params.extend(consts.iter().map(|c| c.to_bits()));
    params.resize(4 + 4 * consts.len().div_ceil(4).max(1), 0);
    params
}

/// Appends the statements computing `node` and returns the WGSL value holding it.
fn emit(node: &Node, lines: &mut String, next: &mut usize, consts: &mut Vec<f32>) -> String {
    let expr = match node {
        Node::Input(i) => return format!("x{i}"),
        Node::Const(v) => format!("vec4<f32>({})", constant_slot(*v, consts)),
        Node::Unary(op, a) => {
            let a = emit(a, lines, next, consts);
            let (pa, pb) = unary_params(*op, consts);
            format!("unary_op({}u, {a}, {pa}, {pb})", op.code())
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (emit(a, lines, next, consts), emit(b, lines, next, consts));
            format!("binary_op({}u, {a}, {b}, 0.0)", op.code())
        }
        Node::Lerp(t, a, b) => {
            let (a, b) = (emit(a, lines, next, consts), emit(b, lines, next, consts));
            format!("binary_op(7u, {a}, {b}, {})", constant_slot(*t, consts))
        }
        Node::Within { value, inner, len, lo, hi } => {
            let v = emit(value, lines, next, consts);
            let [inner, len, lo, hi] = [*inner, *len, *lo, *hi].map(literal_u32);
            format!("select(vec4<f32>(0.0), {v}, within(4u * i, {inner}, {len}, {lo}, {hi}))")
        }
        Node::UnaryGrad(op, k) => {
            let [x, y, gy] = [0, 1, 2].map(|j| emit(&k[j], lines, next, consts));
            let (pa, _) = unary_params(*op, consts);
            format!("{gy} * unary_derivative({}u, {x}, {y}, {pa})", op.code())
        }
        Node::Activation { act, f, x, beta, gy } => {
            let x = emit(x, lines, next, consts);
            let b = beta.as_ref().map_or("0.0".to_string(), |b| format!("{}.x", emit(b, lines, next, consts)));
            let value = format!("activation_op({}u, {}u, {x}, {b})", act.code(), f.code());
            match gy {
                Some(gy) => format!("{} * {value}", emit(gy, lines, next, consts)),
                None => value,
            }
        }
    };
    let name = format!("t{next}");
    *next += 1;
    let _ = writeln!(lines, "    let {name} = {expr};");
    name
}

/// The WGSL arguments for a unary op's two parameters.
fn unary_params(op: Unary, consts: &mut Vec<f32>) -> (String, String) {
    match op {
        Unary::Affine(a, b) => (constant_slot(a, consts), constant_slot(b, consts)),
        Unary::SignedPow(e) => (constant_slot(e, consts), "0.0".into()),
        _ => ("0.0".into(), "0.0".into()),
    }
}

/// Generated kernels for representative expressions over buffer and texture inputs and every
/// input role, for the naga validation test.
pub fn example_sources() -> Vec<String> {
    let input = |i| Child::from(Node::Input(i));
    let scalar = Role::broadcast(1, 1);
    let row = Role::broadcast(1, 64);
    let channel = Role::broadcast(16, 3);
    let gather = Role::Broadcast { inner: 1, len: 8, stride: 3, offset: 1 };
    let exprs = [
        (Node::Const(1.5), vec![]),
        (Node::Unary(Unary::Affine(2.0, 1.0), input(0)), vec![Role::Full]),
        (Node::Binary(Binary::Mul, Node::Unary(Unary::Exp, input(0)).into(), input(1)), vec![Role::Full, scalar]),
        (Node::Lerp(0.1, input(0), input(1)), vec![Role::Full, row]),
        (Node::Binary(Binary::Add, input(0), input(1)), vec![Role::Full, channel]),
        (Node::Binary(Binary::Sub, input(0), input(1)), vec![gather, Role::Full]),
        (Node::Within { value: input(0), inner: 1, len: 3, lo: 1, hi: 2 }, vec![Role::broadcast(3, 8)]),
        (Node::UnaryGrad(Unary::SignedPow(1.5), [input(0), input(1), input(2)]), vec![Role::Full; 3]),
        (
            Node::Activation {
                act: Activation::LipSwish,
                f: ActFn::D1Beta,
                x: input(0),
                beta: Some(input(1)),
                gy: Some(input(2)),
            },
            vec![Role::Full, scalar, Role::Full],
        ),
    ];
    let mut out = Vec::new();
    for (e, roles) in &exprs {
        for kind in [Slot::ReadOnly, Slot::Texture, Slot::Uniform] {
            // Only broadcast inputs are ever read from uniform buffers.
            let of = |r: Role| if kind == Slot::Uniform && r == Role::Full { Slot::Texture } else { kind };
            let kinds: Vec<(Slot, Role)> = roles.iter().map(|&r| (of(r), r)).collect();
            for (per, packed) in [(1, false), (4, false), (4, true)] {
                out.push(format!("{}{}", LIBRARY, generate(e, &kinds, &mut Vec::new(), per, packed)));
            }
        }
    }
    out
}

/// The op library every generated kernel starts with.
pub const LIBRARY: &str = include_str!("../shaders/elementwise_ops.wgsl");

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn roles_of_broadcast_shapes() {
        let b = |inner, len| Some(Role::broadcast(inner, len));
        assert_eq!(Role::of(&[4, 8], &[4, 8]), Some(Role::Full));
        assert_eq!(Role::of(&[8], &[1, 8]), Some(Role::Full));
        assert_eq!(Role::of(&[1], &[5, 7]), b(1, 1));
        assert_eq!(Role::of(&[8], &[5, 8]), b(1, 8));
        assert_eq!(Role::of(&[1, 3, 1, 1], &[2, 3, 4, 4]), b(16, 3));
        assert_eq!(Role::of(&[2, 3, 1], &[5, 2, 3, 4]), b(4, 6));
        // Rows not a multiple of 4, an inner block not a multiple of 4, two separate blocks.
        assert_eq!(Role::of(&[3], &[5, 3]), None);
        assert_eq!(Role::of(&[3, 1], &[3, 2]), None);
        assert_eq!(Role::of(&[2, 1, 4], &[2, 3, 4]), None);
    }
}
