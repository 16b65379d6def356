//! The tile configuration of the tiled GEMMs (the tiled matmul and the storage-buffer
//! convolutions): 64×64 or 128×128 output tiles for each, chosen per adapter by a timing probe
//! at first use (well under a second, kernel compilation included) and cached on disk
//! (`tile_cache`), so later runs on the same adapter, driver and resflow version reuse it.
//! `RESFLOW_TILE_PROBE=off` skips the probe (the large tiles wherever they fit), `=force`
//! probes again and rewrites the cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{tile_cache, Tensor};
use crate::gpu::Gpu;
use crate::options::{RuntimeOptions, TileProbe};

/// Output tiles of a tiled GEMM. `Large` applies where the result spans a 128×128 tile each way
/// and the adapter's limits allow it; smaller results take `Small` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tiles {
    /// 64×64 tiles, 4×4 outputs per invocation (matmul_tiled.wgsl).
    Small,
    /// 128×128 double-buffered tiles, 8×8 outputs per invocation (matmul_tiled_large.wgsl).
    Large,
}

impl Tiles {
    pub fn name(self) -> &'static str {
        match self {
            Tiles::Small => "64",
            Tiles::Large => "128",
        }
    }
    pub fn parse(s: &str) -> Option<Tiles> {
        match s {
            "64" => Some(Tiles::Small),
            "128" => Some(Tiles::Large),
            _ => None,
        }
    }
}

/// The tiles of each tiled GEMM family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileConfig {
    pub matmul: Tiles,
    pub conv: Tiles,
}

impl TileConfig {
    /// Without a probe: the large tiles wherever they fit, a GPU's usual best.
    pub const UNPROBED: TileConfig = TileConfig { matmul: Tiles::Large, conv: Tiles::Large };
}

/// Where a device's configuration came from.
#[derive(Debug, Clone, PartialEq)]
pub enum TileSource {
    /// `RESFLOW_TILE_PROBE=off`.
    Off,
    /// The adapter cannot run the large tiles: nothing to choose.
    NoLargeTiles,
    /// Read from this cache file.
    Cached(PathBuf),
    /// Measured now: the probe's wall time and the best time of each candidate (ms; NaN where
    /// the time budget ran out before it).
    Probed { total_ms: f64, matmul_ms: [f64; 2], conv_ms: [f64; 2] },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TileChoice {
    pub config: TileConfig,
    pub source: TileSource,
}

/// The probe's time budget: it stops timing once past it (keeping the unprobed choice for a
/// family it could not finish), so a cold first use stays under a second.
pub const PROBE_BUDGET: Duration = Duration::from_millis(700);

/// The probe's problems: a 256³ matmul with aligned rows (the vec4-load kernel), and a 3×3
/// convolution of 64 → 128 channels on a 16×16 image (a 128 × 256 result, K = 576).
const PROBE_MATMUL: usize = 256;
const PROBE_CONV_X: [usize; 4] = [1, 64, 16, 16];
const PROBE_CONV_W: [usize; 4] = [128, 64, 3, 3];

/// Whether the adapter gives a workgroup the 256 invocations and 16 KiB of shared memory the
/// 128×128 tiles need.
fn large_tiles_possible(gpu: &Gpu) -> bool {
    let l = gpu.limits();
    l.max_compute_workgroup_storage_size >= 16 << 10 && l.max_compute_invocations_per_workgroup >= 256
}

/// Whether a result of `m × n` runs on 128×128 tiles with `tiles`: it spans at least one in
/// each direction (smaller ones would leave most of a workgroup idle) and the adapter can.
pub(super) fn large_tiles_fit(gpu: &Gpu, m: usize, n: usize, tiles: Tiles) -> bool {
    tiles == Tiles::Large && m >= 128 && n >= 128 && large_tiles_possible(gpu)
}

/// The tiles for an `m × n` result of `family`'s tiled GEMM: `forced`, else the device's
/// choice. Results too small for the large tiles never ask (nor start the probe).
pub(super) fn tiles_for(
    gpu: &Gpu,
    m: usize,
    n: usize,
    forced: Option<Tiles>,
    family: fn(&TileConfig) -> Tiles,
) -> Tiles {
    match forced {
        Some(tiles) => tiles,
        None if m >= 128 && n >= 128 => family(&tile_choice(gpu).config),
        None => Tiles::Small,
    }
}

/// This device's tile configuration, chosen on first use (`RESFLOW_TILE_PROBE`, the cache
/// under the user's cache directory, else the probe).
pub fn tile_choice(gpu: &Gpu) -> Arc<TileChoice> {
    gpu.state(|gpu| {
        let dir = tile_cache::cache_dir(|name| std::env::var(name).ok());
        choose(gpu, dir.as_deref(), RuntimeOptions::get().tile_probe)
    })
}

/// The key of this adapter's cache entry: what a different choice could follow from.
pub fn cache_key(gpu: &Gpu) -> String {
    let i = gpu.info();
    format!(
        "{} ({:04x}:{:04x})|{}|{}|{:?}|resflow {}",
        i.name,
        i.vendor,
        i.device,
        i.driver,
        i.driver_info,
        i.backend,
        env!("CARGO_PKG_VERSION")
    )
}

/// The configuration by `mode`, with the cache in `dir` (none: probe every time). A cache
/// that cannot be read or written is passed over silently: the probe's result is as good.
pub fn choose(gpu: &Gpu, dir: Option<&Path>, mode: TileProbe) -> TileChoice {
    if mode == TileProbe::Off {
        return TileChoice { config: TileConfig::UNPROBED, source: TileSource::Off };
    }
    if !large_tiles_possible(gpu) {
        let config = TileConfig { matmul: Tiles::Small, conv: Tiles::Small };
        return TileChoice { config, source: TileSource::NoLargeTiles };
    }
    let key = cache_key(gpu);
    if let (Some(dir), TileProbe::Auto) = (dir, mode) {
        if let Some(config) = tile_cache::read(dir, &key) {
            return TileChoice { config, source: TileSource::Cached(tile_cache::cache_file(dir, &key)) };
        }
    }
    let choice = probe(gpu);
    if let Some(dir) = dir {
        let _ = tile_cache::write(dir, &key, choice.config);
    }
    choice
}

/// Times each family's two tile sizes, alternating (best of up to three runs after one that
/// compiles the kernel), within [`PROBE_BUDGET`].
fn probe(gpu: &Gpu) -> TileChoice {
    let start = Instant::now();
    gpu.sync();
    let fill = |n: usize| (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect::<Vec<f32>>();
    let square = [PROBE_MATMUL, PROBE_MATMUL];
    let a = Tensor::from_slice(gpu, &fill(PROBE_MATMUL * PROBE_MATMUL), &square).expect("probe operand");
    let x = Tensor::from_slice(gpu, &fill(PROBE_CONV_X.iter().product()), &PROBE_CONV_X).expect("probe image");
    let w = Tensor::from_slice(gpu, &fill(PROBE_CONV_W.iter().product()), &PROBE_CONV_W).expect("probe weights");
    let run = |family: usize, tiles: Tiles| {
        drop(match family {
            0 => a.matmul_with_tiles(&a, false, false, tiles).expect("square matmul"),
            _ => x.conv2d_with_tiles(&w, tiles).expect("probe convolution"),
        })
    };
    let mut best = [[f64::NAN; 2]; 2];
    for (family, times) in best.iter_mut().enumerate() {
        for (slot, tiles) in [Tiles::Small, Tiles::Large].into_iter().enumerate() {
            if start.elapsed() > PROBE_BUDGET {
                break;
            }
            run(family, tiles);
            gpu.sync();
            for _ in 0..3 {
                if start.elapsed() > PROBE_BUDGET {
                    break;
                }
                let t = Instant::now();
                run(family, tiles);
                gpu.sync();
                let ms = t.elapsed().as_secs_f64() * 1e3;
                times[slot] = if times[slot].is_nan() { ms } else { times[slot].min(ms) };
            }
        }
    }
    // Only a measured win moves a family off the unprobed choice.
    let pick = |[small, large]: [f64; 2], unprobed| {
        if small < large {
            Tiles::Small
        } else if large <= small {
            Tiles::Large
        } else {
            unprobed
        }
    };
    let config = TileConfig {
        matmul: pick(best[0], TileConfig::UNPROBED.matmul),
        conv: pick(best[1], TileConfig::UNPROBED.conv),
    };
    // The probe's buffers are of sizes nothing else may ask for.
    gpu.trim_pool();
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    TileChoice { config, source: TileSource::Probed { total_ms, matmul_ms: best[0], conv_ms: best[1] } }
}
