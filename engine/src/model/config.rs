//! The hyperparameter config file (TOML): architecture as a list of layers, and training settings.
//! Unknown keys are rejected; every value is checked and an error names its key.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::spec::{LayerKind, LayerSpec, ModelSpec, Padding, Shape};
use crate::error::{EngineError, Result};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `[height, width, channels]` of one input image.
    #[serde(default = "default_input_shape")]
    pub input_shape: [usize; 3],
    #[serde(default = "default_classes")]
    pub num_classes: usize,
    pub layers: Vec<LayerConfig>,
}

fn default_input_shape() -> [usize; 3] {
    [28, 28, 1]
}
fn default_classes() -> usize {
    10
}

/// A size given as one number (square) or `[height, width]`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Size2 {
    Square(usize),
    Rect([usize; 2]),
}

impl Size2 {
    pub fn pair(self) -> [usize; 2] {
        match self {
            Size2::Square(s) => [s, s],
            Size2::Rect(r) => r,
        }
    }
}

/// An activation by name, as the `activation` key of conv2d and dense takes it.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActivationName {
    Relu,
    Linear,
    LeakyRelu,
    Tanh,
    Sigmoid,
    Gelu,
}

/// The `activation` key: a name (`"tanh"`), or a table with parameters
/// (`{ type = "leaky_relu", alpha = 0.1 }`).
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ActivationConfig {
    Name(ActivationName),
    Table(ActivationTable),
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ActivationTable {
    #[serde(rename = "type")]
    pub kind: ActivationName,
    pub alpha: Option<f32>,
}

const ACTIVATION_NAMES: &[&str] = &["relu", "leaky_relu", "tanh", "sigmoid", "gelu", "linear"];

impl<'de> Deserialize<'de> for ActivationConfig {
    /// A name or a table, with an error that lists the names (an untagged enum's would not).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ActivationConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "an activation name ({}) or a table {{ type = \"leaky_relu\", alpha = 0.1 }}", ACTIVATION_NAMES.join(", "))
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> std::result::Result<Self::Value, E> {
                ActivationName::deserialize(serde::de::value::StrDeserializer::<E>::new(name))
                    .map(ActivationConfig::Name)
                    .map_err(|_| E::custom(format!("unknown activation \"{name}\": expected one of {}", ACTIVATION_NAMES.join(", "))))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, map: M) -> std::result::Result<Self::Value, M::Error> {
                ActivationTable::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(ActivationConfig::Table)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Keras's default slope of a leaky ReLU.
fn default_alpha() -> f32 {
    0.3
}
fn default_momentum_bn() -> f32 {
    0.99
}
fn default_epsilon_bn() -> f32 {
    1e-3
}

impl ActivationConfig {
    /// The function, or `None` for `linear`; an alpha on anything but a leaky ReLU is an error.
    fn resolve(self) -> std::result::Result<Option<crate::activation::Activation>, String> {
        use crate::activation::Activation as F;
        let (kind, alpha) = match self {
            ActivationConfig::Name(kind) => (kind, None),
            ActivationConfig::Table(t) => (t.kind, t.alpha),
        };
        if alpha.is_some() && kind != ActivationName::LeakyRelu {
            return Err(format!("alpha applies to leaky_relu only, not {kind:?}").to_lowercase());
        }
        Ok(match kind {
            ActivationName::Linear => None,
            ActivationName::Relu => Some(F::Relu),
            ActivationName::LeakyRelu => Some(F::LeakyRelu { alpha: alpha.unwrap_or_else(default_alpha) }),
            ActivationName::Tanh => Some(F::Tanh),
            ActivationName::Sigmoid => Some(F::Sigmoid),
            ActivationName::Gelu => Some(F::Gelu),
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum LayerConfig {
    Conv2d {
        name: Option<String>,
        filters: usize,
        kernel_size: Size2,
        #[serde(default = "one", alias = "stride")]
        strides: Size2,
        #[serde(default)]
        padding: Padding,
        activation: Option<ActivationConfig>,
    },
    #[serde(alias = "maxpool2d", alias = "max_pool", alias = "max_pool2d", alias = "maxpooling2d")]
    Maxpool {
        name: Option<String>,
        #[serde(default = "two")]
        pool_size: Size2,
        #[serde(alias = "stride")]
        strides: Option<Size2>,
    },
    #[serde(alias = "avgpool2d", alias = "avg_pool", alias = "avg_pool2d", alias = "averagepooling2d")]
    Avgpool {
        name: Option<String>,
        #[serde(default = "two")]
        pool_size: Size2,
        #[serde(alias = "stride")]
        strides: Option<Size2>,
    },
    #[serde(rename = "global_avgpool", alias = "global_avg_pool", alias = "globalaveragepooling2d")]
    GlobalAvgpool {
        name: Option<String>,
    },
    Dense {
        name: Option<String>,
        units: usize,
        activation: Option<ActivationConfig>,
    },
    #[serde(alias = "batch_norm", alias = "batchnormalization")]
    Batchnorm {
        name: Option<String>,
        #[serde(default = "default_momentum_bn")]
        momentum: f32,
        #[serde(default = "default_epsilon_bn")]
        epsilon: f32,
    },
    Relu {
        name: Option<String>,
    },
    #[serde(rename = "leaky_relu", alias = "leakyrelu")]
    LeakyRelu {
        name: Option<String>,
        #[serde(default = "default_alpha")]
        alpha: f32,
    },
    Tanh {
        name: Option<String>,
    },
    Sigmoid {
        name: Option<String>,
    },
    Gelu {
        name: Option<String>,
    },
    Dropout {
        name: Option<String>,
        rate: f32,
    },
    Flatten {
        name: Option<String>,
    },
}

fn one() -> Size2 {
    Size2::Square(1)
}
fn two() -> Size2 {
    Size2::Square(2)
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_lr")]
    pub learning_rate: f32,
    #[serde(default)]
    pub weight_decay: f32,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    /// Batch size for evaluation on the test set (does not change results).
    #[serde(default = "default_eval_batch")]
    pub eval_batch_size: usize,
    /// e in [0, 1): train against `(1 - e) * onehot(label) + e / classes` (0: plain one-hot).
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub label_smoothing: f32,
    /// `[train.augment]`: random distortions of the training images (none when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub augment: Option<AugmentConfig>,
}

/// Random distortions of each training image, drawn anew every epoch (see `data::augment`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    /// Largest shift in pixels along each axis: uniform in [-translation, translation].
    #[serde(default)]
    pub translation: f32,
    /// Largest rotation in degrees: uniform in [-rotation, rotation].
    #[serde(default)]
    pub rotation: f32,
    /// Largest relative change of size: a zoom uniform in [1 - scale, 1 + scale].
    #[serde(default)]
    pub scale: f32,
    /// Elastic distortion (Simard et al., 2003): the strength of the displacement field in
    /// pixels (0: none) ...
    #[serde(default)]
    pub elastic_alpha: f32,
    /// ... and the standard deviation in pixels of the Gaussian that smooths it.
    #[serde(default = "default_elastic_sigma")]
    pub elastic_sigma: f32,
}

fn default_elastic_sigma() -> f32 {
    4.0
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self { translation: 0.0, rotation: 0.0, scale: 0.0, elastic_alpha: 0.0, elastic_sigma: default_elastic_sigma() }
    }
}

/// Largest `elastic_sigma`: the smoothing kernel spans 6 sigma, so this bounds its cost.
pub const MAX_ELASTIC_SIGMA: f32 = 16.0;
/// Largest `elastic_alpha` accepted.
pub const MAX_ELASTIC_ALPHA: f32 = 1000.0;

impl AugmentConfig {
    /// Range checks; with `image` (`[height, width]`), also that a shift leaves part of the image.
    pub fn validate(&self, image: Option<[usize; 2]>) -> Result<()> {
        let key = |k: &str| format!("train.augment.{k}");
        let within = |k: &str, v: f32, lo: f32, hi: f32, range: &str| {
            if v.is_finite() && v >= lo && v <= hi { Ok(()) } else { Err(bad(key(k), format!("must be in {range}, got {v}"))) }
        };
        within("rotation", self.rotation, 0.0, 180.0, "[0, 180] (degrees)")?;
        within("translation", self.translation, 0.0, f32::MAX, "[0, image size) (pixels)")?;
        if !(0.0..1.0).contains(&self.scale) {
            return Err(bad(key("scale"), format!("must be in [0, 1) (a zoom in [1 - scale, 1 + scale]), got {}", self.scale)));
        }
        within("elastic_alpha", self.elastic_alpha, 0.0, MAX_ELASTIC_ALPHA, &format!("[0, {MAX_ELASTIC_ALPHA}] (pixels)"))?;
        if !(self.elastic_sigma.is_finite() && self.elastic_sigma > 0.0 && self.elastic_sigma <= MAX_ELASTIC_SIGMA) {
            return Err(bad(key("elastic_sigma"), format!("must be in (0, {MAX_ELASTIC_SIGMA}] (pixels), got {}", self.elastic_sigma)));
        }
        if let Some([h, w]) = image {
            let side = h.min(w);
            if self.translation >= side as f32 {
                return Err(bad(
                    key("translation"),
                    format!("must be less than the image's side ({side} pixels), got {}", self.translation),
                ));
            }
        }
        Ok(())
    }
}

fn default_epochs() -> usize {
    3
}
fn default_batch() -> usize {
    100
}
fn default_lr() -> f32 {
    1e-3
}
fn default_seed() -> u64 {
    1234
}
fn default_eval_batch() -> usize {
    1000
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: default_epochs(),
            batch_size: default_batch(),
            learning_rate: default_lr(),
            weight_decay: 0.0,
            seed: default_seed(),
            optimizer: OptimizerConfig::default(),
            schedule: ScheduleConfig::default(),
            eval_batch_size: default_eval_batch(),
            label_smoothing: 0.0,
            augment: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum OptimizerConfig {
    Sgd,
    Momentum {
        #[serde(default = "default_momentum")]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
    },
    Adam {
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_epsilon")]
        epsilon: f32,
    },
    /// Adam with decoupled weight decay (`train.weight_decay`).
    Adamw {
        #[serde(default = "default_beta1")]
        beta1: f32,
        #[serde(default = "default_beta2")]
        beta2: f32,
        #[serde(default = "default_epsilon")]
        epsilon: f32,
    },
}

fn default_momentum() -> f32 {
    0.9
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.999
}
fn default_epsilon() -> f32 {
    1e-8
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Adam { beta1: default_beta1(), beta2: default_beta2(), epsilon: default_epsilon() }
    }
}

/// `[train.schedule]`: an optional linear warm-up, then the decay named by `type`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
pub struct ScheduleConfig {
    #[serde(flatten)]
    pub decay: DecayConfig,
    /// Warm-up length in epochs (fractions allowed); at most one of this and `warmup_steps`.
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub warmup_epochs: f32,
    /// Warm-up length in training steps.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub warmup_steps: usize,
}

fn is_zero_f32(v: &f32) -> bool {
    *v == 0.0
}
fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

impl From<DecayConfig> for ScheduleConfig {
    fn from(decay: DecayConfig) -> Self {
        Self { decay, warmup_epochs: 0.0, warmup_steps: 0 }
    }
}

/// The learning rate after warm-up, over training steps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum DecayConfig {
    /// `lr` throughout. (A struct variant, so that unknown keys are refused.)
    Constant {},
    /// `lr * decay_rate ^ (epoch_progress / decay_epochs)`, smooth.
    Exponential {
        decay_rate: f32,
        #[serde(default = "default_decay_epochs")]
        decay_epochs: f32,
    },
    /// `lr * decay_rate ^ floor(epoch / step_epochs)`.
    Step {
        decay_rate: f32,
        #[serde(default = "default_step_epochs")]
        step_epochs: usize,
    },
    /// Cosine from `lr` to `min_learning_rate` over the whole run.
    Cosine {
        #[serde(default)]
        min_learning_rate: f32,
    },
    /// One-cycle (Smith and Topin; PyTorch's `OneCycleLR` with cosine annealing): from
    /// `lr / div_factor` up to `lr` over the first `pct_start` of the run, then down to
    /// `lr / div_factor / final_div_factor`. `lr` is the peak.
    #[serde(alias = "one_cycle")]
    Onecycle {
        #[serde(default = "default_pct_start")]
        pct_start: f32,
        #[serde(default = "default_div_factor")]
        div_factor: f32,
        #[serde(default = "default_final_div_factor")]
        final_div_factor: f32,
    },
}

impl Default for DecayConfig {
    fn default() -> Self {
        DecayConfig::Constant {}
    }
}

fn default_pct_start() -> f32 {
    0.3
}
fn default_div_factor() -> f32 {
    25.0
}
fn default_final_div_factor() -> f32 {
    1e4
}
fn default_decay_epochs() -> f32 {
    1.0
}
fn default_step_epochs() -> usize {
    1
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> EngineError {
    EngineError::Config { path: key.into(), message: message.into() }
}

impl Config {
    /// Reads, parses and validates a config file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, format!("cannot read config file: {e}")))?;
        Self::parse(&text).map_err(|e| match e {
            EngineError::Config { path: key, message } => EngineError::Config { path: format!("{}: {key}", path.display()), message },
            EngineError::Shape { index, kind, name, message } => EngineError::Config {
                path: format!("{}: model.layers[{index}]", path.display()),
                message: format!("{kind} '{name}': {message}"),
            },
            other => EngineError::Config { path: path.display().to_string(), message: other.to_string() },
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            let location = e.span().map(|s| line_col(text, s.start)).map(|(l, c)| format!("line {l}, column {c}")).unwrap_or_default();
            bad(location, message)
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        if let Some(augment) = &self.train.augment {
            let [h, w, _] = self.model.input_shape;
            augment.validate(Some([h, w]))?;
        }
        self.model_spec().map(|_| ())
    }

    /// The architecture with activations expanded into layers, names assigned and shapes checked.
    pub fn model_spec(&self) -> Result<ModelSpec> {
        self.model.to_spec()
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

impl ModelConfig {
    /// Translates the config's syntax (activation keys, default names and strides) into a
    /// [`ModelSpec`] and passes it through the validation gate; a layer error carries the index
    /// of the `[[model.layers]]` entry it came from.
    pub fn to_spec(&self) -> Result<ModelSpec> {
        let mut layers = Vec::new();
        let mut origin = Vec::new();
        let mut counts = std::collections::HashMap::new();
        let mut name_for = |given: &Option<String>, base: &str| -> String {
            let count = counts.entry(base.to_string()).or_insert(0);
            *count += 1;
            given.clone().unwrap_or_else(|| format!("{base}{count}"))
        };
        for (i, layer) in self.layers.iter().enumerate() {
            match layer {
                LayerConfig::Conv2d { name, filters, kernel_size, strides, padding, activation } => {
                    let kind =
                        LayerKind::Conv2d { filters: *filters, kernel: kernel_size.pair(), stride: strides.pair(), padding: *padding };
                    layers.push(LayerSpec { name: name_for(name, "conv"), kind });
                    push_activation(&mut layers, i, activation, &mut name_for)?;
                }
                LayerConfig::Maxpool { name, pool_size, strides } => {
                    let size = pool_size.pair();
                    let stride = strides.map(Size2::pair).unwrap_or(size);
                    layers.push(LayerSpec { name: name_for(name, "pool"), kind: LayerKind::MaxPool { size, stride } });
                }
                LayerConfig::Avgpool { name, pool_size, strides } => {
                    let size = pool_size.pair();
                    let stride = strides.map(Size2::pair).unwrap_or(size);
                    layers.push(LayerSpec { name: name_for(name, "avgpool"), kind: LayerKind::AvgPool { size, stride } });
                }
                LayerConfig::GlobalAvgpool { name } => {
                    layers.push(LayerSpec { name: name_for(name, "global_avgpool"), kind: LayerKind::GlobalAvgPool })
                }
                LayerConfig::Dense { name, units, activation } => {
                    layers.push(LayerSpec { name: name_for(name, "dense"), kind: LayerKind::Dense { units: *units } });
                    push_activation(&mut layers, i, activation, &mut name_for)?;
                }
                LayerConfig::Batchnorm { name, momentum, epsilon } => layers.push(LayerSpec {
                    name: name_for(name, "batchnorm"),
                    kind: LayerKind::BatchNorm { momentum: *momentum, epsilon: *epsilon },
                }),
                LayerConfig::Relu { name } => layers.push(LayerSpec { name: name_for(name, "relu"), kind: LayerKind::Relu }),
                LayerConfig::LeakyRelu { name, alpha } => {
                    layers.push(LayerSpec { name: name_for(name, "leaky_relu"), kind: LayerKind::LeakyRelu { alpha: *alpha } })
                }
                LayerConfig::Tanh { name } => layers.push(LayerSpec { name: name_for(name, "tanh"), kind: LayerKind::Tanh }),
                LayerConfig::Sigmoid { name } => layers.push(LayerSpec { name: name_for(name, "sigmoid"), kind: LayerKind::Sigmoid }),
                LayerConfig::Gelu { name } => layers.push(LayerSpec { name: name_for(name, "gelu"), kind: LayerKind::Gelu }),
                LayerConfig::Dropout { name, rate } => {
                    layers.push(LayerSpec { name: name_for(name, "dropout"), kind: LayerKind::Dropout { rate: *rate } })
                }
                LayerConfig::Flatten { name } => layers.push(LayerSpec { name: name_for(name, "flatten"), kind: LayerKind::Flatten }),
            }
            origin.resize(layers.len(), i);
        }
        let spec = ModelSpec { input_shape: self.input_shape, num_classes: self.num_classes, layers };
        spec.shapes().map_err(|e| match e {
            EngineError::Shape { index, kind, name, message } => EngineError::Shape { index: origin[index], kind, name, message },
            other => other,
        })?;
        Ok(spec)
    }
}

/// The layer an `activation` key of `[[model.layers]]` entry `index` stands for.
fn push_activation(
    layers: &mut Vec<LayerSpec>,
    index: usize,
    activation: &Option<ActivationConfig>,
    name_for: &mut impl FnMut(&Option<String>, &str) -> String,
) -> Result<()> {
    let Some(config) = activation else { return Ok(()) };
    let f = config.resolve().map_err(|message| bad(format!("model.layers[{index}].activation"), message))?;
    if let Some(f) = f {
        layers.push(LayerSpec { name: name_for(&None, f.name()), kind: LayerKind::for_activation(f) });
    }
    Ok(())
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        let positive = |key: &str, v: usize| {
            if v == 0 { Err(bad(format!("train.{key}"), "must be at least 1, got 0")) } else { Ok(()) }
        };
        positive("epochs", self.epochs)?;
        positive("batch_size", self.batch_size)?;
        positive("eval_batch_size", self.eval_batch_size)?;
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(bad("train.learning_rate", format!("must be a positive number, got {}", self.learning_rate)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad("train.weight_decay", format!("must be zero or positive, got {}", self.weight_decay)));
        }
        let unit = |key: &str, v: f32| {
            if (0.0..1.0).contains(&v) { Ok(()) } else { Err(bad(format!("train.optimizer.{key}"), format!("must be in [0, 1), got {v}"))) }
        };
        match &self.optimizer {
            OptimizerConfig::Sgd => {}
            OptimizerConfig::Momentum { momentum, .. } => unit("momentum", *momentum)?,
            OptimizerConfig::Adam { beta1, beta2, epsilon } | OptimizerConfig::Adamw { beta1, beta2, epsilon } => {
                unit("beta1", *beta1)?;
                unit("beta2", *beta2)?;
                if !(epsilon.is_finite() && *epsilon > 0.0) {
                    return Err(bad("train.optimizer.epsilon", format!("must be a positive number, got {epsilon}")));
                }
            }
        }
        self.schedule.validate(self.learning_rate, self.epochs)?;
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return Err(bad("train.label_smoothing", format!("must be in [0, 1), got {}", self.label_smoothing)));
        }
        if let Some(augment) = &self.augment {
            augment.validate(None)?;
        }
        Ok(())
    }
}

impl ScheduleConfig {
    fn validate(&self, learning_rate: f32, epochs: usize) -> Result<()> {
        let positive = |key: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(bad(format!("train.schedule.{key}"), format!("must be a positive number, got {v}")))
            }
        };
        let rate = |v: f32| {
            if v > 0.0 && v <= 1.0 { Ok(()) } else { Err(bad("train.schedule.decay_rate", format!("must be in (0, 1], got {v}"))) }
        };
        match &self.decay {
            DecayConfig::Constant {} => {}
            DecayConfig::Exponential { decay_rate, decay_epochs } => {
                rate(*decay_rate)?;
                positive("decay_epochs", *decay_epochs)?;
            }
            DecayConfig::Step { decay_rate, step_epochs } => {
                rate(*decay_rate)?;
                if *step_epochs == 0 {
                    return Err(bad("train.schedule.step_epochs", "must be at least 1, got 0"));
                }
            }
            DecayConfig::Cosine { min_learning_rate } => {
                if !(0.0..=learning_rate).contains(min_learning_rate) {
                    return Err(bad(
                        "train.schedule.min_learning_rate",
                        format!("must be in [0, learning_rate = {learning_rate}], got {min_learning_rate}"),
                    ));
                }
            }
            DecayConfig::Onecycle { pct_start, div_factor, final_div_factor } => {
                if !(*pct_start > 0.0 && *pct_start < 1.0) {
                    return Err(bad("train.schedule.pct_start", format!("must be in (0, 1), got {pct_start}")));
                }
                for (key, v) in [("div_factor", *div_factor), ("final_div_factor", *final_div_factor)] {
                    if !(v.is_finite() && v >= 1.0) {
                        return Err(bad(format!("train.schedule.{key}"), format!("must be a number of at least 1, got {v}")));
                    }
                }
                if self.warmup_epochs != 0.0 || self.warmup_steps != 0 {
                    let key = if self.warmup_epochs != 0.0 { "warmup_epochs" } else { "warmup_steps" };
                    return Err(bad(
                        format!("train.schedule.{key}"),
                        "a one-cycle schedule warms up by itself (pct_start); leave warm-up out",
                    ));
                }
            }
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0 && self.warmup_epochs < epochs as f32) {
            return Err(bad(
                "train.schedule.warmup_epochs",
                format!("must be at least 0 and less than train.epochs = {epochs}, got {}", self.warmup_epochs),
            ));
        }
        if self.warmup_epochs != 0.0 && self.warmup_steps != 0 {
            return Err(bad("train.schedule.warmup_steps", "give warmup_epochs or warmup_steps, not both"));
        }
        Ok(())
    }
}

impl Shape {
    pub(crate) fn describe(&self) -> String {
        match self {
            Shape::Image { h, w, c } => format!("{h}x{w}x{c}"),
            Shape::Flat(n) => format!("a flat vector of {n}"),
        }
    }
}
