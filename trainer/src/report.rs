//! The results file: a JSON document a script can read.

use std::path::{Path, PathBuf};

use anyhow::Context;
use engine::metrics::ClassMetrics;
use engine::model::Config;
use engine::predictor::Mistake;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    /// Training time of the epoch (evaluation excluded).
    pub seconds: f64,
    pub images_per_second: f64,
    /// Time the training steps waited for prepared batches (augmentation falling behind).
    pub input_wait_seconds: f64,
    pub eval_seconds: f64,
    pub learning_rate: f64,
}

/// Training loss / accuracy averaged over a window of steps, for the plot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CurvePoint {
    pub epoch: f64,
    pub step: u64,
    pub loss: f64,
    pub accuracy: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub timestamp: u64,
    pub test_accuracy: f64,
    pub test_loss: f64,
    pub epochs: Vec<EpochRecord>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<u64>>,
    pub per_class: Vec<ClassMetrics>,
    pub train_images: usize,
    pub test_images: usize,
    pub parameters: usize,
    /// Training and evaluation time of the whole run, earlier runs it was resumed from included.
    pub total_seconds: f64,
    pub device: String,
    pub threads: usize,
    pub config_file: PathBuf,
    pub config: Config,
    pub export_path: PathBuf,
    /// The checkpoint this run continued from, if any.
    pub resumed_from: Option<PathBuf>,
    /// Where this run's checkpoints are, if it wrote any.
    pub checkpoints: Option<PathBuf>,
    pub peak_rss_bytes: Option<u64>,
    pub loss_curve: Vec<CurvePoint>,
    /// The final evaluation's most confident wrong predictions (test set indices).
    pub confident_mistakes: Vec<Mistake>,
}

/// Writes JSON atomically: a reader, or a crash at any moment, sees the whole file or none.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    engine::export::write_file_atomically(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// The process's peak resident set size (Linux `VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
