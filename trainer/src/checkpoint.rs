//! Checkpoints: everything a training run needs to continue exactly where it stopped, in
//! `<model_dir>/checkpoints/<run id>/<position>/`, written atomically like an export:
//!
//!     checkpoint.json     format; position (epochs done, steps into the next); the config; the
//!                         shuffle generator's state; data sizes; the results so far; an index
//!                         of the state file and its sha256
//!     state.safetensors   the network's state (`network/<name>`, what `Network::export_state`
//!                         gives), the optimizer's (`optimizer/<name>`) and the example order of
//!                         the epoch in progress (`shuffle_order`, u32)
//!
//! Positions are named `epoch-0002` (after two epochs) or `epoch-0002-step-000150` (150 steps
//! into the third), so names sort in training order.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use engine::HostTensor;
use engine::model::Config;
use engine::optim::OptimizerState;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::progress::RunProgress;

pub const FORMAT: &str = "mnist-cnn-checkpoint";
pub const FORMAT_VERSION: u32 = 1;
pub const META_FILE: &str = "checkpoint.json";
pub const STATE_FILE: &str = "state.safetensors";
const NETWORK_PREFIX: &str = "network/";
const OPTIMIZER_PREFIX: &str = "optimizer/";
const ORDER_TENSOR: &str = "shuffle_order";

/// Where a run stands: `epochs_done` complete epochs and `step_in_epoch` steps of the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epochs_done: usize,
    pub step_in_epoch: usize,
}

impl Position {
    pub fn dir_name(&self) -> String {
        match self.step_in_epoch {
            0 => format!("epoch-{:04}", self.epochs_done),
            s => format!("epoch-{:04}-step-{s:06}", self.epochs_done),
        }
    }

    /// Training steps taken, from the start of the run.
    pub fn step(&self, steps_per_epoch: usize) -> u64 {
        (self.epochs_done * steps_per_epoch + self.step_in_epoch) as u64
    }
}

/// The data a run trained and evaluated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataUsed {
    pub train_images: usize,
    pub test_images: usize,
    pub train_limit: Option<usize>,
    pub test_limit: Option<usize>,
}

/// checkpoint.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub format_version: u32,
    pub created_unix: u64,
    pub run_id: String,
    pub position: Position,
    pub steps_per_epoch: usize,
    /// The config the run trains with (command-line overrides applied).
    pub config: Config,
    /// The shuffle generator after the shuffle of the epoch in progress (at an epoch's start:
    /// before the next shuffle).
    pub shuffle_rng_state: u64,
    pub optimizer_steps: u64,
    pub data: DataUsed,
    pub progress: RunProgress,
    pub device: String,
    pub threads: usize,
    pub resumed_from: Option<PathBuf>,
    /// Tensor names in `state_file`, in the order the network and optimizer take them.
    pub network_tensors: Vec<String>,
    pub optimizer_tensors: Vec<String>,
    pub state_file: StateFile,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StateFile {
    pub name: String,
    pub sha256: String,
    pub size_bytes: u64,
}

/// A checkpoint in memory.
pub struct Checkpoint {
    pub meta: Meta,
    pub network: Vec<HostTensor>,
    pub optimizer: OptimizerState,
    /// The example order of the epoch in progress (at an epoch's start: of the last epoch).
    pub order: Vec<u32>,
    /// The directory it was read from (none for one not yet written).
    pub dir: Option<PathBuf>,
}

impl Checkpoint {
    /// Writes `<run_dir>/<position>/` atomically and returns it. `meta`'s tensor index and
    /// state file entry are filled in here.
    pub fn write(&mut self, run_dir: &Path) -> anyhow::Result<PathBuf> {
        let state = self.state_bytes()?;
        let meta = &mut self.meta;
        meta.network_tensors = self.network.iter().map(|(n, _, _)| n.clone()).collect();
        meta.optimizer_tensors = self.optimizer.tensors.iter().map(|(n, _, _)| n.clone()).collect();
        meta.optimizer_steps = self.optimizer.steps;
        meta.state_file = StateFile { name: STATE_FILE.into(), sha256: engine::export::sha256_hex(&state), size_bytes: state.len() as u64 };
        let json = serde_json::to_vec_pretty(&meta)?;
        let dir = engine::export::write_dir_atomically(run_dir, &meta.position.dir_name(), "a checkpoint", |tmp| {
            engine::export::write_synced(&tmp.join(STATE_FILE), &state)?;
            engine::export::write_synced(&tmp.join(META_FILE), &json)
        })?;
        self.dir = Some(dir.clone());
        Ok(dir)
    }

    fn state_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, shape, values) in &self.network {
            owned.push((format!("{NETWORK_PREFIX}{name}"), Dtype::F32, shape.clone(), f32_bytes(values)));
        }
        for (name, shape, values) in &self.optimizer.tensors {
            owned.push((format!("{OPTIMIZER_PREFIX}{name}"), Dtype::F32, shape.clone(), f32_bytes(values)));
        }
        let order: Vec<u8> = self.order.iter().flat_map(|i| i.to_le_bytes()).collect();
        owned.push((ORDER_TENSOR.into(), Dtype::U32, vec![self.order.len()], order));
        let views = owned
            .iter()
            .map(|(name, dtype, shape, bytes)| Ok((name.as_str(), TensorView::new(*dtype, shape.clone(), bytes)?)))
            .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()?;
        Ok(safetensors::serialize(views, None)?)
    }

    /// Reads and checks the checkpoint in `dir`: its format, the state file's size and sha256,
    /// and every tensor the index names. Errors name the file and what is wrong.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let meta_path = dir.join(META_FILE);
        let text = fs::read(&meta_path).with_context(|| format!("cannot read checkpoint {}", meta_path.display()))?;
        let meta: Meta =
            serde_json::from_slice(&text).with_context(|| format!("checkpoint {}: not a valid checkpoint file", meta_path.display()))?;
        if meta.format != FORMAT || meta.format_version != FORMAT_VERSION {
            bail!(
                "checkpoint {}: format '{}' version {} is not supported (expected '{FORMAT}' version {FORMAT_VERSION})",
                meta_path.display(),
                meta.format,
                meta.format_version
            );
        }
        let state_path = dir.join(STATE_FILE);
        let bad = |what: String| anyhow!("checkpoint {}: {what}", state_path.display());
        if meta.state_file.name != STATE_FILE {
            return Err(bad(format!("{META_FILE} names state file '{}'", meta.state_file.name)));
        }
        let bytes = fs::read(&state_path).with_context(|| format!("cannot read checkpoint {}", state_path.display()))?;
        if bytes.len() as u64 != meta.state_file.size_bytes {
            return Err(bad(format!("{} bytes, {META_FILE} says {} (incomplete copy?)", bytes.len(), meta.state_file.size_bytes)));
        }
        let digest = engine::export::sha256_hex(&bytes);
        if digest != meta.state_file.sha256 {
            return Err(bad(format!("sha256 {digest} does not match {META_FILE}'s {} (corrupt file?)", meta.state_file.sha256)));
        }
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("invalid safetensors: {e}")))?;
        let f32_tensor = |name: &str| -> anyhow::Result<HostTensor> {
            let view = tensors.tensor(name).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
            if view.dtype() != Dtype::F32 {
                return Err(bad(format!("tensor '{name}' is {:?}, expected F32", view.dtype())));
            }
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            Ok((name.to_string(), view.shape().to_vec(), values))
        };
        let strip = |(name, shape, values): HostTensor, prefix: &str| (name[prefix.len()..].to_string(), shape, values);
        let network = meta
            .network_tensors
            .iter()
            .map(|n| f32_tensor(&format!("{NETWORK_PREFIX}{n}")).map(|t| strip(t, NETWORK_PREFIX)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let optimizer = meta
            .optimizer_tensors
            .iter()
            .map(|n| f32_tensor(&format!("{OPTIMIZER_PREFIX}{n}")).map(|t| strip(t, OPTIMIZER_PREFIX)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let order_view = tensors.tensor(ORDER_TENSOR).map_err(|e| bad(format!("tensor '{ORDER_TENSOR}': {e}")))?;
        if order_view.dtype() != Dtype::U32 {
            return Err(bad(format!("tensor '{ORDER_TENSOR}' is {:?}, expected U32", order_view.dtype())));
        }
        let order: Vec<u32> = order_view.data().chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        if sorted.iter().enumerate().any(|(i, &v)| v as usize != i) || order.len() != meta.data.train_images {
            return Err(bad(format!("'{ORDER_TENSOR}' is not an order of the {} training images", meta.data.train_images)));
        }
        let optimizer = OptimizerState { steps: meta.optimizer_steps, tensors: optimizer };
        Ok(Self { meta, network, optimizer, order, dir: Some(dir.to_path_buf()) })
    }

    pub fn meta_path(&self) -> PathBuf {
        self.dir.as_deref().unwrap_or(Path::new(".")).join(META_FILE)
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.as_deref().unwrap_or(Path::new(".")).join(STATE_FILE)
    }
}

/// The checkpoint `dir` names: `dir` itself when it holds checkpoint.json, else the last (the
/// furthest trained) checkpoint in it, as in a run's directory of checkpoints.
pub fn resolve(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.join(META_FILE).is_file() {
        return Ok(dir.to_path_buf());
    }
    let entries = fs::read_dir(dir).with_context(|| format!("cannot read checkpoint directory {}", dir.display()))?;
    latest_in(dir).ok_or_else(|| {
        let runs: Vec<String> =
            entries.flatten().map(|e| e.path()).filter(|p| latest_in(p).is_some()).map(|p| p.display().to_string()).collect();
        let hint = if runs.is_empty() { String::new() } else { format!("; pass one of the runs in it: {}", runs.join(", ")) };
        anyhow!("{} holds no checkpoint ({META_FILE}, or epoch-* directories with one){hint}", dir.display())
    })
}

/// The last checkpoint directly inside `run_dir`.
fn latest_in(run_dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(run_dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("epoch-")) && p.join(META_FILE).is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Removes all but the newest `keep` checkpoints in `run_dir`.
pub fn prune(run_dir: &Path, keep: usize) -> anyhow::Result<()> {
    let mut found: Vec<PathBuf> = fs::read_dir(run_dir)
        .with_context(|| format!("cannot read {}", run_dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("epoch-")))
        .collect();
    found.sort();
    for old in &found[..found.len().saturating_sub(keep)] {
        fs::remove_dir_all(old).with_context(|| format!("cannot remove the old checkpoint {}", old.display()))?;
    }
    Ok(())
}
