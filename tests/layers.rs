//! The crate's modules form layers, and every dependency points down: a module may use only
//! the modules listed before it in `LAYERS`. Read from the source text (code, not comments),
//! so an upward `crate::` path anywhere fails here with the file and the path that breaks it.

use std::path::Path;

/// Bottom to top. The first three are vocabulary (switches, the op set, activations) that any
/// layer may name; `testing` holds test knobs over the engine; `cli` and `sampler` are the
/// binaries.
const LAYERS: &[&str] = &[
    "options",
    "activation",
    "ops",
    "gpu",
    "process",
    "fusion",
    "tensor",
    "testing",
    "reference",
    "tape",
    "nn",
    "flow",
    "data",
    "models",
    "train",
    "bench",
    "cli",
    "sampler",
];

/// The top-level module a source file belongs to (`None` for the crate roots).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "lib.rs" => None,
        "main.rs" => Some("cli".into()),
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// The code of a file without its comments (line comments and doc comments).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal is rare here; strings never hold `crate::`.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`.
fn uses_of(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(|s| s.trim().split("::").next().unwrap_or("")).collect()
        } else {
            vec![rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap_or("")]
        };
        out.extend(names.into_iter().filter(|n| !n.is_empty()).map(str::to_string));
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_dependency_points_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut violations = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).expect("under src");
        let Some(module) = module_of(rel) else { continue };
        let Some(own) = rank(&module) else {
            violations.push(format!("{}: module {module} is in no layer", rel.display()));
            continue;
        };
        let code = code_of(&std::fs::read_to_string(file).expect("source is readable"));
        for used in uses_of(&code) {
            match rank(&used) {
                Some(r) if r < own || used == module => {}
                Some(_) => violations.push(format!("{}: {module} uses {used}, a layer above it", rel.display())),
                // Items re-exported at the crate root (`crate::Gpu`) are fine only below lib.rs.
                None => violations.push(format!("{}: crate::{used} is not a module of a layer", rel.display())),
            }
        }
    }
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn the_parser_sees_grouped_and_plain_paths() {
    let code = code_of("use crate::{gpu::Gpu, ops};\nlet x = crate::tensor::Tensor::new(); // crate::cli\n");
    assert_eq!(uses_of(&code), ["gpu", "ops", "tensor"]);
}
