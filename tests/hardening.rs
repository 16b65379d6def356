//! Hostile input, class by class: non-finite results, meaningless options, corrupt or absurd
//! checkpoints, sizes beyond the adapter, CSV and IDX edge cases, leftovers and paths, and
//! self-contained checkpoints. Every bad input must be a clear error, never a panic or a
//! non-finite number passed off as a result.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::gpu;
use resflow::data::idx::{encode_idx, parse_idx};
use resflow::data::parse_csv;
use resflow::models::toy;
use resflow::train::checkpoint::{write_atomically, Checkpoint};
use resflow::train::toy::{Source, ToyConfig, ToyRun};
use resflow::{GpuError, Tensor, TensorOps};

fn tiny_config() -> ToyConfig {
    ToyConfig {
        blocks: 2,
        hidden: vec![16],
        batch: 64,
        // The checkpoint of `tiny_checkpoint` has done them all.
        iters: 2,
        eval_every: 1000,
        eval_samples: 500,
        warmup: 0,
        ..ToyConfig::default()
    }
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resflow-hardening-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A checkpoint of a tiny run after two steps, its contents, and where it is.
fn tiny_checkpoint(dir: &Path) -> (PathBuf, Checkpoint) {
    let mut run = ToyRun::new(&gpu(), tiny_config()).unwrap();
    run.train_step().unwrap();
    run.train_step().unwrap();
    let path = dir.join("ck.safetensors");
    let ck = run.to_checkpoint();
    ck.save(&path).unwrap();
    (path, ck)
}

/// Loading `ck` (saved to `dir`) fails with a message containing `want`.
fn refused(dir: &Path, ck: &Checkpoint, want: &str) {
    let path = dir.join("edited.safetensors");
    ck.save(&path).unwrap();
    match ToyRun::from_checkpoint(&gpu(), &path) {
        Ok(_) => panic!("a checkpoint that should hold {want:?} loaded"),
        Err(e) => assert!(e.to_string().contains(want), "{e} (wanted {want:?})"),
    }
}

fn with_config(ck: &Checkpoint, edit: impl Fn(&mut serde_json::Value)) -> Checkpoint {
    let mut ck = ck.clone();
    let mut config: serde_json::Value = serde_json::from_str(&ck.metadata["config"]).unwrap();
    edit(&mut config);
    ck.metadata.insert("config".into(), config.to_string());
    ck
}

/// The first parameter of a run set to NaN everywhere.
fn poisoned(run: &ToyRun) -> resflow::nn::ParamStore<Tensor> {
    let mut store = run.store.clone();
    let id = store.ids().next().unwrap();
    let shape = store.get(id).shape().to_vec();
    let nan = vec![f32::NAN; shape.iter().product()];
    store.set(id, Tensor::from_slice(&gpu(), &nan, &shape).unwrap());
    store
}

// ------------------------------------------------------------------ non-finite results

#[test]
fn the_inverse_sees_nan_and_nan_never_passes_as_a_result() {
    let run = ToyRun::new(&gpu(), tiny_config()).unwrap();
    let store = poisoned(&run);
    let z = Tensor::from_slice(&gpu(), &[0.1, 0.2, -0.3, 0.4], &[2, 2]).unwrap();
    let err = run.flow.inverse(&store, &z).expect_err("NaN weights cannot converge");
    assert!(err.to_string().contains("diverged"), "{err}");
    assert!(toy::sample(&gpu(), &run.flow, &store, 10, 0).is_err());
    assert!(run.test_nll(&store, &run.source, 100).is_err(), "a NaN test NLL was reported");
    assert!(run.test_nll(&run.store, &run.source, 0).is_err(), "an NLL of no samples was reported");

    let dir = scratch("nan");
    let out = dir.join("s.csv");
    std::fs::write(&out, "kept\n").unwrap();
    assert!(run.write_samples(&store, 100, 0, &out).is_err());
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "kept\n", "a failed write replaced the old file");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "a temporary file was left behind");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn non_finite_weights_are_found_at_load() {
    let dir = scratch("nan-load");
    let (_, mut ck) = tiny_checkpoint(&dir);
    let (name, _, values) = ck.tensors.iter_mut().find(|(n, _, _)| n.starts_with("ema/")).unwrap();
    values[0] = f32::INFINITY;
    let name = name.clone();
    refused(&dir, &ck, &name);
    std::fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------------------------ checkpoints

#[test]
fn checkpoint_configs_are_bounded_before_anything_is_built() {
    let dir = scratch("config");
    let (_, ck) = tiny_checkpoint(&dir);
    let start = std::time::Instant::now();
    refused(&dir, &with_config(&ck, |c| c["blocks"] = 1_000_000_000u64.into()), "--blocks");
    refused(&dir, &with_config(&ck, |c| c["hidden"] = serde_json::json!([1_000_000_000u64])), "--hidden");
    refused(&dir, &with_config(&ck, |c| c["lr"] = (-1.0).into()), "--lr");
    refused(&dir, &with_config(&ck, |c| c["terms"] = 0.into()), "--terms");
    refused(&dir, &with_config(&ck, |c| c["eval_samples"] = 0.into()), "eval samples");
    assert!(start.elapsed().as_secs() < 30, "absurd configs took {:?} to refuse", start.elapsed());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_tensor_is_checked_against_the_config() {
    let dir = scratch("tensors");
    let (_, ck) = tiny_checkpoint(&dir);
    let mut no_ema = ck.clone();
    let ema = no_ema.tensors.iter().position(|(n, _, _)| n.starts_with("ema/")).unwrap();
    let name = no_ema.tensors.remove(ema).0;
    refused(&dir, &no_ema, &format!("missing tensor {name}"));

    let mut extra = ck.clone();
    extra.tensors.push(("param/block9.g.bogus".into(), vec![1], vec![0.0]));
    refused(&dir, &extra, "unexpected tensor param/block9.g.bogus");

    let mut misshaped = ck.clone();
    let (_, shape, values) = misshaped.tensors.iter_mut().find(|(n, _, _)| n.starts_with("param/")).unwrap();
    *shape = vec![values.len(), 1];
    refused(&dir, &misshaped, "has shape");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_csv_run_keeps_its_points_in_its_checkpoint() {
    let dir = scratch("self-contained");
    let csv = dir.join("pts.csv");
    let rows: String = (0..40).map(|i| format!("{},{}\n", (i % 7) as f32 * 0.3, (i % 5) as f32 * 0.4 - 1.0)).collect();
    std::fs::write(&csv, rows).unwrap();
    let config = ToyConfig { dataset: format!("file:{}", csv.display()), ..tiny_config() };
    let mut run = ToyRun::new(&gpu(), config).unwrap();
    run.train_step().unwrap();
    let path = dir.join("ck.safetensors");
    run.to_checkpoint().save(&path).unwrap();
    std::fs::remove_file(&csv).unwrap();
    let back = ToyRun::from_checkpoint(&gpu(), &path).expect("the checkpoint needs no CSV on disk");
    match (&back.source, &run.source) {
        (Source::Points(a), Source::Points(b)) => assert_eq!(a, b),
        _ => panic!("the points did not come back"),
    }
    assert!(back.test_nll(&back.eval_store(), &back.source, 200).unwrap().is_finite());
    std::fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------------------------ sizes and the device

#[test]
fn a_batch_beyond_the_adapter_is_refused_naming_the_largest_that_fits() {
    let err = ToyRun::new(&gpu(), ToyConfig { batch: 10_000_000, ..tiny_config() }).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("max_storage_buffer_binding_size") && text.contains("largest batch"), "{text}");
    let largest: usize = text.rsplit(' ').next().unwrap().parse().expect("ends with the largest batch");
    assert!(ToyRun::new(&gpu(), ToyConfig { batch: largest, ..tiny_config() }).is_ok());
    assert!(ToyRun::new(&gpu(), ToyConfig { batch: largest + 1, ..tiny_config() }).is_err());
}

#[test]
fn sampling_runs_in_chunks_that_match_one_pass() {
    let run = ToyRun::new(&gpu(), tiny_config()).unwrap();
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    toy::sample_chunks(&gpu(), &run.flow, &run.store, 250, 5, 1.0, 100, |pts| {
        sizes.push(pts.len());
        all.extend_from_slice(pts);
        Ok(())
    })
    .unwrap();
    assert_eq!(sizes, [200, 200, 100]);
    let (one_pass, _) = toy::sample(&gpu(), &run.flow, &run.store, 100, 5).unwrap();
    assert_eq!(&all[..200], &one_pass[..], "the first chunk is the one-pass draw");
    assert!(toy::points_per_chunk(&gpu(), 16) <= 1 << 16);

    let dir = scratch("stream");
    let out = dir.join("s.csv");
    let n = toy::points_per_chunk(&gpu(), 16) + 10;
    run.write_samples(&run.store, n, 1, &out).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(text.lines().count(), n + 1);
    assert!(text.lines().skip(1).all(|l| l.split(',').all(|v| v.parse::<f32>().unwrap().is_finite())));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wgpu_errors_become_gpu_errors() {
    // A device of its own: the invalid buffer must not reach the shared device's pool.
    let gpu = resflow::Gpu::new(None).unwrap();
    let too_big = gpu.limits().max_buffer_size + 4;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let buffer = gpu.alloc(too_big);
        gpu.read(&buffer, 4)
    }));
    let payload = caught.expect_err("an oversized buffer cannot be read");
    let error = payload.downcast_ref::<GpuError>().expect("the panic carries a GpuError");
    assert!(matches!(error, GpuError::Device(_)), "{error}");
}

// ------------------------------------------------------------------ CSV and IDX

#[test]
fn csv_headers_boms_and_degenerate_points() {
    let points: String = (0..12).map(|i| format!("{},{}\n", i, (i * 5) % 3)).collect();
    assert_eq!(parse_csv(&format!("x,y\n{points}"), "a.csv").unwrap().len(), 24);
    assert_eq!(parse_csv(&format!("\u{feff}{points}"), "a.csv").unwrap().len(), 24, "a BOM drops no point");
    let err = |text: &str| parse_csv(text, "p.csv").unwrap_err().to_string();
    assert!(err(&format!("1e308,2\n{points}")).starts_with("p.csv:1:"), "{}", err(&format!("1e308,2\n{points}")));
    assert!(err(&format!("{points}nan,1\n")).starts_with("p.csv:13:"));
    assert!(err(&format!("{points}inf,1\n")).contains("finite"));
    assert!(err(&format!("x,1\n{points}")).starts_with("p.csv:1:"), "a line with a number is no header");
    assert!(err("1,2\n").contains("at least"));
    assert!(err(&"3,4\n".repeat(50)).contains("all equal or all on one line"));
    let line: String = (0..50).map(|i| format!("{i},{}\n", 2 * i + 1)).collect();
    assert!(err(&line).contains("one line"));
}

#[test]
fn idx_reads_no_more_than_its_header_declares() {
    let gzip = |bytes: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).unwrap();
        gz.finish().unwrap()
    };
    // A header declaring 16 bytes, then 64 MiB of zeros: refused after 17 bytes of data.
    let mut bomb = encode_idx(&[4, 4], &[0; 16]);
    bomb.resize(bomb.len() + (64 << 20), 0);
    let err = parse_idx(&gzip(&bomb), "bomb.gz").unwrap_err().0;
    assert!(err.contains("the file has more"), "{err}");
    // A header declaring more than any dataset: refused before reading the data.
    let huge = [0, 0, 8, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0];
    let err = parse_idx(&huge, "huge.idx").unwrap_err().0;
    assert!(err.contains("allowed"), "{err}");
    assert!(parse_idx(&gzip(&huge), "huge.gz").unwrap_err().0.contains("allowed"));
}

// ------------------------------------------------------------------ leftovers and paths

#[test]
fn a_failed_atomic_write_names_the_path_and_leaves_nothing() {
    let dir = scratch("atomic");
    let target = dir.join("taken");
    std::fs::create_dir_all(target.join("inside")).unwrap();
    let err = write_atomically(&target, b"data").unwrap_err().to_string();
    assert!(err.contains(&target.display().to_string()), "{err}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("taken")], "a temporary was left behind");
    std::fs::remove_dir_all(&dir).ok();
}

// ------------------------------------------------------------------ the command line

fn resflow(args: &[&str], tmp: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_resflow"))
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", tmp)
        .output()
        .expect("the binary runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn meaningless_options_are_errors_naming_the_flag() {
    let dir = scratch("cli");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (ck, _) = tiny_checkpoint(&dir);
    let ck = ck.to_str().unwrap();
    let out = dir.join("out");
    let o = out.to_str().unwrap();
    let samples = &format!("{o}/s.csv");
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--iters", "0", "--out", o], "--iters"),
        (&["train", "--lr=-1", "--out", o], "--lr"),
        (&["train", "--clip=-1", "--out", o], "--clip"),
        (&["train", "--eval-every", "0", "--out", o], "--eval-every"),
        (&["train", "--actnorm", "--no-actnorm", "--out", o], "--no-actnorm"),
        (&["train", "--batch", "10000000", "--out", o], "largest batch"),
        (&["train", "--resume", ck, "--iters", "2", "--out", o], "--iters"),
        (&["train", "--resume", ck, "--out", o], "--iters"),
        (&["train", "--resume", ck, "--iters", "9", "--blocks", "5", "--out", o], "--blocks"),
        (&["train", "--resume", ck, "--iters", "9", "--scales", "2", "--out", o], "--scales"),
        (&["eval", "--checkpoint", ck, "--images", "3"], "--images"),
        (&["eval", "--checkpoint", ck, "--samples", "0", "--json"], "--samples"),
        (&["sample", "--checkpoint", ck, "--n", "0", "--out", samples], "--n"),
    ];
    for (args, flag) in cases {
        let (ok, stdout, stderr) = resflow(args, &tmp);
        assert!(!ok && stderr.contains(flag) && !stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed a result: {stdout}");
    }
    assert!(!out.exists(), "a refused run wrote {}", out.display());
    // Without XDG_RUNTIME_DIR the binary makes a private one, and removes it.
    let (ok, _, stderr) = resflow(&["eval", "--checkpoint", ck, "--samples", "200", "--json"], &tmp);
    assert!(ok, "{stderr}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "the run left files in TMPDIR");
    std::fs::remove_dir_all(&dir).ok();
}
