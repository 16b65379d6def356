//! A deterministic mutation fuzzer for the loaders: seeded bit flips, truncations, header,
//! config, dtype and shape edits of a real checkpoint, and mutated CSV and IDX files (plain
//! and gzipped), fed to the library's loaders and the functions the command line calls.
//! Zero panics; every input known to be bad must be an `Err`.
//!
//! `RESFLOW_FUZZ_ITERS=N` sets the inputs per format (default 4000, over 12 000 in all).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::gpu;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use resflow::data::idx::{encode_idx, parse_idx};
use resflow::data::parse_csv;
use resflow::train::checkpoint::Checkpoint;
use resflow::train::toy::{ToyConfig, ToyRun};
use resflow::train::AnyRun;
use serde_json::{json, Value};

fn iterations() -> usize {
    std::env::var("RESFLOW_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000)
}

/// What a run of the fuzzer saw.
#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    panics: Vec<String>,
    errors: usize,
    accepted: usize,
    /// Inputs that had to be refused but were accepted.
    wrongly_accepted: Vec<String>,
}

impl Tally {
    /// Runs `load` on one input; `must_fail` says the input is bad whatever else happens.
    fn feed<T, E>(&mut self, what: &str, must_fail: bool, load: impl FnOnce() -> Result<T, E>) {
        self.inputs += 1;
        match catch_unwind(AssertUnwindSafe(load)) {
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a non-string panic".into());
                self.panics.push(format!("{what}: {message}"));
            }
            Ok(Err(_)) => self.errors += 1,
            Ok(Ok(_)) if must_fail => self.wrongly_accepted.push(what.to_string()),
            Ok(Ok(_)) => self.accepted += 1,
        }
    }

    fn check(&self, format: &str) {
        eprintln!(
            "fuzz {format}: {} inputs, {} errors, {} accepted, {} panics, {} bad inputs accepted",
            self.inputs,
            self.errors,
            self.accepted,
            self.panics.len(),
            self.wrongly_accepted.len()
        );
        assert!(self.panics.is_empty(), "{} panics, the first: {:?}", self.panics.len(), &self.panics[..1]);
        assert!(self.wrongly_accepted.is_empty(), "bad inputs accepted: {:?}", &self.wrongly_accepted);
    }
}

fn flip_bits(bytes: &mut [u8], rng: &mut StdRng) {
    for _ in 0..rng.random_range(1..=8) {
        let i = rng.random_range(0..bytes.len());
        bytes[i] ^= 1 << rng.random_range(0..8);
    }
}

/// The JSON header and the data of a safetensors file.
fn split(file: &[u8]) -> (Value, Vec<u8>) {
    let len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    (serde_json::from_slice(&file[8..8 + len]).unwrap(), file[8 + len..].to_vec())
}

fn join(header: &Value, data: &[u8]) -> Vec<u8> {
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

/// Values no count, width, rate or choice of a config may take.
fn absurd_values(field: &str) -> Vec<Value> {
    match field {
        "hidden" => vec![json!([]), json!([0]), json!([1_000_000_000u64]), json!("64"), json!(vec![64; 40])],
        "coeff" => vec![json!(0.0), json!(1.0), json!(-0.5), json!(7.0), json!("NaN")],
        "lr" | "clip" => vec![json!(0.0), json!(-1.0), json!(1e30), json!(null)],
        "ema" => vec![json!(1.0), json!(-0.1), json!(2.0)],
        "activation" | "estimator" | "grad_mode" | "lr_schedule" => vec![json!("bogus"), json!(3)],
        "dataset" => vec![json!("nope"), json!("file:/nonexistent/points.csv"), json!(7)],
        "iters" | "eval_every" => vec![json!(0), json!(-1), json!("x"), json!(null)],
        _ => vec![json!(0), json!(-1), json!(1_000_000_000_000_000u64), json!("x"), json!(null)],
    }
}

const CONFIG_FIELDS: [&str; 16] = [
    "dataset",
    "blocks",
    "hidden",
    "activation",
    "coeff",
    "power_iters",
    "estimator",
    "terms",
    "grad_mode",
    "lr",
    "clip",
    "ema",
    "batch",
    "iters",
    "eval_every",
    "eval_samples",
];

/// A mutation of a checkpoint file, and whether the result must be refused.
fn mutate_checkpoint(file: &[u8], rng: &mut StdRng) -> (String, Vec<u8>, bool) {
    let (mut header, data) = split(file);
    let names: Vec<String> = header.as_object().unwrap().keys().filter(|k| *k != "__metadata__").cloned().collect();
    let name = names[rng.random_range(0..names.len())].clone();
    match rng.random_range(0..8) {
        0 | 1 => {
            let mut bytes = file.to_vec();
            flip_bits(&mut bytes, rng);
            ("bit flips".into(), bytes, false)
        }
        2 => {
            let len = rng.random_range(0..file.len());
            (format!("truncated to {len} bytes"), file[..len].to_vec(), true)
        }
        3 => {
            let dtype = ["F16", "BF16", "F64", "I32", "U8", "BOOL", "Q4"][rng.random_range(0..7)];
            header[&name]["dtype"] = json!(dtype);
            (format!("{name} as {dtype}"), join(&header, &data), true)
        }
        4 => {
            let shape: Vec<u64> =
                header[&name]["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
            let numel: u64 = shape.iter().product();
            let new = match rng.random_range(0..4) {
                0 => vec![numel, 1],
                1 => vec![1, numel],
                2 => vec![numel + 1],
                _ => vec![u32::MAX as u64, u32::MAX as u64, 16],
            };
            header[&name]["shape"] = json!(new);
            let changed = new != shape;
            (format!("{name} of shape {new:?} (was {shape:?})"), join(&header, &data), changed)
        }
        5 => {
            let removed = name.starts_with("param/") || name.starts_with("ema/");
            header.as_object_mut().unwrap().remove(&name);
            (format!("without {name}"), join(&header, &data), removed)
        }
        6 => {
            let field = CONFIG_FIELDS[rng.random_range(0..CONFIG_FIELDS.len())];
            let values = absurd_values(field);
            let value = values[rng.random_range(0..values.len())].clone();
            let meta = &mut header["__metadata__"];
            let mut config: Value = serde_json::from_str(meta["config"].as_str().unwrap()).unwrap();
            config[field] = value.clone();
            meta["config"] = json!(config.to_string());
            (format!("config {field} = {value}"), join(&header, &data), true)
        }
        _ => {
            let key = ["format", "step", "initialized", "log", "config"][rng.random_range(0..5)];
            let value =
                ["", "-1", "18446744073709551616", "{", "[[]]", "resflow-image-1", "null"][rng.random_range(0..7)];
            header["__metadata__"][key] = json!(value);
            // An unparsable step, config, log or format must be refused; `initialized` is a flag.
            let must_fail = key != "initialized";
            (format!("metadata {key} = {value:?}"), join(&header, &data), must_fail)
        }
    }
}

#[test]
fn mutated_checkpoints_are_errors_never_panics() {
    let gpu = gpu();
    let config = ToyConfig { blocks: 2, hidden: vec![8], batch: 32, eval_samples: 100, ..ToyConfig::default() };
    let mut run = ToyRun::new(&gpu, config).unwrap();
    run.train_step().unwrap();
    let dir = std::env::temp_dir().join(format!("resflow-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ck.safetensors");
    run.to_checkpoint().save(&path).unwrap();
    let file = std::fs::read(&path).unwrap();

    let mut rng = StdRng::seed_from_u64(18);
    let mut tally = Tally::default();
    for i in 0..iterations() {
        let (what, bytes, must_fail) = mutate_checkpoint(&file, &mut rng);
        let what = format!("#{i} {what}");
        // Every tenth input goes the command line's way, through a file.
        if i % 10 == 0 {
            let mutated = dir.join("mutated.safetensors");
            std::fs::write(&mutated, &bytes).unwrap();
            tally.feed(&what, must_fail, || AnyRun::load(&gpu, &mutated).map(|_| ()));
        } else {
            tally.feed(&what, must_fail, || {
                Checkpoint::parse(&bytes, "mutated")
                    .map_err(|e| e.to_string())
                    .and_then(|ck| ToyRun::from_loaded(&gpu, &ck, "mutated").map(|_| ()).map_err(|e| e.to_string()))
            });
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    tally.check("checkpoints");
}

#[test]
fn mutated_csv_files_are_errors_never_panics() {
    let mut rng = StdRng::seed_from_u64(7);
    let base: String = std::iter::once("x,y\n".to_string())
        .chain((0..30).map(|i| format!("{:.3},{:.3}\n", (i as f32 * 0.37).sin() * 2.0, (i as f32 * 0.11).cos())))
        .collect();
    let inserts: [&str; 12] = [",", "\n", "e", "-", ".", "9", "nan", "inf", "1e39", "\u{feff}", "\r\n", "\""];
    let mut tally = Tally::default();
    for i in 0..iterations() {
        let mut bytes = base.clone().into_bytes();
        let (what, must_fail) = match rng.random_range(0..5) {
            0 => {
                flip_bits(&mut bytes, &mut rng);
                ("bit flips".to_string(), false)
            }
            1 => {
                let at = rng.random_range(0..bytes.len());
                let text = inserts[rng.random_range(0..inserts.len())];
                bytes.splice(at..at, text.bytes());
                (format!("{text:?} inserted at {at}"), false)
            }
            2 => {
                let len = rng.random_range(0..base.len() / 4);
                bytes.truncate(len);
                (format!("truncated to {len} bytes"), true)
            }
            3 => {
                let bad = ["nan,1", "1,inf", "1e39,0", "1,2,3", "x,y", ",", "0x10,1"][rng.random_range(0..7)];
                let line = rng.random_range(2..30);
                let mut lines: Vec<&str> = base.lines().collect();
                lines.insert(line, bad);
                bytes = lines.join("\n").into_bytes();
                (format!("{bad:?} at line {}", line + 1), true)
            }
            _ => {
                let same = format!("{},{}\n", rng.random_range(-5..5), rng.random_range(-5..5))
                    .repeat(rng.random_range(1..40));
                bytes = same.into_bytes();
                ("identical points".to_string(), true)
            }
        };
        let text = String::from_utf8_lossy(&bytes).into_owned();
        tally.feed(&format!("#{i} {what}"), must_fail, || parse_csv(&text, "fuzz.csv"));
    }
    tally.check("csv");
}

#[test]
fn mutated_idx_files_are_errors_never_panics() {
    let mut rng = StdRng::seed_from_u64(4);
    let pixels: Vec<u8> = (0..20 * 4 * 4).map(|i| (i * 13) as u8).collect();
    let plain = encode_idx(&[20, 4, 4], &pixels);
    let gzip = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap()
    };
    let mut tally = Tally::default();
    for i in 0..iterations() {
        let mut bytes = plain.clone();
        let (what, must_fail) = match rng.random_range(0..4) {
            0 => {
                flip_bits(&mut bytes, &mut rng);
                ("bit flips".to_string(), false)
            }
            1 => {
                let len = rng.random_range(0..bytes.len());
                bytes.truncate(len);
                (format!("truncated to {len}"), true)
            }
            2 => {
                let extra = rng.random_range(1..64);
                bytes.extend(std::iter::repeat_n(0u8, extra));
                (format!("{extra} bytes appended"), true)
            }
            _ => {
                let dim = rng.random_range(0..3);
                let value: u32 = [0, 1, 21, 0xFFFF, u32::MAX][rng.random_range(0..5)];
                bytes[4 + 4 * dim..8 + 4 * dim].copy_from_slice(&value.to_be_bytes());
                (format!("dimension {dim} = {value}"), value != [20, 4, 4][dim])
            }
        };
        let zipped = rng.random_bool(0.5);
        let mut input = if zipped { gzip(&bytes) } else { bytes };
        // Half the gzipped inputs are corrupted after compression instead.
        if zipped && rng.random_bool(0.5) {
            flip_bits(&mut input, &mut rng);
            tally.feed(&format!("#{i} gzip of {what}, then bit flips"), false, || parse_idx(&input, "fuzz.idx.gz"));
        } else {
            tally.feed(&format!("#{i} {what} (gzip {zipped})"), must_fail, || parse_idx(&input, "fuzz.idx"));
        }
    }
    tally.check("idx");
}
