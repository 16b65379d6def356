//! The f64 CPU reference: every op written the obvious way, never optimised. It is the oracle
//! for the kernel tests and, through the shared VJP rules, for the finite-difference checks.

use crate::ops::{
    self, broadcast_shape, broadcast_strides, numel, reduced_shape, split_axis, strides, ActFn, Activation, Binary,
    Dist, Reduce, ShapeError, TensorOps, Unary,
};

#[derive(Debug, Clone, PartialEq)]
pub struct CpuTensor {
    pub data: Vec<f64>,
    pub shape: Vec<usize>,
}

impl CpuTensor {
    pub fn new(data: Vec<f64>, shape: &[usize]) -> Self {
        assert_eq!(data.len(), numel(shape), "data length does not match shape {shape:?}");
        CpuTensor { data, shape: shape.to_vec() }
    }
    pub fn scalar(v: f64) -> Self {
        CpuTensor { data: vec![v], shape: vec![] }
    }
}

/// Philox4x32-10, bit-identical to `shaders/random/random.wgsl`.
pub fn philox(counter: [u32; 4], seed: [u32; 2]) -> [u32; 4] {
    let mulhilo = |a: u32, b: u32| {
        let p = a as u64 * b as u64;
        ((p >> 32) as u32, p as u32)
    };
    let (mut c, mut k) = (counter, seed);
    for _ in 0..10 {
        let (h0, l0) = mulhilo(0xD251_1F53, c[0]);
        let (h1, l1) = mulhilo(0xCD9E_8D57, c[2]);
        c = [h1 ^ c[1] ^ k[0], l1, h0 ^ c[3] ^ k[1], l0];
        k = [k[0].wrapping_add(0x9E37_79B9), k[1].wrapping_add(0xBB67_AE85)];
    }
    c
}

/// The values the GPU generator writes for `(seed, stream)`, computed in f64 from the same bits.
pub fn random_values(n: usize, dist: Dist, seed: u64, stream: u64) -> Vec<f64> {
    let unit = |w: u32| (w >> 8) as f64 * (1.0 / 16_777_216.0);
    let key = [seed as u32, (seed >> 32) as u32];
    let mut out = Vec::with_capacity(n + 3);
    for t in 0..n.div_ceil(4) {
        let w = philox([t as u32, 0, stream as u32, (stream >> 32) as u32], key);
        match dist {
            Dist::Uniform { lo, hi } => out.extend(w.iter().map(|&x| lo as f64 + (hi as f64 - lo as f64) * unit(x))),
            Dist::Normal { mean, std } => {
                for pair in [(w[0], w[1]), (w[2], w[3])] {
                    let r = (-2.0 * (unit(pair.0) + 1.0 / 16_777_216.0).ln()).sqrt();
                    let theta = 2.0 * std::f64::consts::PI * unit(pair.1);
                    out.push(mean as f64 + std as f64 * r * theta.cos());
                    out.push(mean as f64 + std as f64 * r * theta.sin());
                }
            }
            Dist::Rademacher => out.extend(w.iter().map(|&x| if x >> 31 == 1 { 1.0 } else { -1.0 })),
        }
    }
    out.truncate(n);
    out
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    idx
}

fn dot(idx: &[usize], s: &[usize]) -> usize {
    idx.iter().zip(s).map(|(a, b)| a * b).sum()
}

impl TensorOps for CpuTensor {
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn full_like(&self, shape: &[usize], value: f32) -> Self {
        CpuTensor::new(vec![value as f64; numel(shape)], shape)
    }
    fn random_like(&self, shape: &[usize], dist: Dist, seed: u64, stream: u64) -> Self {
        CpuTensor::new(random_values(numel(shape), dist, seed, stream), shape)
    }
    fn tensor_like(&self, data: &[f32], shape: &[usize]) -> Self {
        CpuTensor::new(data.iter().map(|&v| v as f64).collect(), shape)
    }
    fn tensor_like_f64(&self, data: &[f64], shape: &[usize]) -> Self {
        CpuTensor::new(data.to_vec(), shape)
    }
    fn to_host(&self) -> Vec<f64> {
        self.data.clone()
    }

    fn unary(&self, op: Unary) -> Self {
        CpuTensor::new(self.data.iter().map(|&x| op.eval(x)).collect(), &self.shape)
    }
    fn unary_grad(op: Unary, x: &Self, y: &Self, gy: &Self) -> Self {
        let data = (0..x.data.len()).map(|i| gy.data[i] * op.derivative(x.data[i], y.data[i])).collect();
        CpuTensor::new(data, &x.shape)
    }
    fn try_binary(&self, op: Binary, other: &Self) -> Result<Self, ShapeError> {
        let out = broadcast_shape(&self.shape, &other.shape)?;
        let (sa, sb) = (broadcast_strides(&self.shape, &out), broadcast_strides(&other.shape, &out));
        let data = (0..numel(&out))
            .map(|i| {
                let idx = unravel(i, &out);
                op.eval(self.data[dot(&idx, &sa)], other.data[dot(&idx, &sb)])
            })
            .collect();
        Ok(CpuTensor::new(data, &out))
    }
    fn reduce(&self, op: Reduce, axis: Option<usize>, keepdim: bool) -> Self {
        let Some(axis) = axis else {
            let flat = self.reshape(&[self.numel()]);
            let r = flat.reduce(op, Some(0), false);
            let shape = if keepdim { vec![1; self.shape.len()] } else { vec![] };
            return r.reshape(&shape);
        };
        let (outer, n, inner) = split_axis(&self.shape, axis);
        let mut data = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for j in 0..inner {
                let vals = (0..n).map(|k| self.data[(o * n + k) * inner + j]);
                data.push(match op {
                    Reduce::Sum => vals.sum(),
                    Reduce::Mean => vals.sum::<f64>() / n as f64,
                    Reduce::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                    Reduce::LogSumExp => {
                        let m = vals.clone().fold(f64::NEG_INFINITY, f64::max);
                        m + vals.map(|v| (v - m).exp()).sum::<f64>().ln()
                    }
                });
            }
        }
        CpuTensor::new(data, &reduced_shape(&self.shape, axis, keepdim))
    }
    fn try_matmul(&self, other: &Self, ta: bool, tb: bool) -> Result<Self, ShapeError> {
        let (batch, m, k, n) = ops::matmul_shape(&self.shape, &other.shape, ta, tb)?;
        let (a_step, b_step) =
            (if self.shape.len() == 3 { m * k } else { 0 }, if other.shape.len() == 3 { k * n } else { 0 });
        let mut data = vec![0.0; batch * m * n];
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    let mut s = 0.0;
                    for l in 0..k {
                        let a =
                            if ta { self.data[bi * a_step + l * m + i] } else { self.data[bi * a_step + i * k + l] };
                        let b =
                            if tb { other.data[bi * b_step + j * k + l] } else { other.data[bi * b_step + l * n + j] };
                        s += a * b;
                    }
                    data[(bi * m + i) * n + j] = s;
                }
            }
        }
        let shape = if self.shape.len() == 3 || other.shape.len() == 3 { vec![batch, m, n] } else { vec![m, n] };
        Ok(CpuTensor::new(data, &shape))
    }
    fn try_reshape(&self, shape: &[usize]) -> Result<Self, ShapeError> {
        if numel(shape) != self.numel() {
            return Err(ShapeError(format!("cannot reshape {:?} to {shape:?}", self.shape)));
        }
        Ok(CpuTensor::new(self.data.clone(), shape))
    }
    fn permute(&self, perm: &[usize]) -> Self {
        let out: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let src = strides(&self.shape);
        let data = (0..self.numel())
            .map(|i| {
                let idx = unravel(i, &out);
                self.data[idx.iter().zip(perm).map(|(v, &p)| v * src[p]).sum::<usize>()]
            })
            .collect();
        CpuTensor::new(data, &out)
    }
    fn slice(&self, axis: usize, start: usize, len: usize) -> Self {
        let (outer, n, inner) = split_axis(&self.shape, axis);
        assert!(start + len <= n, "slice {start}..{} out of range for axis {axis} of {:?}", start + len, self.shape);
        let mut data = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            data.extend_from_slice(&self.data[(o * n + start) * inner..(o * n + start + len) * inner]);
        }
        let mut shape = self.shape.clone();
        shape[axis] = len;
        CpuTensor::new(data, &shape)
    }
    fn unslice(&self, full: &[usize], axis: usize, start: usize) -> Self {
        let (outer, n, inner) = split_axis(full, axis);
        let len = self.shape[axis];
        let mut data = vec![0.0; numel(full)];
        for o in 0..outer {
            data[(o * n + start) * inner..(o * n + start + len) * inner]
                .copy_from_slice(&self.data[o * len * inner..(o + 1) * len * inner]);
        }
        CpuTensor::new(data, full)
    }
    fn concat(parts: &[&Self], axis: usize) -> Self {
        let mut shape = parts[0].shape.clone();
        shape[axis] = parts.iter().map(|p| p.shape[axis]).sum();
        let (outer, _, inner) = split_axis(&shape, axis);
        let mut data = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for p in parts {
                let len = p.shape[axis] * inner;
                data.extend_from_slice(&p.data[o * len..(o + 1) * len]);
            }
        }
        CpuTensor::new(data, &shape)
    }
    fn broadcast_to(&self, shape: &[usize]) -> Self {
        let s = broadcast_strides(&self.shape, shape);
        let data = (0..numel(shape)).map(|i| self.data[dot(&unravel(i, shape), &s)]).collect();
        CpuTensor::new(data, shape)
    }
    fn try_conv2d(&self, w: &Self) -> Result<Self, ShapeError> {
        let (n, _, h, wd, co, _) = ops::conv_shape(&self.shape, &w.shape)?;
        let mut out = vec![0.0; n * co * h * wd];
        for_each_tap(&self.shape, &w.shape, |xi, wi, yi| out[yi] += w.data[wi] * self.data[xi]);
        Ok(CpuTensor::new(out, &[n, co, h, wd]))
    }
    fn conv_transpose2d(&self, w: &Self) -> Self {
        let (n, co, h, wd) = (self.shape[0], self.shape[1], self.shape[2], self.shape[3]);
        assert_eq!(w.shape[0], co, "conv_transpose2d: channels of {:?} vs weights {:?}", self.shape, w.shape);
        let x_shape = [n, w.shape[1], h, wd];
        // The adjoint scatters every output of conv2d back over its window.
        let mut out = vec![0.0; x_shape.iter().product()];
        for_each_tap(&x_shape, &w.shape, |xi, wi, yi| out[xi] += self.data[yi] * w.data[wi]);
        CpuTensor::new(out, &x_shape)
    }
    fn conv2d_grad_weight(&self, gy: &Self, k: usize) -> Self {
        let w_shape = [gy.shape[1], self.shape[1], k, k];
        let mut out = vec![0.0; w_shape.iter().product()];
        for_each_tap(&self.shape, &w_shape, |xi, wi, yi| out[wi] += gy.data[yi] * self.data[xi]);
        CpuTensor::new(out, &w_shape)
    }
    fn squeeze2(&self) -> Self {
        let shape = ops::squeeze_shape(&self.shape);
        let mut out = vec![0.0; self.numel()];
        for (sq, un) in squeeze_pairs(&shape) {
            out[sq] = self.data[un];
        }
        CpuTensor::new(out, &shape)
    }
    fn unsqueeze2(&self) -> Self {
        let shape = ops::unsqueeze_shape(&self.shape);
        let mut out = vec![0.0; self.numel()];
        for (sq, un) in squeeze_pairs(&self.shape) {
            out[un] = self.data[sq];
        }
        CpuTensor::new(out, &shape)
    }
    fn activation(&self, act: Activation, f: ActFn, beta: Option<&Self>, gy: Option<&Self>) -> Self {
        let b = beta.map_or(1.0, |t| t.data[0]);
        let data = (0..self.data.len()).map(|i| gy.map_or(1.0, |g| g.data[i]) * act.eval(f, self.data[i], b)).collect();
        CpuTensor::new(data, &self.shape)
    }
}

/// (squeezed index, unsqueezed index) pairs of space-to-depth for a squeezed shape
/// [B, 4C, H, W]: channel 4c + 2i + j holds pixel (2y + i, 2x + j) of channel c.
fn squeeze_pairs(squeezed: &[usize]) -> impl Iterator<Item = (usize, usize)> {
    let (b, c, h, w) = (squeezed[0], squeezed[1] / 4, squeezed[2], squeezed[3]);
    (0..b * 4 * c * h * w).map(move |sq| {
        let (x, y) = (sq % w, (sq / w) % h);
        let ch = (sq / (w * h)) % (4 * c);
        let bi = sq / (w * h * 4 * c);
        let (ci, i, j) = (ch / 4, (ch / 2) % 2, ch % 2);
        (sq, ((bi * c + ci) * 2 * h + 2 * y + i) * 2 * w + 2 * x + j)
    })
}

/// Calls `f(x index, w index, y index)` for every (image, output channel, pixel, input
/// channel, tap) of a stride-1 "same" convolution of x [N, Ci, H, W] with w [Co, Ci, k, k] whose
/// tap lands inside the image: the one loop nest behind conv2d and both of its VJPs.
fn for_each_tap(x: &[usize], w: &[usize], mut f: impl FnMut(usize, usize, usize)) {
    let (n, ci, h, wd) = (x[0], x[1], x[2], x[3]);
    let (co, k) = (w[0], w[2]);
    let pad = (k / 2) as isize;
    for b in 0..n {
        for o in 0..co {
            for y in 0..h {
                for xx in 0..wd {
                    let yi = ((b * co + o) * h + y) * wd + xx;
                    for c in 0..ci {
                        for ky in 0..k {
                            let sy = y as isize + ky as isize - pad;
                            if sy < 0 || sy as usize >= h {
                                continue;
                            }
                            for kx in 0..k {
                                let sx = xx as isize + kx as isize - pad;
                                if sx >= 0 && (sx as usize) < wd {
                                    let xi = ((b * ci + c) * h + sy as usize) * wd + sx as usize;
                                    f(xi, ((o * ci + c) * k + ky) * k + kx, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
