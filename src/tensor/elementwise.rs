//! Elementwise ops: unary ops and their VJPs, binary ops with broadcasting, activations and
//! interpolation. Each is a lazy expression (`fusion`); a broadcast no fused kernel can read
//! runs the general broadcast kernel (`shaders/elementwise/broadcast.wgsl`).

use super::layout::IndexedParams;
use super::Tensor;
use crate::fusion::{Child, Node, Role};
use crate::gpu::kernels::grid_1d;
use crate::gpu::KernelSpec;
use crate::ops::{
    broadcast_shape, broadcast_strides, numel, pad4, pad4_strides, ActFn, Activation, Binary, ShapeError, Unary,
};

/// `op` applied to every element (lazy).
pub(super) fn unary(a: &Tensor, op: Unary) -> Tensor {
    a.fused(&a.shape, &[a], |mut k| Node::Unary(op, k.remove(0).into()))
}

/// gy · f'(x) for the unary op f, given x, y = f(x) and gy (lazy).
pub(super) fn unary_grad(op: Unary, x: &Tensor, y: &Tensor, gy: &Tensor) -> Tensor {
    x.fused(&x.shape, &[x, y, gy], |k| {
        let [x, y, gy]: [Node; 3] = k.try_into().expect("three operands");
        Node::UnaryGrad(op, [x.into(), y.into(), gy.into()])
    })
}

/// `a op b` with broadcasting: lazy where a fused kernel can read both operands, else the
/// broadcast kernel.
pub(super) fn try_binary(a: &Tensor, op: Binary, other: &Tensor) -> Result<Tensor, ShapeError> {
    let shape = broadcast_shape(&a.shape, &other.shape)?;
    if Role::of(&a.shape, &shape).is_some() && Role::of(&other.shape, &shape).is_some() {
        return Ok(a.fused(&shape, &[a, other], |mut k| {
            let b = k.pop().expect("two operands");
            Node::Binary(op, k.pop().expect("two operands").into(), b.into())
        }));
    }
    let out = Tensor::empty(&a.gpu, &shape);
    let params = IndexedParams {
        n: numel(&shape) as u32,
        offset_a: 0,
        offset_b: 0,
        pad: 0,
        shape: pad4(&shape, "binary op").map(|v| v as u32),
        strides_a: pad4_strides(&broadcast_strides(&a.shape, &shape)),
        strides_b: pad4_strides(&broadcast_strides(&other.shape, &shape)),
    };
    let k = a.gpu.kernel(&KernelSpec::new("broadcast", "main", 2, 1).with("OP", op.code() as f64));
    a.gpu.dispatch(
        &k,
        bytemuck::bytes_of(&params),
        &[a.binding(), other.binding(), out.binding()],
        grid_1d(params.n.div_ceil(256)),
    );
    Ok(out)
}

/// A piece `f` of activation `act` at `a` (with β where it has one), times `gy` if given (lazy).
pub(super) fn activation(a: &Tensor, act: Activation, f: ActFn, beta: Option<&Tensor>, gy: Option<&Tensor>) -> Tensor {
    let mut operands = vec![a];
    operands.extend(beta);
    operands.extend(gy);
    let (has_beta, has_gy) = (beta.is_some(), gy.is_some());
    a.fused(&a.shape, &operands, move |k| {
        let mut k = k.into_iter().map(Child::from);
        let x = k.next().expect("x");
        let beta = if has_beta { k.next() } else { None };
        let gy = if has_gy { k.next() } else { None };
        Node::Activation { act, f, x, beta, gy }
    })
}

/// a + t·(b − a) (lazy).
pub(super) fn lerp(a: &Tensor, other: &Tensor, t: f32) -> Tensor {
    assert_eq!(a.shape, other.shape, "lerp of {:?} and {:?}", a.shape, other.shape);
    a.fused(&a.shape, &[a, other], |mut k| {
        let v = k.pop().expect("two operands");
        Node::Lerp(t, k.pop().expect("two operands").into(), v.into())
    })
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    vec![super::param_layout!("broadcast", IndexedParams { n, shape, strides_a, strides_b })]
}
