//! Image datasets: MNIST and Fashion-MNIST from IDX files, and the 8×8 digits of scikit-learn
//! (embedded in the binary, so quick runs and tests need nothing fetched), with uniform
//! dequantisation (docs/DESIGN.md §2).

use std::io::Read;
use std::path::Path;

use rand::Rng;

use super::idx::{read_idx, DataError};

/// The UCI optical-recognition digits as shipped by scikit-learn 1.9.1 (BSD-3; data from UCI):
/// 1797 lines of 64 intensities 0..16 and a label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("digits.csv.gz");

/// One split of an image dataset: pixels as quantised levels, [n, channels, height, width].
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub name: String,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Number of quantisation levels of a pixel (256 for MNIST, 17 for the 8×8 digits).
    pub levels: usize,
    pub classes: usize,
}

/// The datasets `resflow train --dataset` accepts for images.
pub const IMAGE_DATASETS: [&str; 3] = ["mnist", "fashion-mnist", "digits"];

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Dimensions of one image, D = C·H·W.
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// The first `n` images (or all).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            pixels: self.pixels[..n * self.dim()].to_vec(),
            labels: self.labels[..n].to_vec(),
            name: self.name.clone(),
            ..*self
        }
    }

    /// Dequantised images `(v + u) / levels`, u ~ U[0, 1), as a flat [n, C, H, W] buffer.
    pub fn dequantize(&self, indices: &[usize], rng: &mut impl Rng) -> Vec<f32> {
        let (d, l) = (self.dim(), self.levels as f32);
        let mut out = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            out.extend(self.pixels[i * d..(i + 1) * d].iter().map(|&v| (v as f32 + rng.random::<f32>()) / l));
        }
        out
    }

    /// Pixels scaled to [0, 1] without noise (for pictures of the data).
    pub fn unit(&self, indices: &[usize]) -> Vec<f32> {
        let (d, top) = (self.dim(), (self.levels - 1) as f32);
        indices.iter().flat_map(|&i| self.pixels[i * d..(i + 1) * d].iter().map(move |&v| v as f32 / top)).collect()
    }
}

/// Train and test splits of a dataset.
#[derive(Debug, Clone)]
pub struct Splits {
    pub train: ImageSet,
    pub test: ImageSet,
}

/// Loads `name` (mnist, fashion-mnist, digits). MNIST-style data is read from
/// `data_dir/<name>/`; a missing directory names the fetch command.
pub fn load(name: &str, data_dir: &Path) -> Result<Splits, DataError> {
    match name {
        "digits" => digits(),
        "mnist" | "fashion-mnist" => mnist_like(name, &data_dir.join(name)),
        other => {
            Err(DataError(format!("unknown image dataset {other:?}; choose one of {}", IMAGE_DATASETS.join(", "))))
        }
    }
}

fn mnist_like(name: &str, dir: &Path) -> Result<Splits, DataError> {
    let find = |stem: &str| -> Result<std::path::PathBuf, DataError> {
        for candidate in [dir.join(stem), dir.join(format!("{stem}.gz"))] {
            if candidate.exists() {
                return Ok(candidate);
            }
        }
        Err(DataError(format!(
            "{name}: {} not found (nor .gz); fetch the dataset with `scripts/fetch-data.sh {name} {}`",
            dir.join(stem).display(),
            dir.parent().unwrap_or(dir).display()
        )))
    };
    let split = |prefix: &str| -> Result<ImageSet, DataError> {
        let (ip, lp) = (find(&format!("{prefix}-images-idx3-ubyte"))?, find(&format!("{prefix}-labels-idx1-ubyte"))?);
        let (images, labels) = (read_idx(&ip)?, read_idx(&lp)?);
        if images.dims.len() != 3 || images.dims.contains(&0) {
            return Err(DataError(format!(
                "{} should hold [n, rows, cols] images, has dims {:?}",
                ip.display(),
                images.dims
            )));
        }
        // The models take images of at most 1024 pixels a side (a checkpoint's bound too).
        if images.dims[1] > 1024 || images.dims[2] > 1024 {
            return Err(DataError(format!(
                "{} holds images of {} × {} pixels; at most 1024 a side",
                ip.display(),
                images.dims[1],
                images.dims[2]
            )));
        }
        if labels.dims.len() != 1 || labels.dims[0] != images.dims[0] {
            return Err(DataError(format!(
                "{} holds labels of dims {:?} for {} images",
                lp.display(),
                labels.dims,
                images.dims[0]
            )));
        }
        if let Some(bad) = labels.data.iter().find(|&&l| l >= 10) {
            return Err(DataError(format!("{} has a label {bad} outside 0..9", lp.display())));
        }
        Ok(ImageSet {
            name: name.to_string(),
            pixels: images.data,
            labels: labels.data,
            channels: 1,
            height: images.dims[1],
            width: images.dims[2],
            levels: 256,
            classes: 10,
        })
    };
    let (train, test) = (split("train")?, split("t10k")?);
    if train.is_empty() || test.is_empty() || train.dim() == 0 {
        return Err(DataError(format!("{name} in {} holds no images", dir.display())));
    }
    if train.shape() != test.shape() {
        return Err(DataError(format!(
            "{name}: train images are {:?} but test images {:?}",
            train.shape(),
            test.shape()
        )));
    }
    Ok(Splits { train, test })
}

/// The 8×8 digits: the last 297 images (in file order) are the test split.
fn digits() -> Result<Splits, DataError> {
    let all = parse_digits_csv_gz(DIGITS_CSV_GZ, "the embedded digits.csv.gz")?;
    let test_count = 297;
    let n = all.len() - test_count;
    let split = |range: std::ops::Range<usize>| ImageSet {
        pixels: all.pixels[range.start * 64..range.end * 64].to_vec(),
        labels: all.labels[range].to_vec(),
        name: all.name.clone(),
        ..all
    };
    Ok(Splits { train: split(0..n), test: split(n..all.len()) })
}

/// Parses scikit-learn's digits.csv.gz: 64 integers 0..16 and a label 0..9 per line.
pub fn parse_digits_csv_gz(bytes: &[u8], what: &str) -> Result<ImageSet, DataError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut text)
        .map_err(|e| DataError(format!("{what}: not gzipped text ({e})")))?;
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| DataError(format!("{what}:{}: {why}", i + 1));
        let values: Vec<u8> = line
            .split(',')
            .map(|f| {
                f.trim().parse::<f64>().ok().filter(|v| v.fract() == 0.0 && (0.0..=16.0).contains(v)).map(|v| v as u8)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| bad("expected integers 0..16"))?;
        if values.len() != 65 || values[64] > 9 {
            return Err(bad("expected 64 pixels and a label 0..9"));
        }
        pixels.extend_from_slice(&values[..64]);
        labels.push(values[64]);
    }
    Ok(ImageSet { name: "digits".into(), pixels, labels, channels: 1, height: 8, width: 8, levels: 17, classes: 10 })
}

/// Images to score, for a model of `shape` [C, H, W] with `levels` quantisation levels, by the
/// file's extension: one `.png` (8-bit grey or RGB), an IDX file of unsigned bytes
/// ([N, H, W], or [N, H, W, C]; gzipped or not; any other extension), or a `.npy` array
/// ([N, H, W] or [N, C, H, W]: bytes on the 0–255 scale, or floats in [0, 1]). Pixels are
/// quantised to the model's levels; a shape that does not match the model's is an error
/// naming both.
pub fn load_images(path: &Path, shape: [usize; 3], levels: usize) -> Result<ImageSet, DataError> {
    let what = path.display().to_string();
    if !(2..=256).contains(&levels) {
        return Err(DataError(format!("{what}: a model of {levels} levels does not score 8-bit images")));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let [c, h, w] = shape;
    let mismatch = |found: &[usize]| {
        DataError(format!("{what} holds images of shape {found:?}; this model scores [{c}, {h}, {w}] (C, H, W)"))
    };
    // The pixels as [n, C, H, W] bytes on a scale of `top` + 1 levels.
    let (pixels, top): (Vec<u8>, usize) = match ext {
        "png" => {
            let file = std::fs::File::open(path).map_err(|e| DataError(format!("cannot read {what}: {e}")))?;
            let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
            decoder.set_transformations(png::Transformations::normalize_to_color8());
            let bad = |e: png::DecodingError| DataError(format!("{what} is not a readable PNG: {e}"));
            let mut reader = decoder.read_info().map_err(bad)?;
            let mut buf = vec![0; reader.output_buffer_size()];
            let info = reader.next_frame(&mut buf).map_err(bad)?;
            let (iw, ih) = (info.width as usize, info.height as usize);
            let channels = match info.color_type {
                png::ColorType::Grayscale => 1,
                png::ColorType::GrayscaleAlpha => 2,
                png::ColorType::Rgb => 3,
                png::ColorType::Rgba => 4,
                png::ColorType::Indexed => return Err(DataError(format!("{what}: indexed PNGs are not read"))),
            };
            let color = if channels >= 3 { 3 } else { 1 };
            if (color, ih, iw) != (c, h, w) {
                return Err(mismatch(&[color, ih, iw]));
            }
            // Alpha (and a grey image's second channel) is dropped.
            (planar(&buf[..info.buffer_size()], channels, c, h * w), 255)
        }
        "npy" => {
            let a = super::npy::read_npy(path)?;
            let dims = match a.shape.as_slice() {
                [n, ih, iw] => [*n, 1, *ih, *iw],
                [n, ic, ih, iw] => [*n, *ic, *ih, *iw],
                other => return Err(mismatch(other)),
            };
            if dims[1..] != shape {
                return Err(mismatch(&dims[1..]));
            }
            match a.values {
                super::npy::NpyValues::Bytes(b) => (b, 255),
                super::npy::NpyValues::Float(f) => {
                    if let Some(i) = f.iter().position(|v| !(0.0..=1.0).contains(v)) {
                        return Err(DataError(format!(
                            "{what}: float pixels must lie in [0, 1]; value {i} is {}",
                            f[i]
                        )));
                    }
                    // Straight onto the model's levels (no detour through 8 bits).
                    let top = levels - 1;
                    (f.iter().map(|v| (v * top as f32).round() as u8).collect(), top)
                }
            }
        }
        _ => {
            let a = read_idx(path)?;
            let (n, ih, iw, ic) = match a.dims.as_slice() {
                [n, ih, iw] => (*n, *ih, *iw, 1),
                [n, ih, iw, ic] => (*n, *ih, *iw, *ic),
                other => return Err(mismatch(other)),
            };
            if [ic, ih, iw] != shape {
                return Err(mismatch(&[ic, ih, iw]));
            }
            // IDX stores channels last.
            (planar(&a.data[..n * c * h * w], c, c, h * w), 255)
        }
    };
    let n = pixels.len() / (c * h * w);
    if n == 0 {
        return Err(DataError(format!("{what} holds no images")));
    }
    // Onto the model's levels: v · (levels − 1) / top, rounded.
    let pixels = if levels == top + 1 {
        pixels
    } else {
        pixels.iter().map(|&v| ((v as usize * (levels - 1) + top / 2) / top) as u8).collect()
    };
    Ok(ImageSet { name: what, pixels, labels: vec![0; n], channels: c, height: h, width: w, levels, classes: 0 })
}

/// Images stored pixel by pixel (`stride` values a pixel, the first `channels` kept) as
/// channel planes, [channels, pixels] per image.
fn planar(interleaved: &[u8], stride: usize, channels: usize, pixels: usize) -> Vec<u8> {
    let images = interleaved.len() / (stride * pixels);
    let mut out = vec![0u8; images * channels * pixels];
    for (p, px) in interleaved.chunks_exact(stride).enumerate() {
        let (image, at) = (p / pixels, p % pixels);
        for (ch, &v) in px[..channels].iter().enumerate() {
            out[(image * channels + ch) * pixels + at] = v;
        }
    }
    out
}
