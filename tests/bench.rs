//! The bench as a tool: baseline comparison, `--shape` parsing, and the CLI round trip
//! `--out` → `--baseline`.

use std::process::Command;

use resflow::bench::baseline::{compare, parse_lines, Entry, Record};
use resflow::bench::shape::{parse, KernelShape};

fn rows(text: &str) -> Vec<Record> {
    parse_lines(text).expect("valid rows")
}

#[test]
fn ratio_is_speedup_for_rates_and_times() {
    let base = rows(
        "{\"kernel\":\"matmul\",\"shape\":\"256^3\",\"ms\":2.0,\"gflops\":10.0}\n\
         {\"kernel\":\"overhead\",\"shape\":\"s\",\"ms\":4.0,\"us_per_op\":4.0}",
    );
    let new = rows(
        "{\"kernel\":\"matmul\",\"shape\":\"256^3\",\"ms\":1.0,\"gflops\":20.0}\n\
         {\"kernel\":\"overhead\",\"shape\":\"s\",\"ms\":8.0,\"us_per_op\":8.0}",
    );
    let c = compare(&new, &base, 0.10);
    let ratios: Vec<(&str, f64)> = c
        .entries
        .iter()
        .map(|e| match e {
            Entry::Both { metric, ratio, .. } => (*metric, *ratio),
            other => panic!("unmatched {other:?}"),
        })
        .collect();
    assert_eq!(ratios, vec![("gflops", 2.0), ("us_per_op", 0.5)]);
    let err = c.verdict().unwrap_err();
    assert!(err.contains("overhead s is slower"), "{err}");
    assert!(compare(&new, &base, 0.6).verdict().is_ok());
}

#[test]
fn tolerance_edge_and_slowest_named_first() {
    let base =
        rows("{\"kernel\":\"a\",\"shape\":\"x\",\"gbps\":10.0}\n{\"kernel\":\"b\",\"shape\":\"x\",\"gbps\":10.0}");
    let new = rows("{\"kernel\":\"a\",\"shape\":\"x\",\"gbps\":9.5}\n{\"kernel\":\"b\",\"shape\":\"x\",\"gbps\":1.0}");
    let c = compare(&new, &base, 0.10);
    assert_eq!(c.slower().len(), 1, "5% slower is within 10%");
    let err = c.verdict().unwrap_err();
    assert!(err.starts_with("b x is slower"), "{err}");
    let c = compare(&new, &base, 0.01);
    assert_eq!(c.slower().len(), 2);
    assert!(c.verdict().unwrap_err().contains("1 more row slower"));
}

#[test]
fn missing_rows_are_listed_and_do_not_fail() {
    let base = rows("{\"kernel\":\"a\",\"shape\":\"x\",\"ms\":1.0}\n{\"kernel\":\"gone\",\"shape\":\"x\",\"ms\":1.0}");
    let new = rows("{\"kernel\":\"a\",\"shape\":\"x\",\"ms\":1.0}\n{\"kernel\":\"new\",\"shape\":\"x\",\"ms\":1.0}");
    let c = compare(&new, &base, 0.10);
    assert!(c.entries.contains(&Entry::OnlyNew { kernel: "new".into(), shape: "x".into() }));
    assert!(c.entries.contains(&Entry::OnlyBaseline { kernel: "gone".into(), shape: "x".into() }));
    assert!(c.verdict().is_ok());
    let text = c.text();
    assert!(text.contains("not in the baseline") && text.contains("not in this run"), "{text}");
}

#[test]
fn memory_rows_key_by_model_mode_and_terms() {
    let r = rows("{\"model\":\"conv\",\"mode\":\"neumann\",\"terms\":5,\"peak_bytes\":1,\"held_bytes\":1,\"ms\":3.0}");
    assert_eq!((r[0].kernel.as_str(), r[0].shape.as_str()), ("conv", "neumann n=5"));
    assert_eq!(r[0].figures, vec![("ms", 3.0)]);
}

#[test]
fn bad_rows_are_errors() {
    assert!(parse_lines("{not json").unwrap_err().starts_with("line 1: bad JSON"));
    assert!(parse_lines("{\"kernel\":\"a\"}\n[1]").unwrap_err().starts_with("line 2"));
    assert!(parse_lines("{\"x\":1}").unwrap_err().contains("\"kernel\" or \"model\""));
}

#[test]
fn shapes_parse() {
    assert_eq!(parse("matmul", "2048x1024x512"), Ok(KernelShape::Matmul { m: 2048, k: 1024, n: 512 }));
    assert_eq!(parse("conv2d", "16,64,32,32:64:3"), Ok(KernelShape::Conv2d { x: [16, 64, 32, 32], co: 64, k: 3 }));
    assert_eq!(parse("conv2d_grad_weight", "1,2,3,4:5:1"), Ok(KernelShape::Conv2d { x: [1, 2, 3, 4], co: 5, k: 1 }));
    assert_eq!(parse("matmul", "8x8x8").unwrap().to_string(), "8x8x8");
}

#[test]
fn bad_shapes_name_the_format() {
    for bad in ["2048x2048", "0x1x1", "axbxc", "1x2x3x4", ""] {
        let e = parse("matmul", bad).unwrap_err();
        assert!(e.contains("MxKxN"), "{bad}: {e}");
    }
    for bad in ["16,64,32:64:3", "16,64,32,32:64", "16,64,32,32:64:2", "16,64,32,32:0:3", "1,1,1,1:1:1:1"] {
        let e = parse("conv2d", bad).unwrap_err();
        assert!(e.contains("N,C,H,W:CO:K"), "{bad}: {e}");
    }
    assert!(parse("silu", "8x8x8").unwrap_err().contains("--shape applies to matmul and conv2d"));
}

fn resflow(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_resflow")).args(args).output().expect("resflow runs")
}

#[test]
fn out_then_baseline_round_trip() {
    let dir = std::env::temp_dir().join(format!("resflow-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("run.json");
    let out_s = out.to_str().unwrap();
    let run = resflow(&["bench", "--filter", "overhead", "--reps", "3", "--json", "--out", out_s]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let saved = std::fs::read_to_string(&out).unwrap();
    assert_eq!(saved, String::from_utf8_lossy(&run.stdout), "--out saves what --json prints");
    assert!(saved.lines().all(|l| l.contains("\"adapter\":") && l.contains("\"precision\":\"f32\"")));
    assert!(saved.contains("\"kernel\":\"overhead\""));

    let same = resflow(&["bench", "--filter", "overhead", "--reps", "3", "--baseline", out_s, "--tolerance", "100"]);
    assert!(same.status.success(), "{}", String::from_utf8_lossy(&same.stderr));
    assert!(String::from_utf8_lossy(&same.stdout).contains("vs baseline"));

    // A baseline whose overhead row took a tenth of the time: this run is 10x slower.
    let doctored = dir.join("fast.json");
    let fast: Vec<String> = saved
        .lines()
        .map(|l| {
            if !l.contains("\"kernel\":\"overhead\"") {
                return l.to_string();
            }
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let us = v["us_per_op"].as_f64().unwrap();
            v["us_per_op"] = serde_json::json!(us / 10.0);
            v.to_string()
        })
        .collect();
    std::fs::write(&doctored, fast.join("\n")).unwrap();
    let slow = resflow(&["bench", "--filter", "overhead", "--reps", "3", "--baseline", doctored.to_str().unwrap()]);
    assert!(!slow.status.success());
    let err = String::from_utf8_lossy(&slow.stderr);
    assert!(err.contains("overhead 1000 x add [1024] is slower than its baseline"), "{err}");

    let missing = resflow(&["bench", "--filter", "overhead", "--baseline", dir.join("none.json").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read baseline"));
    std::fs::write(dir.join("bad.json"), "{oops").unwrap();
    let bad = resflow(&["bench", "--filter", "overhead", "--baseline", dir.join("bad.json").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("line 1: bad JSON") && !err.contains("panicked"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn f16_rows_sit_beside_the_f32_ones() {
    let run = resflow(&["bench", "--filter", "matmul", "--shape", "64x96x32", "--reps", "1", "--json"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&run.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let row = |kernel: &str| rows.iter().find(|r| r["kernel"] == kernel).unwrap_or_else(|| panic!("no {kernel} row"));
    assert_eq!(row("matmul")["precision"], "f32");
    assert_eq!(row("matmul_f16")["precision"], "f16");
    assert_eq!(row("matmul_f16")["shape"], row("matmul")["shape"]);
    // A whole run in f16 times its rows in f16 once, not twice.
    let half =
        resflow(&["--precision", "f16", "bench", "--filter", "matmul", "--shape", "64x96x32", "--reps", "1", "--json"]);
    assert!(half.status.success(), "{}", String::from_utf8_lossy(&half.stderr));
    let text = String::from_utf8_lossy(&half.stdout);
    assert_eq!(text.lines().filter(|l| l.contains("\"kernel\":\"matmul_f16\"")).count(), 1, "{text}");
    assert!(!text.contains("\"kernel\":\"matmul\""), "{text}");
}

/// The dispatch census of a toy step (on a device of its own, so no other test's dispatches
/// are counted): the families add up to the recorder's count, a warmed-up step compiles no
/// kernel, and the optimiser runs one Adam dispatch per trainable tensor.
#[test]
fn a_toy_steps_census_adds_up_and_compiles_nothing_new() {
    use resflow::train::toy::{ToyConfig, ToyRun};
    let gpu = resflow::Gpu::new(None).expect("a GPU adapter");
    let config = ToyConfig { blocks: 2, hidden: vec![16], batch: 64, iters: 10, ..ToyConfig::default() };
    let mut run = ToyRun::new(&gpu, config).unwrap();
    for _ in 0..3 {
        run.train_step().unwrap();
    }
    gpu.sync();
    let _ = gpu.take_census();
    let (before, kernels) = (gpu.record_stats(), gpu.compiled_kernels());
    run.train_step().unwrap();
    let census = gpu.take_census();
    let dispatched = gpu.record_stats().dispatches - before.dispatches;
    assert_eq!(census.iter().map(|(_, c)| c.dispatches).sum::<u64>(), dispatched, "{census:?}");
    assert_eq!(gpu.compiled_kernels(), kernels, "a warmed-up step compiled a kernel");
    let adam = census.iter().find(|(f, _)| f == "adam:main").map(|(_, c)| c.dispatches);
    assert_eq!(adam, Some(run.store.trainable().count() as u64), "{census:?}");
    assert!(census.windows(2).all(|w| w[0].1.dispatches >= w[1].1.dispatches), "most dispatched first");
    assert!(gpu.take_census().is_empty(), "taking the census starts it again");
}
