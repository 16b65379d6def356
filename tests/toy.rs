//! Toy 2-D density estimation: the dataset generators, a short training run, checkpoints,
//! resume equivalence, and the command line on bad input.

mod common;

use std::process::Command;

use common::gpu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use resflow::data::toy::ALL;
use resflow::data::{load_csv, ToyDataset};
use resflow::train::choices::{Estimator, GradMode};
use resflow::train::toy::{ToyConfig, ToyRun};

fn moments(p: &[f32]) -> ([f64; 2], [f64; 2]) {
    let n = (p.len() / 2) as f64;
    let mut mean = [0.0; 2];
    for c in p.chunks_exact(2) {
        mean[0] += c[0] as f64 / n;
        mean[1] += c[1] as f64 / n;
    }
    let mut var = [0.0; 2];
    for c in p.chunks_exact(2) {
        var[0] += (c[0] as f64 - mean[0]).powi(2) / n;
        var[1] += (c[1] as f64 - mean[1]).powi(2) / n;
    }
    (mean, var)
}

#[test]
fn generators_have_the_documented_shapes() {
    let mut rng = StdRng::seed_from_u64(3);
    for d in ALL {
        let p = d.sample(20_000, &mut rng);
        assert_eq!(p.len(), 40_000, "{}", d.name());
        assert!(p.iter().all(|v| v.is_finite() && v.abs() < 8.0), "{} leaves [-8, 8]", d.name());
        let (mean, var) = moments(&p);
        // Every density sits near the origin (the swiss roll, as in scikit-learn, is off by ≈ 0.4)
        // and spreads over a few units.
        assert!(mean[0].abs() < 0.5 && mean[1].abs() < 0.3, "{} mean {mean:?}", d.name());
        assert!(var.iter().all(|&v| v > 0.2 && v < 12.0), "{} variance {var:?}", d.name());
    }
    // Checkerboard: uniform on the 8 black squares of side 2 in [-4, 4]², nothing on the white.
    let p = ToyDataset::Checkerboard.sample(80_000, &mut rng);
    let mut counts = [[0usize; 4]; 4];
    for c in p.chunks_exact(2) {
        let (i, j) = (((c[0] + 4.0) / 2.0).floor() as usize, ((c[1] + 4.0) / 2.0).floor() as usize);
        counts[i.min(3)][j.min(3)] += 1;
    }
    for (i, row) in counts.iter().enumerate() {
        for (j, &n) in row.iter().enumerate() {
            if (i + j) % 2 == 0 {
                assert!((n as f64 - 10_000.0).abs() < 500.0, "black square ({i}, {j}) holds {n}");
            } else {
                assert_eq!(n, 0, "white square ({i}, {j}) holds {n}");
            }
        }
    }
    // 8 gaussians: centres 4/1.414 from the origin, std 0.5/1.414.
    let p = ToyDataset::EightGaussians.sample(20_000, &mut rng);
    let r: f64 =
        p.chunks_exact(2).map(|c| ((c[0] as f64).powi(2) + (c[1] as f64).powi(2)).sqrt()).sum::<f64>() / 20_000.0;
    assert!((r - 4.0 / 1.414).abs() < 0.1, "mean radius {r}");
    // The same seed gives the same points.
    let a = ToyDataset::Moons.sample(100, &mut StdRng::seed_from_u64(9));
    let b = ToyDataset::Moons.sample(100, &mut StdRng::seed_from_u64(9));
    assert_eq!(a, b);
}

fn tiny_config() -> ToyConfig {
    ToyConfig {
        blocks: 2,
        hidden: vec![16],
        batch: 128,
        iters: 40,
        eval_every: 1000,
        eval_samples: 2000,
        lr: 5e-3,
        warmup: 0,
        ..ToyConfig::default()
    }
}

#[test]
fn a_short_training_run_lowers_the_nll() {
    let mut run = ToyRun::new(&gpu(), tiny_config()).unwrap();
    let before = run.test_nll(&run.store.clone(), &run.source.clone(), 2000).unwrap();
    for _ in 0..40 {
        run.train_step().unwrap();
    }
    let after = run.test_nll(&run.store.clone(), &run.source.clone(), 2000).unwrap();
    assert!(after < before - 0.1, "test NLL {before} → {after}");
}

#[test]
fn the_unbiased_estimator_trains_too() {
    let config = ToyConfig { estimator: Estimator::Unbiased, grad_mode: GradMode::NeumannBif, ..tiny_config() };
    let mut run = ToyRun::new(&gpu(), config).unwrap();
    let before = run.test_nll(&run.store.clone(), &run.source.clone(), 2000).unwrap();
    for _ in 0..40 {
        run.train_step().unwrap();
    }
    let after = run.test_nll(&run.store.clone(), &run.source.clone(), 2000).unwrap();
    assert!(after < before - 0.1, "test NLL {before} → {after}");
}

fn params(run: &ToyRun) -> Vec<Vec<f32>> {
    run.store.ids().map(|id| run.store.get(id).to_vec()).collect()
}

#[test]
fn checkpoint_round_trip_and_resume_equal_an_uninterrupted_run() {
    let dir = std::env::temp_dir().join(format!("resflow-toy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ck.safetensors");
    let config = ToyConfig { actnorm: true, ..tiny_config() };

    let mut straight = ToyRun::new(&gpu(), config.clone()).unwrap();
    for _ in 0..12 {
        straight.train_step().unwrap();
    }

    let mut first = ToyRun::new(&gpu(), config).unwrap();
    for _ in 0..6 {
        first.train_step().unwrap();
    }
    first.to_checkpoint().save(&path).unwrap();
    let mut resumed = ToyRun::from_checkpoint(&gpu(), &path).unwrap();
    assert_eq!(params(&resumed), params(&first), "a checkpoint restores every tensor exactly");
    assert_eq!(resumed.step(), 6);
    for _ in 0..6 {
        resumed.train_step().unwrap();
    }
    assert_eq!(params(&resumed), params(&straight), "resumed run diverged from the uninterrupted one");
    let ema_a: Vec<Vec<f32>> = resumed.ema.values.values().map(|t| t.to_vec()).collect();
    let ema_b: Vec<Vec<f32>> = straight.ema.values.values().map(|t| t.to_vec()).collect();
    assert_eq!(ema_a, ema_b);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn csv_points_load_and_bad_rows_name_their_line() {
    let dir = std::env::temp_dir().join(format!("resflow-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.csv");
    let rows: String = (0..10).map(|i| format!("{}.5,{}\n", i, (i * i) % 7)).collect();
    std::fs::write(&good, format!("x,y\n{rows}\n")).unwrap();
    let want: Vec<f32> = (0..10).flat_map(|i| [i as f32 + 0.5, ((i * i) % 7) as f32]).collect();
    assert_eq!(load_csv(&good).unwrap(), want);
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "1,2\n3,4\n5,oops\n").unwrap();
    let err = load_csv(&bad).unwrap_err().to_string();
    assert!(err.contains(":3:") && err.contains("oops"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

fn resflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resflow")).args(args).output().expect("the binary runs")
}

#[test]
fn the_cli_rejects_bad_input_with_clear_errors() {
    let out = resflow(&["train", "--dataset", "nope", "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("valid datasets") && err.contains("checkerboard"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let dir = std::env::temp_dir().join(format!("resflow-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let corrupt = dir.join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json").unwrap();
    for cmd in [&["eval", "--checkpoint"][..], &["sample", "--n", "10", "--out", "/tmp/x.csv", "--checkpoint"][..]] {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push(corrupt.to_str().unwrap());
        let out = resflow(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("not a valid checkpoint") && !err.contains("panicked"), "{err}");
    }
    let missing = resflow(&["eval", "--checkpoint", "/nonexistent/ck.safetensors"]);
    assert!(!missing.status.success() && String::from_utf8_lossy(&missing.stderr).contains("cannot read checkpoint"));

    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "0,0\n1,1\nnan-ish\n").unwrap();
    let out = resflow(&["train", "--data-file", csv.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(":3:"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_eval_and_sample_work_end_to_end() {
    let dir = std::env::temp_dir().join(format!("resflow-e2e-{}", std::process::id()));
    let out = resflow(&[
        "train",
        "--dataset",
        "8gaussians",
        "--blocks",
        "2",
        "--hidden",
        "16",
        "--iters",
        "20",
        "--eval-every",
        "20",
        "--batch",
        "128",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["data.png", "density.png", "samples.png", "loss.png", "figure.png", "log.csv", "checkpoint.safetensors"] {
        let p = dir.join(f);
        assert!(p.exists() && std::fs::metadata(&p).unwrap().len() > 0, "{f} missing");
    }
    let png = std::fs::read(dir.join("density.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let ck = dir.join("checkpoint.safetensors");
    let eval = resflow(&["eval", "--checkpoint", ck.to_str().unwrap(), "--json", "--samples", "1000"]);
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(eval.status.success() && text.contains("\"nll\":"), "{text}");
    let csv = dir.join("s.csv");
    let s = resflow(&["sample", "--checkpoint", ck.to_str().unwrap(), "--n", "50", "--out", csv.to_str().unwrap()]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    let lines = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(lines.lines().count(), 51);
    std::fs::remove_dir_all(&dir).ok();
}
