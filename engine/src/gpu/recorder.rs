//! The pending command encoder: dispatches are recorded into it, each with its parameters in a
//! slot of one uniform arena, and it is submitted only when the host needs a result (a readback)
//! or overwrites a buffer. Bind groups are cached, so a repeated step creates none.

use std::collections::HashMap;

use super::buffers::BufRef;
use super::context::GpuContext;
use super::counters::Counters;
use super::kernels::Pipeline;
use super::params::KernelParams;
use super::plan::{Capture, Dispatch, Range, Write};

fn capture_range(r: BufRef) -> Range {
    Range { buffer: r.buffer.clone(), offset: r.offset, size: r.size }
}

/// Bytes per uniform slot: the largest offset alignment any adapter may demand.
const UNIFORM_SLOT: u64 = 256;
const UNIFORM_SLOTS: u64 = 2048;
const MAX_BINDINGS: usize = 12;
const MAX_CACHED_BIND_GROUPS: usize = 4096;

type BindKey = (Pipeline, u64, [Option<(wgpu::Buffer, u64, u64)>; MAX_BINDINGS]);

pub(crate) struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    /// The open compute pass of `encoder`: consecutive dispatches share it (WebGPU makes each
    /// dispatch its own usage scope, so writes of one are visible to the next); a copy or a
    /// submission ends it.
    pass: Option<wgpu::ComputePass<'static>>,
    uniform_buffer: wgpu::Buffer,
    /// Host image of the slots used by the pending encoder.
    uniforms: Vec<u8>,
    slots_used: u64,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
}

impl Recorder {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let uniform_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform arena"),
            size: UNIFORM_SLOT * UNIFORM_SLOTS,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Self {
            encoder: None,
            pass: None,
            uniform_buffer,
            uniforms: vec![0; (UNIFORM_SLOT * UNIFORM_SLOTS) as usize],
            slots_used: 0,
            bind_groups: HashMap::new(),
        }
    }

    pub(crate) fn forget_bind_groups(&mut self) {
        self.bind_groups.clear();
    }

    /// The encoder, with no compute pass open (for copies).
    fn encoder(&mut self, device: &wgpu::Device) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        self.encoder.get_or_insert_with(|| device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") }))
    }

    /// The open compute pass, begun if there is none.
    fn pass(&mut self, device: &wgpu::Device, counters: &Counters) -> &mut wgpu::ComputePass<'static> {
        if self.pass.is_none() {
            let encoder = self.encoder(device);
            let pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            self.pass = Some(pass.forget_lifetime());
            Counters::add(&counters.compute_passes, 1);
        }
        self.pass.as_mut().expect("a pass is open")
    }

    fn submit(&mut self, queue: &wgpu::Queue, counters: &Counters) {
        self.pass = None;
        if let Some(encoder) = self.encoder.take() {
            let used = (self.slots_used * UNIFORM_SLOT) as usize;
            if used > 0 {
                queue.write_buffer(&self.uniform_buffer, 0, &self.uniforms[..used]);
            }
            queue.submit([encoder.finish()]);
            Counters::add(&counters.submits, 1);
            self.slots_used = 0;
        }
    }
}

impl GpuContext {
    fn recorder(&self) -> std::sync::MutexGuard<'_, Recorder> {
        self.recorder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `kernel` over `workgroups` workgroups (numbered linearly across x and y, so no
    /// dimension exceeds the adapter's limit). `params` fill the uniform at binding 0;
    /// `bindings` are (binding, buffer range) for the storage buffers the entry point uses.
    pub(crate) fn dispatch<P: KernelParams>(
        &self,
        pipeline: impl Into<Pipeline>,
        params: &P,
        bindings: &[(u32, BufRef)],
        workgroups: usize,
    ) {
        let pipeline = pipeline.into();
        if workgroups == 0 {
            return;
        }
        let max = self.limits.max_compute_workgroups_per_dimension as usize;
        let (x, y) = (workgroups.min(max), workgroups.div_ceil(max));
        assert!(y <= max, "{workgroups} workgroups exceed the adapter's {max} x {max} grid");
        let params = bytemuck::bytes_of(params);
        assert!(params.len() <= UNIFORM_SLOT as usize, "kernel parameters exceed one uniform slot");

        let mut rec = self.recorder();
        if rec.slots_used == UNIFORM_SLOTS {
            rec.submit(&self.queue, &self.counters);
        }
        let slot = rec.slots_used;
        rec.slots_used += 1;
        let at = (slot * UNIFORM_SLOT) as usize;
        rec.uniforms[at..at + params.len()].copy_from_slice(params);

        let mut buffers: [Option<(wgpu::Buffer, u64, u64)>; MAX_BINDINGS] = Default::default();
        for &(binding, range) in bindings {
            buffers[binding as usize] = Some((range.buffer.clone(), range.offset, range.size));
        }
        let key: BindKey = (pipeline, slot, buffers);
        if !rec.bind_groups.contains_key(&key) {
            if rec.bind_groups.len() >= MAX_CACHED_BIND_GROUPS {
                rec.bind_groups.clear();
            }
            let group = self.create_bind_group(pipeline, &rec.uniform_buffer, slot, bindings);
            rec.bind_groups.insert(key.clone(), group);
        }
        let group = rec.bind_groups[&key].clone();
        let pass = rec.pass(&self.device, &self.counters);
        pass.set_pipeline(self.kernels.get(pipeline));
        pass.set_bind_group(0, &group, &[]);
        pass.dispatch_workgroups(x as u32, y as u32, 1);
        self.counters.dispatched(pipeline.kernel as usize);
        self.captured(|c| {
            let bindings = bindings.iter().map(|(b, r)| (*b, capture_range(*r))).collect();
            c.dispatches.push(Dispatch { pipeline, params: params.to_vec(), bindings, workgroups: [x as u32, y as u32] });
        });
    }

    /// Runs `f` on the plan capture, if one is on (see plan.rs).
    fn captured(&self, f: impl FnOnce(&mut Capture)) {
        if let Some(capture) = self.capture.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            f(capture);
        }
    }

    /// Starts capturing writes, dispatches and readbacks for an inference plan.
    pub(crate) fn start_capture(&self) {
        *self.capture.lock().unwrap_or_else(|e| e.into_inner()) = Some(Capture::default());
    }

    /// Writes from now on are a run's input, not buffer contents set once.
    pub(crate) fn mark_capture_running(&self) {
        self.captured(|c| c.running = true);
    }

    pub(crate) fn take_capture(&self) -> Capture {
        self.capture.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default()
    }

    fn create_bind_group(&self, pipeline: Pipeline, uniforms: &wgpu::Buffer, slot: u64, bindings: &[(u32, BufRef)]) -> wgpu::BindGroup {
        let mut entries = Vec::with_capacity(bindings.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: uniforms,
                offset: slot * UNIFORM_SLOT,
                size: wgpu::BufferSize::new(UNIFORM_SLOT),
            }),
        });
        entries.extend(bindings.iter().map(|&(binding, range)| wgpu::BindGroupEntry { binding, resource: range.binding() }));
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.kernels.get(pipeline).get_bind_group_layout(0),
            entries: &entries,
        })
    }

    /// Submits what has been recorded (without waiting for it).
    pub(crate) fn flush(&self) {
        self.recorder().submit(&self.queue, &self.counters);
    }

    /// Overwrites the start of `dst` with `data` (what `label` names), after everything
    /// recorded before.
    pub(crate) fn write(&self, label: &str, dst: BufRef, data: &[u8]) {
        assert!(data.len() as u64 <= dst.size, "writing {} bytes into a {}-byte range", data.len(), dst.size);
        let mut rec = self.recorder();
        // Queue writes land before the next submission: commands already recorded must go first.
        rec.submit(&self.queue, &self.counters);
        Counters::add(&self.counters.bytes_written, data.len() as u64);
        self.captured(|c| {
            let during_run = c.running;
            c.writes.push(Write { at: capture_range(dst), bytes: data.to_vec(), during_run, label: label.to_string() });
        });
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(dst.buffer, dst.offset, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue.write_buffer(dst.buffer, dst.offset + whole as u64, &tail);
        }
    }

    /// Runs everything recorded, then copies the start of `src` into `out`.
    pub(crate) fn read(&self, src: BufRef, out: &mut [u8]) {
        if out.is_empty() {
            return;
        }
        let bytes = (out.len() as u64).next_multiple_of(4);
        let staging = self.buffers.readback(&self.device, bytes);
        let staging = staging.as_ref().expect("readback buffer exists");
        {
            let mut rec = self.recorder();
            rec.encoder(&self.device).copy_buffer_to_buffer(src.buffer, src.offset, staging, 0, bytes);
            rec.submit(&self.queue, &self.counters);
        }
        Counters::add(&self.counters.blocking_maps, 1);
        Counters::add(&self.counters.bytes_read, out.len() as u64);
        self.captured(|c| c.reads.push(Range { buffer: src.buffer.clone(), offset: src.offset, size: out.len() as u64 }));
        let slice = staging.slice(..bytes);
        slice.map_async(wgpu::MapMode::Read, |result| {
            if let Err(e) = result {
                tracing::error!("mapping the readback buffer failed: {e}");
            }
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("GPU device lost while reading back");
        {
            let view = slice.get_mapped_range().expect("readback buffer mapped");
            out.copy_from_slice(&view[..out.len()]);
        }
        staging.unmap();
    }
}
