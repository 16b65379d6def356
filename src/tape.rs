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
        // Save only what the derivative reads (see `Unary::derivative`), so nothing else stays alive.
        let needs_x = !matches!(
            op,
            Unary::Neg | Unary::Exp | Unary::Sigmoid | Unary::Tanh | Unary::Sqrt | Unary::Recip | Unary::Affine(..)
        );
        let needs_y = matches!(op, Unary::Exp | Unary::Sigmoid | Unary::Tanh | Unary::Sqrt | Unary::Recip);
        let xs = needs_x.then(|| x.value.clone());
        let ys = needs_y.then(|| y.clone());
        self.record(y, &[x], move |g| {
            // The kernel binds x and y; an unread one is bound to g (same shape).
            let (xr, yr) = (xs.as_ref().unwrap_or(g), ys.as_ref().unwrap_or(g));
            vec![Some(T::unary_grad(op, xr, yr, g))]
        })
    }

    pub fn binary(&self, a: &Var<T>, b: &Var<T>, op: Binary) -> Var<T> {
        let y = a.value.binary(op, &b.value);
        let (want_a, want_b) = (a.is_tracked(), b.is_tracked());
        let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
        // Save only the operands (and output) the rule reads.
        let (keep_a, keep_b, keep_y) = match op {
            Binary::Add | Binary::Sub | Binary::Ge => (false, false, false),
            Binary::Mul => (want_b, want_a, false),
            Binary::Div => (false, true, want_b),
            Binary::Max | Binary::Min => (true, true, false),
        };
        let av = keep_a.then(|| a.value.clone());
        let bv = keep_b.then(|| b.value.clone());
        let yv = keep_y.then(|| y.clone());
        self.record(y, &[a, b], move |g| {
            let (ga, gb) = match op {
                Binary::Add => (want_a.then(|| g.clone()), want_b.then(|| g.clone())),
                Binary::Sub => (want_a.then(|| g.clone()), want_b.then(|| g.unary(Unary::Neg))),
                Binary::Mul => (
                    want_a.then(|| g.mul(bv.as_ref().expect("saved b"))),
                    want_b.then(|| g.mul(av.as_ref().expect("saved a"))),
                ),
                Binary::Div => {
                    let b = bv.as_ref().expect("saved b");
                    (
                        want_a.then(|| g.div(b)),
                        want_b.then(|| g.mul(yv.as_ref().expect("saved y")).div(b).unary(Unary::Neg)),
                    )
                }
                Binary::Max | Binary::Min => {
                    let (a, b) = (av.as_ref().expect("saved a"), bv.as_ref().expect("saved b"));
                    // The gradient goes to the selected input; ties go to `a`.
                    let mask_a = if op == Binary::Max { a.binary(Binary::Ge, b) } else { b.binary(Binary::Ge, a) };
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
        let (want_a, want_b) = (a.is_tracked(), b.is_tracked());
        let (a_rank, b_rank) = (a.shape().len(), b.shape().len());
        let av = want_b.then(|| a.value.clone());
        let bv = want_a.then(|| b.value.clone());
        self.record(y, &[a, b], move |g| {
            // C = op(A)·op(B): the stored-layout gradients of A and B.
            let ga = bv.as_ref().map(|bv| if ta { bv.matmul(g, tb, true) } else { g.matmul(bv, false, !tb) });
            let gb = av.as_ref().map(|av| if tb { g.matmul(av, true, ta) } else { av.matmul(g, !ta, false) });
            // A 2-D operand shared across the other's batch sums its per-batch gradients.
            let fold = |grad: T, like_rank: usize| {
                if grad.shape().len() == 3 && like_rank == 2 {
                    grad.reduce(Reduce::Sum, Some(0), false)
                } else {
                    grad
                }
            };
            vec![ga.map(|t| fold(t, a_rank)), gb.map(|t| fold(t, b_rank))]
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
        let (want_x, want_w) = (x.is_tracked(), w.is_tracked());
        let xv = want_w.then(|| x.value.clone());
        let wv = want_x.then(|| w.value.clone());
        let k = w.shape()[2];
        self.record(y, &[x, w], move |g| {
            vec![wv.as_ref().map(|w| g.conv_transpose2d(w)), xv.as_ref().map(|x| x.conv2d_grad_weight(g, k))]
        })
    }

    /// The adjoint of conv2d(·, w) applied to u. Linear in u with adjoint conv2d; in w,
    /// ⟨g, convᵀ(u; w)⟩ = ⟨conv(g; w), u⟩ gives the weight gradient grad_weight(g, u).
    pub fn conv_transpose2d(&self, u: &Var<T>, w: &Var<T>) -> Var<T> {
        let y = u.value.conv_transpose2d(&w.value);
        let (want_u, want_w) = (u.is_tracked(), w.is_tracked());
        let uv = want_w.then(|| u.value.clone());
        let wv = want_u.then(|| w.value.clone());
        let k = w.shape()[2];
        self.record(y, &[u, w], move |g| {
            vec![wv.as_ref().map(|w| g.conv2d(w)), uv.as_ref().map(|u| g.conv2d_grad_weight(u, k))]
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

    /// φ'(z) ⊙ h as one op (the activation step of a recorded JVP). Saves z and h only; its VJP
    /// gives g ⊙ φ'(z) to h, g ⊙ h ⊙ φ''(z) to z and Σ g ⊙ h ⊙ ∂φ'/∂β to β.
    pub fn activation_jvp(&self, z: &Var<T>, h: &Var<T>, act: Activation, beta: Option<&Var<T>>) -> Var<T> {
        assert_eq!(beta.is_some(), act.has_beta(), "{act:?} {} a β", if act.has_beta() { "needs" } else { "takes no" });
        let bv = beta.map(|b| b.value.clone());
        let y = z.value.activation(act, ActFn::D1, bv.as_ref(), Some(&h.value));
        let (want_z, want_h) = (z.is_tracked(), h.is_tracked());
        let want_beta = beta.is_some_and(|b| b.is_tracked());
        let zv = z.value.clone();
        let hv = (want_z || want_beta).then(|| h.value.clone());
        let mut inputs = vec![z, h];
        if let Some(b) = beta {
            inputs.push(b);
        }
        self.record(y, &inputs, move |g| {
            // Ordered so that at most two activation-sized temporaries are alive at once.
            let gh = hv.as_ref().map(|h| g.mul(h));
            let gb = match (&bv, want_beta, &gh) {
                (Some(b), true, Some(gh)) => {
                    Some(zv.activation(act, ActFn::D1Beta, Some(b), Some(gh)).sum_all().reshape(b.shape()))
                }
                _ => None,
            };
            let gz =
                if want_z { gh.as_ref().map(|gh| zv.activation(act, ActFn::D2, bv.as_ref(), Some(gh))) } else { None };
            drop(gh);
            let gx = want_h.then(|| zv.activation(act, ActFn::D1, bv.as_ref(), Some(g)));
            let mut grads = vec![gz, gx];
            if bv.is_some() {
                grads.push(gb);
            }
            grads
        })
    }
}
