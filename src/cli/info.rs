//! `resflow info`: the adapter, backend, driver, features and limits in use, and where
//! elementwise kernels read their inputs from.

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
}
