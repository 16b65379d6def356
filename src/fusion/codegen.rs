//! The WGSL code generator of fused kernels: pure string building from an expression, the
//! kinds of its inputs and the sizes a kernel's index arithmetic divides by. Nothing here
//! touches a device, so the generated text can be checked without an adapter.

use std::fmt::Write as _;

use super::expr::{Child, Node, Role};
use crate::activation::{ActFn, Activation};
use crate::gpu::Slot;
use crate::ops::{Binary, Unary};

/// The op library every generated kernel starts with (the name of its shader in
/// `gpu::kernels::SHADERS`).
pub const LIBRARY: &str = "elementwise_ops";

/// Appends `v` to the uniform's constants and returns the WGSL expression reading it.
fn constant_slot(v: f32, consts: &mut Vec<f32>) -> String {
    consts.push(v);
    let j = consts.len() - 1;
    format!("p.c[{}][{}]", j / 4, j % 4)
}

/// The pieces of a generated kernel: input bindings, the loads of every input at vec4 index
/// `i` (and texture coordinates `tc`, `tl` when an input is a texture), the statements of the
/// expression and the value holding it.
pub(super) struct Parts {
    pub bindings: String,
    pub loads: String,
    pub lines: String,
    pub result: String,
}

pub(super) fn parts(node: &Node, inputs: &[(Slot, Role)], consts: &mut Vec<f32>) -> Parts {
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
pub(super) fn header(consts: &[f32]) -> String {
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
pub(super) fn literal_u32(v: usize) -> String {
    format!("{v}u")
}

pub(super) const MAIN: &str = "@compute @workgroup_size(256)\n\
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

/// The uniform's words: the count, padding, then the constants (at least one vec4 of them).
pub(super) fn uniform(n: usize, consts: &[f32]) -> Vec<u32> {
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
            format!("binary_op({}u, {a}, {b}, {})", Binary::LERP_CODE, constant_slot(*t, consts))
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
                out.push(format!(
                    "{}{}",
                    crate::gpu::kernels::source(LIBRARY),
                    generate(e, &kinds, &mut Vec::new(), per, packed)
                ));
            }
        }
    }
    out
}

/// The shape of a fused sum's work: output blocks of `cols4` vec4 columns, each summed over
/// `rows` rows in `chunks` chunks of `chunk` rows; `columns` says the summed axis is not the
/// innermost one (the outputs are vec4s; else each output is the sum of a vec4's lanes).
pub(super) struct SumShape {
    pub rows: usize,
    pub cols4: usize,
    pub chunk: usize,
    pub chunks: usize,
    pub columns: bool,
}

/// The fused sum kernel: invocation (o, c, j4) adds chunk c of the rows of output block o at
/// vec4 column j4, computing the expression while it sums.
pub(super) fn sum_source(node: &Node, kinds: &[(Slot, Role)], consts: &mut Vec<f32>, shape: &SumShape) -> String {
    let SumShape { rows, cols4, chunk, chunks, columns } = *shape;
    let parts = parts(node, kinds, consts);
    let (cols4, nchunks, nrows, row_step) =
        (literal_u32(cols4), literal_u32(chunks), literal_u32(rows), literal_u32(rows * shape.cols4));
    let mut src = header(consts);
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
    src
}

/// The skinny matmul kernel C = A·B (`n` columns, `k` a multiple of 4): one invocation per row
/// of C computes A's expression along its row while it takes the dot products. B is bound
/// after the expression's inputs, as a uniform buffer (`b_uniform`) or a storage buffer, and
/// is stored as `[n, k]` when `b_stored_nk`, else as `[k, n]`.
pub(super) fn row_matmul_source(
    node: &Node,
    kinds: &[(Slot, Role)],
    consts: &mut Vec<f32>,
    (k, n): (usize, usize),
    b_uniform: bool,
    b_stored_nk: bool,
) -> String {
    let parts = parts(node, kinds, consts);
    let k4 = literal_u32(k / 4);
    let mut src = header(consts);
    src.push_str(&parts.bindings);
    if b_uniform {
        let _ =
            writeln!(src, "@group(0) @binding({}) var<uniform> bm: array<vec4<f32>, {}>;", kinds.len() + 1, k * n / 4);
    } else {
        let _ = writeln!(src, "@group(0) @binding({}) var<storage, read> bm: array<vec4<f32>>;", kinds.len() + 1);
    }
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
    src
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_times_scalar() -> (Node, Vec<(Slot, Role)>) {
        let node =
            Node::Binary(Binary::Mul, Node::Unary(Unary::Exp, Node::Input(0).into()).into(), Node::Input(1).into());
        (node, vec![(Slot::ReadOnly, Role::Full), (Slot::Uniform, Role::broadcast(1, 1))])
    }

    #[test]
    fn a_chain_becomes_one_value_function_over_its_inputs() {
        let (node, kinds) = exp_times_scalar();
        let mut consts = Vec::new();
        let src = generate(&node, &kinds, &mut consts, 1, false);
        assert!(consts.is_empty(), "no scalar constants in this expression");
        assert!(src.contains("@group(0) @binding(1) var<storage, read> in0: array<vec4<f32>>;"), "{src}");
        assert!(src.contains("@group(0) @binding(2) var<uniform> in1: array<vec4<f32>, 1>;"), "{src}");
        assert!(src.contains("@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;"), "{src}");
        assert!(src.contains("let x0 = in0[i];") && src.contains("let x1 = vec4<f32>(in1[0u][0u]);"), "{src}");
        assert!(src.contains("unary_op(1u, x0, 0.0, 0.0)") && src.contains("binary_op(2u,"), "{src}");
        assert!(src.contains("out[i] = value(i);"), "{src}");
    }

    #[test]
    fn constants_travel_in_the_uniform_and_packed_stores_pair_vec4s() {
        let node = Node::Unary(Unary::Affine(2.0, 0.5), Node::Input(0).into());
        let mut consts = Vec::new();
        let src = generate(&node, &[(Slot::ReadOnly, Role::Full)], &mut consts, 4, true);
        assert_eq!(consts, vec![2.0, 0.5]);
        assert!(src.contains("unary_op(10u, x0, p.c[0][0], p.c[0][1])"), "{src}");
        assert!(
            src.contains("array<vec4<u64>>") && src.contains("out[i / 2u] = pack_pair(value(i), second);"),
            "{src}"
        );
        // The same structure with other constants is the same kernel text.
        let other = Node::Unary(Unary::Affine(-1.0, 3.0), Node::Input(0).into());
        assert_eq!(src, generate(&other, &[(Slot::ReadOnly, Role::Full)], &mut Vec::new(), 4, true));
    }
}
