//! The resolved architecture (what model.json stores) and shape inference over it.

use serde::{Deserialize, Serialize};

use super::validate::{MAX_EXAMPLE_VALUES, bounded_product};
use crate::activation::Activation;
use crate::backend::{Conv2dGeometry, NormGeometry, PoolGeometry};
use crate::error::{EngineError, Result};

/// Convolution padding: TensorFlow's `same` / `valid`, or explicit zeros on every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "PaddingRepr", into = "PaddingRepr")]
pub enum Padding {
    Same,
    #[default]
    Valid,
    Explicit(usize),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum PaddingRepr {
    Name(String),
    Size(usize),
}

impl TryFrom<PaddingRepr> for Padding {
    type Error = String;
    fn try_from(r: PaddingRepr) -> Result<Self, String> {
        match r {
            PaddingRepr::Size(p) => Ok(Padding::Explicit(p)),
            PaddingRepr::Name(s) => match s.to_ascii_lowercase().as_str() {
                "same" => Ok(Padding::Same),
                "valid" => Ok(Padding::Valid),
                _ => Err(format!("padding must be \"same\", \"valid\" or a number of pixels, got \"{s}\"")),
            },
        }
    }
}

impl From<Padding> for PaddingRepr {
    fn from(p: Padding) -> Self {
        match p {
            Padding::Same => PaddingRepr::Name("same".into()),
            Padding::Valid => PaddingRepr::Name("valid".into()),
            Padding::Explicit(n) => PaddingRepr::Size(n),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum LayerKind {
    Conv2d {
        filters: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: Padding,
    },
    #[serde(rename = "maxpool")]
    MaxPool {
        size: [usize; 2],
        stride: [usize; 2],
    },
    #[serde(rename = "avgpool")]
    AvgPool {
        size: [usize; 2],
        stride: [usize; 2],
    },
    /// The mean of each channel over the whole image: `[h, w, c]` -> `[c]`.
    #[serde(rename = "global_avgpool")]
    GlobalAvgPool,
    Dense {
        units: usize,
    },
    /// Per channel (an image's) or per feature (a flat input): batch statistics in training,
    /// running averages (`running = momentum * running + (1 - momentum) * batch`) in inference.
    #[serde(rename = "batchnorm")]
    BatchNorm {
        momentum: f32,
        epsilon: f32,
    },
    Relu,
    #[serde(rename = "leaky_relu")]
    LeakyRelu {
        alpha: f32,
    },
    Tanh,
    Sigmoid,
    Gelu,
    Dropout {
        rate: f32,
    },
    Flatten,
}

impl LayerKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { .. } => "conv2d",
            LayerKind::MaxPool { .. } => "maxpool",
            LayerKind::AvgPool { .. } => "avgpool",
            LayerKind::GlobalAvgPool => "global_avgpool",
            LayerKind::Dense { .. } => "dense",
            LayerKind::BatchNorm { .. } => "batchnorm",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Flatten => "flatten",
            LayerKind::Relu | LayerKind::LeakyRelu { .. } | LayerKind::Tanh | LayerKind::Sigmoid | LayerKind::Gelu => {
                self.activation().expect("an activation layer").name()
            }
        }
    }

    /// The function of an activation layer.
    pub fn activation(&self) -> Option<Activation> {
        match *self {
            LayerKind::Relu => Some(Activation::Relu),
            LayerKind::LeakyRelu { alpha } => Some(Activation::LeakyRelu { alpha }),
            LayerKind::Tanh => Some(Activation::Tanh),
            LayerKind::Sigmoid => Some(Activation::Sigmoid),
            LayerKind::Gelu => Some(Activation::Gelu),
            _ => None,
        }
    }

    /// The layer for an activation function.
    pub fn for_activation(f: Activation) -> Self {
        match f {
            Activation::Relu => LayerKind::Relu,
            Activation::LeakyRelu { alpha } => LayerKind::LeakyRelu { alpha },
            Activation::Tanh => LayerKind::Tanh,
            Activation::Sigmoid => LayerKind::Sigmoid,
            Activation::Gelu => LayerKind::Gelu,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: LayerKind,
}

/// Shape of one example between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Image { h: usize, w: usize, c: usize },
    Flat(usize),
}

fn size_is_zero(shape: Shape) -> bool {
    match shape {
        Shape::Image { h, w, c } => h == 0 || w == 0 || c == 0,
        Shape::Flat(n) => n == 0,
    }
}

impl Shape {
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image { h, w, c } => h * w * c,
            Shape::Flat(n) => n,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a batch normalisation normalises over: an image's channels, a flat input's features.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Image { c, .. } => c,
            Shape::Flat(n) => n,
        }
    }

    /// Rows per example for a per-channel operation (an image's pixels; one for a flat input).
    pub fn rows(&self) -> usize {
        match *self {
            Shape::Image { h, w, .. } => h * w,
            Shape::Flat(_) => 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// `[height, width, channels]`.
    pub input_shape: [usize; 3],
    pub num_classes: usize,
    pub layers: Vec<LayerSpec>,
}

impl ModelSpec {
    pub fn input(&self) -> Shape {
        let [h, w, c] = self.input_shape;
        Shape::Image { h, w, c }
    }

    /// The input shape followed by every layer's output shape, after [`ModelSpec::validate`];
    /// an error names the layer that does not fit.
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        self.validate()?;
        let mut shapes = vec![self.input()];
        for (i, layer) in self.layers.iter().enumerate() {
            let out = layer.output_shape(*shapes.last().unwrap()).map_err(|message| layer.error(i, message))?;
            shapes.push(out);
        }
        let values = shapes.iter().try_fold(0usize, |acc, s| acc.checked_add(s.len())).filter(|&v| v <= MAX_EXAMPLE_VALUES);
        if values.is_none() {
            return Err(EngineError::Spec {
                message: format!("the activations of one example would hold more than {MAX_EXAMPLE_VALUES} values"),
            });
        }
        let last = shapes.last().unwrap();
        if *last != Shape::Flat(self.num_classes) {
            let i = self.layers.len() - 1;
            return Err(self.layers[i].error(
                i,
                format!(
                    "the model must end in {} class logits (a dense layer with units = {}), but outputs {}",
                    self.num_classes,
                    self.num_classes,
                    last.describe()
                ),
            ));
        }
        Ok(shapes)
    }

    /// Trainable parameter names and shapes, in layer order: `<layer>.weight` and
    /// `<layer>.bias` (conv2d, dense), `<layer>.gamma` and `<layer>.beta` (batchnorm).
    pub fn parameters(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let shapes = self.shapes()?;
        let mut params = Vec::new();
        for (i, (layer, input)) in self.layers.iter().zip(&shapes).enumerate() {
            let weight = match layer.kind {
                LayerKind::Conv2d { filters, kernel, .. } => {
                    let Shape::Image { c, .. } = *input else { unreachable!("checked by shapes()") };
                    vec![kernel[0], kernel[1], c, filters]
                }
                LayerKind::Dense { units } => vec![input.len(), units],
                LayerKind::BatchNorm { .. } => {
                    let channels = input.channels();
                    params.push((format!("{}.gamma", layer.name), vec![channels]));
                    params.push((format!("{}.beta", layer.name), vec![channels]));
                    continue;
                }
                _ => continue,
            };
            bounded_product("the weight tensor", &weight).map_err(|message| layer.error(i, message))?;
            let units = weight[weight.len() - 1];
            params.push((format!("{}.weight", layer.name), weight));
            params.push((format!("{}.bias", layer.name), vec![units]));
        }
        Ok(params)
    }

    /// Non-trainable state names and shapes, in layer order: `<layer>.moving_mean` and
    /// `<layer>.moving_variance` (batchnorm).
    pub fn state(&self) -> Result<Vec<(String, Vec<usize>)>> {
        let shapes = self.shapes()?;
        let mut state = Vec::new();
        for (layer, input) in self.layers.iter().zip(&shapes) {
            if let LayerKind::BatchNorm { .. } = layer.kind {
                state.push((format!("{}.moving_mean", layer.name), vec![input.channels()]));
                state.push((format!("{}.moving_variance", layer.name), vec![input.channels()]));
            }
        }
        Ok(state)
    }

    /// Every tensor a model file stores: the parameters, then the state.
    pub fn stored_tensors(&self) -> Result<Vec<(String, Vec<usize>)>> {
        Ok([self.parameters()?, self.state()?].concat())
    }
}

impl LayerSpec {
    pub(crate) fn error(&self, index: usize, message: String) -> EngineError {
        EngineError::Shape { index, kind: self.kind.type_name().into(), name: self.name.clone(), message }
    }

    fn output_shape(&self, input: Shape) -> Result<Shape, String> {
        let shape = self.unchecked_output_shape(input)?;
        let dims = match shape {
            Shape::Image { h, w, c } => vec![h, w, c],
            Shape::Flat(n) => vec![n],
        };
        bounded_product("the output", &dims)?;
        Ok(shape)
    }

    fn unchecked_output_shape(&self, input: Shape) -> Result<Shape, String> {
        match self.kind {
            LayerKind::Conv2d { filters, .. } => {
                let g = self.conv_geometry(input)?;
                debug_assert_eq!(g.out_c, filters);
                Ok(Shape::Image { h: g.out_h, w: g.out_w, c: g.out_c })
            }
            LayerKind::MaxPool { .. } | LayerKind::AvgPool { .. } => {
                let g = self.pool_geometry(input)?;
                Ok(Shape::Image { h: g.out_h, w: g.out_w, c: g.channels })
            }
            LayerKind::GlobalAvgPool => {
                let g = self.pool_geometry(input)?;
                Ok(Shape::Flat(g.channels))
            }
            LayerKind::Dense { units } => match input {
                Shape::Flat(_) => Ok(Shape::Flat(units)),
                Shape::Image { .. } => Err(format!("needs a flat input but gets {}; add a flatten layer before it", input.describe())),
            },
            LayerKind::Flatten => Ok(Shape::Flat(input.len())),
            LayerKind::BatchNorm { .. }
            | LayerKind::Relu
            | LayerKind::LeakyRelu { .. }
            | LayerKind::Tanh
            | LayerKind::Sigmoid
            | LayerKind::Gelu
            | LayerKind::Dropout { .. } => Ok(input),
        }
    }

    /// The batch normalisation's geometry for `input`.
    pub fn norm_geometry(&self, input: Shape) -> Result<NormGeometry, String> {
        let LayerKind::BatchNorm { momentum, epsilon } = self.kind else {
            return Err("not a batchnorm layer".into());
        };
        Ok(NormGeometry { rows: input.rows(), channels: input.channels(), momentum, epsilon })
    }

    /// The convolution's geometry for `input`, or why it does not fit.
    pub fn conv_geometry(&self, input: Shape) -> Result<Conv2dGeometry, String> {
        let LayerKind::Conv2d { filters, kernel, stride, padding } = self.kind else {
            return Err("not a conv2d layer".into());
        };
        let Shape::Image { h, w, c } = input else {
            return Err(format!("needs an image input [height, width, channels] but gets {}", input.describe()));
        };
        if stride.contains(&0) || size_is_zero(input) {
            return Err(format!("strides {stride:?} and input {} must have no zero dimension", input.describe()));
        }
        let axis = |size: usize, k: usize, s: usize| -> Result<(usize, usize), String> {
            match padding {
                Padding::Same => {
                    let out = size.div_ceil(s);
                    let total = ((out - 1) * s + k).saturating_sub(size);
                    Ok((out, total / 2))
                }
                Padding::Valid | Padding::Explicit(_) => {
                    let pad = if let Padding::Explicit(p) = padding { p } else { 0 };
                    let padded = pad.checked_mul(2).and_then(|p| p.checked_add(size)).filter(|&p| p >= k);
                    let Some(padded) = padded else {
                        return Err(format!("kernel {}x{} does not fit input {h}x{w}x{c} with padding {pad}", kernel[0], kernel[1]));
                    };
                    Ok(((padded - k) / s + 1, pad))
                }
            }
        };
        let (out_h, pad_top) = axis(h, kernel[0], stride[0])?;
        let (out_w, pad_left) = axis(w, kernel[1], stride[1])?;
        Ok(Conv2dGeometry {
            in_h: h,
            in_w: w,
            in_c: c,
            out_h,
            out_w,
            out_c: filters,
            kernel_h: kernel[0],
            kernel_w: kernel[1],
            stride_h: stride[0],
            stride_w: stride[1],
            pad_top,
            pad_left,
        })
    }

    /// The pooling geometry for `input`, or why it does not fit (a global average pool's window
    /// is the whole image).
    pub fn pool_geometry(&self, input: Shape) -> Result<PoolGeometry, String> {
        let Shape::Image { h, w, c } = input else {
            return Err(format!("needs an image input [height, width, channels] but gets {}", input.describe()));
        };
        let (size, stride) = match self.kind {
            LayerKind::MaxPool { size, stride } | LayerKind::AvgPool { size, stride } => (size, stride),
            LayerKind::GlobalAvgPool => ([h, w], [h, w]),
            _ => return Err("not a pooling layer".into()),
        };
        if stride.contains(&0) {
            return Err(format!("strides must be at least 1, got {stride:?}"));
        }
        if h < size[0] || w < size[1] {
            return Err(format!("pool window {}x{} does not fit input {h}x{w}x{c}", size[0], size[1]));
        }
        Ok(PoolGeometry {
            in_h: h,
            in_w: w,
            channels: c,
            out_h: (h - size[0]) / stride[0] + 1,
            out_w: (w - size[1]) / stride[1] + 1,
            size_h: size[0],
            size_w: size[1],
            stride_h: stride[0],
            stride_w: stride[1],
        })
    }
}
