//! Convolutions as implicit GEMMs straight from storage buffers, on the tiled matmul's tile
//! scheme: the GPU profile's convolutions (the texture-staged ones in `conv` stay the CPU
//! adapters' choice). The tiled matmul kernels run with loads that do the im2col index
//! arithmetic in the shader (`shaders/conv/conv_tiled_*.wgsl`), so neither an im2col buffer nor
//! staged copies are made; padding is a bounds check.

use bytemuck::{Pod, Zeroable};

use super::tile_config::{self, Tiles};
use crate::gpu::kernels::LOOP_BUDGET;
use crate::gpu::KernelSpec;
use crate::ops::{self, Reduce, ShapeError, TensorOps};
use crate::tensor::Tensor;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ConvGemmParams {
    m: u32,
    n: u32,
    k: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    ldc: u32,
    pad3: u32,
    batch_a: u32,
    batch_b: u32,
    batch_c: u32,
    pad4: u32,
    h: u32,
    w: u32,
    ksize: u32,
    pad: u32,
    chans: u32,
    pixels: u32,
    pad5: u32,
    pad6: u32,
}

/// Pixels one weight-gradient split reduces over: a K-loop of at most 1 024 steps of 8 keeps an
/// invocation's loops well inside `LOOP_BUDGET` on llvmpipe, and splitting gives a GPU
/// workgroups enough to fill it (the gradient itself has few output tiles).
const GRAD_WEIGHT_SPLIT_PIXELS: usize = LOOP_BUDGET / 4;

/// Splits along the pixels so that each takes at most `GRAD_WEIGHT_SPLIT_PIXELS` and there are
/// at least a few when there is enough work.
fn grad_weight_split(pixels: usize) -> usize {
    const MIN_SPLIT: usize = 1024;
    pixels.div_ceil(8).clamp(MIN_SPLIT, GRAD_WEIGHT_SPLIT_PIXELS).min(pixels.max(1))
}

impl Tensor {
    /// The tiled GEMM for `loads` (on the 128×128 tiles when `tiles` or the device's choice
    /// says so and the result fits them, else the 64×64 ones) and its output tile width.
    fn conv_tiled_kernel(
        &self,
        loads: &'static str,
        (m, n): (usize, usize),
        trans: (bool, bool),
        tiles: Option<Tiles>,
    ) -> (KernelSpec, usize) {
        let gpu = self.gpu();
        let large = tile_config::large_tiles_fit(gpu, m, n, tile_config::tiles_for(gpu, m, n, tiles, |c| c.conv));
        let shader = match (loads, large) {
            ("conv_tiled", false) => "conv_tiled",
            ("conv_tiled", true) => "conv_tiled_large",
            ("conv_grad_weight_tiled", false) => "conv_grad_weight_tiled",
            ("conv_grad_weight_tiled", true) => "conv_grad_weight_tiled_large",
            _ => unreachable!("conv shader family {loads}"),
        };
        let spec = KernelSpec::new(shader, "main", 2, 1)
            .with("TRANS_A", trans.0 as u8 as f64)
            .with("TRANS_B", trans.1 as u8 as f64);
        (spec, if large { 128 } else { 64 })
    }

    /// conv2d on the given tiles rather than the device's choice (the tile probe, and tests).
    pub fn conv2d_with_tiles(&self, w: &Tensor, tiles: Tiles) -> Result<Tensor, ShapeError> {
        ops::conv_shape(self.shape(), w.shape())?;
        Ok(self.conv_tiled(w, false, Some(tiles)))
    }

    /// conv_transpose2d on the given tiles (tests).
    pub fn conv_transpose2d_with_tiles(&self, w: &Tensor, tiles: Tiles) -> Tensor {
        self.conv_tiled(w, true, Some(tiles))
    }

    /// The weight gradient on the given tiles (tests).
    pub fn conv2d_grad_weight_with_tiles(&self, gy: &Tensor, k: usize, tiles: Tiles) -> Tensor {
        self.conv_grad_weight_tiled(gy, k, Some(tiles))
    }

    /// conv(self, w), or with `flip` the transposed convolution: one GEMM per image (z).
    pub(crate) fn conv_tiled(&self, w: &Tensor, flip: bool, tiles: Option<Tiles>) -> Tensor {
        let (n, chans, h, wd) = (self.shape()[0], self.shape()[1], self.shape()[2], self.shape()[3]);
        let k = w.shape()[2];
        let rows = if flip { w.shape()[1] } else { w.shape()[0] };
        let plane = h * wd;
        let out = Tensor::empty(self.gpu(), &[n, rows, h, wd]);
        let params = ConvGemmParams {
            m: rows as u32,
            n: plane as u32,
            k: (chans * k * k) as u32,
            ldc: plane as u32,
            batch_b: (chans * plane) as u32,
            batch_c: (rows * plane) as u32,
            h: h as u32,
            w: wd as u32,
            ksize: k as u32,
            pad: (k / 2) as u32,
            chans: chans as u32,
            pixels: plane as u32,
            ..Zeroable::zeroed()
        };
        // Consecutive invocations along k for A (the weights' taps are contiguous) and along
        // the pixels for B (an image row is contiguous).
        let (spec, tile) = self.conv_tiled_kernel("conv_tiled", (rows, plane), (false, false), tiles);
        let kern = self.gpu().kernel(&spec.with("FLIP", flip as u8 as f64));
        let groups = [plane.div_ceil(tile) as u32, rows.div_ceil(tile) as u32, n as u32];
        self.gpu().dispatch(&kern, bytemuck::bytes_of(&params), &[w.binding(), self.binding(), out.binding()], groups);
        out
    }

    /// The weight gradient Σ over pixels of gy ⊗ windows of self, as partial GEMMs over splits
    /// of the pixels (workgroup z), summed.
    pub(crate) fn conv_grad_weight_tiled(&self, gy: &Tensor, k: usize, tiles: Option<Tiles>) -> Tensor {
        let (n, ci, h, wd) = (self.shape()[0], self.shape()[1], self.shape()[2], self.shape()[3]);
        let co = gy.shape()[1];
        let cols = ci * k * k;
        let pixels = n * h * wd;
        let split = grad_weight_split(pixels);
        let splits = pixels.div_ceil(split);
        let partials = Tensor::empty(self.gpu(), &[splits, co, cols]);
        let params = ConvGemmParams {
            m: co as u32,
            n: cols as u32,
            k: split as u32,
            ldc: cols as u32,
            batch_a: split as u32,
            batch_b: split as u32,
            batch_c: (co * cols) as u32,
            h: h as u32,
            w: wd as u32,
            ksize: k as u32,
            pad: (k / 2) as u32,
            chans: ci as u32,
            pixels: pixels as u32,
            ..Zeroable::zeroed()
        };
        // Both operands are contiguous along the pixels (k): A by rows, B by columns.
        let (spec, tile) = self.conv_tiled_kernel("conv_grad_weight_tiled", (co, cols), (false, true), tiles);
        let kern = self.gpu().kernel(&spec);
        let groups = [cols.div_ceil(tile) as u32, co.div_ceil(tile) as u32, splits as u32];
        self.gpu().dispatch(
            &kern,
            bytemuck::bytes_of(&params),
            &[gy.binding(), self.binding(), partials.binding()],
            groups,
        );
        let total = if splits == 1 { partials } else { partials.reduce(Reduce::Sum, Some(0), false) };
        total.reshape(&[co, ci, k, k])
    }
}

pub(super) fn param_layouts() -> Vec<super::ParamLayout> {
    let layout = |shader| {
        super::param_layout!(
            shader,
            ConvGemmParams { m, n, k, ldc, batch_a, batch_b, batch_c, h, w, ksize, pad, chans, pixels }
        )
    };
    vec![
        layout("conv_tiled"),
        layout("conv_tiled_large"),
        layout("conv_grad_weight_tiled"),
        layout("conv_grad_weight_tiled_large"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_weight_splits_cover_the_pixels_within_the_loop_budget() {
        for pixels in [1, 7, 1024, 1025, 9 * 1024, 100_000, 5_000_000] {
            let split = grad_weight_split(pixels);
            assert!((1..=GRAD_WEIGHT_SPLIT_PIXELS).contains(&split), "{pixels}: {split}");
            assert!(pixels.div_ceil(split) * split >= pixels);
        }
        assert_eq!(grad_weight_split(100), 100);
    }
}
