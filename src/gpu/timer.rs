//! GPU timestamps around a span of recorded work, where the adapter has them.

use super::{DeviceBuffer, Gpu};

/// Two timestamps written into the pending encoder around the work to time.
pub struct GpuTimer {
    gpu: Gpu,
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: DeviceBuffer,
    period_ns: f64,
}

impl GpuTimer {
    /// `None` when the adapter cannot write timestamps inside encoders, and on CPU adapters:
    /// lavapipe offers them, but after texture work its end stamps stop waiting for the
    /// dispatches in between (a 16 M-element kernel read as 0.06 ms), so wall-clock around a
    /// sync is the honest measure there.
    pub fn new(gpu: &Gpu) -> Option<GpuTimer> {
        let needed = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if !gpu.features().contains(needed) || gpu.is_cpu() || crate::options::RuntimeOptions::get().wallclock {
            return None;
        }
        let device = &gpu.inner.device;
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.alloc_kind(super::BufferKind::Storage, 16);
        let period_ns = gpu.inner.queue.get_timestamp_period() as f64;
        Some(GpuTimer { gpu: gpu.clone(), queries, resolve, staging, period_ns })
    }

    pub fn start(&self) {
        self.gpu.set_timed_span(true);
        self.gpu.with_encoder(|e| e.write_timestamp(&self.queries, 0));
    }

    /// Ends the span and returns its GPU duration in milliseconds (submits and waits).
    pub fn stop_ms(&self) -> f64 {
        self.gpu.with_encoder(|e| {
            e.write_timestamp(&self.queries, 1);
            e.resolve_query_set(&self.queries, 0..2, &self.resolve, 0);
            e.copy_buffer_to_buffer(&self.resolve, 0, self.staging.raw(), 0, 16);
        });
        self.gpu.set_timed_span(false);
        let bytes = self.gpu.read(&self.staging, 16);
        let stamp = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().unwrap());
        stamp(1).saturating_sub(stamp(0)) as f64 * self.period_ns / 1e6
    }
}
