//! `cargo bench`: the same kernel table as `resflow bench` (one JSON object per line with
//! `--json`), so the figures can be tracked by scripts either way.

fn main() {
    let json = std::env::args().any(|a| a == "--json");
    let gpu = match resflow::Gpu::new(None) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    resflow::bench::run(&gpu, "", 7, |row| println!("{}", if json { row.json() } else { row.text() }));
}
