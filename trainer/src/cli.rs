//! Command line. Flag names follow the TensorFlow trainer (`--config_file`, `--model_dir`,
//! `--result_dir`); the dashed spellings work too.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use engine::DeviceKind;

#[derive(Parser, Debug)]
#[command(
    name = "trainer",
    version,
    about = "Train the configurable MNIST CNN and export a servable model",
    long_about = "Train the CNN described by a hyperparameter config on MNIST, evaluate it on the 10,000 test images \
                  after every epoch, export it to <model_dir>/output/<unix-seconds>/ (model.json + weights.safetensors) \
                  and write results to <result_dir>/<unix-seconds>.json and .png.\n\n\
                  Without a subcommand, `trainer` trains.",
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train a model (the default).
    #[command(args_override_self = true)]
    Train(TrainArgs),
    /// Evaluate an exported model on the MNIST test set.
    #[command(args_override_self = true)]
    Evaluate(EvaluateArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Hyperparameter config (TOML): architecture and training settings [default:
    /// trainer/HyperParams.config; with --resume, the checkpoint's config].
    #[arg(long = "config_file", visible_alias = "config-file", value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// The export goes to <model_dir>/output/<unix-seconds>/, checkpoints to
    /// <model_dir>/checkpoints/<run>/.
    #[arg(long = "model_dir", visible_alias = "model-dir", value_name = "DIR", default_value = "trainer/models")]
    pub model_dir: PathBuf,
    /// Results go to <result_dir>/<unix-seconds>.json and .png.
    #[arg(long = "result_dir", visible_alias = "result-dir", value_name = "DIR", default_value = "trainer/results")]
    pub result_dir: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Override train.epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override train.batch_size.
    #[arg(long = "batch_size", visible_alias = "batch-size")]
    pub batch_size: Option<usize>,
    /// Override train.learning_rate.
    #[arg(long = "learning_rate", visible_alias = "learning-rate")]
    pub learning_rate: Option<f32>,
    /// Override train.seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train on the first N training images only (quick runs; with --resume, the checkpoint's).
    #[arg(long = "train_limit", visible_alias = "train-limit", value_name = "N")]
    pub train_limit: Option<usize>,
    /// Evaluate on the first N test images only (quick runs; with --resume, the checkpoint's).
    #[arg(long = "test_limit", visible_alias = "test-limit", value_name = "N")]
    pub test_limit: Option<usize>,
    /// Continue the run saved in a checkpoint: DIR is one checkpoint
    /// (<model_dir>/checkpoints/<run>/epoch-0001) or a run's directory (its last checkpoint).
    /// The checkpoint's config is used, with the overrides above; a --config_file given too
    /// must have the same architecture. With the same device and threads, the result is
    /// bitwise the one of an uninterrupted run.
    #[arg(long, value_name = "DIR")]
    pub resume: Option<PathBuf>,
    /// Checkpoints (written to <model_dir>/checkpoints/<run>/ after every epoch and when
    /// training stops early) kept per run: the newest N. 0 writes none.
    #[arg(long = "keep_checkpoints", visible_alias = "keep-checkpoints", value_name = "N", default_value_t = 2)]
    pub keep_checkpoints: usize,
    /// Stop once N epochs of the run are complete: write a checkpoint, export nothing, exit 0
    /// (continue later with --resume).
    #[arg(long = "stop_after_epochs", visible_alias = "stop-after-epochs", value_name = "N")]
    pub stop_after_epochs: Option<usize>,
    /// Stop before training step N of the run (counted from 0 over all epochs), as Ctrl-C
    /// would but exiting 0: a checkpoint in the middle of an epoch.
    #[arg(long = "stop_after_steps", visible_alias = "stop-after-steps", value_name = "N")]
    pub stop_after_steps: Option<u64>,
    /// Threads that prepare (with [train.augment]: distort) the training batches ahead of the
    /// step [default: 1 with --device cpu, whose cores train; every core with a GPU].
    /// The images do not depend on it.
    #[arg(long = "augment_threads", visible_alias = "augment-threads", value_name = "N")]
    pub augment_threads: Option<usize>,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

/// The config used when neither --config_file nor --resume gives one.
pub const DEFAULT_CONFIG_FILE: &str = "trainer/HyperParams.config";

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Directory with the four MNIST IDX files (fetch them with scripts/fetch-mnist).
    #[arg(long = "data_dir", visible_alias = "data-dir", value_name = "DIR", default_value = "data/mnist")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct ComputeArgs {
    /// cpu, gpu, or auto (a hardware GPU when one is usable, else the CPU).
    #[arg(long, default_value = "auto")]
    pub device: DeviceKind,
    /// CPU threads (default: one per core). The same seed and thread count give identical weights.
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Export directory (holding model.json and weights.safetensors).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Images per inference batch.
    #[arg(long = "batch_size", visible_alias = "batch-size", default_value_t = 1000)]
    pub batch_size: usize,
    /// Also time inference: median latency at batch 1 and images/s at batch 256.
    #[arg(long)]
    pub timing: bool,
    /// With --timing, also time these batch sizes (comma-separated, e.g. 8192); batch 1 and 256
    /// are always timed. The predictor then holds the largest at once.
    #[arg(long = "timing_batches", visible_alias = "timing-batches", value_delimiter = ',', value_name = "N,...")]
    pub timing_batches: Vec<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

impl Cli {
    /// The compute flags of whichever command runs.
    pub fn compute(&self) -> &ComputeArgs {
        match &self.command {
            Some(Command::Train(a)) => &a.compute,
            Some(Command::Evaluate(a)) => &a.compute,
            None => &self.train.compute,
        }
    }
}

impl ComputeArgs {
    /// Sizes rayon's global pool (before anything uses it), its workers flushing denormals.
    pub fn configure_threads(&self) -> anyhow::Result<()> {
        if let Some(t) = self.threads {
            anyhow::ensure!(t >= 1, "--threads must be at least 1");
        }
        engine::cpu::threads::configure(self.threads)?;
        Ok(())
    }

    pub fn open_device(&self) -> anyhow::Result<engine::Device> {
        Ok(engine::Device::open(self.device)?)
    }
}
