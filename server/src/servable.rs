//! One loaded model version: the network on the process's device, its model file, and a pool
//! of inference workspaces so concurrent calls never share buffers.

use std::path::Path;
use std::sync::{Arc, Mutex};

use engine::Device;
use engine::export::ModelFile;
use engine::gpu::plan::InferencePlan;
use engine::model::Network;
use engine::predictor::{Inference, Prediction};

pub struct Servable {
    pub name: String,
    pub version: i64,
    pub model: ModelFile,
    network: Network,
    workspaces: Mutex<Vec<Inference>>,
    workspace_capacity: usize,
    /// WebGPU inference plans recorded so far, by batch size (the last few).
    plans: Mutex<Vec<(usize, Arc<InferencePlan>)>>,
}

/// Plans kept per version (each holds a copy of the weights).
const PLANS_KEPT: usize = 3;

impl Servable {
    /// Loads `<dir>` (architecture validated, weights verified against their sha256) onto the
    /// shared `device`, then warms it: `concurrency` inference workspaces (one per engine call
    /// that can be in flight), each run once at full capacity, so that the first requests pay
    /// no first-call costs and the version's memory is all in place (and steady) from the start.
    pub fn load(
        name: &str,
        version: i64,
        dir: &Path,
        device: &Device,
        workspace_capacity: usize,
        concurrency: usize,
    ) -> engine::Result<Self> {
        let (model, network) = engine::export::load(dir, device.clone())?;
        let workspace_capacity = workspace_capacity.max(1);
        let mut workspaces = Vec::new();
        for _ in 0..concurrency.max(1) {
            let mut inference = Inference::new(&network, workspace_capacity);
            inference.predict(&network, &vec![0.0; inference.capacity() * network.input_len()])?;
            workspaces.push(inference);
        }
        Ok(Self {
            name: name.to_string(),
            version,
            model,
            network,
            workspaces: Mutex::new(workspaces),
            workspace_capacity,
            plans: Mutex::new(Vec::new()),
        })
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

    /// The WebGPU inference plan of a batch of `batch` images (recorded once, then kept).
    pub fn inference_plan(&self, batch: usize) -> engine::Result<Arc<InferencePlan>> {
        if let Some((_, plan)) = self.plans.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(b, _)| *b == batch) {
            return Ok(plan.clone());
        }
        let plan = Arc::new(engine::gpu::plan::record(&self.network, batch)?);
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if plans.len() == PLANS_KEPT {
            plans.remove(0);
        }
        plans.push((batch, plan.clone()));
        Ok(plan)
    }

    /// The device the version runs on.
    pub fn device(&self) -> &Device {
        self.network.device()
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
