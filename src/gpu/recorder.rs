//! The pending command recorder: every op appends its dispatch to one open compute pass of one
//! pending command encoder, which is submitted (without waiting) every
//! [`crate::options::SUBMIT_EVERY`] dispatches, so the device starts on the first kernels while
//! the host records the rest, and by a readback or an explicit [`Gpu::sync`]. Per-dispatch
//! parameters are packed into a uniform arena that is written with one `write_buffer` right
//! before the submit that uses it, so `write_buffer`'s "runs before the next submit" rule cannot
//! reorder them against the dispatches.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{Binding, DeviceBuffer, Gpu, Kernel};

/// Bytes of the uniform arena; at 256 B per dispatch this allows 16 384 dispatches per submit.
pub(super) const ARENA_BYTES: u64 = 4 << 20;

pub(super) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    params: Vec<u8>,
    arena: wgpu::Buffer,
    align: usize,
    dispatches: u64,
    submits: u64,
    /// Dispatches recorded since the last submit.
    since_submit: u64,
    /// Open GPU-timer spans: no early submit splits a span's timestamps across submits.
    timed_spans: u32,
    /// Dispatches and workgroups by kernel family, since the census was last taken.
    census: BTreeMap<Arc<str>, FamilyCensus>,
}

impl Recorder {
    pub(super) fn new(device: &wgpu::Device, limits: &wgpu::Limits) -> Recorder {
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: ARENA_BYTES,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let align = limits.min_uniform_buffer_offset_alignment.max(16) as usize;
        Recorder {
            encoder: None,
            pass: None,
            params: Vec::new(),
            arena,
            align,
            dispatches: 0,
            submits: 0,
            since_submit: 0,
            timed_spans: 0,
            census: BTreeMap::new(),
        }
    }
}

/// Counters of recorded work, for the batching tests and benches.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordStats {
    pub dispatches: u64,
    pub submits: u64,
}

/// The dispatches of one kernel family (shader and entry point; `fused` for generated ones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FamilyCensus {
    pub dispatches: u64,
    /// Workgroups over all its dispatches: with `dispatches`, how full a typical one is.
    pub workgroups: u64,
}

impl Gpu {
    /// The dispatches recorded by kernel family since the last call, most dispatched first;
    /// the count starts again from zero.
    pub fn take_census(&self) -> Vec<(String, FamilyCensus)> {
        let mut rec = self.inner.rec.lock().unwrap();
        let mut rows: Vec<_> = std::mem::take(&mut rec.census).into_iter().map(|(k, c)| (k.to_string(), c)).collect();
        rows.sort_by(|a, b| b.1.dispatches.cmp(&a.1.dispatches).then_with(|| a.0.cmp(&b.0)));
        rows
    }

    pub fn record_stats(&self) -> RecordStats {
        let r = self.inner.rec.lock().unwrap();
        RecordStats { dispatches: r.dispatches, submits: r.submits }
    }

    /// Submits pending work every `dispatches` dispatches (0: only at a readback or sync).
    pub(crate) fn set_submit_every(&self, dispatches: u64) {
        self.inner.submit_every.store(dispatches, Ordering::Relaxed);
    }

    /// Records one dispatch of `kernel` with uniform `params` and storage `bindings`
    /// (read-only ones first, then read-write, as the kernel's spec declares).
    pub fn dispatch(&self, kernel: &Kernel, params: &[u8], bindings: &[Binding<'_>], groups: [u32; 3]) {
        assert_eq!(bindings.len(), kernel.slots.len(), "kernel {} takes {} bindings", kernel.name, kernel.slots.len());
        if groups.contains(&0) {
            return;
        }
        let max = self.inner.limits.max_compute_workgroups_per_dimension;
        assert!(groups.iter().all(|&g| g <= max), "kernel {}: grid {groups:?} exceeds {max}", kernel.name);
        let mut rec = self.inner.rec.lock().unwrap();
        let slot = rec.params.len().div_ceil(rec.align) * rec.align;
        if slot + params.len().max(16) > ARENA_BYTES as usize {
            self.submit_locked(&mut rec);
        }
        let offset = rec.params.len().div_ceil(rec.align) * rec.align;
        rec.params.resize(offset, 0);
        rec.params.extend_from_slice(params);
        // Uniform bindings are at least 16 bytes and a multiple of 16.
        let size = params.len().max(16).div_ceil(16) * 16;
        rec.params.resize(offset + size, 0);

        let mut entries = Vec::with_capacity(bindings.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.arena,
                offset: offset as u64,
                size: std::num::NonZeroU64::new(size as u64),
            }),
        });
        for (i, b) in bindings.iter().enumerate() {
            let resource = match b {
                Binding::Buffer { buffer, bytes } => {
                    // Whole vec4s, so vec4 kernels can read the last partial one (buckets are
                    // multiples of 16 bytes, so this stays inside the buffer).
                    let bytes = (bytes.div_ceil(16) * 16).clamp(16, buffer.bucket_bytes());
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: buffer.raw(),
                        offset: 0,
                        size: std::num::NonZeroU64::new(bytes),
                    })
                }
                Binding::Texture(t) => wgpu::BindingResource::TextureView(t.view()),
            };
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        let bind_group = self.inner.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &kernel.layout.0,
            entries: &entries,
        });
        let pass = self.open_pass(&mut rec);
        pass.set_pipeline(&kernel.pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        rec.dispatches += 1;
        rec.since_submit += 1;
        let census = rec.census.entry(kernel.family.clone()).or_default();
        census.dispatches += 1;
        census.workgroups += groups.iter().map(|&g| g as u64).product::<u64>();
        let every = self.inner.submit_every.load(Ordering::Relaxed);
        if every > 0 && rec.since_submit >= every && rec.timed_spans == 0 {
            self.submit_locked(&mut rec);
        }
    }

    fn open_pass<'r>(&self, rec: &'r mut Recorder) -> &'r mut wgpu::ComputePass<'static> {
        if rec.pass.is_none() {
            let device = &self.inner.device;
            let enc = rec
                .encoder
                .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default()));
            let pass = enc
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None })
                .forget_lifetime();
            rec.pass = Some(pass);
        }
        rec.pass.as_mut().unwrap()
    }

    /// Runs `f` on the pending encoder outside any compute pass (buffer copies).
    pub fn with_encoder(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut rec = self.inner.rec.lock().unwrap();
        rec.pass = None; // ends the open pass
        let device = &self.inner.device;
        let enc = rec
            .encoder
            .get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default()));
        f(enc);
    }

    /// Records a device-side copy of `bytes` from `src` to `dst` (multiples of 4).
    pub fn copy(&self, src: &DeviceBuffer, dst: &DeviceBuffer, bytes: u64) {
        let len = bytes.div_ceil(4) * 4;
        if len > 0 {
            self.with_encoder(|enc| enc.copy_buffer_to_buffer(src.raw(), 0, dst.raw(), 0, len));
        }
    }

    pub(super) fn has_pending(&self) -> bool {
        self.inner.rec.lock().unwrap().encoder.is_some()
    }

    /// Submits everything recorded so far (does not wait).
    pub fn flush(&self) {
        let mut rec = self.inner.rec.lock().unwrap();
        self.submit_locked(&mut rec);
    }

    /// Marks the start (`true`) or end of a GPU-timer span.
    pub(crate) fn set_timed_span(&self, open: bool) {
        let mut rec = self.inner.rec.lock().unwrap();
        rec.timed_spans = if open { rec.timed_spans + 1 } else { rec.timed_spans.saturating_sub(1) };
    }

    fn submit_locked(&self, rec: &mut Recorder) {
        rec.pass = None;
        rec.since_submit = 0;
        let Some(enc) = rec.encoder.take() else {
            return;
        };
        if !rec.params.is_empty() {
            self.inner.queue.write_buffer(&rec.arena, 0, &rec.params);
            rec.params.clear();
        }
        self.inner.queue.submit(Some(enc.finish()));
        rec.submits += 1;
    }

    /// Submits pending work and waits until the GPU has finished it.
    pub fn sync(&self) {
        self.flush();
        self.wait();
    }

    pub(super) fn wait(&self) {
        let polled = self.inner.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: None });
        self.raise_device_errors();
        if let Err(e) = polled {
            std::panic::panic_any(super::GpuError::Device(format!("waiting for the device failed: {e}")));
        }
    }
}
