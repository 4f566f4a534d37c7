//! Inference-time rewriting of a trained model: a batch normalisation right after a conv2d or
//! dense layer is folded into that layer's weights and bias, so it costs nothing to serve:
//! `gamma * (W x + b - mean) / sqrt(var + eps) + beta` is `W' x + b'` with
//! `W' = s W`, `b' = s (b - mean) + beta`, `s = gamma / sqrt(var + eps)` per output channel.

use super::spec::{LayerKind, ModelSpec};

/// Stored tensors as [`super::Network::from_params`] takes them: `(name, shape, values)`.
pub type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// `spec` and its tensors with every foldable batch normalisation folded away (the others stay).
pub fn fold_batchnorm(mut spec: ModelSpec, mut tensors: Tensors) -> (ModelSpec, Tensors) {
    let mut i = 1;
    while i < spec.layers.len() {
        let (prev, layer) = (&spec.layers[i - 1], &spec.layers[i]);
        let LayerKind::BatchNorm { epsilon, .. } = layer.kind else {
            i += 1;
            continue;
        };
        if !matches!(prev.kind, LayerKind::Conv2d { .. } | LayerKind::Dense { .. }) {
            i += 1;
            continue;
        }
        let find = |layer: &str, tensor: &str| {
            let name = format!("{layer}.{tensor}");
            tensors.iter().position(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("validated tensors include {name}"))
        };
        let (w, b) = (find(&prev.name, "weight"), find(&prev.name, "bias"));
        let norm = ["gamma", "beta", "moving_mean", "moving_variance"].map(|t| find(&layer.name, t));
        let [gamma, beta, mean, var] = norm.map(|k| tensors[k].2.clone());
        let scale: Vec<f64> = gamma.iter().zip(&var).map(|(&g, &v)| g as f64 / (v as f64 + epsilon as f64).sqrt()).collect();
        let channels = scale.len();
        for (j, value) in tensors[w].2.iter_mut().enumerate() {
            *value = (*value as f64 * scale[j % channels]) as f32;
        }
        for (c, value) in tensors[b].2.iter_mut().enumerate() {
            *value = ((*value as f64 - mean[c] as f64) * scale[c] + beta[c] as f64) as f32;
        }
        let mut removed = norm;
        removed.sort_unstable();
        for k in removed.into_iter().rev() {
            tensors.remove(k);
        }
        spec.layers.remove(i);
    }
    (spec, tensors)
}
