//! What each resflow program does around its work: a private runtime directory for the
//! Vulkan loader, and every error (device errors included, which the engine raises as panics
//! carrying a [`GpuError`]) printed as one line with a non-zero exit.

use std::process::ExitCode;

use crate::gpu::GpuError;

/// Runs `work` the way every resflow binary does and turns its outcome into the exit code.
pub fn run_main(work: impl FnOnce() -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    let _runtime_dir = quiet_vulkan_loader();
    quiet_gpu_errors();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(payload) => match payload.downcast_ref::<GpuError>() {
            Some(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
            None => std::panic::resume_unwind(payload),
        },
    }
}

/// Keeps the panic hook from printing a backtrace note for a GpuError: `run_main` prints it.
fn quiet_gpu_errors() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<GpuError>().is_none() {
            default(info);
        }
    }));
}

/// Mesa's Vulkan loader complains on stderr when XDG_RUNTIME_DIR is unset (headless machines,
/// CI); give it a private directory before any thread starts, removed when the work is done.
fn quiet_vulkan_loader() -> Option<RuntimeDir> {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("resflow-xdg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    // SAFETY: called at the start of main, before any other thread exists.
    unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    Some(RuntimeDir(dir))
}

/// The private runtime directory; removed (with anything the driver left in it) on drop.
struct RuntimeDir(std::path::PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
