//! Image flows: the IDX reader and the digits, logit/squeeze layers against finite differences,
//! the whole multi-scale log-det against a dense Jacobian, bits/dim of a known distribution,
//! short training runs (density, hybrid, coupling), checkpoints, resume and the command line.

mod common;

use std::process::Command;

use common::{gpu, values};
use rand::rngs::StdRng;
use rand::SeedableRng;
use resflow::data::idx::{encode_idx, parse_idx};
use resflow::data::images::{load, parse_digits_csv_gz};
use resflow::flow::residual::log_abs_det_identity_plus;
use resflow::flow::{Estimator, Flow, FlowCtx, FlowLayer, GradMode, LogitTransform, Squeeze};
use resflow::models::image::{BlockKind, ModelSpec, MultiScaleFlow};
use resflow::nn::{Binder, ParamStore, PowerIters};
use resflow::train::choices::{Block, Hybrid};
use resflow::train::image::{ImageConfig, ImageFormat, ImageRun};
use resflow::train::Family;
use resflow::{Activation, CpuTensor, Tape, Tensor, TensorOps, Var};

#[test]
fn idx_files_round_trip_and_bad_files_are_named_errors() {
    let data: Vec<u8> = (0..2 * 3 * 4).map(|i| (i * 7) as u8).collect();
    let bytes = encode_idx(&[2, 3, 4], &data);
    let back = parse_idx(&bytes, "x").unwrap();
    assert_eq!((back.dims.as_slice(), back.data.as_slice()), (&[2usize, 3, 4][..], &data[..]));
    // Gzipped files are recognised by their magic bytes.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    assert_eq!(parse_idx(&gz.finish().unwrap(), "x.gz").unwrap(), back);

    let err = |b: &[u8]| parse_idx(b, "bad.idx").unwrap_err().0;
    assert!(err(&bytes[..bytes.len() - 1]).contains("truncated"), "{}", err(&bytes[..bytes.len() - 1]));
    assert!(err(&[1, 0, 8, 1, 0, 0, 0, 0]).contains("magic"));
    assert!(err(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).contains("element type"));
    assert!(err(&[0, 0]).contains("shorter"));
    assert!(err(&[0x1f, 0x8b, 1, 2, 3]).contains("gzip"));
    assert!(err(&bytes[..bytes.len() - 1]).starts_with("bad.idx"));
}

/// An MNIST-like directory of IDX files.
fn write_fake_mnist(dir: &std::path::Path, n: usize, labels_n: usize, bad_label: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for prefix in ["train", "t10k"] {
        let px: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 256) as u8).collect();
        let mut lb: Vec<u8> = (0..labels_n).map(|i| (i % 10) as u8).collect();
        if bad_label {
            lb[0] = 12;
        }
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), encode_idx(&[n, 28, 28], &px)).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), encode_idx(&[labels_n], &lb)).unwrap();
    }
}

#[test]
fn mnist_loader_checks_the_files_and_names_the_fetch_command() {
    let root = std::env::temp_dir().join(format!("resflow-idx-{}", std::process::id()));
    write_fake_mnist(&root.join("mnist"), 5, 5, false);
    let s = load("mnist", &root).unwrap();
    assert_eq!((s.train.len(), s.train.shape(), s.train.levels, s.test.len()), (5, [1, 28, 28], 256, 5));

    write_fake_mnist(&root.join("mnist"), 5, 4, false);
    let e = load("mnist", &root).unwrap_err().0;
    assert!(e.contains("labels") && e.contains("5 images"), "{e}");
    write_fake_mnist(&root.join("mnist"), 5, 5, true);
    assert!(load("mnist", &root).unwrap_err().0.contains("label 12"));

    let e = load("fashion-mnist", &root).unwrap_err().0;
    assert!(e.contains("scripts/fetch-data.sh fashion-mnist"), "{e}");
    assert!(load("cifar", &root).unwrap_err().0.contains("mnist, fashion-mnist, digits"));
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn the_embedded_digits_match_the_published_label_counts() {
    let s = load("digits", std::path::Path::new("nowhere")).unwrap();
    assert_eq!((s.train.len() + s.test.len(), s.train.shape(), s.train.levels), (1797, [1, 8, 8], 17));
    let mut counts = [0usize; 10];
    for &l in s.train.labels.iter().chain(&s.test.labels) {
        counts[l as usize] += 1;
    }
    // ../shared/DATA.md
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    assert!(s.train.pixels.iter().all(|&v| v <= 16) && s.train.pixels.contains(&16));
    // Dequantised pixels lie in [v/17, (v+1)/17).
    let mut rng = StdRng::seed_from_u64(1);
    let x = s.train.dequantize(&[0, 1], &mut rng);
    for (k, &v) in x.iter().enumerate() {
        let p = s.train.pixels[k] as f32;
        assert!(v >= p / 17.0 && v < (p + 1.0) / 17.0, "pixel {k}: {v} from level {p}");
    }
    // A bad line is named.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b"1,2,3\n").unwrap();
    assert!(parse_digits_csv_gz(&gz.finish().unwrap(), "d.csv.gz").unwrap_err().0.starts_with("d.csv.gz:1"));
}

fn cpu_ctx<'a>(b: &'a Binder<'a, CpuTensor>) -> FlowCtx<'a, CpuTensor> {
    FlowCtx::new(b, 0, true)
}

#[test]
fn logit_and_squeeze_invert_and_their_log_dets_match_finite_differences() {
    let store = ParamStore::new(CpuTensor::scalar(0.0), 1);
    let tape = Tape::no_grad();
    let b = Binder::new(&store, &tape);
    let ctx = cpu_ctx(&b);
    let x: Vec<f64> = values(2 * 8, 0.02, 0.98, 3).iter().map(|&v| v as f64).collect();
    let logit = LogitTransform::new(0.05);
    let xt = CpuTensor::new(x.clone(), &[2, 2, 2, 2]);
    let (y, ld) = logit.forward(&ctx, &Var::constant(xt.clone()));
    // Elementwise map: log|det| = Σ log y'(x), by central differences per pixel.
    let h = 1e-6;
    let shift = |d: f64| CpuTensor::new(x.iter().map(|v| v + d).collect(), &[2, 2, 2, 2]);
    let (yp, ym) =
        (logit.forward(&ctx, &Var::constant(shift(h))).0.value, logit.forward(&ctx, &Var::constant(shift(-h))).0.value);
    for s in 0..2 {
        let fd: f64 = (0..8).map(|i| ((yp.data[s * 8 + i] - ym.data[s * 8 + i]) / (2.0 * h)).ln()).sum();
        assert!((ld.value.data[s] - fd).abs() < 1e-6, "logit log-det {} vs FD {fd}", ld.value.data[s]);
    }
    let (back, _) = FlowLayer::inverse(&logit, &store, &y.value).unwrap();
    // The affine op takes f32 coefficients, so 1/(1 − 2α) carries f32 rounding (~1e-8).
    common::assert_close("logit round trip", &back.data, &x, 0.0, 1e-7);

    // Squeeze: a permutation (log-det 0) that its inverse undoes, with channel 4c + 2i + j.
    let xs = CpuTensor::new((0..2 * 2 * 4 * 4).map(|v| v as f64).collect(), &[2, 2, 4, 4]);
    let (sq, ld) = Squeeze.forward(&ctx, &Var::constant(xs.clone()));
    assert_eq!(sq.shape(), &[2, 8, 2, 2]);
    assert!(ld.value.data.iter().all(|&v| v == 0.0));
    // Output [n=1, c=1·4 + 2·1 + 0, h=1, w=0] is input [1, 1, 2·1 + 1, 2·0 + 0].
    assert_eq!(sq.value.data[((8 + 6) * 2 + 1) * 2], xs.data[((2 + 1) * 4 + 3) * 4]);
    let (back, _) = Squeeze.inverse(&store, &sq.value).unwrap();
    assert_eq!(back.data, xs.data);
}

fn tiny_spec(factor_out: bool, fc_blocks: usize, block: BlockKind) -> ModelSpec {
    ModelSpec {
        image: [1, 4, 4],
        scales: 2,
        blocks: 1,
        width: 6,
        fc_blocks,
        fc_width: 8,
        factor_out,
        block,
        coeff: 0.9,
        activation: Activation::LipSwish,
        estimator: Estimator::Exact,
        grad_mode: GradMode::Neumann,
        alpha: 0.05,
        classifier: None,
    }
}

/// Builds the model on the reference, initialises its ActNorms from data and normalises.
fn reference_model(spec: &ModelSpec) -> (ParamStore<CpuTensor>, MultiScaleFlow<CpuTensor>) {
    let mut store = ParamStore::new(CpuTensor::scalar(0.0), 7);
    let model = MultiScaleFlow::new(&mut store, spec).unwrap();
    let batch: Vec<f64> = values(8 * 16, 0.05, 0.95, 8).iter().map(|&v| v as f64).collect();
    model.initialize(&mut store, &CpuTensor::new(batch, &[8, 1, 4, 4]));
    model.power_iterate(&mut store, PowerIters::Fixed(100));
    (store, model)
}

fn flat_latent(model: &MultiScaleFlow<CpuTensor>, store: &ParamStore<CpuTensor>, x: &[f64]) -> (Vec<f64>, f64, f64) {
    let tape = Tape::no_grad();
    let b = Binder::new(store, &tape);
    let ctx = cpu_ctx(&b);
    let out = model.forward(&ctx, &Var::constant(CpuTensor::new(x.to_vec(), &[1, 1, 4, 4])));
    let lp = model.log_prob(&out, &ctx).value.data[0];
    let z = out.parts.iter().flat_map(|p| p.value.data.clone()).collect();
    (z, out.logdet.value.data[0], lp)
}

#[test]
fn whole_model_log_det_matches_the_dense_jacobian_on_a_tiny_image() {
    let x: Vec<f64> = values(16, 0.1, 0.9, 9).iter().map(|&v| v as f64).collect();
    for (factor_out, fc, block) in
        [(false, 0, BlockKind::Residual), (true, 1, BlockKind::Residual), (true, 0, BlockKind::Coupling)]
    {
        let what = format!("factor-out {factor_out}, {fc} FC blocks, {block:?}");
        let (store, model) = reference_model(&tiny_spec(factor_out, fc, block));
        let (z, logdet, lp) = flat_latent(&model, &store, &x);
        assert_eq!(z.len(), 16, "{what}: the latent has as many dimensions as the image");
        let h = 1e-6;
        let mut jac = vec![0.0; 16 * 16];
        for j in 0..16 {
            let (mut p, mut m) = (x.clone(), x.clone());
            p[j] += h;
            m[j] -= h;
            let (zp, zm) = (flat_latent(&model, &store, &p).0, flat_latent(&model, &store, &m).0);
            for i in 0..16 {
                jac[i * 16 + j] = (zp[i] - zm[i]) / (2.0 * h);
            }
        }
        let shifted: Vec<f64> = (0..256).map(|k| jac[k] - if k / 16 == k % 16 { 1.0 } else { 0.0 }).collect();
        let dense = log_abs_det_identity_plus(&shifted, 16)[0];
        assert!((logdet - dense).abs() < 1e-5 * (1.0 + dense.abs()), "{what}: log-det {logdet} vs dense {dense}");
        let want = dense - 0.5 * z.iter().map(|v| v * v).sum::<f64>() - 8.0 * (2.0 * std::f64::consts::PI).ln();
        assert!((lp - want).abs() < 1e-5 * (1.0 + want.abs()), "{what}: log p {lp} vs {want}");

        // The inverse through every scale recovers x.
        let tape = Tape::no_grad();
        let b = Binder::new(&store, &tape);
        let ctx = cpu_ctx(&b);
        let out = model.forward(&ctx, &Var::constant(CpuTensor::new(x.clone(), &[1, 1, 4, 4])));
        let parts: Vec<CpuTensor> = out.parts.iter().map(|p| p.value.clone()).collect();
        let (back, iters) = model.inverse(&store, &parts).unwrap();
        common::assert_close(&format!("{what}: inverse"), &back.data, &x, 0.0, 1e-4);
        let expected_blocks = if block == BlockKind::Residual { 2 + fc } else { 0 };
        assert_eq!(iters.len(), expected_blocks, "{what}: one iteration count per residual block");
    }
}

#[test]
fn gpu_model_matches_the_reference() {
    let spec = tiny_spec(true, 1, BlockKind::Residual);
    let (cstore, cmodel) = reference_model(&spec);
    let mut gstore = ParamStore::new(Tensor::full(&gpu(), &[1], 0.0), 7);
    let gmodel = MultiScaleFlow::new(&mut gstore, &spec).unwrap();
    for id in cstore.ids() {
        let v: Vec<f32> = cstore.get(id).data.iter().map(|&x| x as f32).collect();
        let gid = gstore.find(cstore.name(id)).unwrap();
        gstore.set(gid, Tensor::from_slice(&gpu(), &v, cstore.get(id).shape()).unwrap());
    }
    let x = values(3 * 16, 0.1, 0.9, 10);
    let want: Vec<f64> = {
        let tape = Tape::no_grad();
        let b = Binder::new(&cstore, &tape);
        let ctx = cpu_ctx(&b);
        let xc = CpuTensor::new(x.iter().map(|&v| v as f64).collect(), &[3, 1, 4, 4]);
        cmodel.log_prob(&cmodel.forward(&ctx, &Var::constant(xc)), &ctx).value.data
    };
    let tape = Tape::no_grad();
    let b = Binder::new(&gstore, &tape);
    let ctx = FlowCtx::new(&b, 0, true);
    let xg = Tensor::from_slice(&gpu(), &x, &[3, 1, 4, 4]).unwrap();
    let got = gmodel.log_prob(&gmodel.forward(&ctx, &Var::constant(xg)), &ctx).value.to_host();
    common::assert_close("GPU log p vs reference", &got, &want, 1e-4, 1e-3);
}

#[test]
fn bits_per_dim_of_uniform_noise_under_the_identity_flow_is_the_closed_form() {
    // Images whose levels are uniform, dequantised: x ~ U[0, 1]^D. Under the identity flow with
    // a standard-normal base, E[−log N(x)] = ½ ln 2π + E[x²]/2 = ½ ln 2π + 1/6 per dimension, so
    // bpd = (½ ln 2π + 1/6 + ln L) / ln 2.
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(4);
    let levels = 256;
    let (n, d) = (4000, 16);
    let set = resflow::data::ImageSet {
        name: "noise".into(),
        pixels: (0..n * d).map(|_| rng.random_range(0..levels) as u8).collect(),
        labels: vec![0; n],
        channels: 1,
        height: 4,
        width: 4,
        levels,
        classes: 10,
    };
    let x = set.dequantize(&(0..n).collect::<Vec<_>>(), &mut rng);
    let flow: Flow<Tensor> = Flow::new(Vec::new());
    let store = ParamStore::new(Tensor::full(&gpu(), &[1], 0.0), 1);
    let tape = Tape::no_grad();
    let b = Binder::new(&store, &tape);
    let ctx = FlowCtx::new(&b, 0, true);
    let lp = flow.log_prob(&ctx, &Var::constant(Tensor::from_slice(&gpu(), &x, &[n, 1, 4, 4]).unwrap()));
    let format = ImageFormat::of(&set);
    let bpd: Vec<f64> = lp.value.to_host().iter().map(|&l| format.bits_per_dim(l)).collect();
    let mean = bpd.iter().sum::<f64>() / n as f64;
    let se = (bpd.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64 / n as f64).sqrt();
    let want = (0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / 6.0 + (levels as f64).ln()) / std::f64::consts::LN_2;
    assert!((mean - want).abs() < 4.0 * se, "bpd {mean} ± {se} vs closed form {want}");
}

fn digits_config() -> ImageConfig {
    ImageConfig {
        dataset: "digits".into(),
        scales: 2,
        width: 16,
        batch: 32,
        warmup: 0,
        lr: 3e-3,
        iters: 10,
        eval_every: 1000,
        eval_images: 64,
        samples: 4,
        ..ImageConfig::default()
    }
}

#[test]
fn a_few_training_steps_on_digits_lower_bits_per_dim() {
    let mut run = ImageRun::new(&gpu(), digits_config()).unwrap();
    run.train_step().unwrap(); // initialises ActNorm
    let before = run.evaluate(&run.eval_store(false), 64).unwrap();
    for _ in 0..12 {
        run.train_step().unwrap();
    }
    let after = run.evaluate(&run.eval_store(false), 64).unwrap();
    // The same test images and dequantisation noise: a drop of 0.05 bits/dim is far beyond the
    // estimator's own noise (its SE over images is ≈ 0.01 here, and shared between the two).
    assert!(after.bpd < before.bpd - 0.05, "bits/dim {before:?} → {after:?}");
    // Samples come back through the inverse as images in [0, 1].
    let (x, iters) = run.sample(&run.eval_store(true), 4, 3, 1.0).unwrap();
    assert_eq!(x.len(), 4 * 64);
    assert!(x.iter().all(|v| v.is_finite() && (-1e-3..=1.001).contains(v)));
    assert!(iters.len() == 2 && iters.iter().all(|&n| n > 0), "iterations {iters:?}");
}

#[test]
fn hybrid_and_coupling_models_train() {
    // λ = 1/D: accuracy is reported and the classifier learns beyond chance within a few steps.
    // (Heads on global-average-pooled features of a 2-scale, 1-block flow learn slowly; a
    // larger learning rate than the paper's keeps this test short.)
    let config = ImageConfig { hybrid: Hybrid::InverseDim, head_width: 16, lr: 1e-2, ..digits_config() };
    let mut run = ImageRun::new(&gpu(), config).unwrap();
    let ce: Vec<f64> = (0..30).map(|_| run.train_step().unwrap().ce.unwrap()).collect();
    let late = ce[25..].iter().sum::<f64>() / 5.0;
    assert!(late < ce[0] - 0.25, "cross-entropy {} → {late} (mean of the last 5 steps)", ce[0]);
    let e = run.evaluate(&run.eval_store(false), 64).unwrap();
    assert!(e.accuracy.unwrap() > 0.2, "accuracy {:?} after 30 steps (chance is 0.1)", e.accuracy);

    let mut coupling = ImageRun::new(&gpu(), ImageConfig { block: Block::Coupling, ..digits_config() }).unwrap();
    coupling.train_step().unwrap();
    let before = coupling.evaluate(&coupling.eval_store(false), 64).unwrap();
    for _ in 0..8 {
        coupling.train_step().unwrap();
    }
    let after = coupling.evaluate(&coupling.eval_store(false), 64).unwrap();
    assert!(after.bpd < before.bpd - 0.05, "coupling bits/dim {before:?} → {after:?}");
}

fn params(run: &ImageRun) -> Vec<Vec<f32>> {
    run.store.ids().map(|id| run.store.get(id).to_vec()).collect()
}

#[test]
fn image_checkpoints_round_trip_and_resume_equals_an_uninterrupted_run() {
    let config = ImageConfig { accumulate: 2, ..digits_config() };
    let mut straight = ImageRun::new(&gpu(), config.clone()).unwrap();
    for _ in 0..4 {
        straight.train_step().unwrap();
    }
    let mut first = ImageRun::new(&gpu(), config).unwrap();
    for _ in 0..2 {
        first.train_step().unwrap();
    }
    let path = std::env::temp_dir().join(format!("resflow-image-ck-{}.safetensors", std::process::id()));
    first.to_checkpoint().save(&path).unwrap();
    let mut resumed = ImageRun::from_checkpoint(&gpu(), &path).unwrap();
    assert_eq!(params(&resumed), params(&first));
    assert_eq!(Family::of_checkpoint(&path).unwrap(), Family::Image);
    for _ in 0..2 {
        resumed.train_step().unwrap();
    }
    assert_eq!(params(&resumed), params(&straight), "resumed run differs from the uninterrupted one");

    // A truncated checkpoint is a clear error.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = ImageRun::from_checkpoint(&gpu(), &path).err().unwrap().0;
    assert!(e.contains("truncated or corrupt"), "{e}");
    std::fs::remove_file(&path).ok();
}

fn resflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resflow")).args(args).output().expect("the binary runs")
}

#[test]
fn the_image_cli_trains_samples_evaluates_and_rejects_bad_input() {
    let dir = std::env::temp_dir().join(format!("resflow-image-cli-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let out = resflow(&[
        "train",
        "--dataset",
        "digits",
        "--scales",
        "2",
        "--width",
        "8",
        "--batch",
        "16",
        "--iters",
        "2",
        "--eval-images",
        "16",
        "--samples",
        "4",
        "--quiet",
        "--out",
        d,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["checkpoint.safetensors", "samples.png", "data.png", "log.csv", "loss.png"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    let ck = dir.join("checkpoint.safetensors");
    let grid = dir.join("grid.png");
    let s = resflow(&["sample", "--checkpoint", ck.to_str().unwrap(), "--n", "9", "--out", grid.to_str().unwrap()]);
    assert!(s.status.success() && grid.exists(), "{}", String::from_utf8_lossy(&s.stderr));
    assert!(String::from_utf8_lossy(&s.stderr).contains("iterations per block"));
    let e = resflow(&["eval", "--checkpoint", ck.to_str().unwrap(), "--images", "16", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&e.stdout).expect("one JSON object");
    assert!(json["bpd"].as_f64().unwrap() > 0.0 && json["bpd_se"].as_f64().unwrap() > 0.0, "{json}");
    assert!(json["accuracy"].is_null() && json["weights"] == "ema", "{json}");
    let e = resflow(&["eval", "--checkpoint", ck.to_str().unwrap(), "--images", "16", "--json", "--raw"]);
    let json: serde_json::Value = serde_json::from_slice(&e.stdout).expect("one JSON object");
    assert_eq!(json["weights"], "raw", "{json}");
    let s = resflow(&["sample", "--checkpoint", ck.to_str().unwrap(), "--raw", "--out", grid.to_str().unwrap()]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));

    // Resuming continues the log (kept in the checkpoint) as well as the training.
    let r = resflow(&["train", "--resume", ck.to_str().unwrap(), "--iters", "3", "--quiet", "--out", d]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let log = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 4, "header and steps 1-3 after resuming:\n{log}");

    let fail = |args: &[&str], needle: &str| {
        let o = resflow(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    };
    fail(&["train", "--dataset", "mnist", "--data-dir", "/nonexistent", "--quiet"], "scripts/fetch-data.sh mnist");
    fail(&["train", "--dataset", "digits", "--hidden", "8", "--quiet"], "--hidden applies to toy datasets");
    fail(&["train", "--dataset", "checkerboard", "--scales", "2", "--quiet"], "--scales applies to image datasets");
    fail(&["train", "--dataset", "digits", "--scales", "5", "--quiet"], "not divisible by 16");
    fail(&["train", "--dataset", "digits", "--hybrid", "2", "--quiet"], "invalid value '2' for '--hybrid");
    fail(&["sample", "--checkpoint", ck.to_str().unwrap(), "--out", dir.join("s.csv").to_str().unwrap()], ".png");
    fail(&["eval", "--checkpoint", ck.to_str().unwrap(), "--images", "0"], "--images must be positive");
    fail(&["train", "--dataset", "digits", "--alpha", "0", "--quiet"], "--alpha must be in (0, 0.5)");
    fail(&["train", "--dataset", "digits", "--scales", "70", "--quiet"], "at most 16");
    std::fs::remove_dir_all(&dir).ok();
}
