//! The explicit reverse-mode tape.
//!
//! An op called through a recording [`Tape`] on at least one tracked input appends a node: the
//! ids of its inputs and a VJP closure that owns exactly the tensors the rule needs. `backward`
//! walks the nodes in reverse, calls each closure once (dropping it, and so releasing its saved
//! tensors, right after) and frees every intermediate gradient as soon as it has been consumed.
//! Ops on untracked values, or on a tape made with [`Tape::no_grad`], record nothing.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::ops::{numel, ActFn, Activation, Binary, Reduce, TensorOps, Unary};

type Vjp<T> = Box<dyn FnOnce(&T) -> Vec<Option<T>>>;

struct Node<T> {
    inputs: Vec<Option<usize>>,
    vjp: Option<Vjp<T>>,
}

/// A value on the tape: the tensor and, when tracked, the id of the node that produced it.
#[derive(Clone)]
pub struct Var<T> {
    pub value: T,
    id: Option<usize>,
}

impl<T: TensorOps> Var<T> {
    /// An untracked value: gradients do not flow into it.
    pub fn constant(value: T) -> Self {
        Var { value, id: None }
    }
    pub fn is_tracked(&self) -> bool {
        self.id.is_some()
    }
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
}

pub struct Tape<T> {
    nodes: RefCell<Vec<Node<T>>>,
    recording: bool,
}

/// Gradients of the leaves that `backward` reached.
pub struct Gradients<T> {
    grads: HashMap<usize, T>,
}

impl<T: TensorOps> Gradients<T> {
    pub fn get(&self, v: &Var<T>) -> Option<&T> {
        v.id.and_then(|id| self.grads.get(&id))
    }
    /// The gradient of `v`, or zeros of its shape if no path led to it.
    pub fn get_or_zeros(&self, v: &Var<T>) -> T {
        self.get(v).cloned().unwrap_or_else(|| v.value.zeros_like(v.value.shape()))
    }
}

impl<T: TensorOps> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: TensorOps> Tape<T> {
    pub fn new() -> Self {
        Tape { nodes: RefCell::new(Vec::new()), recording: true }
    }
    /// A tape that records nothing: the same layer code then runs as plain inference.
    pub fn no_grad() -> Self {
        Tape { nodes: RefCell::new(Vec::new()), recording: false }
    }
    pub fn is_recording(&self) -> bool {
        self.recording
    }
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A tracked leaf (a parameter or an input whose gradient is wanted).
    pub fn leaf(&self, value: T) -> Var<T> {
        if !self.recording {
            return Var::constant(value);
        }
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { inputs: Vec::new(), vjp: None });
        Var { value, id: Some(nodes.len() - 1) }
    }

    /// Records `value` as computed from `inputs` with the VJP rule `vjp` (given the output's
    /// gradient it returns one gradient per input, `None` where none flows).
    pub fn record(&self, value: T, inputs: &[&Var<T>], vjp: impl FnOnce(&T) -> Vec<Option<T>> + 'static) -> Var<T> {
        if !self.recording || inputs.iter().all(|v| v.id.is_none()) {
            return Var::constant(value);
        }
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { inputs: inputs.iter().map(|v| v.id).collect(), vjp: Some(Box::new(vjp)) });
        Var { value, id: Some(nodes.len() - 1) }
    }

    /// Reverse pass from a scalar (one-element) `loss`. Consumes the recorded nodes, so the tape
    /// holds nothing afterwards and can record the next step.
    pub fn backward(&self, loss: &Var<T>) -> Gradients<T> {
        assert_eq!(numel(loss.shape()), 1, "backward needs a scalar loss, got shape {:?}", loss.shape());
        let seed = loss.value.full_like(loss.shape(), 1.0);
        self.backward_with(loss, seed)
    }

    /// Reverse pass with an explicit output gradient (a vector–Jacobian product).
    pub fn backward_with(&self, out: &Var<T>, grad: T) -> Gradients<T> {
        let mut nodes = std::mem::take(&mut *self.nodes.borrow_mut());
        let mut pending: HashMap<usize, T> = HashMap::new();
        let mut leaves = HashMap::new();
        let Some(root) = out.id else {
            return Gradients { grads: leaves };
        };
        pending.insert(root, grad);
        for id in (0..=root).rev() {
            let Some(g) = pending.remove(&id) else {
                continue;
            };
            let node = &mut nodes[id];
            let Some(vjp) = node.vjp.take() else {
                leaves.insert(id, g);
                continue;
            };
            let input_grads = vjp(&g);
            drop(g);
            for (input, ig) in node.inputs.iter().zip(input_grads) {
                if let (Some(i), Some(ig)) = (input, ig) {
                    let acc = match pending.remove(i) {
                        Some(prev) => prev.add(&ig),
                        None => ig,
                    };
                    pending.insert(*i, acc);
                }
            }
        }
        Gradients { grads: leaves }
    }

    // ------------------------------------------------------------------ recorded ops

    pub fn unary(&self, x: &Var<T>, op: Unary) -> Var<T> {
        let y = x.value.unary(op);
        let (xs, ys) = (x.value.clone(), y.clone());
        self.record(y, &[x], move |g| vec![Some(T::unary_grad(op, &xs, &ys, g))])
    }

    pub fn binary(&self, a: &Var<T>, b: &Var<T>, op: Binary) -> Var<T> {
        let y = a.value.binary(op, &b.value);
        let (av, bv) = (a.value.clone(), b.value.clone());
        let (want_a, want_b) = (a.is_tracked(), b.is_tracked());
        let yv = y.clone();
        self.record(y, &[a, b], move |g| {
            let (sa, sb) = (av.shape().to_vec(), bv.shape().to_vec());
            let (ga, gb) = match op {
                Binary::Add => (want_a.then(|| g.clone()), want_b.then(|| g.clone())),
                Binary::Sub => (want_a.then(|| g.clone()), want_b.then(|| g.unary(Unary::Neg))),
                Binary::Mul => (want_a.then(|| g.mul(&bv)), want_b.then(|| g.mul(&av))),
                Binary::Div => (want_a.then(|| g.div(&bv)), want_b.then(|| g.mul(&yv).div(&bv).unary(Unary::Neg))),
                Binary::Max | Binary::Min => {
                    // The gradient goes to the selected input; ties go to `a`.
                    let mask_a =
                        if op == Binary::Max { av.binary(Binary::Ge, &bv) } else { bv.binary(Binary::Ge, &av) };
                    let ga = g.mul(&mask_a);
                    let gb = want_b.then(|| g.sub(&ga));
                    (want_a.then_some(ga), gb)
                }
                Binary::Ge => (None, None),
            };
            vec![ga.map(|t| t.sum_to_shape(&sa)), gb.map(|t| t.sum_to_shape(&sb))]
        })
    }

    pub fn add(&self, a: &Var<T>, b: &Var<T>) -> Var<T> {
        self.binary(a, b, Binary::Add)
    }
    pub fn sub(&self, a: &Var<T>, b: &Var<T>) -> Var<T> {
        self.binary(a, b, Binary::Sub)
    }
    pub fn mul(&self, a: &Var<T>, b: &Var<T>) -> Var<T> {
        self.binary(a, b, Binary::Mul)
    }
    pub fn div(&self, a: &Var<T>, b: &Var<T>) -> Var<T> {
        self.binary(a, b, Binary::Div)
    }
    /// `a·x + b` elementwise with scalars.
    pub fn affine(&self, x: &Var<T>, a: f32, b: f32) -> Var<T> {
        self.unary(x, Unary::Affine(a, b))
    }

    pub fn reduce(&self, x: &Var<T>, op: Reduce, axis: Option<usize>, keepdim: bool) -> Var<T> {
        let y = x.value.reduce(op, axis, keepdim);
        let xs = x.value.clone();
        let yk = y.clone();
        self.record(y, &[x], move |g| {
            let shape = xs.shape().to_vec();
            // The output gradient and value reshaped to keep the reduced axis (size 1).
            let keep: Vec<usize> = match axis {
                Some(a) => {
                    let mut s = shape.clone();
                    s[a] = 1;
                    s
                }
                None => vec![1; shape.len()],
            };
            let gk = g.reshape(&keep).broadcast_to(&shape);
            let n = match axis {
                Some(a) => shape[a],
                None => numel(&shape),
            };
            let gx = match op {
                Reduce::Sum => gk,
                Reduce::Mean => gk.scale(1.0 / n as f32),
                Reduce::Max => gk.mul(&xs.binary(Binary::Ge, &yk.reshape(&keep))),
                Reduce::LogSumExp => gk.mul(&xs.sub(&yk.reshape(&keep)).unary(Unary::Exp)),
            };
            vec![Some(gx)]
        })
    }

    pub fn sum(&self, x: &Var<T>) -> Var<T> {
        self.reduce(x, Reduce::Sum, None, false)
    }
    pub fn mean(&self, x: &Var<T>) -> Var<T> {
        self.reduce(x, Reduce::Mean, None, false)
    }

    pub fn matmul(&self, a: &Var<T>, b: &Var<T>, ta: bool, tb: bool) -> Var<T> {
        let y = a.value.matmul(&b.value, ta, tb);
        let (av, bv) = (a.value.clone(), b.value.clone());
        let (want_a, want_b) = (a.is_tracked(), b.is_tracked());
        self.record(y, &[a, b], move |g| {
            // C = op(A)·op(B): the stored-layout gradients of A and B.
            let ga = want_a.then(|| if ta { bv.matmul(g, tb, true) } else { g.matmul(&bv, false, !tb) });
            let gb = want_b.then(|| if tb { g.matmul(&av, true, ta) } else { av.matmul(g, !ta, false) });
            // A 2-D operand shared across the other's batch sums its per-batch gradients.
            let fold = |grad: T, like: &T| {
                if grad.shape().len() == 3 && like.shape().len() == 2 {
                    grad.reduce(Reduce::Sum, Some(0), false)
                } else {
                    grad
                }
            };
            vec![ga.map(|t| fold(t, &av)), gb.map(|t| fold(t, &bv))]
        })
    }

    pub fn reshape(&self, x: &Var<T>, shape: &[usize]) -> Var<T> {
        let y = x.value.reshape(shape);
        let orig = x.shape().to_vec();
        self.record(y, &[x], move |g| vec![Some(g.reshape(&orig))])
    }

    pub fn permute(&self, x: &Var<T>, perm: &[usize]) -> Var<T> {
        let y = x.value.permute(perm);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        self.record(y, &[x], move |g| vec![Some(g.permute(&inverse))])
    }

    pub fn slice(&self, x: &Var<T>, axis: usize, start: usize, len: usize) -> Var<T> {
        let y = x.value.slice(axis, start, len);
        let full = x.shape().to_vec();
        self.record(y, &[x], move |g| vec![Some(g.unslice(&full, axis, start))])
    }

    pub fn concat(&self, parts: &[&Var<T>], axis: usize) -> Var<T> {
        let values: Vec<&T> = parts.iter().map(|p| &p.value).collect();
        let y = T::concat(&values, axis);
        let lens: Vec<usize> = parts.iter().map(|p| p.shape()[axis]).collect();
        self.record(y, parts, move |g| {
            let mut start = 0;
            lens.iter()
                .map(|&len| {
                    let s = g.slice(axis, start, len);
                    start += len;
                    Some(s)
                })
                .collect()
        })
    }

    pub fn broadcast_to(&self, x: &Var<T>, shape: &[usize]) -> Var<T> {
        let y = x.value.broadcast_to(shape);
        let orig = x.shape().to_vec();
        self.record(y, &[x], move |g| vec![Some(g.sum_to_shape(&orig))])
    }

    /// conv2d(x, w): stride 1, "same" padding.
    pub fn conv2d(&self, x: &Var<T>, w: &Var<T>) -> Var<T> {
        let y = x.value.conv2d(&w.value);
        let (xv, wv) = (x.value.clone(), w.value.clone());
        let (want_x, want_w) = (x.is_tracked(), w.is_tracked());
        let k = w.shape()[2];
        self.record(y, &[x, w], move |g| {
            vec![want_x.then(|| g.conv_transpose2d(&wv)), want_w.then(|| xv.conv2d_grad_weight(g, k))]
        })
    }

    /// The adjoint of conv2d(·, w) applied to u. Linear in u with adjoint conv2d; in w,
    /// ⟨g, convᵀ(u; w)⟩ = ⟨conv(g; w), u⟩ gives the weight gradient grad_weight(g, u).
    pub fn conv_transpose2d(&self, u: &Var<T>, w: &Var<T>) -> Var<T> {
        let y = u.value.conv_transpose2d(&w.value);
        let (uv, wv) = (u.value.clone(), w.value.clone());
        let (want_u, want_w) = (u.is_tracked(), w.is_tracked());
        let k = w.shape()[2];
        self.record(y, &[u, w], move |g| {
            vec![want_u.then(|| g.conv2d(&wv)), want_w.then(|| g.conv2d_grad_weight(&uv, k))]
        })
    }

    pub fn squeeze2(&self, x: &Var<T>) -> Var<T> {
        let y = x.value.squeeze2();
        self.record(y, &[x], |g| vec![Some(g.unsqueeze2())])
    }

    pub fn unsqueeze2(&self, x: &Var<T>) -> Var<T> {
        let y = x.value.unsqueeze2();
        self.record(y, &[x], |g| vec![Some(g.squeeze2())])
    }

    /// φ(x) for an activation; `beta` is LipSwish's β (a one-element tensor, usually
    /// softplus of a raw parameter, recorded on this tape).
    pub fn activation(&self, x: &Var<T>, act: Activation, beta: Option<&Var<T>>) -> Var<T> {
        self.activation_piece(x, act, beta, ActFn::Value)
    }

    /// φ'(x) as an op of its own: the recorded JVP of the Neumann surrogate needs it, and its
    /// VJP needs φ'' and ∂φ'/∂β.
    pub fn activation_derivative(&self, x: &Var<T>, act: Activation, beta: Option<&Var<T>>) -> Var<T> {
        self.activation_piece(x, act, beta, ActFn::D1)
    }

    fn activation_piece(&self, x: &Var<T>, act: Activation, beta: Option<&Var<T>>, f: ActFn) -> Var<T> {
        assert_eq!(beta.is_some(), act.has_beta(), "{act:?} {} a β", if act.has_beta() { "needs" } else { "takes no" });
        let bv = beta.map(|b| b.value.clone());
        let y = x.value.activation(act, f, bv.as_ref(), None);
        let xv = x.value.clone();
        let want_beta = beta.is_some_and(|b| b.is_tracked());
        let (dx, dbeta) = match f {
            ActFn::Value => (ActFn::D1, ActFn::DBeta),
            ActFn::D1 => (ActFn::D2, ActFn::D1Beta),
            other => panic!("{other:?} has no recorded VJP"),
        };
        let mut inputs = vec![x];
        if let Some(b) = beta {
            inputs.push(b);
        }
        self.record(y, &inputs, move |g| {
            let gx = xv.activation(act, dx, bv.as_ref(), Some(g));
            let mut grads = vec![Some(gx)];
            if let Some(b) = &bv {
                let gb = want_beta.then(|| xv.activation(act, dbeta, Some(b), Some(g)).sum_all().reshape(b.shape()));
                grads.push(gb);
            }
            grads
        })
    }
}
