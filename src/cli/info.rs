//! `resflow info`: the adapter, backend, driver, features and limits in use, where
//! elementwise kernels read their inputs from, and the tiled GEMMs' tile configuration.

use resflow::Gpu;

/// Also the header of `resflow bench` without `--json`.
pub fn print_info(gpu: &Gpu) {
    let i = gpu.info();
    let l = gpu.limits();
    println!("adapter   {} ({:?})", i.name, i.device_type);
    println!("backend   {:?}", i.backend);
    println!("driver    {} {}", i.driver, i.driver_info);
    println!("features  {:?}", gpu.features());
    let why =
        if resflow::options::RuntimeOptions::get().profile.is_some() { "RESFLOW_PROFILE" } else { "the adapter type" };
    println!("profile   {} (from {why})", gpu.profile().name());
    println!(
        "limits    storage binding {} MiB, buffer {} MiB, workgroup storage {} KiB, invocations {}, \
         workgroups/dim {}",
        l.max_storage_buffer_binding_size >> 20,
        l.max_buffer_size >> 20,
        l.max_compute_workgroup_storage_size >> 10,
        l.max_compute_invocations_per_workgroup,
        l.max_compute_workgroups_per_dimension
    );
    use resflow::fusion::{elementwise_inputs_for, staging_probe, StagingProbe, TEXTURE_INPUTS_FROM};
    let from = TEXTURE_INPUTS_FROM;
    let probe = staging_probe(gpu).map_or(String::new(), |p| {
        let n = StagingProbe::ELEMENTS;
        format!(" (x + 1 over {n} floats: staged {:.2} ms, from buffers {:.2} ms)", p.staged_ms, p.buffer_ms)
    });
    println!("inputs    elementwise kernels of ≥ {from} elements: {:?}{probe}", elementwise_inputs_for(gpu, from));
    print_tiles(gpu);
}

/// The tile configuration of the tiled matmul and convolutions, and where it came from.
fn print_tiles(gpu: &Gpu) {
    use resflow::tensor::tile_config::tile_choice;
    use resflow::tensor::TileSource;
    let choice = tile_choice(gpu);
    let ms = |[small, large]: [f64; 2]| format!("64: {small:.2} ms, 128: {large:.2} ms");
    let from = match &choice.source {
        TileSource::Off => "RESFLOW_TILE_PROBE=off".to_string(),
        TileSource::NoLargeTiles => "the adapter's limits rule out 128×128 tiles".to_string(),
        TileSource::Cached(path) => format!("cached in {}", path.display()),
        TileSource::Probed { total_ms, matmul_ms, conv_ms } => {
            format!("probed in {total_ms:.0} ms; matmul {}; conv {}", ms(*matmul_ms), ms(*conv_ms))
        }
    };
    let c = choice.config;
    println!("tiles     tiled matmul {}×{0}, tiled conv {}×{1} ({from})", c.matmul.name(), c.conv.name());
}
