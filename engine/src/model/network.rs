//! A sequence of layers built from a [`ModelSpec`]: parameters on a device, the forward and
//! backward passes, and one training step.

use super::spec::{LayerKind, ModelSpec};
use super::workspace::{STATS_SLOTS, Workspace, pair, pair_mut};
use crate::backend::{Conv2dGeometry, ConvInput, Dropout, Epilogue, GradMask, PoolGeometry};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::optim::Optimizer;
use crate::rng::{DropoutKey, SplitMix64};
use crate::tensor::{HostTensor, Tensor};

/// Most values (f32 or u32) one CPU workspace holds, all buffers together (1 GiB): a larger
/// batch is run in chunks.
pub const MAX_CPU_WORKSPACE_VALUES: usize = 1 << 28;

/// One trainable tensor.
pub struct Param {
    pub name: String,
    pub value: Tensor,
}

enum Op {
    Conv2d { geom: Conv2dGeometry, weight: usize, bias: usize },
    MaxPool { geom: PoolGeometry },
    Dense { inputs: usize, outputs: usize, weight: usize, bias: usize },
    Relu,
    Dropout { rate: f32, id: u32 },
    Flatten,
}

impl Op {
    /// ReLU, dropout and flatten work in place on their input's slot.
    fn is_in_place(&self) -> bool {
        matches!(self, Op::Relu | Op::Dropout { .. } | Op::Flatten)
    }
}

/// A run of element-wise layers (a ReLU, at most one dropout) as its neighbours' kernels apply
/// it: the producer's epilogue in the forward, the consumer's gradient mask in the backward.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Fused {
    relu: bool,
    /// (dropout layer id, rate)
    dropout: Option<(u32, f32)>,
}

/// A layer placed on activation slots.
struct Stage {
    op: Op,
    input: usize,
    output: usize,
    /// Values per example in the output slot.
    out_len: usize,
    /// Conv2d and dense: the element-wise layers after this one, applied as its epilogue.
    epilogue: Fused,
    /// Conv2d, dense and max-pool: the gradient masks of the element-wise layers between this
    /// layer and its input's producer, applied as this layer writes its input's gradient.
    input_mask: Option<Fused>,
    /// ReLU and dropout: run by the producer's epilogue / by the consumer's backward.
    forward_fused: bool,
    backward_fused: bool,
}

/// What one training step reports (the only values read back).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepStats {
    pub loss_sum: f32,
    pub correct: u32,
    pub examples: usize,
}

pub struct Network {
    spec: ModelSpec,
    device: Device,
    stages: Vec<Stage>,
    params: Vec<Param>,
    /// On a GPU: one tensor spanning every parameter (see [`Tensor::zeros_packed`]).
    param_arena: Option<Tensor>,
    slot_lens: Vec<usize>,
    dropout_seed: u32,
    /// The training loss's label smoothing (see [`Network::set_label_smoothing`]).
    label_smoothing: f32,
}

impl Drop for Network {
    /// A device shared with other networks must not keep this one's buffers alive.
    fn drop(&mut self) {
        if let Device::Gpu(gpu) = &self.device {
            gpu.forget_bind_groups();
        }
    }
}

impl Network {
    /// A network with freshly initialised parameters (Glorot-uniform weights, zero biases).
    pub fn new(spec: ModelSpec, device: Device, seed: u64) -> Result<Self> {
        let shapes = spec.parameters()?;
        let mut values = Vec::with_capacity(shapes.len());
        for (i, (name, shape)) in shapes.into_iter().enumerate() {
            let data = if name.ends_with(".bias") {
                vec![0.0; shape.iter().product()]
            } else {
                glorot_uniform(&shape, seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            };
            values.push((name, shape, data));
        }
        Self::with_params(spec, device, values, seed)
    }

    /// A network with the given parameters (names and shapes must match the spec's).
    pub fn from_params(spec: ModelSpec, device: Device, values: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<Self> {
        let expected = spec.parameters()?;
        if expected.len() != values.len() {
            return Err(EngineError::Tensor {
                name: "parameters".into(),
                message: format!("the architecture has {} parameter tensors, {} were given", expected.len(), values.len()),
            });
        }
        for ((name, shape), (given_name, given_shape, _)) in expected.into_iter().zip(&values) {
            if name != *given_name || shape != *given_shape {
                return Err(EngineError::Tensor {
                    name: given_name.clone(),
                    message: format!("expected '{name}' of shape {shape:?}, got shape {given_shape:?}"),
                });
            }
        }
        Self::with_params(spec, device, values, 0)
    }

    /// Places `values` on the device: on a GPU, as ranges of one buffer (the arena), so one
    /// optimizer dispatch updates every parameter.
    fn with_params(spec: ModelSpec, device: Device, values: Vec<(String, Vec<usize>, Vec<f32>)>, seed: u64) -> Result<Self> {
        let shapes: Vec<Vec<usize>> = values.iter().map(|(_, shape, _)| shape.clone()).collect();
        let (tensors, param_arena) = Tensor::zeros_packed(&device, &shapes);
        let mut params = Vec::with_capacity(values.len());
        for (mut value, (name, _, data)) in tensors.into_iter().zip(values) {
            value.write_host(&name, &data)?;
            params.push(Param { name, value });
        }
        let shapes = spec.shapes()?;
        let mut slot_lens = vec![shapes[0].len()];
        let mut stages = Vec::with_capacity(spec.layers.len());
        let (mut slot, mut next_param, mut dropouts) = (0usize, 0usize, 0u32);
        for (i, layer) in spec.layers.iter().enumerate() {
            let (input, output) = (shapes[i], shapes[i + 1]);
            let (op, in_place) = match layer.kind {
                LayerKind::Conv2d { .. } => {
                    next_param += 2;
                    (
                        Op::Conv2d {
                            geom: layer.conv_geometry(input).expect("shapes() checked every layer"),
                            weight: next_param - 2,
                            bias: next_param - 1,
                        },
                        false,
                    )
                }
                LayerKind::MaxPool { .. } => {
                    (Op::MaxPool { geom: layer.pool_geometry(input).expect("shapes() checked every layer") }, false)
                }
                LayerKind::Dense { units } => {
                    next_param += 2;
                    (Op::Dense { inputs: input.len(), outputs: units, weight: next_param - 2, bias: next_param - 1 }, false)
                }
                LayerKind::Relu => (Op::Relu, true),
                LayerKind::Dropout { rate } => {
                    dropouts += 1;
                    (Op::Dropout { rate, id: dropouts - 1 }, true)
                }
                LayerKind::Flatten => (Op::Flatten, true),
            };
            let input_slot = slot;
            if !in_place {
                slot_lens.push(output.len());
                slot = slot_lens.len() - 1;
            }
            stages.push(Stage {
                op,
                input: input_slot,
                output: slot,
                out_len: output.len(),
                epilogue: Fused::default(),
                input_mask: None,
                forward_fused: false,
                backward_fused: false,
            });
        }
        debug_assert_eq!(next_param, params.len());
        plan_fusion(&mut stages);
        let dropout_seed = (seed ^ (seed >> 32)) as u32;
        Ok(Self { spec, device, stages, params, param_arena, slot_lens, dropout_seed, label_smoothing: 0.0 })
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Trains against smoothed targets from now on: `(1 - e) * onehot(label) + e / classes` for
    /// `label_smoothing` = e in [0, 1) (0, the default: plain one-hot cross-entropy). The loss the
    /// training steps report is then the cross-entropy against those targets.
    pub fn set_label_smoothing(&mut self, label_smoothing: f32) -> Result<()> {
        if !(0.0..1.0).contains(&label_smoothing) {
            return Err(EngineError::Config {
                path: "train.label_smoothing".into(),
                message: format!("must be in [0, 1), got {label_smoothing}"),
            });
        }
        self.label_smoothing = label_smoothing;
        Ok(())
    }

    pub fn label_smoothing(&self) -> f32 {
        self.label_smoothing
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    pub fn num_classes(&self) -> usize {
        self.spec.num_classes
    }

    /// Values per input example (`h * w * c`).
    pub fn input_len(&self) -> usize {
        self.slot_lens[0]
    }

    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum()
    }

    /// Reads every parameter back to the host: `(name, shape, values)`.
    pub fn export_params(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.params.iter().map(|p| (p.name.clone(), p.value.shape().to_vec(), p.value.to_host())).collect()
    }

    /// Everything a checkpoint saves to continue training this network exactly, as named
    /// tensors: `(name, shape, values)`. Today its parameters; state that is not trained by
    /// the optimizer (a layer's running statistics) belongs here too.
    pub fn export_state(&self) -> Vec<HostTensor> {
        self.export_params()
    }

    /// Restores what [`Self::export_state`] saved: the same names, in the same order, with the
    /// same shapes, all values finite; an error names the first tensor that differs.
    pub fn import_state(&mut self, state: Vec<HostTensor>) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> = self.params.iter().map(|p| (p.name.clone(), p.value.shape().to_vec())).collect();
        check_named_tensors("network state", &expected, &state)?;
        for (p, (name, _, values)) in self.params.iter_mut().zip(state) {
            p.value.write_host(&name, &values)?;
        }
        Ok(())
    }

    /// Buffers for batches of up to `capacity` examples; `training` adds gradient buffers.
    /// The capacity is cut to what the device takes (check [`Workspace::capacity`]): on a GPU,
    /// what one binding holds; on the CPU, [`MAX_CPU_WORKSPACE_VALUES`] in all.
    pub fn workspace(&self, capacity: usize, training: bool) -> Workspace {
        let widest = self.slot_lens.iter().copied().max().unwrap_or(1).max(self.num_classes()) as u64 * 4;
        let fits = match self.device.max_tensor_bytes() {
            Some(limit) => (limit / widest).max(1) as usize,
            None => (MAX_CPU_WORKSPACE_VALUES / self.workspace_values_per_example(training)).max(1),
        };
        let capacity = capacity.clamp(1, fits);
        let d = &self.device;
        let classes = self.num_classes();
        let acts: Vec<Tensor> = self.slot_lens.iter().map(|&len| Tensor::zeros(d, &[capacity, len])).collect();
        let act_grads = self
            .slot_lens
            .iter()
            .enumerate()
            .map(|(slot, &len)| (training && slot > 0).then(|| Tensor::zeros(d, &[capacity, len])))
            .collect();
        let argmax =
            self.stages.iter().map(|s| matches!(s.op, Op::MaxPool { .. }).then(|| Tensor::zeros(d, &[capacity, s.out_len]))).collect();
        let pixels = self.reads_raw_pixels().then(|| Tensor::zeros(d, &[(capacity * self.input_len()).div_ceil(4)]));
        Workspace {
            capacity,
            pixels,
            input_u8: false,
            acts,
            act_grads,
            argmax,
            labels: Tensor::zeros(d, &[capacity]),
            stats: Tensor::zeros(d, &[STATS_SLOTS, 2]),
            pending: Vec::with_capacity(if training { STATS_SLOTS } else { 0 }),
            collected: Vec::new(),
            outputs: Tensor::zeros(d, &[capacity * (classes + 1)]),
            host_labels: vec![0; capacity],
        }
    }

    /// Values a workspace holds per example: activations, their gradients when training,
    /// pooling argmax, probabilities.
    fn workspace_values_per_example(&self, training: bool) -> usize {
        let acts: usize = self.slot_lens.iter().sum();
        let grads: usize = if training { self.slot_lens.iter().skip(1).sum() } else { 0 };
        let argmax: usize = self.stages.iter().filter(|s| matches!(s.op, Op::MaxPool { .. })).map(|s| s.out_len).sum();
        (acts + grads + argmax + self.num_classes() + 2).max(1)
    }

    /// On a GPU, a first convolution reads u8 input pixels as they were uploaded and scales them
    /// itself (no normalisation pass); nothing else reads the input then.
    fn reads_raw_pixels(&self) -> bool {
        matches!(self.device, Device::Gpu(_)) && self.stages.first().is_some_and(|s| matches!(s.op, Op::Conv2d { .. }))
    }

    pub(crate) fn logits_slot(&self) -> usize {
        self.stages.last().map(|s| s.output).unwrap_or(0)
    }

    /// Forward pass over the first `n` examples already in slot 0. `dropout_step` is `Some(step)`
    /// in training (dropout on, mask keyed by the step) and `None` in inference.
    pub fn forward(&self, ws: &mut Workspace, n: usize, dropout_step: Option<u32>) {
        assert!(n <= ws.capacity, "batch of {n} exceeds the workspace capacity {}", ws.capacity);
        let d = &self.device;
        let p = &self.params;
        for (li, s) in self.stages.iter().enumerate() {
            match &s.op {
                Op::Conv2d { geom, weight, bias } => {
                    let epilogue = self.epilogue(s.epilogue, dropout_step);
                    let (w, b) = (&p[*weight].value, &p[*bias].value);
                    match ws.pixels.as_ref().filter(|_| s.input == 0 && ws.input_u8) {
                        Some(pixels) => d.conv2d_forward(geom, n, pixels, w, b, epilogue, &mut ws.acts[s.output]),
                        None => {
                            let (x, y) = pair(&mut ws.acts, s.input, s.output);
                            d.conv2d_forward(geom, n, x, w, b, epilogue, y);
                        }
                    }
                }
                Op::MaxPool { geom } => {
                    let (x, y) = pair(&mut ws.acts, s.input, s.output);
                    d.max_pool_forward(geom, n, x, y, ws.argmax[li].as_mut().expect("pool argmax buffer"));
                }
                Op::Dense { inputs, outputs, weight, bias } => {
                    let (x, y) = pair(&mut ws.acts, s.input, s.output);
                    let epilogue = self.epilogue(s.epilogue, dropout_step);
                    d.dense_forward(n, *inputs, *outputs, x, &p[*weight].value, &p[*bias].value, epilogue, y);
                }
                _ if s.forward_fused => {}
                Op::Relu => d.relu_forward(n * s.out_len, &mut ws.acts[s.output]),
                Op::Dropout { rate, id } => {
                    if let Some(step) = dropout_step {
                        d.dropout(n * s.out_len, self.dropout_key(*id, step), *rate, &mut ws.acts[s.output]);
                    }
                }
                Op::Flatten => {}
            }
        }
    }

    fn dropout_key(&self, id: u32, step: u32) -> DropoutKey {
        DropoutKey { seed: self.dropout_seed, layer: id, step }
    }

    /// The fused layers' work at `dropout_step` (`None`: inference, no dropout).
    fn epilogue(&self, fused: Fused, dropout_step: Option<u32>) -> Epilogue {
        let dropout = match (fused.dropout, dropout_step) {
            (Some((id, rate)), Some(step)) => Some(Dropout { key: self.dropout_key(id, step), rate }),
            _ => None,
        };
        Epilogue { relu: fused.relu, dropout }
    }

    /// Backward pass from the logits' gradient (already in place) into `grads`, one per parameter.
    pub fn backward(&self, ws: &mut Workspace, grads: &mut [Tensor], n: usize, dropout_step: u32) {
        let d = &self.device;
        let p = &self.params;
        for (li, s) in self.stages.iter().enumerate().rev() {
            let needs_input_grad = s.input != 0;
            let mask = s.input_mask.map(|f| GradMask { epilogue: self.epilogue(f, Some(dropout_step)), activation: &ws.acts[s.input] });
            match &s.op {
                Op::Conv2d { geom, weight, bias } => {
                    let (dw, db) = pair_mut(grads, *weight, *bias);
                    let dy = ws.act_grads[s.output].as_ref().expect("training workspace");
                    let x: ConvInput = match ws.pixels.as_ref().filter(|_| s.input == 0 && ws.input_u8) {
                        Some(pixels) => pixels.into(),
                        None => (&ws.acts[s.input]).into(),
                    };
                    d.conv2d_backward_weight(geom, n, x, dy, dw, db);
                    if needs_input_grad {
                        let (dy, dx) = grad_pair(&mut ws.act_grads, s.output, s.input);
                        d.conv2d_backward_input(geom, n, dy, &p[*weight].value, mask, dx);
                    }
                }
                Op::Dense { inputs, outputs, weight, bias } => {
                    let (dw, db) = pair_mut(grads, *weight, *bias);
                    let dy = ws.act_grads[s.output].as_ref().expect("training workspace");
                    d.dense_backward_weight(n, *inputs, *outputs, &ws.acts[s.input], dy, dw, db);
                    if needs_input_grad {
                        let (dy, dx) = grad_pair(&mut ws.act_grads, s.output, s.input);
                        d.dense_backward_input(n, *inputs, *outputs, dy, &p[*weight].value, mask, dx);
                    }
                }
                Op::MaxPool { geom } => {
                    if needs_input_grad {
                        let argmax = ws.argmax[li].as_ref().expect("pool argmax buffer");
                        let (dy, dx) = grad_pair(&mut ws.act_grads, s.output, s.input);
                        d.max_pool_backward(geom, n, dy, argmax, mask, dx);
                    }
                }
                _ if s.backward_fused => {}
                Op::Relu if s.output != 0 => {
                    let dy = ws.act_grads[s.output].as_mut().expect("training workspace");
                    d.relu_backward(n * s.out_len, &ws.acts[s.output], dy);
                }
                Op::Dropout { rate, id } if s.output != 0 => {
                    let dy = ws.act_grads[s.output].as_mut().expect("training workspace");
                    d.dropout(n * s.out_len, self.dropout_key(*id, dropout_step), *rate, dy);
                }
                Op::Relu | Op::Dropout { .. } | Op::Flatten => {}
            }
        }
    }

    /// One training step on `n` examples: upload, forward, loss, backward, optimizer update,
    /// submitted without waiting. Nothing is read back: the loss sum and correct count stay on
    /// the device until [`Workspace::take_stats`].
    pub fn train_step(&mut self, ws: &mut Workspace, opt: &mut Optimizer, pixels: &[u8], labels: &[u8], lr: f32, step: u32) {
        let n = labels.len();
        assert!(ws.is_training(), "train_step needs a training workspace");
        assert_eq!(pixels.len(), n * self.input_len(), "pixels for {n} examples");
        // Both host writes go before the first recorded op, so the step is one submission.
        for (dst, &l) in ws.host_labels.iter_mut().zip(labels) {
            *dst = l as u32;
        }
        ws.labels.write_host("labels", &ws.host_labels[..n]).expect("labels fit the workspace");
        if ws.pending.len() == STATS_SLOTS {
            ws.collect_stats();
        }
        self.upload_u8(ws, pixels);
        self.forward(ws, n, Some(step));
        let logits = self.logits_slot();
        let dlogits = ws.act_grads[logits].as_mut().expect("training workspace");
        let slot = ws.pending.len();
        self.device.softmax_xent(n, self.num_classes(), self.label_smoothing, &ws.acts[logits], &ws.labels, dlogits, &mut ws.stats, slot);
        ws.pending.push(n);
        self.backward(ws, opt.grads_mut(), n, step);
        opt.apply(&self.device, &mut self.params, self.param_arena.as_mut(), lr);
        self.device.submit();
    }

    /// Inference on `n` normalised examples already uploaded to slot 0 of `ws`; writes class
    /// probabilities and argmax classes into the workspace's outputs.
    pub fn infer_uploaded(&self, ws: &mut Workspace, n: usize) {
        self.forward(ws, n, None);
        let logits = &ws.acts[self.logits_slot()];
        self.device.predict(n, self.num_classes(), logits, &mut ws.outputs);
    }

    /// Uploads `n` float examples into slot 0.
    pub fn upload_f32(&self, ws: &mut Workspace, images: &[f32]) -> Result<()> {
        ws.input_u8 = false;
        ws.acts[0].write_host("images", images)
    }

    /// Uploads `n` u8 examples: into slot 0 scaled to [0, 1], or as they are for a first
    /// convolution that scales them itself.
    pub fn upload_u8(&self, ws: &mut Workspace, pixels: &[u8]) {
        match ws.pixels.as_mut() {
            Some(packed) => {
                self.device.stage_pixels(pixels, packed);
                ws.input_u8 = true;
            }
            None => {
                self.device.upload_images_u8(pixels, &mut ws.acts[0]);
                ws.input_u8 = false;
            }
        }
    }
}

/// Marks which runs of element-wise layers the neighbouring kernels absorb: a run with at most
/// one dropout becomes the epilogue of a conv2d or dense before it, and the gradient mask of a
/// conv2d, dense or max-pool after it. The rest run as their own kernels.
fn plan_fusion(stages: &mut [Stage]) {
    let mut i = 0;
    while i < stages.len() {
        if !stages[i].op.is_in_place() {
            i += 1;
            continue;
        }
        let start = i;
        while i < stages.len() && stages[i].op.is_in_place() {
            i += 1;
        }
        let mut fused = Fused::default();
        let mut dropouts = 0;
        for s in &stages[start..i] {
            match s.op {
                Op::Relu => fused.relu = true,
                Op::Dropout { rate, id } => {
                    dropouts += 1;
                    fused.dropout = Some((id, rate));
                }
                _ => {}
            }
        }
        if dropouts > 1 || fused == Fused::default() {
            continue;
        }
        if start > 0 && matches!(stages[start - 1].op, Op::Conv2d { .. } | Op::Dense { .. }) {
            stages[start - 1].epilogue = fused;
            stages[start..i].iter_mut().for_each(|s| s.forward_fused = true);
        }
        if i < stages.len() && stages[i].input != 0 && matches!(stages[i].op, Op::Conv2d { .. } | Op::Dense { .. } | Op::MaxPool { .. }) {
            stages[i].input_mask = Some(fused);
            stages[start..i].iter_mut().for_each(|s| s.backward_fused = true);
        }
    }
}

/// Checks `given` tensors against `expected` names and shapes, in order, and that every value is
/// finite; errors name the tensor (`what` names the set when a count differs).
pub(crate) fn check_named_tensors(what: &str, expected: &[(String, Vec<usize>)], given: &[HostTensor]) -> Result<()> {
    if expected.len() != given.len() {
        return Err(EngineError::Tensor {
            name: what.into(),
            message: format!("{} tensors were given, {} are expected ({})", given.len(), expected.len(), names(expected)),
        });
    }
    for ((name, shape), (given_name, given_shape, values)) in expected.iter().zip(given) {
        if name != given_name || shape != given_shape {
            return Err(EngineError::Tensor {
                name: given_name.clone(),
                message: format!("expected '{name}' of shape {shape:?} here, got shape {given_shape:?}"),
            });
        }
        if values.len() != shape.iter().product::<usize>() {
            return Err(EngineError::Tensor { name: name.clone(), message: format!("{} values for shape {shape:?}", values.len()) });
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::Tensor {
                name: name.clone(),
                message: format!("holds {} at index {i}; values must be finite", values[i]),
            });
        }
    }
    Ok(())
}

fn names(tensors: &[(String, Vec<usize>)]) -> String {
    let mut list: Vec<&str> = tensors.iter().take(4).map(|(n, _)| n.as_str()).collect();
    if tensors.len() > 4 {
        list.push("...");
    }
    list.join(", ")
}

fn grad_pair(act_grads: &mut [Option<Tensor>], dy_slot: usize, dx_slot: usize) -> (&Tensor, &mut Tensor) {
    let (dy, dx) = pair(act_grads, dy_slot, dx_slot);
    (dy.as_ref().expect("training workspace"), dx.as_mut().expect("training workspace"))
}

/// Glorot / Xavier uniform for a weight of `shape` (fans from its last axis and the rest).
fn glorot_uniform(shape: &[usize], seed: u64) -> Vec<f32> {
    let len: usize = shape.iter().product();
    let fan_out = *shape.last().unwrap_or(&1);
    let receptive: usize = shape[..shape.len().saturating_sub(2)].iter().product();
    let fan_in = len / fan_out.max(1);
    let fan_out = fan_out * receptive;
    let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| (rng.next_f32() * 2.0 - 1.0) * limit).collect()
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;
    use crate::model::Config;

    const SMALL: &str = r#"
        [model]
        input_shape = [8, 7, 2]
        num_classes = 10
        [[model.layers]]
        type = "conv2d"
        filters = 3
        kernel_size = 3
        padding = "same"
        activation = "relu"
        [[model.layers]]
        type = "maxpool"
        pool_size = 2
        [[model.layers]]
        type = "conv2d"
        filters = 4
        kernel_size = 2
        activation = "relu"
        [[model.layers]]
        type = "flatten"
        [[model.layers]]
        type = "dense"
        units = 6
        activation = "relu"
        [[model.layers]]
        type = "dropout"
        rate = 0.3
        [[model.layers]]
        type = "dense"
        units = 10
    "#;

    fn loss(net: &Network, ws: &mut Workspace, x: &[f32], n: usize, step: u32) -> f32 {
        net.upload_f32(ws, x).unwrap();
        net.forward(ws, n, Some(step));
        let logits = net.logits_slot();
        let mut dz = Tensor::zeros(&net.device, &[n * 10]);
        net.device.softmax_xent(n, 10, net.label_smoothing, &ws.acts[logits], &ws.labels, &mut dz, &mut ws.stats, 0);
        ws.stats.to_host()[0] / n as f32
    }

    /// Whole-network finite-difference check: every parameter's gradient through all layers.
    #[test]
    fn network_gradients_match_finite_differences() {
        let spec = Config::parse(SMALL).unwrap().model_spec().unwrap();
        let mut net = Network::new(spec, Device::cpu(), 5).unwrap();
        let n = 3;
        let mut rng = SplitMix64::new(9);
        let x: Vec<f32> = (0..n * net.input_len()).map(|_| rng.next_f32()).collect();
        let mut ws = net.workspace(n, true);
        ws.labels.write_host("labels", &[3, 7, 0]).unwrap();
        let step = 11;
        let base = loss(&net, &mut ws, &x, n, step);
        let logits = net.logits_slot();
        let dlogits = ws.act_grads[logits].as_mut().unwrap();
        net.device.softmax_xent(n, 10, net.label_smoothing, &ws.acts[logits], &ws.labels, dlogits, &mut ws.stats, 0);
        let mut grads: Vec<Tensor> = net.params.iter().map(|p| Tensor::zeros(&net.device, p.value.shape())).collect();
        net.backward(&mut ws, &mut grads, n, step);
        assert!(base.is_finite());
        for pi in 0..net.params.len() {
            let analytic = grads[pi].to_host();
            let values = net.params[pi].value.to_host();
            for i in (0..values.len()).step_by((values.len() / 12).max(1)) {
                let eps = 1e-2;
                let mut probe = values.clone();
                probe[i] = values[i] + eps;
                net.params[pi].value = Tensor::from_host(&net.device, "p", &[values.len()], &probe).unwrap();
                let up = loss(&net, &mut ws, &x, n, step);
                probe[i] = values[i] - eps;
                net.params[pi].value = Tensor::from_host(&net.device, "p", &[values.len()], &probe).unwrap();
                let down = loss(&net, &mut ws, &x, n, step);
                net.params[pi].value = Tensor::from_host(&net.device, "p", net.params[pi].value.shape(), &values).unwrap();
                let numeric = (up - down) / (2.0 * eps);
                let name = &net.params[pi].name;
                assert!(
                    (numeric - analytic[i]).abs() <= 2e-3 + 5e-2 * numeric.abs(),
                    "{name}[{i}]: numeric {numeric} vs analytic {}",
                    analytic[i]
                );
            }
        }
    }
}
