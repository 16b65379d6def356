//! `cargo bench`: the same kernel table as `resflow bench` (one JSON object per line with
//! `--json`, the same keys as `resflow bench --json`), so the figures can be tracked by
//! scripts either way and compared with `resflow bench --baseline`.

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let gpu = match resflow::Gpu::new(None) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let run = resflow::bench::RunInfo::of(&gpu);
    resflow::bench::run(&gpu, "", 7, |row| {
        println!("{}", if json { row.json_object().with_run(&run).line() } else { row.text() })
    });
}
