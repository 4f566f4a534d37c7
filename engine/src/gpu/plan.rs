//! Inference plans for other WebGPU implementations (a browser): what the backend records for
//! one inference batch of a network, captured as data. The network's tensors are placed on a
//! recording device (wgpu's no-op backend with WebGPU's default limits, so it needs no GPU and
//! every dispatch fits any WebGPU adapter) and one batch is run through the ordinary
//! [`Inference`] path; the recorder that drives wgpu logs each buffer write, dispatch and
//! readback as it goes.
//! The plan lists the WGSL sources and pipelines used, the buffers (sizes, and what fills them:
//! ranges of a weights blob, inline constants), where the input goes and the output comes from,
//! and the dispatches in order (pipeline, bindings, uniform words, workgroup counts).

use std::collections::HashMap;

use serde::Serialize;

use super::context::GpuDevice;
use super::kernels::{Pipeline, pipeline_source};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::model::Network;
use crate::predictor::Inference;

pub const PLAN_FORMAT: &str = "mnist-rs-webgpu-plan";
pub const PLAN_FORMAT_VERSION: u32 = 1;
/// Largest batch a plan is recorded for.
pub const MAX_PLAN_BATCH: usize = 1024;

/// What the recorder saw while capturing.
#[derive(Default)]
pub(crate) struct Capture {
    /// Set when the inference batch starts: writes before it fill buffers once (weights).
    pub(crate) running: bool,
    pub(crate) writes: Vec<Write>,
    pub(crate) dispatches: Vec<Dispatch>,
    pub(crate) reads: Vec<Range>,
}

#[derive(Clone)]
pub(crate) struct Range {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

pub(crate) struct Write {
    pub(crate) at: Range,
    pub(crate) bytes: Vec<u8>,
    pub(crate) during_run: bool,
    pub(crate) label: String,
}

pub(crate) struct Dispatch {
    pub(crate) pipeline: Pipeline,
    pub(crate) params: Vec<u8>,
    pub(crate) bindings: Vec<(u32, Range)>,
    pub(crate) workgroups: [u32; 2],
}

/// A recorded plan (see the module docs) and the weights blob its `initial` ranges point into.
pub struct InferencePlan {
    pub plan: Plan,
    pub weights: Vec<u8>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub format: &'static str,
    pub format_version: u32,
    pub batch: usize,
    pub weights: WeightsRef,
    pub shaders: Vec<Shader>,
    pub pipelines: Vec<PipelineRef>,
    pub buffers: Vec<BufferDesc>,
    pub uniforms: Uniforms,
    pub initial: Vec<Initial>,
    pub input: Io,
    pub output: Io,
    pub dispatches: Vec<DispatchRef>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WeightsRef {
    pub bytes: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Shader {
    pub label: String,
    pub code: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct PipelineRef {
    pub shader: usize,
    pub entry_point: &'static str,
}

#[derive(Clone, Debug, Serialize)]
pub struct BufferDesc {
    pub label: String,
    pub size: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Uniforms {
    pub slot_bytes: u64,
    pub slots: usize,
}

/// What fills a buffer range before the first run: bytes of the weights blob, or inline words.
#[derive(Clone, Debug, Serialize)]
pub struct Initial {
    pub buffer: usize,
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights_offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub u32: Option<Vec<u32>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Io {
    pub buffer: usize,
    pub offset: u64,
    pub dtype: &'static str,
    pub shape: [usize; 2],
    /// Output: where the classes (stored as floats) start, in values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes_offset: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DispatchRef {
    pub pipeline: usize,
    pub uniform_slot: usize,
    pub uniform: Vec<u32>,
    pub bindings: Vec<BindingRef>,
    pub workgroups: [u32; 3],
}

#[derive(Clone, Debug, Serialize)]
pub struct BindingRef {
    pub binding: u32,
    pub buffer: usize,
    pub offset: u64,
    pub size: u64,
}

/// Bytes per uniform slot in a plan (the recorder's).
const SLOT_BYTES: u64 = 256;

/// Records the plan of one inference batch of `batch` images for `source` (a network loaded for
/// inference, on any device: its batch normalisations already folded).
pub fn record(source: &Network, batch: usize) -> Result<InferencePlan> {
    if !(1..=MAX_PLAN_BATCH).contains(&batch) {
        return Err(EngineError::Device(format!("a plan's batch must be between 1 and {MAX_PLAN_BATCH}, got {batch}")));
    }
    let gpu = GpuDevice::open_recorder()?;
    gpu.ctx.start_capture();
    let network = Network::from_params(source.spec().clone(), Device::Gpu(gpu.clone()), source.export_params())?;
    let mut inference = Inference::new(&network, batch);
    let images = vec![0.0f32; batch * network.input_len()];
    gpu.ctx.mark_capture_running();
    inference.predict(&network, &images)?;
    let capture = gpu.ctx.take_capture();
    let tap_tables = gpu.ctx.buffers.tap_table_contents();
    build(capture, &tap_tables, batch, network.input_len(), network.num_classes())
}

/// Numbers buffers in order of first use.
#[derive(Default)]
struct Buffers {
    ids: HashMap<wgpu::Buffer, usize>,
    list: Vec<BufferDesc>,
}

impl Buffers {
    fn id(&mut self, buffer: &wgpu::Buffer) -> usize {
        if let Some(&id) = self.ids.get(buffer) {
            return id;
        }
        self.list.push(BufferDesc { label: format!("buffer {}", self.list.len()), size: buffer.size() });
        self.ids.insert(buffer.clone(), self.list.len() - 1);
        self.list.len() - 1
    }
}

fn build(
    capture: Capture,
    tap_tables: &[(wgpu::Buffer, Vec<u32>)],
    batch: usize,
    input_len: usize,
    classes: usize,
) -> Result<InferencePlan> {
    let bad = |message: &str| EngineError::Device(format!("recording the inference plan: {message}"));
    let mut buffers = Buffers::default();
    let mut weights = Vec::new();
    let mut initial = Vec::new();
    let mut input = None;
    for w in &capture.writes {
        let buffer = buffers.id(&w.at.buffer);
        if w.during_run {
            if input.is_some() {
                return Err(bad("more than one input write"));
            }
            input = Some(Io { buffer, offset: w.at.offset, dtype: "float32", shape: [batch, input_len], classes_offset: None });
            continue;
        }
        initial.push(Initial {
            buffer,
            offset: w.at.offset,
            bytes: Some(w.bytes.len() as u64),
            weights_offset: Some(weights.len() as u64),
            name: Some(w.label.clone()),
            u32: None,
        });
        weights.extend_from_slice(&w.bytes);
    }
    let mut shaders: Vec<Shader> = Vec::new();
    let mut pipelines: Vec<(Pipeline, PipelineRef)> = Vec::new();
    let mut dispatches = Vec::with_capacity(capture.dispatches.len());
    for (slot, d) in capture.dispatches.iter().enumerate() {
        let pipeline = match pipelines.iter().position(|(p, _)| *p == d.pipeline) {
            Some(i) => i,
            None => {
                let (module, entry_point) = pipeline_source(d.pipeline);
                let label = module.describe();
                let shader = match shaders.iter().position(|s| s.label == label) {
                    Some(i) => i,
                    None => {
                        shaders.push(Shader { label, code: module.source() });
                        shaders.len() - 1
                    }
                };
                pipelines.push((d.pipeline, PipelineRef { shader, entry_point }));
                pipelines.len() - 1
            }
        };
        let mut bindings = Vec::with_capacity(d.bindings.len());
        for (binding, range) in &d.bindings {
            let buffer = buffers.id(&range.buffer);
            if let Some((_, words)) = tap_tables.iter().find(|(b, _)| *b == range.buffer)
                && !initial.iter().any(|i| i.buffer == buffer)
            {
                initial.push(Initial { buffer, offset: 0, bytes: None, weights_offset: None, name: None, u32: Some(words.clone()) });
            }
            bindings.push(BindingRef { binding: *binding, buffer, offset: range.offset, size: range.size });
        }
        let mut uniform = vec![0u32; d.params.len().div_ceil(4)];
        bytemuck::cast_slice_mut::<u32, u8>(&mut uniform)[..d.params.len()].copy_from_slice(&d.params);
        dispatches.push(DispatchRef { pipeline, uniform_slot: slot, uniform, bindings, workgroups: [d.workgroups[0], d.workgroups[1], 1] });
    }
    let [read] = capture.reads.as_slice() else { return Err(bad("expected one readback of the outputs")) };
    let output = Io {
        buffer: buffers.id(&read.buffer),
        offset: read.offset,
        dtype: "float32",
        shape: [batch, classes + 1],
        classes_offset: Some(batch * classes),
    };
    let input = input.ok_or_else(|| bad("no input was written"))?;
    let plan = Plan {
        format: PLAN_FORMAT,
        format_version: PLAN_FORMAT_VERSION,
        batch,
        weights: WeightsRef { bytes: weights.len() },
        shaders,
        pipelines: pipelines.into_iter().map(|(_, p)| p).collect(),
        buffers: buffers.list,
        uniforms: Uniforms { slot_bytes: SLOT_BYTES, slots: dispatches.len() },
        initial,
        input,
        output,
        dispatches,
    };
    Ok(InferencePlan { plan, weights })
}
