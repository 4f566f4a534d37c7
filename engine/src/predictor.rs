//! Batched inference: images in, classes and probabilities out; and evaluation on a data set.

use crate::data::Dataset;
use crate::error::{EngineError, Result};
use crate::metrics::ConfusionMatrix;
use crate::model::{Network, Workspace};

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

    /// Accuracy, mean cross-entropy and confusion matrix over `data`, calling `progress(done)`.
    /// Images of another shape than the network's input are an error naming both.
    pub fn evaluate(&mut self, network: &Network, data: &Dataset, mut progress: impl FnMut(usize)) -> Result<Evaluation> {
        data.check_input_shape(network.spec().input_shape)?;
        let k = network.num_classes();
        let len = data.image_len();
        let mut confusion = ConfusionMatrix::new(k);
        let mut loss = 0.0f64;
        let batch = self.ws.capacity();
        for start in (0..data.len()).step_by(batch) {
            let end = (start + batch).min(data.len());
            let p = self.predict_u8(network, &data.images[start * len..end * len]);
            for (i, &label) in data.labels[start..end].iter().enumerate() {
                confusion.add(label as usize, p.classes[i] as usize);
                loss -= (p.probabilities[i * k + label as usize].max(1e-30) as f64).ln();
            }
            progress(end);
        }
        Ok(Evaluation { accuracy: confusion.accuracy(), loss: loss / data.len().max(1) as f64, confusion })
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
