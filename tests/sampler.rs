//! `resflow-sample`, the inference-only program: its per-point log-density against a dense
//! finite-difference Jacobian in f64, its scores against `resflow eval`, every output format of
//! `draw`, image scoring, what it links, and its errors.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::gpu;
use rand::rngs::StdRng;
use rand::SeedableRng;
use resflow::data::npy::{parse_npy, NpyValues};
use resflow::flow::{Estimator, FlowCtx};
use resflow::nn::{Binder, ParamStore};
use resflow::tape::{Tape, Var};
use resflow::train::image::{ImageConfig, ImageRun};
use resflow::train::seed::step_seed;
use resflow::train::toy::{ToyConfig, ToyRun};
use resflow::{CpuTensor, TensorOps};

fn sampler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resflow-sample")).args(args).output().expect("resflow-sample runs")
}

fn resflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_resflow")).args(args).output().expect("resflow runs")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn failure(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected a failure, got success: {err}");
    assert!(!err.contains("panicked"), "a panic instead of an error line: {err}");
    err
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("resflow-sampler-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A toy model trained a few steps, saved to `dir`.
fn toy_checkpoint(dir: &Path) -> (ToyRun, PathBuf) {
    let config =
        ToyConfig { blocks: 2, hidden: vec![16], batch: 128, iters: 25, lr: 5e-3, warmup: 0, ..ToyConfig::default() };
    let mut run = ToyRun::new(&gpu(), config).unwrap();
    for _ in 0..25 {
        run.train_step().unwrap();
    }
    let path = dir.join("toy.safetensors");
    run.to_checkpoint().save(&path).unwrap();
    (run, path)
}

/// log p of each point in f64: the flow's forward map on the CPU reference with the
/// checkpoint's evaluation weights, and log|det| of a central-difference Jacobian of it.
fn finite_difference_log_density(run: &ToyRun, points: &[f32]) -> Vec<f64> {
    let mut cpu: ParamStore<CpuTensor> = ParamStore::new(CpuTensor::new(vec![0.0], &[1]), 0);
    let flow = resflow::models::toy::build(&mut cpu, &run.config.model_spec());
    let weights = run.eval_store();
    for id in weights.ids() {
        let t = weights.get(id);
        let values: Vec<f64> = t.to_vec().iter().map(|&v| v as f64).collect();
        cpu.set(id, CpuTensor::new(values, t.shape()));
    }
    let map = |x: &[f64]| -> Vec<f64> {
        let tape = Tape::no_grad();
        let b = Binder::new(&cpu, &tape);
        let ctx = FlowCtx::new(&b, 0, true).with_estimator(Estimator::Exact);
        let (z, _) = flow.forward(&ctx, &Var::constant(CpuTensor::new(x.to_vec(), &[x.len() / 2, 2])));
        z.value.data.clone()
    };
    let h = 1e-5;
    let x: Vec<f64> = points.iter().map(|&v| v as f64).collect();
    let z = map(&x);
    let shifted = |j: usize, by: f64| {
        let mut y = x.clone();
        y.iter_mut().skip(j).step_by(2).for_each(|v| *v += by);
        map(&y)
    };
    let cols: Vec<(Vec<f64>, Vec<f64>)> = (0..2).map(|j| (shifted(j, h), shifted(j, -h))).collect();
    (0..points.len() / 2)
        .map(|i| {
            let d = |j: usize, r: usize| (cols[j].0[2 * i + r] - cols[j].1[2 * i + r]) / (2.0 * h);
            let det = d(0, 0) * d(1, 1) - d(1, 0) * d(0, 1);
            let (z0, z1) = (z[2 * i], z[2 * i + 1]);
            -0.5 * (z0 * z0 + z1 * z1) - (2.0 * std::f64::consts::PI).ln() + det.abs().ln()
        })
        .collect()
}

fn write_points(path: &Path, points: &[f32]) {
    let mut text = String::from("x,y\n");
    for p in points.chunks_exact(2) {
        text.push_str(&format!("{},{}\n", p[0], p[1]));
    }
    std::fs::write(path, text).unwrap();
}

fn column(text: &str, header: &str) -> Vec<f64> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(header));
    lines.map(|l| l.split(',').next().unwrap().parse().unwrap()).collect()
}

fn json_number(text: &str, key: &str) -> f64 {
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    v[key].as_f64().unwrap_or_else(|| panic!("no {key} in {text}"))
}

#[test]
fn toy_log_densities_match_a_finite_difference_jacobian_and_eval() {
    let dir = temp_dir("toy");
    let (run, ck) = toy_checkpoint(&dir);
    // Points on and far off the data, where the density is small.
    let mut points = run.source.sample(200, &mut StdRng::seed_from_u64(11));
    points.extend_from_slice(&[0.0, 0.0, 3.9, -3.9, -6.0, 5.0]);
    let csv = dir.join("points.csv");
    write_points(&csv, &points);

    let scored = column(&ok(&sampler(&["score", "--checkpoint", s(&ck), "--points", s(&csv), "--out", "-"])), "log_p");
    let oracle = finite_difference_log_density(&run, &points);
    assert_eq!(scored.len(), oracle.len());
    let worst = scored.iter().zip(&oracle).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-4, "largest |log p − finite-difference log p| = {worst:e}");
    eprintln!("largest |log p − finite-difference log p| over {} points: {worst:.2e}", scored.len());

    // The same points through `resflow eval --data-file`: the mean of the scores.
    let nll = json_number(&ok(&resflow(&["eval", "--checkpoint", s(&ck), "--data-file", s(&csv), "--json"])), "nll");
    let mean = -scored.iter().sum::<f64>() / scored.len() as f64;
    assert!((nll - mean).abs() < 2e-5, "eval --data-file {nll} vs mean score {mean}");

    // The fresh samples `resflow eval` draws, scored: their mean is eval's test NLL.
    let fresh = run.source.sample(10_000, &mut StdRng::seed_from_u64(step_seed(run.config.seed, usize::MAX, 7)));
    let npy_path = dir.join("fresh.npy");
    let mut npy = resflow::data::npy::f32_header(&[10_000, 2]);
    resflow::data::npy::write_f32s(&mut npy, &fresh).unwrap();
    std::fs::write(&npy_path, npy).unwrap();
    let scored =
        column(&ok(&sampler(&["score", "--checkpoint", s(&ck), "--points", s(&npy_path), "--out", "-"])), "log_p");
    let test_nll = json_number(&ok(&resflow(&["eval", "--checkpoint", s(&ck), "--json"])), "nll");
    let mean = -scored.iter().sum::<f64>() / scored.len() as f64;
    assert!((test_nll - mean).abs() < 2e-5, "eval {test_nll} vs mean score of its samples {mean}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn draw_writes_the_same_samples_in_every_format() {
    let dir = temp_dir("draw");
    let (run, ck) = toy_checkpoint(&dir);
    let (csv, npy, png) = (dir.join("s.csv"), dir.join("s.npy"), dir.join("s.png"));
    let draw = |out: &str, extra: &[&str]| {
        let mut args = vec!["draw", "--checkpoint", s(&ck), "--n", "300", "--seed", "3", "--out", out];
        args.extend_from_slice(extra);
        sampler(&args)
    };
    let stdout = ok(&draw("-", &[]));
    let report = String::from_utf8_lossy(&draw(s(&csv), &[]).stderr).into_owned();
    assert!(report.contains("drew 300 samples") && report.contains("fixed-point iterations per block"), "{report}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), stdout, "a file and standard output hold the same CSV");
    ok(&draw(s(&npy), &[]));
    ok(&draw(s(&png), &[]));
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));

    let array = parse_npy(&std::fs::read(&npy).unwrap(), "s.npy").unwrap();
    assert_eq!(array.shape, vec![300, 2]);
    let NpyValues::Float(from_npy) = array.values else { panic!("f32 samples") };
    let from_csv: Vec<f32> =
        stdout.lines().skip(1).flat_map(|l| l.split(',').map(|v| v.parse::<f32>().unwrap())).collect();
    assert_eq!(from_npy, from_csv);
    // The library's sampler with the same seed and chunking draws the same points.
    let store = run.eval_store();
    let mut want = Vec::new();
    resflow::models::toy::sample_chunks(&run.gpu, &run.flow, &store, 300, 3, 1.0, run.chunk(), |p| {
        want.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(from_npy, want);

    // A lower temperature draws from a narrower base distribution.
    let cold = ok(&draw("-", &["--temperature", "0.3"]));
    let spread = |text: &str| {
        text.lines().skip(1).map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap().powi(2)).sum::<f64>()).sum::<f64>()
    };
    assert!(spread(&cold) < spread(&stdout), "temperature 0.3 is not narrower");
    // A reader that stops early is not an error.
    let head = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} draw --checkpoint {} --n 200000 --out - | head -2",
            env!("CARGO_BIN_EXE_resflow-sample"),
            s(&ck)
        ))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&head.stdout).lines().count(), 2);
    assert!(!String::from_utf8_lossy(&head.stderr).contains("error"), "{}", String::from_utf8_lossy(&head.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn image_models_draw_arrays_and_score_images_with_a_standard_error() {
    let dir = temp_dir("image");
    let config = ImageConfig {
        dataset: "digits".into(),
        scales: 1,
        blocks: 1,
        width: 8,
        batch: 16,
        warmup: 0,
        iters: 3,
        eval_every: 1000,
        eval_images: 16,
        samples: 4,
        ..ImageConfig::default()
    };
    let mut run = ImageRun::new(&gpu(), config).unwrap();
    for _ in 0..3 {
        run.train_step().unwrap();
    }
    let ck = dir.join("image.safetensors");
    run.to_checkpoint().save(&ck).unwrap();
    let npy = dir.join("x.npy");
    ok(&sampler(&["draw", "--checkpoint", s(&ck), "--n", "6", "--out", s(&npy)]));
    let array = parse_npy(&std::fs::read(&npy).unwrap(), "x.npy").unwrap();
    assert_eq!(array.shape, vec![6, 1, 8, 8]);
    let NpyValues::Float(x) = &array.values else { panic!("f32 images") };
    let (lib, _) = run.sample(&run.eval_store(true), 6, 0, 1.0).unwrap();
    assert_eq!(x, &lib, "the program draws what the library draws");

    let scored = ok(&sampler(&["score", "--checkpoint", s(&ck), "--points", s(&npy), "--out", "-", "--draws", "3"]));
    let rows: Vec<Vec<f64>> =
        scored.lines().skip(1).map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r[0].is_finite() && r[0] > 0.0 && r[1] > 0.0 && r[1] < r[0]), "{scored}");
    // The first K terms only: deterministic series, one draw, no standard error.
    let exact = ok(&sampler(&[
        "score",
        "--checkpoint",
        s(&ck),
        "--points",
        s(&npy),
        "--out",
        "-",
        "--exact-terms",
        "4",
        "--draws",
        "1",
    ]));
    assert!(exact.lines().skip(1).all(|l| l.ends_with(',')), "{exact}");

    // One grey 8×8 PNG image.
    let png_path = dir.join("one.png");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&png_path).unwrap());
    let mut enc = png::Encoder::new(&mut file, 8, 8);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header().unwrap().write_image_data(&[128u8; 64]).unwrap();
    drop(file);
    assert_eq!(
        ok(&sampler(&["score", "--checkpoint", s(&ck), "--points", s(&png_path), "--out", "-"])).lines().count(),
        2
    );

    let err = failure(&sampler(&["score", "--checkpoint", s(&ck), "--points", s(&dir.join("none.npy")), "--out", "-"]));
    assert!(err.contains("none.npy"), "{err}");
    let mut wrong = resflow::data::npy::f32_header(&[2, 4, 4]);
    resflow::data::npy::write_f32s(&mut wrong, &[0.5; 32]).unwrap();
    std::fs::write(dir.join("wrong.npy"), wrong).unwrap();
    let err =
        failure(&sampler(&["score", "--checkpoint", s(&ck), "--points", s(&dir.join("wrong.npy")), "--out", "-"]));
    assert!(err.contains("[1, 4, 4]") && err.contains("[1, 8, 8]"), "{err}");
    let err = failure(&sampler(&["draw", "--checkpoint", s(&ck), "--n", "4", "--out", "-"]));
    assert!(err.contains(".png or .npy"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the program's symbol table names `symbol` (legacy-mangled path segments).
fn links(program: &str, symbol: &str) -> bool {
    let bytes = std::fs::read(program).unwrap();
    bytes.windows(symbol.len()).any(|w| w == symbol.as_bytes())
}

#[test]
fn the_sampler_links_no_training_loop_optimiser_or_bench() {
    let (main, sampler) = (env!("CARGO_BIN_EXE_resflow"), env!("CARGO_BIN_EXE_resflow-sample"));
    // Each part as mangled path segments of functions that hold it; the compiler may inline
    // one into another, so the training program must hold at least one of each group.
    let parts: [(&str, &[&str]); 5] = [
        ("the training loop", &["7trainer5train", "6AnyRun5train"]),
        ("a training step", &["10train_step"]),
        ("Adam's step", &["Adam$LT$T$GT$4step", "11clip_factor"]),
        ("the plot of training curves", &["5Image4plot"]),
        ("the benchmarks", &["7resflow5bench"]),
    ];
    for (part, symbols) in parts {
        assert!(symbols.iter().any(|s| links(main, s)), "resflow should hold {part} (is this test looking right?)");
        for symbol in symbols {
            assert!(!links(sampler, symbol), "resflow-sample links {part} ({symbol})");
        }
    }
}

#[test]
fn bad_input_is_one_line_naming_the_problem() {
    let dir = temp_dir("errors");
    let (_, ck) = toy_checkpoint(&dir);
    let c = s(&ck);
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, "x,y\n1,2,3\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["draw", "--n", "3", "--out", "-"], "RESFLOW_EMBED_CHECKPOINT"),
        (&["draw", "--checkpoint", c, "--n", "0", "--out", "-"], "--n must be at least 1"),
        (&["draw", "--checkpoint", c, "--n", "3", "--temperature", "0", "--out", "-"], "--temperature"),
        (&["draw", "--checkpoint", c, "--n", "3", "--out", "s.txt"], "--out must end in"),
        (&["draw", "--checkpoint", c, "--n", "3", "--raw", "--out", "-"], "--raw applies to image models"),
        (&["score", "--checkpoint", c, "--points", s(&bad), "--out", "-"], "bad.csv:2: expected two numbers"),
        (&["score", "--checkpoint", c, "--points", "none.csv", "--out", "-"], "cannot read none.csv"),
        (&["score", "--checkpoint", c, "--points", c, "--out", "-", "--exact-terms", "3"], "apply to image models"),
        (&["draw", "--checkpoint", "none.safetensors", "--n", "3", "--out", "-"], "none.safetensors"),
    ];
    for (args, want) in cases {
        let err = failure(&sampler(args));
        assert!(err.contains(want) && err.lines().count() == 1, "{args:?}: {err}");
    }
    let empty = dir.join("empty.csv");
    std::fs::write(&empty, "x,y\n").unwrap();
    let err = failure(&sampler(&["score", "--checkpoint", c, "--points", s(&empty), "--out", "-"]));
    assert!(err.contains("no points"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
