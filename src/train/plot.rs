//! Pictures: heat maps of 2-D densities and histograms, image grids, and a loss curve, as PNG
//! files.
//! Everything is drawn pixel by pixel; files are written atomically.

use std::path::Path;

/// An RGB image.
#[derive(Clone)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<[u8; 3]>,
}

/// A perceptually ordered colour map (dark blue → teal → green → yellow), t ∈ [0, 1].
pub fn colormap(t: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] =
        [[68.0, 1.0, 84.0], [59.0, 82.0, 139.0], [33.0, 145.0, 140.0], [94.0, 201.0, 98.0], [253.0, 231.0, 37.0]];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mut out = [0u8; 3];
    for c in 0..3 {
        out[c] = (STOPS[i][c] + f * (STOPS[i + 1][c] - STOPS[i][c])).round() as u8;
    }
    out
}

impl Image {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Image { width, height, pixels: vec![fill; width * height] }
    }

    /// A heat map of `values` (row-major, `res × res`, row 0 at the top), scaled to its range.
    pub fn heatmap(values: &[f64], res: usize) -> Self {
        let finite = values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let pixels = values.iter().map(|&v| colormap((v - lo) / span)).collect();
        Image { width: res, height: res, pixels }
    }

    /// Each pixel repeated `k` times in both directions.
    pub fn upscale(&self, k: usize) -> Self {
        let (w, h) = (self.width * k, self.height * k);
        let pixels = (0..w * h).map(|i| self.pixels[(i / w / k) * self.width + (i % w) / k]).collect();
        Image { width: w, height: h, pixels }
    }

    /// A 2-D histogram of points over the square [-extent, extent]², `res` bins a side.
    pub fn histogram(points: &[f32], extent: f32, res: usize) -> Self {
        let mut h = Histogram::new(extent, res);
        h.add(points);
        h.image()
    }

    fn put(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = c;
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: [u8; 3]) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for s in 0..=steps {
            let x = x0 + (x1 - x0) * s / steps;
            let y = y0 + (y1 - y0) * s / steps;
            self.put(x, y, c);
            self.put(x, y + 1, c);
        }
    }

    /// Images next to each other with a white gutter.
    pub fn side_by_side(images: &[&Image]) -> Self {
        let gap = 8;
        let height = images.iter().map(|i| i.height).max().unwrap_or(0);
        let width = images.iter().map(|i| i.width).sum::<usize>() + gap * (images.len().saturating_sub(1));
        let mut out = Image::new(width, height, [255, 255, 255]);
        let mut x0 = 0;
        for img in images {
            for y in 0..img.height {
                for x in 0..img.width {
                    out.pixels[y * width + x0 + x] = img.pixels[y * img.width + x];
                }
            }
            x0 += img.width + gap;
        }
        out
    }

    /// A line plot of one or more series (x, y) on a shared frame; y may be log-scaled by the
    /// caller. Series colours cycle blue, orange, green.
    pub fn plot(series: &[&[(f64, f64)]], width: usize, height: usize) -> Self {
        let mut img = Image::new(width, height, [255, 255, 255]);
        let pts = series.iter().flat_map(|s| s.iter()).filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if !x0.is_finite() || !y0.is_finite() {
            return img;
        }
        let (xs, ys) = ((x1 - x0).max(1e-12), (y1 - y0).max(1e-12));
        let margin = 20i64;
        let (w, h) = (width as i64 - 2 * margin, height as i64 - 2 * margin);
        let grey = [160, 160, 160];
        img.line((margin, margin), (margin, margin + h), grey);
        img.line((margin, margin + h), (margin + w, margin + h), grey);
        let colours = [[31, 119, 180], [255, 127, 14], [44, 160, 44]];
        for (k, s) in series.iter().enumerate() {
            let map = |&(x, y): &(f64, f64)| {
                (margin + ((x - x0) / xs * w as f64) as i64, margin + h - ((y - y0) / ys * h as f64) as i64)
            };
            let good: Vec<(i64, i64)> = s.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(map).collect();
            for pair in good.windows(2) {
                img.line(pair[0], pair[1], colours[k % colours.len()]);
            }
            if good.len() == 1 {
                img.put(good[0].0, good[0].1, colours[k % colours.len()]);
            }
        }
        img
    }

    /// A grid of images ([n, C, H, W] values in [0, 1]; C = 1 grey, C = 3 RGB), `cols` wide,
    /// each shown `scale`× with a 2-pixel dark gutter.
    pub fn grid(images: &[f32], shape: [usize; 3], cols: usize, scale: usize) -> Self {
        let [c, h, w] = shape;
        let n = images.len() / (c * h * w);
        let (cols, gap) = (cols.max(1), 2);
        let rows = n.div_ceil(cols);
        let (cw, ch) = (w * scale + gap, h * scale + gap);
        let mut out = Image::new(cols * cw + gap, rows * ch + gap, [40, 40, 40]);
        let level = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        for k in 0..n {
            let img = &images[k * c * h * w..(k + 1) * c * h * w];
            let (x0, y0) = (gap + (k % cols) * cw, gap + (k / cols) * ch);
            for y in 0..h * scale {
                for x in 0..w * scale {
                    let p = (y / scale) * w + x / scale;
                    let rgb = if c >= 3 {
                        [level(img[p]), level(img[h * w + p]), level(img[2 * h * w + p])]
                    } else {
                        [level(img[p]); 3]
                    };
                    out.pixels[(y0 + y) * out.width + x0 + x] = rgb;
                }
            }
        }
        out
    }

    /// Encodes as PNG and writes atomically.
    pub fn save_png(&self, path: &Path) -> std::io::Result<()> {
        let mut data = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut data, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let encoding =
                |e: png::EncodingError| std::io::Error::other(format!("cannot encode {}: {e}", path.display()));
            let mut writer = enc.write_header().map_err(encoding)?;
            let flat: Vec<u8> = self.pixels.iter().flatten().copied().collect();
            writer.write_image_data(&flat).map_err(encoding)?;
        }
        crate::train::checkpoint::write_atomically(path, &data)
    }
}

/// Counts of 2-D points on a `res × res` grid over [-extent, extent]², filled a chunk of
/// points at a time (a histogram of millions of samples never holds them all).
pub struct Histogram {
    counts: Vec<f64>,
    extent: f32,
    res: usize,
}

impl Histogram {
    pub fn new(extent: f32, res: usize) -> Histogram {
        Histogram { counts: vec![0.0; res * res], extent, res }
    }

    /// Counts `points` (`x, y` pairs); points outside the grid are left out.
    pub fn add(&mut self, points: &[f32]) {
        let (extent, res) = (self.extent, self.res);
        for p in points.chunks_exact(2) {
            let fx = (p[0] + extent) / (2.0 * extent) * res as f32;
            let fy = (extent - p[1]) / (2.0 * extent) * res as f32;
            if fx >= 0.0 && fy >= 0.0 && (fx as usize) < res && (fy as usize) < res {
                self.counts[fy as usize * res + fx as usize] += 1.0;
            }
        }
    }

    pub fn image(&self) -> Image {
        // Square root keeps sparse tails visible without washing out the modes.
        let scaled: Vec<f64> = self.counts.iter().map(|c| c.sqrt()).collect();
        Image::heatmap(&scaled, self.res)
    }
}
