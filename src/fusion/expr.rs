//! The expression tree of a fused elementwise kernel: nodes over the kernel's inputs, and the
//! roles that say how each input's elements map onto the result's.

use std::sync::Arc;

use crate::activation::{ActFn, Activation};
use crate::ops::{Binary, Unary};

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
    pub(super) ops: usize,
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
    pub(super) fn children(&self) -> impl Iterator<Item = &Child> {
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
    pub(super) fn ops(&self) -> usize {
        let own = !matches!(self, Node::Input(_) | Node::Const(_)) as usize;
        own + self.children().map(|c| c.ops).sum::<usize>()
    }

    /// The same expression with input indices mapped through `map`; shared as it is where
    /// `map` keeps every index (a chain's operand always does).
    pub(super) fn remap(&self, map: &[usize]) -> Node {
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
