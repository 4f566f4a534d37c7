//! A sequence of layers built from a [`ModelSpec`]: parameters on a device, the forward and
//! backward passes, and one training step.

use super::spec::{LayerKind, ModelSpec};
use super::workspace::{STATS_SLOTS, Workspace, pair, pair_mut};
use std::sync::{Arc, Mutex};

use crate::activation::Activation;
use crate::backend::{Conv2dGeometry, ConvInput, Dropout, Epilogue, GradMask, NormGeometry, NormParams, PoolGeometry};
use crate::cpu::winograd;
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
    Conv2d {
        geom: Conv2dGeometry,
        weight: usize,
        bias: usize,
    },
    MaxPool {
        geom: PoolGeometry,
    },
    /// Also a global average pool (its window is the whole image).
    AvgPool {
        geom: PoolGeometry,
    },
    Dense {
        inputs: usize,
        outputs: usize,
        weight: usize,
        bias: usize,
    },
    /// `gamma`, `beta`: parameter indices; `mean`, `var`: state indices (the running averages).
    BatchNorm {
        geom: NormGeometry,
        gamma: usize,
        beta: usize,
        mean: usize,
        var: usize,
    },
    Activation(Activation),
    Dropout {
        rate: f32,
        id: u32,
    },
    Flatten,
}

impl Op {
    /// Activations whose slope follows from their output, dropout and flatten work in place on
    /// their input's slot.
    fn is_in_place(&self) -> bool {
        match self {
            Op::Activation(f) => f.slope_from_output(),
            Op::Dropout { .. } | Op::Flatten => true,
            _ => false,
        }
    }

    /// Layers whose kernel can end with the epilogue of the element-wise layers after them.
    fn takes_epilogue(&self) -> bool {
        matches!(self, Op::Conv2d { .. } | Op::Dense { .. } | Op::BatchNorm { .. })
    }

    /// Layers whose backward can apply the gradient masks of the element-wise layers before them.
    fn takes_input_mask(&self) -> bool {
        matches!(self, Op::Conv2d { .. } | Op::Dense { .. } | Op::BatchNorm { .. } | Op::MaxPool { .. } | Op::AvgPool { .. })
    }
}

/// A run of element-wise layers (at most one activation, at most one dropout) as its
/// neighbours' kernels apply it: the producer's epilogue in the forward, the consumer's
/// gradient mask in the backward.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Fused {
    activation: Option<Activation>,
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
    /// Conv2d, dense and batchnorm: the element-wise layers after this one, applied as its
    /// epilogue.
    epilogue: Fused,
    /// Conv2d, dense, batchnorm and pooling: the gradient masks of the element-wise layers
    /// between this layer and its input's producer, applied as this layer writes its input's
    /// gradient.
    input_mask: Option<Fused>,
    /// Activations and dropout: run by the producer's epilogue / by the consumer's backward.
    forward_fused: bool,
    backward_fused: bool,
    /// CPU inference: a conv2d's following max pool, run inside it (the pool's geometry and
    /// output slot), and on that pool, that it is.
    inference_pool: Option<(PoolGeometry, usize)>,
    pooled_by_conv: bool,
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
    /// Non-trainable tensors (batch normalisations' running averages), in spec order.
    state: Vec<Param>,
    /// On a GPU: one tensor spanning every parameter (see [`Tensor::zeros_packed`]).
    param_arena: Option<Tensor>,
    slot_lens: Vec<usize>,
    dropout_seed: u32,
    /// The training loss's label smoothing (see [`Network::set_label_smoothing`]).
    label_smoothing: f32,
    /// On the CPU, per stage: the Winograd transform of a pooled conv2d's filters, made again
    /// (in the same buffers once no inference holds them) by the first inference after the
    /// weights change. An inference holds its own `Arc`, not the lock: a pool thread waiting
    /// inside one inference may run another's.
    winograd_filters: Mutex<WinogradCache>,
}

/// Per stage, a pooled conv2d's filters through [`winograd::transformed_filters`].
type WinogradFilters = Vec<Option<Vec<f32>>>;

/// [`Network`]'s transformed filters, and whether they match the weights (every change of
/// weights goes through `&mut Network`, which clears `fresh`).
#[derive(Default)]
struct WinogradCache {
    fresh: bool,
    filters: Arc<WinogradFilters>,
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
    /// A network with freshly initialised parameters (Glorot-uniform weights, zero biases; batch
    /// normalisations with scale 1, offset 0, running mean 0 and variance 1).
    pub fn new(spec: ModelSpec, device: Device, seed: u64) -> Result<Self> {
        let shapes = spec.stored_tensors()?;
        let mut values = Vec::with_capacity(shapes.len());
        for (i, (name, shape)) in shapes.into_iter().enumerate() {
            let len = shape.iter().product();
            let data = if name.ends_with(".weight") {
                glorot_uniform(&shape, seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            } else if name.ends_with(".gamma") || name.ends_with(".moving_variance") {
                vec![1.0; len]
            } else {
                vec![0.0; len]
            };
            values.push((name, shape, data));
        }
        Self::with_params(spec, device, values, seed)
    }

    /// A network with the given tensors: the parameters, then the state, with the names and
    /// shapes of [`ModelSpec::stored_tensors`].
    pub fn from_params(spec: ModelSpec, device: Device, values: Vec<(String, Vec<usize>, Vec<f32>)>) -> Result<Self> {
        let expected = spec.stored_tensors()?;
        if expected.len() != values.len() {
            return Err(EngineError::Tensor {
                name: "parameters".into(),
                message: format!("the architecture has {} stored tensors, {} were given", expected.len(), values.len()),
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

    /// Places `values` (parameters, then state) on the device: on a GPU the parameters as ranges
    /// of one buffer (the arena), so one optimizer dispatch updates every parameter.
    fn with_params(spec: ModelSpec, device: Device, mut values: Vec<(String, Vec<usize>, Vec<f32>)>, seed: u64) -> Result<Self> {
        let state_values = values.split_off(spec.parameters()?.len());
        let shapes: Vec<Vec<usize>> = values.iter().map(|(_, shape, _)| shape.clone()).collect();
        let (tensors, param_arena) = Tensor::zeros_packed(&device, &shapes);
        let mut params = Vec::with_capacity(values.len());
        for (mut value, (name, _, data)) in tensors.into_iter().zip(values) {
            value.write_host(&name, &data)?;
            params.push(Param { name, value });
        }
        let state = state_values
            .into_iter()
            .map(|(name, shape, data)| Ok(Param { value: Tensor::from_host(&device, &name, &shape, &data)?, name }))
            .collect::<Result<Vec<_>>>()?;
        let shapes = spec.shapes()?;
        let mut slot_lens = vec![shapes[0].len()];
        let mut stages = Vec::with_capacity(spec.layers.len());
        let (mut slot, mut next_param, mut next_state, mut dropouts) = (0usize, 0usize, 0usize, 0u32);
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
                LayerKind::AvgPool { .. } | LayerKind::GlobalAvgPool => {
                    (Op::AvgPool { geom: layer.pool_geometry(input).expect("shapes() checked every layer") }, false)
                }
                LayerKind::Dense { units } => {
                    next_param += 2;
                    (Op::Dense { inputs: input.len(), outputs: units, weight: next_param - 2, bias: next_param - 1 }, false)
                }
                LayerKind::BatchNorm { .. } => {
                    next_param += 2;
                    next_state += 2;
                    let geom = layer.norm_geometry(input).expect("shapes() checked every layer");
                    (Op::BatchNorm { geom, gamma: next_param - 2, beta: next_param - 1, mean: next_state - 2, var: next_state - 1 }, false)
                }
                LayerKind::Relu | LayerKind::LeakyRelu { .. } | LayerKind::Tanh | LayerKind::Sigmoid | LayerKind::Gelu => {
                    let f = layer.kind.activation().expect("an activation layer");
                    (Op::Activation(f), f.slope_from_output())
                }
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
                inference_pool: None,
                pooled_by_conv: false,
            });
        }
        debug_assert_eq!((next_param, next_state), (params.len(), state.len()));
        plan_fusion(&mut stages);
        if matches!(device, Device::Cpu(_)) {
            plan_inference_pooling(&mut stages);
        }
        let dropout_seed = (seed ^ (seed >> 32)) as u32;
        Ok(Self {
            spec,
            device,
            stages,
            params,
            state,
            param_arena,
            slot_lens,
            dropout_seed,
            label_smoothing: 0.0,
            winograd_filters: Mutex::default(),
        })
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

    /// Non-trainable tensors (batch normalisations' running averages).
    pub fn state(&self) -> &[Param] {
        &self.state
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

    /// Reads every stored tensor back to the host: the parameters, then the state, as
    /// `(name, shape, values)` ([`Network::from_params`] takes them back).
    pub fn export_params(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        self.params.iter().chain(&self.state).map(|p| (p.name.clone(), p.value.shape().to_vec(), p.value.to_host())).collect()
    }

    /// Everything a checkpoint saves to continue training this network exactly, as named
    /// tensors: `(name, shape, values)`: its parameters and the state the optimizer does not
    /// train (batch normalisations' running averages).
    pub fn export_state(&self) -> Vec<HostTensor> {
        self.export_params()
    }

    /// Restores what [`Self::export_state`] saved: the same names, in the same order, with the
    /// same shapes, all values finite; an error names the first tensor that differs.
    pub fn import_state(&mut self, state: Vec<HostTensor>) -> Result<()> {
        let expected: Vec<(String, Vec<usize>)> =
            self.params.iter().chain(&self.state).map(|p| (p.name.clone(), p.value.shape().to_vec())).collect();
        check_named_tensors("network state", &expected, &state)?;
        self.winograd_filters.get_mut().unwrap_or_else(|e| e.into_inner()).fresh = false;
        for (p, (name, _, values)) in self.params.iter_mut().chain(self.state.iter_mut()).zip(state) {
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
        let norm_saved = self
            .stages
            .iter()
            .map(|s| match s.op {
                Op::BatchNorm { geom, .. } if training => Some(Tensor::zeros(d, &[2 * geom.channels])),
                _ => None,
            })
            .collect();
        Workspace {
            capacity,
            pixels,
            norm_saved,
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
    /// in training (dropout on, mask keyed by the step; batch normalisations use and record the
    /// batch's statistics) and `None` in inference.
    pub fn forward(&mut self, ws: &mut Workspace, n: usize, dropout_step: Option<u32>) {
        match dropout_step {
            Some(_) => {
                // The running averages move; the rest of the network is only read.
                let mut state = std::mem::take(&mut self.state);
                self.run_forward(ws, n, dropout_step, Some(&mut state));
                self.state = state;
            }
            None => self.run_forward(ws, n, None, None),
        }
    }

    /// The inference forward pass (no dropout, running averages): [`Network::forward`] with `None`.
    pub fn forward_inference(&self, ws: &mut Workspace, n: usize) {
        self.run_forward(ws, n, None, None);
    }

    /// `training_state`: in training, the state taken out of `self` so it can be updated.
    fn run_forward(&self, ws: &mut Workspace, n: usize, dropout_step: Option<u32>, mut training_state: Option<&mut Vec<Param>>) {
        assert!(n <= ws.capacity, "batch of {n} exceeds the workspace capacity {}", ws.capacity);
        let d = &self.device;
        let p = &self.params;
        let winograd_filters = if dropout_step.is_none() { self.winograd_filters() } else { None };
        for (li, s) in self.stages.iter().enumerate() {
            match &s.op {
                Op::Conv2d { geom, weight, bias } if dropout_step.is_none() && s.inference_pool.is_some() => {
                    let (pool, pooled) = s.inference_pool.expect("matched");
                    let (x, y) = pair(&mut ws.acts, s.input, pooled);
                    let transformed = winograd_filters.as_ref().and_then(|f| f[li].as_deref());
                    let (w, b) = (&p[*weight].value, &p[*bias].value);
                    d.conv2d_max_pool_inference(geom, &pool, n, x, w, transformed, b, s.epilogue.activation, y);
                }
                Op::MaxPool { .. } if dropout_step.is_none() && s.pooled_by_conv => {}
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
                Op::AvgPool { geom } => {
                    let (x, y) = pair(&mut ws.acts, s.input, s.output);
                    d.avg_pool_forward(geom, n, x, y);
                }
                Op::Dense { inputs, outputs, weight, bias } => {
                    let (x, y) = pair(&mut ws.acts, s.input, s.output);
                    let epilogue = self.epilogue(s.epilogue, dropout_step);
                    d.dense_forward(n, *inputs, *outputs, x, &p[*weight].value, &p[*bias].value, epilogue, y);
                }
                Op::BatchNorm { geom, gamma, beta, mean, var } => {
                    let (x, y) = pair(&mut ws.acts, s.input, s.output);
                    let epilogue = self.epilogue(s.epilogue, dropout_step);
                    let (gamma, beta) = (&p[*gamma].value, &p[*beta].value);
                    match training_state.as_deref_mut() {
                        Some(state) => {
                            let (m, v) = pair_mut(state, *mean, *var);
                            let saved = ws.norm_saved[li].as_mut().expect("a training workspace");
                            d.batchnorm_forward_training(geom, n, x, gamma, beta, (&mut m.value, &mut v.value), saved, epilogue, y);
                        }
                        None => {
                            let np =
                                NormParams { gamma, beta, running_mean: &self.state[*mean].value, running_var: &self.state[*var].value };
                            d.batchnorm_forward_inference(geom, n, x, &np, epilogue, y);
                        }
                    }
                }
                _ if s.forward_fused => {}
                Op::Activation(f) if s.input == s.output => d.activation_in_place(*f, n * s.out_len, &mut ws.acts[s.output]),
                Op::Activation(f) => {
                    let (x, y) = pair(&mut ws.acts, s.input, s.output);
                    d.activation(*f, n * s.out_len, x, y);
                }
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
        Epilogue { activation: fused.activation, dropout }
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
                Op::AvgPool { geom } => {
                    if needs_input_grad {
                        let (dy, dx) = grad_pair(&mut ws.act_grads, s.output, s.input);
                        d.avg_pool_backward(geom, n, dy, mask, dx);
                    }
                }
                Op::BatchNorm { geom, gamma, beta, .. } => {
                    let dparams = pair_mut(grads, *gamma, *beta);
                    let saved = ws.norm_saved[li].as_ref().expect("a training workspace");
                    let x = &ws.acts[s.input];
                    if needs_input_grad {
                        let (dy, dx) = grad_pair(&mut ws.act_grads, s.output, s.input);
                        d.batchnorm_backward(geom, n, x, dy, &p[*gamma].value, saved, dparams, mask, Some(dx));
                    } else {
                        let dy = ws.act_grads[s.output].as_ref().expect("training workspace");
                        d.batchnorm_backward(geom, n, x, dy, &p[*gamma].value, saved, dparams, None, None);
                    }
                }
                _ if s.backward_fused => {}
                Op::Activation(f) if s.input == s.output && s.output != 0 => {
                    let dy = ws.act_grads[s.output].as_mut().expect("training workspace");
                    d.activation_slope_at_output(*f, n * s.out_len, &ws.acts[s.output], dy);
                }
                Op::Activation(f) if s.input != s.output && needs_input_grad => {
                    let (dy, dx) = grad_pair(&mut ws.act_grads, s.output, s.input);
                    d.activation_slope_at_input(*f, n * s.out_len, &ws.acts[s.input], dy, dx);
                }
                Op::Dropout { rate, id } if s.output != 0 => {
                    let dy = ws.act_grads[s.output].as_mut().expect("training workspace");
                    d.dropout(n * s.out_len, self.dropout_key(*id, dropout_step), *rate, dy);
                }
                Op::Activation(_) | Op::Dropout { .. } | Op::Flatten => {}
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
        self.winograd_filters.get_mut().unwrap_or_else(|e| e.into_inner()).fresh = false;
        self.device.submit();
    }

    /// The filters of the pooled conv2d stages that Winograd applies to, transformed for CPU
    /// inference (`None` for other stages and on a GPU); made again, in place where no other
    /// inference holds them, if the weights changed since they were last made.
    fn winograd_filters(&self) -> Option<Arc<WinogradFilters>> {
        if !matches!(self.device, Device::Cpu(_)) {
            return None;
        }
        let mut cache = self.winograd_filters.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.fresh {
            let per_stage = Arc::make_mut(&mut cache.filters);
            per_stage.resize(self.stages.len(), None);
            for (s, filters) in self.stages.iter().zip(per_stage.iter_mut()) {
                if let Op::Conv2d { geom, weight, .. } = &s.op
                    && s.inference_pool.is_some()
                    && winograd::applies(geom)
                {
                    let u = filters.get_or_insert_with(Vec::new);
                    u.resize(winograd::transformed_len(geom), 0.0);
                    winograd::transform_filters_into(geom, self.params[*weight].value.cpu(), u);
                }
            }
            cache.fresh = true;
        }
        Some(cache.filters.clone())
    }

    /// Inference on `n` normalised examples already uploaded to slot 0 of `ws`; writes class
    /// probabilities and argmax classes into the workspace's outputs.
    pub fn infer_uploaded(&self, ws: &mut Workspace, n: usize) {
        let infer = |ws: &mut Workspace| {
            self.forward_inference(ws, n);
            let logits = &ws.acts[self.logits_slot()];
            self.device.predict(n, self.num_classes(), logits, &mut ws.outputs);
        };
        self.device.run(|| infer(ws));
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
/// one activation (one whose slope follows from its output) and at most one dropout, where the
/// two commute if both are there, becomes the epilogue of a conv2d, dense or batchnorm before
/// it, and the gradient mask of a conv2d, dense, batchnorm or pooling layer after it. The rest
/// run as their own kernels.
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
        let Some(fused) = fuse(&stages[start..i]) else { continue };
        if start > 0 && stages[start - 1].op.takes_epilogue() {
            stages[start - 1].epilogue = fused;
            stages[start..i].iter_mut().for_each(|s| s.forward_fused = true);
        }
        if i < stages.len() && stages[i].input != 0 && stages[i].op.takes_input_mask() {
            stages[i].input_mask = Some(fused);
            stages[start..i].iter_mut().for_each(|s| s.backward_fused = true);
        }
    }
}

/// On the CPU, inference runs each conv2d whose output only a max pool reads (its fused
/// activation, if any, commuting with max) together with that pool.
fn plan_inference_pooling(stages: &mut [Stage]) {
    for i in 0..stages.len() {
        if !matches!(stages[i].op, Op::Conv2d { .. }) || stages[i].epilogue.activation.is_some_and(|f| !f.commutes_with_max()) {
            continue;
        }
        let Some(next) = (i + 1..stages.len()).find(|&j| !stages[j].forward_fused) else { continue };
        if let Op::MaxPool { geom } = stages[next].op
            && stages[next].input == stages[i].output
        {
            stages[i].inference_pool = Some((geom, stages[next].output));
            stages[next].pooled_by_conv = true;
        }
    }
}

/// A run of in-place layers as one epilogue, if it can be one.
fn fuse(run: &[Stage]) -> Option<Fused> {
    let mut fused = Fused::default();
    let mut dropouts = 0;
    for s in run {
        match s.op {
            Op::Activation(f) => match fused.activation {
                // Two ReLUs are one.
                Some(g) if !(f == Activation::Relu && g == Activation::Relu) => return None,
                _ => fused.activation = Some(f),
            },
            Op::Dropout { rate, id } => {
                dropouts += 1;
                fused.dropout = Some((id, rate));
            }
            _ => {}
        }
    }
    let commutes = match (fused.activation, fused.dropout) {
        (Some(f), Some(_)) => f.commutes_with_dropout(),
        _ => true,
    };
    (dropouts <= 1 && commutes && fused != Fused::default()).then_some(fused)
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

    fn loss(net: &mut Network, ws: &mut Workspace, x: &[f32], n: usize, step: u32) -> f32 {
        net.upload_f32(ws, x).unwrap();
        net.forward(ws, n, Some(step));
        let logits = net.logits_slot();
        let mut dz = Tensor::zeros(&net.device, &[n * 10]);
        net.device.softmax_xent(n, 10, net.label_smoothing, &ws.acts[logits], &ws.labels, &mut dz, &mut ws.stats, 0);
        ws.stats.to_host()[0] / n as f32
    }

    /// Batch normalisation per channel and per feature, average pooling, a global average pool
    /// and every activation, fused and not.
    const RICH: &str = r#"
        [model]
        input_shape = [8, 7, 2]
        num_classes = 10
        [[model.layers]]
        type = "conv2d"
        filters = 3
        kernel_size = 3
        padding = "same"
        [[model.layers]]
        type = "batchnorm"
        momentum = 0.5
        [[model.layers]]
        type = "leaky_relu"
        alpha = 0.2
        [[model.layers]]
        type = "avgpool"
        [[model.layers]]
        type = "conv2d"
        filters = 4
        kernel_size = 2
        activation = "tanh"
        [[model.layers]]
        type = "batchnorm"
        [[model.layers]]
        type = "gelu"
        [[model.layers]]
        type = "global_avgpool"
        [[model.layers]]
        type = "dense"
        units = 6
        activation = "sigmoid"
        [[model.layers]]
        type = "batchnorm"
        [[model.layers]]
        type = "dense"
        units = 10
    "#;

    /// Whole-network finite-difference check: every parameter's gradient through all layers.
    #[test]
    fn network_gradients_match_finite_differences() {
        check_network_gradients(SMALL, 3);
    }

    #[test]
    fn gradients_through_every_layer_kind_match_finite_differences() {
        check_network_gradients(RICH, 4);
    }

    fn check_network_gradients(config: &str, n: usize) {
        let spec = Config::parse(config).unwrap().model_spec().unwrap();
        let mut net = Network::new(spec, Device::cpu(), 5).unwrap();
        let mut rng = SplitMix64::new(9);
        let x: Vec<f32> = (0..n * net.input_len()).map(|_| rng.next_f32()).collect();
        let mut ws = net.workspace(n, true);
        ws.labels.write_host("labels", &[3, 7, 0, 5][..n]).unwrap();
        let step = 11;
        let base = loss(&mut net, &mut ws, &x, n, step);
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
                let up = loss(&mut net, &mut ws, &x, n, step);
                probe[i] = values[i] - eps;
                net.params[pi].value = Tensor::from_host(&net.device, "p", &[values.len()], &probe).unwrap();
                let down = loss(&mut net, &mut ws, &x, n, step);
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
