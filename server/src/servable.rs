//! One loaded model version: the network on the process's device, its model file, and a pool
//! of inference workspaces so concurrent calls never share buffers.

use std::path::Path;
use std::sync::Mutex;

use engine::Device;
use engine::export::ModelFile;
use engine::model::Network;
use engine::predictor::{Inference, Prediction};

pub struct Servable {
    pub name: String,
    pub version: i64,
    pub model: ModelFile,
    network: Network,
    workspaces: Mutex<Vec<Inference>>,
    workspace_capacity: usize,
}

impl Servable {
    /// Loads `<dir>` (architecture validated, weights verified against their sha256) onto the
    /// shared `device`, then warms it with one prediction so the first request pays no
    /// first-call costs.
    pub fn load(name: &str, version: i64, dir: &Path, device: &Device, workspace_capacity: usize) -> engine::Result<Self> {
        let (model, network) = engine::export::load(dir, device.clone())?;
        let servable = Self {
            name: name.to_string(),
            version,
            model,
            network,
            workspaces: Mutex::new(Vec::new()),
            workspace_capacity: workspace_capacity.max(1),
        };
        servable.predict(&vec![0.0; servable.input_len()])?;
        Ok(servable)
    }

    pub fn input_len(&self) -> usize {
        self.network.input_len()
    }

    pub fn num_classes(&self) -> usize {
        self.network.num_classes()
    }

    /// Input shape `[h, w, c]` of one example.
    pub fn input_shape(&self) -> [usize; 3] {
        self.network.spec().input_shape
    }

    /// One engine call over `images` (whole examples, NHWC floats in [0, 1]).
    pub fn predict(&self, images: &[f32]) -> engine::Result<Prediction> {
        let pooled = self.workspaces.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut inference = pooled.unwrap_or_else(|| Inference::new(&self.network, self.workspace_capacity));
        let result = inference.predict(&self.network, images);
        self.workspaces.lock().unwrap_or_else(|e| e.into_inner()).push(inference);
        result
    }
}
