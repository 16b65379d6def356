//! The Lipschitz network g of a residual block: spectrally normalised Linear or Conv2d layers
//! with LipSwish (or ELU / softplus) between them, and its Jacobian–vector product.
//!
//! `apply` returns g(x) and the pre-activations; `jvp` computes J_g(x)·u from them as
//! W_L φ'(z_{L−1}) ⊙ (… W_1 u), through ordinary ops (matmul or conv, `φ'` as an op with its
//! own VJP, elementwise mul). Recorded on a tape this is the one JVP the Neumann surrogate
//! needs; on a no-grad tape with detached weights it computes the power-series terms.

use crate::nn::{Binder, Conv2d, Linear, ParamId, ParamStore, PowerIters, Weight};
use crate::ops::{Activation, TensorOps, Unary};
use crate::tape::{Tape, Var};

/// One linear map of g.
#[derive(Debug, Clone)]
pub enum Layer {
    Linear(Linear),
    Conv(Conv2d),
}

impl Layer {
    fn weight<T: TensorOps>(&self, b: &Binder<'_, T>) -> (Weight<T>, Var<T>) {
        match self {
            Layer::Linear(l) => (l.weight(b), b.var(l.bias)),
            Layer::Conv(c) => (c.weight(b), b.var(c.bias)),
        }
    }
    fn ids(&self) -> [ParamId; 2] {
        match self {
            Layer::Linear(l) => [l.weight, l.bias],
            Layer::Conv(c) => [c.weight, c.bias],
        }
    }
    fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: PowerIters) -> usize {
        match self {
            Layer::Linear(l) => l.power_iterate(store, iters),
            Layer::Conv(c) => c.power_iterate(store, iters),
        }
    }
}

/// The effective (normalised) weights of one evaluation of g, as values on a tape.
#[derive(Clone)]
pub struct NetWeights<T> {
    weights: Vec<Weight<T>>,
    biases: Vec<Var<T>>,
    betas: Vec<Option<Var<T>>>,
}

impl<T: TensorOps> NetWeights<T> {
    /// The same values as constants: for computing series terms without recording.
    pub fn detached(&self) -> NetWeights<T> {
        let d = |v: &Var<T>| Var::constant(v.value.clone());
        NetWeights {
            weights: self.weights.iter().map(Weight::detached).collect(),
            biases: self.biases.iter().map(d).collect(),
            betas: self.betas.iter().map(|b| b.as_ref().map(d)).collect(),
        }
    }
}

/// g = [φ →] L₁ → φ → L₂ → … → φ → L_n.
#[derive(Debug, Clone)]
pub struct LipschitzNet {
    pub layers: Vec<Layer>,
    pub activation: Activation,
    /// Whether g starts with an activation (image blocks after the first).
    pub leading_activation: bool,
    /// β_raw per activation (LipSwish only).
    pub beta_raw: Vec<ParamId>,
}

/// How to build g.
#[derive(Debug, Clone)]
pub struct NetSpec {
    pub activation: Activation,
    pub coeff: f32,
    pub leading_activation: bool,
    /// Initial weight scale of the hidden layers (1: PyTorch's default uniform init).
    pub gain: f32,
    /// Initial weight scale of the last layer (the toy flows start near zero: 1e-3).
    pub last_gain: f32,
}

impl LipschitzNet {
    /// An MLP through the given widths (`widths[0]` in, last out).
    pub fn mlp<T: TensorOps>(store: &mut ParamStore<T>, name: &str, widths: &[usize], spec: &NetSpec) -> Self {
        let n = widths.len() - 1;
        let layers = (0..n)
            .map(|i| {
                let gain = if i + 1 == n { spec.last_gain } else { spec.gain };
                Layer::Linear(Linear::new(
                    store,
                    &format!("{name}.lin{i}"),
                    widths[i],
                    widths[i + 1],
                    gain,
                    Some(spec.coeff),
                ))
            })
            .collect();
        Self::finish(store, name, layers, spec)
    }

    /// A CNN: (channels, kernel) per layer on images of `spatial` size, e.g. 3×3 → 1×1 → 3×3.
    pub fn cnn<T: TensorOps>(
        store: &mut ParamStore<T>,
        name: &str,
        channels: &[usize],
        kernels: &[usize],
        spatial: (usize, usize),
        spec: &NetSpec,
    ) -> Self {
        let n = channels.len() - 1;
        assert_eq!(kernels.len(), n, "one kernel size per layer");
        let layers = (0..n)
            .map(|i| {
                let gain = if i + 1 == n { spec.last_gain } else { spec.gain };
                let conv = Conv2d::new(
                    store,
                    &format!("{name}.conv{i}"),
                    channels[i],
                    channels[i + 1],
                    kernels[i],
                    gain,
                    Some(spec.coeff),
                    spatial,
                );
                Layer::Conv(conv)
            })
            .collect();
        Self::finish(store, name, layers, spec)
    }

    fn finish<T: TensorOps>(store: &mut ParamStore<T>, name: &str, layers: Vec<Layer>, spec: &NetSpec) -> Self {
        let acts = layers.len() - 1 + spec.leading_activation as usize;
        let beta_raw = if spec.activation.has_beta() {
            (0..acts).map(|i| store.add(&format!("{name}.act{i}.beta_raw"), store.full(&[1], 0.5), true)).collect()
        } else {
            Vec::new()
        };
        LipschitzNet { layers, activation: spec.activation, leading_activation: spec.leading_activation, beta_raw }
    }

    /// Every trainable parameter g reads.
    pub fn param_ids(&self) -> Vec<ParamId> {
        let mut ids: Vec<ParamId> = self.layers.iter().flat_map(|l| l.ids()).collect();
        ids.extend(&self.beta_raw);
        ids
    }

    pub fn power_iterate<T: TensorOps>(&self, store: &mut ParamStore<T>, iters: PowerIters) -> usize {
        self.layers.iter().map(|l| l.power_iterate(store, iters)).max().unwrap_or(0)
    }

    /// The normalised weights, biases and β of this evaluation, recorded on the binder's tape.
    pub fn weights<T: TensorOps>(&self, b: &Binder<'_, T>) -> NetWeights<T> {
        let (weights, biases) = self.layers.iter().map(|l| l.weight(b)).unzip();
        let acts = self.layers.len() - 1 + self.leading_activation as usize;
        let betas = (0..acts)
            .map(|i| self.activation.has_beta().then(|| b.tape.unary(&b.var(self.beta_raw[i]), Unary::Softplus)))
            .collect();
        NetWeights { weights, biases, betas }
    }

    fn linear<T: TensorOps>(&self, tape: &Tape<T>, i: usize, w: &Weight<T>, x: &Var<T>) -> Var<T> {
        let y = match &self.layers[i] {
            Layer::Linear(_) => tape.matmul(x, &w.value, false, true),
            Layer::Conv(_) => tape.conv2d(x, &w.value),
        };
        w.scale_output(tape, y)
    }

    fn add_bias<T: TensorOps>(&self, tape: &Tape<T>, i: usize, y: &Var<T>, b: &Var<T>) -> Var<T> {
        match &self.layers[i] {
            Layer::Linear(_) => tape.add(y, b),
            Layer::Conv(c) => tape.add(y, &tape.reshape(b, &[1, c.outputs, 1, 1])),
        }
    }

    /// g(x) and the pre-activations (inputs of each activation, in order).
    pub fn apply<T: TensorOps>(&self, tape: &Tape<T>, w: &NetWeights<T>, x: &Var<T>) -> (Var<T>, Vec<Var<T>>) {
        let mut pre = Vec::new();
        let mut h = x.clone();
        let mut act = 0;
        if self.leading_activation {
            pre.push(h.clone());
            h = tape.activation(&h, self.activation, w.betas[act].as_ref());
            act += 1;
        }
        let n = self.layers.len();
        for i in 0..n {
            let y = self.linear(tape, i, &w.weights[i], &h);
            h = self.add_bias(tape, i, &y, &w.biases[i]);
            if i + 1 < n {
                pre.push(h.clone());
                h = tape.activation(&h, self.activation, w.betas[act].as_ref());
                act += 1;
            }
        }
        (h, pre)
    }

    /// J_g(x)·u given the pre-activations of x.
    pub fn jvp<T: TensorOps>(&self, tape: &Tape<T>, w: &NetWeights<T>, pre: &[Var<T>], u: &Var<T>) -> Var<T> {
        let mut h = u.clone();
        let mut act = 0;
        let slope = |h: &Var<T>, act: usize| tape.activation_jvp(&pre[act], h, self.activation, w.betas[act].as_ref());
        if self.leading_activation {
            h = slope(&h, act);
            act += 1;
        }
        let n = self.layers.len();
        for i in 0..n {
            h = self.linear(tape, i, &w.weights[i], &h);
            if i + 1 < n {
                h = slope(&h, act);
                act += 1;
            }
        }
        h
    }

    /// g(x) without recording anything (inverse iterations, evaluation).
    pub fn eval<T: TensorOps>(&self, store: &ParamStore<T>, x: &T) -> T {
        let tape = Tape::no_grad();
        let b = Binder::new(store, &tape);
        let w = self.weights(&b);
        self.apply(&tape, &w, &Var::constant(x.clone())).0.value
    }
}
