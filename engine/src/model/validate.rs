//! The one validation gate every architecture passes, whether it came from a config file or
//! from a `model.json`: sizes in range, no zero strides, dropout rates in [0, 1), unique layer
//! names, and (in [`ModelSpec::shapes`]) every shape product computed with checked arithmetic.
//! Nothing downstream (shape inference, parameter allocation, kernels) can panic on a spec
//! that passed it.

use super::spec::{LayerKind, LayerSpec, ModelSpec, Padding};
use crate::error::{EngineError, Result};

/// Largest image height or width, kernel, stride or explicit padding.
pub const MAX_SPATIAL: usize = 16_384;
/// Largest channel count, filter count, dense width or class count.
pub const MAX_WIDTH: usize = 1 << 20;
/// Most layers in one model.
pub const MAX_LAYERS: usize = 1_024;
/// Largest single tensor: one example's activation, or one parameter tensor (1 GiB of f32).
pub const MAX_TENSOR_ELEMENTS: usize = 1 << 28;
/// Most activation values of one example, all layers together (256 MiB of f32).
pub const MAX_EXAMPLE_VALUES: usize = 1 << 26;
/// Longest layer name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

fn in_range(what: &str, values: &[usize], max: usize) -> Result<(), String> {
    match values.iter().find(|&&v| v == 0 || v > max) {
        Some(&0) => Err(format!("{what} must be at least 1, got {values:?}")),
        Some(&v) => Err(format!("{what} must be at most {max}, got {v}")),
        None => Ok(()),
    }
}

impl ModelSpec {
    /// Checks every field that shape inference relies on; errors name the layer.
    pub fn validate(&self) -> Result<()> {
        let model = |message: String| EngineError::Spec { message };
        let [h, w, c] = self.input_shape;
        in_range("input_shape height and width", &[h, w], MAX_SPATIAL).map_err(model)?;
        in_range("input_shape channels", &[c], MAX_WIDTH).map_err(model)?;
        if h * w * c > MAX_TENSOR_ELEMENTS {
            return Err(model(format!("input_shape {:?} holds more than {MAX_TENSOR_ELEMENTS} values", self.input_shape)));
        }
        if !(2..=MAX_WIDTH).contains(&self.num_classes) {
            return Err(model(format!("num_classes must be between 2 and {MAX_WIDTH}, got {}", self.num_classes)));
        }
        if self.layers.is_empty() {
            return Err(model("the model has no layers".into()));
        }
        if self.layers.len() > MAX_LAYERS {
            return Err(model(format!("the model has {} layers; at most {MAX_LAYERS} are supported", self.layers.len())));
        }
        let mut names = std::collections::HashSet::new();
        for (i, layer) in self.layers.iter().enumerate() {
            layer.validate_fields().map_err(|message| layer.error(i, message))?;
            if !names.insert(layer.name.as_str()) {
                return Err(layer.error(i, format!("another layer is also named '{}'", layer.name)));
            }
        }
        Ok(())
    }
}

impl LayerSpec {
    fn validate_fields(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > MAX_NAME_BYTES {
            return Err(format!("a layer name must have 1 to {MAX_NAME_BYTES} bytes, got {}", self.name.len()));
        }
        match self.kind {
            LayerKind::Conv2d { filters, kernel, stride, padding } => {
                in_range("filters", &[filters], MAX_WIDTH)?;
                in_range("kernel_size", &kernel, MAX_SPATIAL)?;
                in_range("strides", &stride, MAX_SPATIAL)?;
                if let Padding::Explicit(p) = padding
                    && p > MAX_SPATIAL
                {
                    return Err(format!("padding must be at most {MAX_SPATIAL}, got {p}"));
                }
                Ok(())
            }
            LayerKind::MaxPool { size, stride } | LayerKind::AvgPool { size, stride } => {
                in_range("pool_size", &size, MAX_SPATIAL)?;
                in_range("strides", &stride, MAX_SPATIAL)
            }
            LayerKind::BatchNorm { momentum, .. } if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) => {
                Err(format!("momentum must be in [0, 1), got {momentum}"))
            }
            LayerKind::BatchNorm { epsilon, .. } if !(epsilon.is_finite() && epsilon > 0.0 && epsilon <= 1.0) => {
                Err(format!("epsilon must be in (0, 1], got {epsilon}"))
            }
            LayerKind::LeakyRelu { alpha } if !(alpha.is_finite() && (0.0..=1.0).contains(&alpha)) => {
                Err(format!("alpha must be in [0, 1], got {alpha}"))
            }
            LayerKind::Dense { units } => in_range("units", &[units], MAX_WIDTH),
            LayerKind::Dropout { rate } if !(rate.is_finite() && (0.0..1.0).contains(&rate)) => {
                Err(format!("rate must be in [0, 1), got {rate}"))
            }
            LayerKind::Dropout { .. }
            | LayerKind::BatchNorm { .. }
            | LayerKind::GlobalAvgPool
            | LayerKind::Relu
            | LayerKind::LeakyRelu { .. }
            | LayerKind::Tanh
            | LayerKind::Sigmoid
            | LayerKind::Gelu
            | LayerKind::Flatten => Ok(()),
        }
    }
}

/// `a * b * ...` when it stays within [`MAX_TENSOR_ELEMENTS`].
pub(crate) fn bounded_product(what: &str, dims: &[usize]) -> Result<usize, String> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
        .ok_or_else(|| format!("{what} {dims:?} would hold more than {MAX_TENSOR_ELEMENTS} values"))
}
