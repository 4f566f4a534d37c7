//! Batched inference: images in, classes and probabilities out; and evaluation on a data set.

use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::metrics::ConfusionMatrix;
use crate::model::{Network, Workspace};
use serde::{Deserialize, Serialize};

/// Outputs for a batch: `classes[n]` and `probabilities[n * num_classes]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub classes: Vec<i64>,
    pub probabilities: Vec<f32>,
}

/// Accuracy, mean cross-entropy and confusion matrix on a data set.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
    pub confusion: ConfusionMatrix,
    /// The [`CONFIDENT_MISTAKES`] most confident wrong predictions (fewer if there are fewer),
    /// most confident first; equal confidences in data set order.
    pub confident_mistakes: Vec<Mistake>,
}

/// How many of the most confident wrong predictions an evaluation keeps.
pub const CONFIDENT_MISTAKES: usize = 32;

/// A wrong prediction: the example's index in the data set, its true class, the predicted
/// class and the probability the model gave that class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mistake {
    pub index: usize,
    pub label: usize,
    pub predicted: usize,
    pub probability: f32,
}

/// The most confident mistakes seen so far, in a buffer allocated once.
struct ConfidentMistakes {
    kept: Vec<Mistake>,
    limit: usize,
}

impl ConfidentMistakes {
    fn new(limit: usize) -> Self {
        Self { kept: Vec::with_capacity(limit), limit }
    }

    /// Keeps `m` if it is among the `limit` most confident so far (offered in index order).
    fn offer(&mut self, m: Mistake) {
        if self.limit == 0 || (self.kept.len() == self.limit && self.kept[self.limit - 1].probability >= m.probability) {
            return;
        }
        if self.kept.len() == self.limit {
            self.kept.pop();
        }
        let at = self.kept.partition_point(|k| k.probability >= m.probability);
        self.kept.insert(at, m);
    }
}

/// Inference buffers for one network and batches up to a capacity; larger inputs are split.
pub struct Inference {
    ws: Workspace,
    /// Host copy of the outputs: probabilities, then classes.
    host_outputs: Vec<f32>,
}

impl Inference {
    pub fn new(network: &Network, max_batch: usize) -> Self {
        let ws = network.workspace(max_batch, false);
        let cap = ws.capacity();
        Self { ws, host_outputs: vec![0.0; cap * (network.num_classes() + 1)] }
    }

    pub fn capacity(&self) -> usize {
        self.ws.capacity()
    }

    /// Predicts for `images`: `n * input_len` floats in [0, 1], NHWC.
    pub fn predict(&mut self, network: &Network, images: &[f32]) -> Result<Prediction> {
        let len = network.input_len();
        if !images.len().is_multiple_of(len) {
            return Err(EngineError::Tensor {
                name: crate::export::INPUT_NAME.into(),
                message: format!("{} values are not a whole number of {len}-value images", images.len()),
            });
        }
        let mut out = Prediction {
            classes: Vec::with_capacity(images.len() / len),
            probabilities: Vec::with_capacity(images.len() / len * network.num_classes()),
        };
        let _exclusive = network.device().lock_run();
        for chunk in images.chunks(self.ws.capacity() * len) {
            network.upload_f32(&mut self.ws, chunk)?;
            self.run_uploaded(network, chunk.len() / len, &mut out);
        }
        Ok(out)
    }

    /// Predicts for u8 pixels (`n * input_len` bytes, scaled to [0, 1] on the device).
    pub fn predict_u8(&mut self, network: &Network, pixels: &[u8]) -> Prediction {
        let mut out = Prediction { classes: Vec::new(), probabilities: Vec::new() };
        self.predict_u8_into(network, pixels, &mut out);
        out
    }

    /// Like [`Self::predict_u8`], appending to `out` (no allocation when it has room).
    pub fn predict_u8_into(&mut self, network: &Network, pixels: &[u8], out: &mut Prediction) {
        let len = network.input_len();
        let _exclusive = network.device().lock_run();
        for chunk in pixels.chunks(self.ws.capacity() * len) {
            network.upload_u8(&mut self.ws, chunk);
            self.run_uploaded(network, chunk.len() / len, out);
        }
    }

    fn run_uploaded(&mut self, network: &Network, n: usize, out: &mut Prediction) {
        let k = network.num_classes();
        network.infer_uploaded(&mut self.ws, n);
        self.ws.outputs.read_host_into(&mut self.host_outputs[..n * (k + 1)]);
        let (probs, classes) = self.host_outputs[..n * (k + 1)].split_at(n * k);
        out.classes.extend(classes.iter().map(|&c| c as i64));
        out.probabilities.extend_from_slice(probs);
    }

    /// Accuracy, mean cross-entropy, confusion matrix and the most confident mistakes over
    /// `data`, calling `progress(done)` after each batch. Buffers are allocated once per call, not
    /// per batch. Images of another shape than the network's input are an error naming both.
    pub fn evaluate(&mut self, network: &Network, data: &Dataset, mut progress: impl FnMut(usize)) -> Result<Evaluation> {
        data.check_input_shape(network.spec().input_shape)?;
        let k = network.num_classes();
        let len = data.image_len();
        let mut confusion = ConfusionMatrix::new(k);
        let mut mistakes = ConfidentMistakes::new(CONFIDENT_MISTAKES);
        let mut loss = 0.0f64;
        let batch = self.ws.capacity();
        let mut p = Prediction { classes: Vec::with_capacity(batch), probabilities: Vec::with_capacity(batch * k) };
        for start in (0..data.len()).step_by(batch) {
            let end = (start + batch).min(data.len());
            p.classes.clear();
            p.probabilities.clear();
            self.predict_u8_into(network, &data.images[start * len..end * len], &mut p);
            for (i, &label) in data.labels[start..end].iter().enumerate() {
                let (label, predicted) = (label as usize, p.classes[i] as usize);
                let probs = &p.probabilities[i * k..(i + 1) * k];
                confusion.add(label, predicted);
                loss -= (probs[label].max(1e-30) as f64).ln();
                if predicted != label {
                    mistakes.offer(Mistake { index: start + i, label, predicted, probability: probs[predicted] });
                }
            }
            progress(end);
        }
        Ok(Evaluation {
            accuracy: confusion.accuracy(),
            loss: loss / data.len().max(1) as f64,
            confusion,
            confident_mistakes: mistakes.kept,
        })
    }
}

/// A network that owns its inference buffers.
pub struct Predictor {
    network: Network,
    inference: Inference,
}

impl Predictor {
    pub fn new(network: Network, max_batch: usize) -> Self {
        let inference = Inference::new(&network, max_batch);
        Self { network, inference }
    }

    pub fn network(&self) -> &Network {
        &self.network
    }

    pub fn predict(&mut self, images: &[f32]) -> Result<Prediction> {
        self.inference.predict(&self.network, images)
    }

    pub fn predict_u8(&mut self, pixels: &[u8]) -> Prediction {
        self.inference.predict_u8(&self.network, pixels)
    }

    pub fn evaluate(&mut self, data: &Dataset, progress: impl FnMut(usize)) -> Result<Evaluation> {
        self.inference.evaluate(&self.network, data, progress)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mistake(index: usize, probability: f32) -> Mistake {
        Mistake { index, label: 0, predicted: 1, probability }
    }

    #[test]
    fn keeps_the_most_confident_in_order_without_growing() {
        let mut m = ConfidentMistakes::new(3);
        for (i, p) in [0.5, 0.9, 0.2, 0.9, 0.95, 0.1, 0.5].into_iter().enumerate() {
            m.offer(mistake(i, p));
            assert!(m.kept.capacity() == 3 && m.kept.len() <= 3);
        }
        let kept: Vec<(usize, f32)> = m.kept.iter().map(|k| (k.index, k.probability)).collect();
        assert_eq!(kept, [(4, 0.95), (1, 0.9), (3, 0.9)], "ties keep data set order");
        let mut none = ConfidentMistakes::new(0);
        none.offer(mistake(0, 1.0));
        assert!(none.kept.is_empty());
    }
}
