//! Elementwise fusion: same-shape elementwise ops are recorded lazily as an expression over
//! realized input buffers, and a chain of them runs as one generated WGSL kernel when its
//! result is first needed (a kernel binds it, it is read back, or the expression grows past
//! the limits below).
//!
//! Why: on every adapter a dispatch has a fixed cost (on lavapipe ≈ 60 µs, a thread hand-off
//! per dispatch), and an elementwise chain is memory-bound, so one pass over the inputs beats
//! one pass per op. A generated kernel is cached by its text, which holds the op structure but
//! not the scalar constants (those travel in the uniform), so a training step compiles its
//! kernels once.
//!
//! Invariants: the leaves of an expression are realized, immutable buffers (no kernel writes
//! into a buffer another tensor already holds), so deferring the work cannot change its
//! result; a lazy input is either inlined into its consumer (recomputed there: elementwise
//! work is cheap next to a dispatch) or realized first.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use crate::gpu::kernels::grid_1d;
use crate::gpu::{Binding, DeviceBuffer, DeviceTexture, Gpu, KernelSpec, Slot};
use crate::ops::{Binary, Unary};

/// Ops one fused kernel computes at most (larger chains are split).
pub const MAX_OPS: usize = 32;
/// Distinct input buffers of one fused kernel at most (WebGPU guarantees 8 storage buffers
/// per stage: these plus the output).
pub const MAX_INPUTS: usize = 6;

/// An expression node; `Input(i)` is the kernel's i-th input buffer.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Input(usize),
    /// A one-element input broadcast to every element.
    Scalar(usize),
    Const(f32),
    Unary(Unary, Box<Node>),
    Binary(Binary, Box<Node>, Box<Node>),
    /// u + t·(v − u).
    Lerp(f32, Box<Node>, Box<Node>),
    /// gy · f'(x) given x, y = f(x) and gy (the VJP of a unary op).
    UnaryGrad(Unary, Box<[Node; 3]>),
}

impl Node {
    fn ops(&self) -> usize {
        match self {
            Node::Input(_) | Node::Scalar(_) | Node::Const(_) => 0,
            Node::Unary(_, a) => 1 + a.ops(),
            Node::Binary(_, a, b) | Node::Lerp(_, a, b) => 1 + a.ops() + b.ops(),
            Node::UnaryGrad(_, k) => 1 + k.iter().map(Node::ops).sum::<usize>(),
        }
    }

    /// The same expression with input indices mapped through `map`.
    fn remap(&self, map: &[usize]) -> Node {
        match self {
            Node::Input(i) => Node::Input(map[*i]),
            Node::Scalar(i) => Node::Scalar(map[*i]),
            Node::Const(v) => Node::Const(*v),
            Node::Unary(op, a) => Node::Unary(*op, Box::new(a.remap(map))),
            Node::Binary(op, a, b) => Node::Binary(*op, Box::new(a.remap(map)), Box::new(b.remap(map))),
            Node::Lerp(t, a, b) => Node::Lerp(*t, Box::new(a.remap(map)), Box::new(b.remap(map))),
            Node::UnaryGrad(op, k) => Node::UnaryGrad(*op, Box::new(k.clone().map(|n| n.remap(map)))),
        }
    }
}

/// A pending expression and the realized storages its inputs refer to.
pub(crate) struct Lazy {
    node: Node,
    inputs: Vec<Arc<Storage>>,
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

/// An operand of a new elementwise op.
pub(crate) struct Operand<'a> {
    pub store: &'a Arc<Storage>,
    /// A one-element operand broadcast over the result.
    pub scalar: bool,
}

/// Builds the expression of a new op over `operands`, inlining lazy operands, and returns it
/// as a lazy storage of `numel` elements. `make` turns the operands' nodes into the op's node.
/// When inlining would pass the limits, the lazy operands are realized first.
pub(crate) fn record(
    gpu: &Gpu,
    numel: usize,
    operands: &[Operand<'_>],
    make: impl Fn(Vec<Node>) -> Node,
) -> Arc<Storage> {
    let limit = gpu.fusion_limit();
    let (node, inputs) = build(gpu, operands, limit > 1, &make);
    let (node, inputs) = if node.ops() > limit || inputs.len() > MAX_INPUTS {
        build(gpu, operands, false, &make)
    } else {
        (node, inputs)
    };
    Arc::new(Storage { numel, buf: OnceLock::new(), lazy: Mutex::new(Some(Lazy { node, inputs })) })
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
) -> (Node, Vec<Arc<Storage>>) {
    let mut inputs: Vec<Arc<Storage>> = Vec::new();
    let mut leaf = |s: &Arc<Storage>| match inputs.iter().position(|t| Arc::ptr_eq(t, s)) {
        Some(i) => i,
        None => {
            inputs.push(s.clone());
            inputs.len() - 1
        }
    };
    let mut nodes = Vec::with_capacity(operands.len());
    for op in operands {
        let pending = if inline && !op.scalar {
            op.store.lazy.lock().unwrap().as_ref().map(|l| {
                let map: Vec<usize> = l.inputs.iter().map(&mut leaf).collect();
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
                let i = leaf(op.store);
                if op.scalar {
                    Node::Scalar(i)
                } else {
                    Node::Input(i)
                }
            }
        });
    }
    (make(nodes), inputs)
}

/// Runs `lazy` as one generated kernel into a new buffer of `numel` elements.
fn run(gpu: &Gpu, lazy: &Lazy, numel: usize) -> DeviceBuffer {
    let out = gpu.alloc((numel * 4).max(4) as u64);
    let textures = gpu.elementwise_from_textures(numel);
    let scalar = scalar_inputs(&lazy.node, lazy.inputs.len());
    let staged: Vec<Option<DeviceTexture>> = lazy
        .inputs
        .iter()
        .zip(&scalar)
        .map(|(s, &is_scalar)| {
            let b = s.buf.get().expect("fused inputs are realized");
            (textures && !is_scalar).then(|| gpu.stage_flat(b, s.numel))
        })
        .collect();
    let kinds: Vec<Slot> = staged.iter().map(|t| if t.is_some() { Slot::Texture } else { Slot::ReadOnly }).collect();
    let mut consts = Vec::new();
    let body = generate(&lazy.node, &kinds, &mut consts);
    let mut slots = kinds.clone();
    slots.push(Slot::ReadWrite);
    let kernel = gpu.kernel(&KernelSpec::generated(body, slots));

    let mut params: Vec<u32> = vec![numel as u32, 0, 0, 0];
    params.extend(consts.iter().map(|c: &f32| c.to_bits()));
    // The uniform's constant array has at least one vec4.
    params.resize(4 + 4 * consts.len().div_ceil(4).max(1), 0);
    let mut bindings: Vec<Binding<'_>> = Vec::with_capacity(lazy.inputs.len() + 1);
    for ((s, t), &is_scalar) in lazy.inputs.iter().zip(&staged).zip(&scalar) {
        bindings.push(match t {
            Some(t) => Binding::Texture(t),
            None => {
                let buffer = s.buf.get().expect("fused inputs are realized");
                Binding::Buffer { buffer, bytes: if is_scalar { 4 } else { (s.numel * 4) as u64 } }
            }
        });
    }
    bindings.push(Binding::Buffer { buffer: &out, bytes: (numel * 4) as u64 });
    gpu.dispatch(&kernel, bytemuck::cast_slice(&params), &bindings, grid_1d((numel as u32).div_ceil(1024)));
    out
}

/// Which inputs are only read as broadcast scalars.
fn scalar_inputs(node: &Node, n: usize) -> Vec<bool> {
    fn walk(node: &Node, s: &mut [bool]) {
        match node {
            Node::Scalar(i) => s[*i] = true,
            Node::Input(_) | Node::Const(_) => {}
            Node::Unary(_, a) => walk(a, s),
            Node::Binary(_, a, b) | Node::Lerp(_, a, b) => {
                walk(a, s);
                walk(b, s);
            }
            Node::UnaryGrad(_, k) => k.iter().for_each(|c| walk(c, s)),
        }
    }
    let mut s = vec![false; n];
    walk(node, &mut s);
    s
}

/// The generated kernel after the op library: bindings, the uniform and the main function
/// computing `node` per vec4. Scalar constants are appended to `consts` and read from the
/// uniform, so the text depends only on the expression's structure and the input kinds.
pub(crate) fn generate(node: &Node, inputs: &[Slot], consts: &mut Vec<f32>) -> String {
    let mut lines = String::new();
    let mut next = 0usize;
    let result = emit(node, &mut lines, &mut next, consts);
    let mut src = String::new();
    let vec4s = consts.len().div_ceil(4).max(1);
    let _ = writeln!(src, "struct Params {{ n: u32, pad0: u32, pad1: u32, pad2: u32, c: array<vec4<f32>, {vec4s}> }}");
    let _ = writeln!(src, "@group(0) @binding(0) var<uniform> p: Params;");
    for (i, kind) in inputs.iter().enumerate() {
        let ty = if *kind == Slot::Texture { "texture_2d_array<f32>" } else { "array<vec4<f32>>" };
        let space = if *kind == Slot::Texture { "" } else { "<storage, read>" };
        let _ = writeln!(src, "@group(0) @binding({}) var{space} in{i}: {ty};", i + 1);
    }
    let _ = writeln!(src, "@group(0) @binding({}) var<storage, read_write> out: array<vec4<f32>>;", inputs.len() + 1);
    src.push_str("@compute @workgroup_size(256)\n");
    src.push_str("fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {\n");
    src.push_str("    let i = gid.x + gid.y * nwg.x * 256u;\n    if i * 4u >= p.n { return; }\n");
    if inputs.contains(&Slot::Texture) {
        // Flat texture copies (Gpu::stage_flat): texel t at (t mod 1024, t / 1024 mod 1024,
        // layer t / 1024²).
        src.push_str("    let tc = vec2<u32>(i % 1024u, (i / 1024u) % 1024u);\n    let tl = i / (1024u * 1024u);\n");
    }
    let scalar = scalar_inputs(node, inputs.len());
    for (i, kind) in inputs.iter().enumerate() {
        let _ = match kind {
            Slot::Texture => writeln!(src, "    let x{i} = textureLoad(in{i}, tc, tl, 0);"),
            _ if scalar[i] => writeln!(src, "    let x{i} = vec4<f32>(in{i}[0].x);"),
            _ => writeln!(src, "    let x{i} = in{i}[i];"),
        };
    }
    src.push_str(&lines);
    let _ = writeln!(src, "    out[i] = {result};\n}}");
    src
}

/// Appends the statements computing `node` and returns the WGSL value holding it.
fn emit(node: &Node, lines: &mut String, next: &mut usize, consts: &mut Vec<f32>) -> String {
    let mut constant = |v: f32, consts: &mut Vec<f32>| {
        consts.push(v);
        let j = consts.len() - 1;
        format!("p.c[{}][{}]", j / 4, j % 4)
    };
    let expr = match node {
        Node::Input(i) | Node::Scalar(i) => return format!("x{i}"),
        Node::Const(v) => format!("vec4<f32>({})", constant(*v, consts)),
        Node::Unary(op, a) => {
            let a = emit(a, lines, next, consts);
            let (pa, pb) = unary_params(*op, consts, &mut constant);
            format!("unary_op({}u, {a}, {pa}, {pb})", op.code())
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (emit(a, lines, next, consts), emit(b, lines, next, consts));
            format!("binary_op({}u, {a}, {b}, 0.0)", op.code())
        }
        Node::Lerp(t, a, b) => {
            let (a, b) = (emit(a, lines, next, consts), emit(b, lines, next, consts));
            format!("binary_op(7u, {a}, {b}, {})", constant(*t, consts))
        }
        Node::UnaryGrad(op, k) => {
            let [x, y, gy] = [0, 1, 2].map(|j| emit(&k[j], lines, next, consts));
            let (pa, _) = unary_params(*op, consts, &mut constant);
            format!("{gy} * unary_derivative({}u, {x}, {y}, {pa})", op.code())
        }
    };
    let name = format!("t{next}");
    *next += 1;
    let _ = writeln!(lines, "    let {name} = {expr};");
    name
}

/// The WGSL arguments for a unary op's two parameters.
fn unary_params(
    op: Unary,
    consts: &mut Vec<f32>,
    constant: &mut impl FnMut(f32, &mut Vec<f32>) -> String,
) -> (String, String) {
    match op {
        Unary::Affine(a, b) => (constant(a, consts), constant(b, consts)),
        Unary::SignedPow(e) => (constant(e, consts), "0.0".into()),
        _ => ("0.0".into(), "0.0".into()),
    }
}

/// Generated kernels for a few representative expressions, buffer and texture inputs, for
/// the naga validation test.
pub fn example_sources() -> Vec<String> {
    let x = || Box::new(Node::Input(0));
    let exprs = [
        Node::Const(1.5),
        Node::Unary(Unary::Affine(2.0, 1.0), x()),
        Node::Binary(Binary::Mul, Box::new(Node::Unary(Unary::Exp, x())), Box::new(Node::Scalar(1))),
        Node::Lerp(0.1, x(), Box::new(Node::Input(1))),
        Node::UnaryGrad(Unary::SignedPow(1.5), Box::new([Node::Input(0), Node::Input(1), Node::Input(2)])),
    ];
    let mut out = Vec::new();
    for e in &exprs {
        let used = (0..3).filter(|&i| mentions(e, i)).count();
        let scalar = scalar_inputs(e, used);
        for kind in [Slot::ReadOnly, Slot::Texture] {
            let kinds: Vec<Slot> = scalar.iter().map(|&s| if s { Slot::ReadOnly } else { kind }).collect();
            out.push(format!("{}{}", LIBRARY, generate(e, &kinds, &mut Vec::new())));
        }
    }
    out
}

fn mentions(node: &Node, i: usize) -> bool {
    match node {
        Node::Input(j) | Node::Scalar(j) => *j == i,
        Node::Const(_) => false,
        Node::Unary(_, a) => mentions(a, i),
        Node::Binary(_, a, b) | Node::Lerp(_, a, b) => mentions(a, i) || mentions(b, i),
        Node::UnaryGrad(_, k) => k.iter().any(|c| mentions(c, i)),
    }
}

/// The op library every generated kernel starts with.
pub const LIBRARY: &str = include_str!("../shaders/elementwise_ops.wgsl");
