//! The training run: config (or a checkpoint to resume) -> network -> epochs (see `session`) ->
//! export + results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use engine::data::augment::Augmenter;
use engine::data::{Dataset, Split};
use engine::model::{Config, Network};
use engine::optim::{LrSchedule, Optimizer};
use engine::predictor::Inference;
use engine::rng::SplitMix64;
use indicatif::{ProgressBar, ProgressStyle};

use crate::batches::BatchSource;
use crate::checkpoint::{self, Checkpoint, DataUsed, Position};
use crate::cli::{DEFAULT_CONFIG_FILE, TrainArgs};
use crate::progress::RunProgress;
use crate::report::{Results, peak_rss_bytes};
use crate::session::{Bookkeeping, CheckpointPlan, Outcome, Session, StopAt, StopReason};

/// Seeds the shuffle generator (with `train.seed`) apart from the other uses of the seed.
const SHUFFLE_STREAM: u64 = 0x0053_4855_4646_4C45;

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let resume = match &args.resume {
        Some(dir) => Some(Checkpoint::read(&checkpoint::resolve(dir)?)?),
        None => None,
    };
    let (config, config_source) = load_config(args, resume.as_ref())?;
    let tc = config.train.clone();
    let spec = config.model_spec()?;
    let device = args.compute.open_device()?;
    let device_name = device.describe();

    let (train_limit, test_limit) = match &resume {
        Some(r) => (args.train_limit.or(r.meta.data.train_limit), args.test_limit.or(r.meta.data.test_limit)),
        None => (args.train_limit, args.test_limit),
    };
    let limit = |d: Dataset, n: Option<usize>| match n {
        Some(n) => d.truncate(n),
        None => d,
    };
    let train = Arc::new(limit(Dataset::load(&args.data.data_dir, Split::Train, spec.num_classes)?, train_limit));
    let test = limit(Dataset::load(&args.data.data_dir, Split::Test, spec.num_classes)?, test_limit);
    for data in [&*train, &test] {
        data.check_input_shape(spec.input_shape)
            .with_context(|| format!("model.input_shape in {} does not fit the data", config_source.display()))?;
    }
    if train.is_empty() || test.is_empty() {
        bail!("no training or test images to use (check --train_limit / --test_limit)");
    }
    let steps_per_epoch = train.len().div_ceil(tc.batch_size);
    if let Some(r) = &resume {
        check_resumable(r, &config, train.len(), steps_per_epoch, &device_name)?;
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ntrainer: interrupt received, stopping after this step with a checkpoint (press Ctrl-C again to quit at once)");
        })
        .context("cannot install the Ctrl-C handler")?;
    }

    let mut network = Network::new(spec, device, tc.seed)?;
    network.set_label_smoothing(tc.label_smoothing)?;
    let mut optimizer = Optimizer::new(&network, &tc.optimizer, tc.weight_decay);
    let (position, shuffle, progress, resumed_from) = match resume {
        Some(r) => {
            let (meta_path, state_path) = (r.meta_path(), r.state_path());
            network.import_state(r.network).with_context(|| {
                format!(
                    "checkpoint {}: the network state does not fit the architecture in {}",
                    state_path.display(),
                    config_source.display()
                )
            })?;
            optimizer.import_state(r.optimizer).with_context(|| {
                format!(
                    "checkpoint {}: the optimizer state does not fit train.optimizer in {}",
                    state_path.display(),
                    config_source.display()
                )
            })?;
            let shuffle = crate::session::Shuffle::at(r.meta.position, r.order, SplitMix64::new(r.meta.shuffle_rng_state));
            tracing::info!(
                "resuming {} after {} epochs and {} steps",
                meta_path.display(),
                r.meta.position.epochs_done,
                r.meta.position.step_in_epoch
            );
            (r.meta.position, shuffle, r.meta.progress, r.dir)
        }
        None => {
            let start = Position { epochs_done: 0, step_in_epoch: 0 };
            let order = (0..train.len() as u32).collect();
            (start, crate::session::Shuffle::at(start, order, SplitMix64::new(tc.seed ^ SHUFFLE_STREAM)), RunProgress::default(), None)
        }
    };
    tracing::info!(
        "model: {} layers, {} parameters; device {device_name}; {} training and {} test images; {} epochs of batch {}",
        network.spec().layers.len(),
        network.parameter_count(),
        train.len(),
        test.len(),
        tc.epochs,
        tc.batch_size
    );
    let schedule = LrSchedule::new(tc.learning_rate, &tc.schedule, steps_per_epoch, tc.epochs);
    let ws = network.workspace(tc.batch_size, true);
    if ws.capacity() < tc.batch_size {
        bail!(
            "batch_size {} is too large for {device_name}: its largest activation must fit one {}-byte binding (at most {} examples)",
            tc.batch_size,
            network.device().max_tensor_bytes().unwrap_or(0),
            ws.capacity()
        );
    }
    let inference = Inference::new(&network, tc.eval_batch_size);
    let augmenter = tc.augment.as_ref().map(|a| Augmenter::new(a, tc.seed, train.rows, train.cols));
    let batches = BatchSource::spawn(train.clone(), tc.batch_size, augmenter, augment_threads(args, &network))?;

    let run_id = free_run_id(&args.model_dir.join("checkpoints"));
    let checkpoints = CheckpointPlan {
        run_dir: args.model_dir.join("checkpoints").join(&run_id),
        run_id,
        keep: args.keep_checkpoints,
        data: DataUsed { train_images: train.len(), test_images: test.len(), train_limit, test_limit },
        device: device_name.clone(),
        resumed_from: resumed_from.clone(),
    };
    let stop_at = StopAt { epochs: args.stop_after_epochs, step: args.stop_after_steps };
    let mut session = Session {
        config: &config,
        network,
        optimizer,
        ws,
        inference,
        schedule,
        batches,
        train: train.clone(),
        test: &test,
        shuffle,
        position,
        progress,
        checkpoints,
        stop_at,
        interrupted,
        bookkeeping: Bookkeeping::default(),
    };
    let ev = match session.run()? {
        Outcome::Finished(Some(ev)) => ev,
        Outcome::Finished(None) => session.inference.evaluate(&session.network, &test, |_| {})?,
        Outcome::Stopped { reason, checkpoint } => return Ok(report_stop(reason, checkpoint, &session)),
    };

    let epochs = session.progress.epochs.clone();
    let total_seconds = session.total_seconds();
    let network = &session.network;
    let stamp = free_timestamp(&args.model_dir.join("output"), &args.result_dir);
    let summary = serde_json::json!({
        "test_accuracy": ev.accuracy,
        "test_loss": ev.loss,
        "epochs": epochs,
        "train_images": train.len(),
        "test_images": test.len(),
        "device": device_name,
        "config": config,
        "config_file": config_source,
        "resumed_from": resumed_from,
    });
    let export_dir = engine::export::write(&args.model_dir.join("output"), &stamp.to_string(), network, summary, stamp)
        .with_context(|| format!("cannot export the model under {}", args.model_dir.display()))?;
    tracing::info!("model exported to {}", export_dir.display());

    let results = Results {
        timestamp: stamp,
        test_accuracy: ev.accuracy,
        test_loss: ev.loss,
        epochs,
        confusion_matrix: ev.confusion.counts.clone(),
        per_class: ev.confusion.per_class(),
        train_images: train.len(),
        test_images: test.len(),
        parameters: network.parameter_count(),
        total_seconds,
        device: device_name,
        threads: rayon::current_num_threads(),
        config_file: config_source,
        config: config.clone(),
        export_path: export_dir.clone(),
        resumed_from,
        checkpoints: session.checkpoints.run_dir.is_dir().then(|| session.checkpoints.run_dir.clone()),
        peak_rss_bytes: peak_rss_bytes(),
        loss_curve: session.progress.loss_curve.clone(),
        confident_mistakes: ev.confident_mistakes.clone(),
    };
    let (json_path, png_path) = write_outputs(&args.result_dir, &results, &test)?;
    tracing::info!("results written to {} and {}", json_path.display(), png_path.display());
    println!(
        "test accuracy {:.2}% (loss {:.4}); model {}; results {}",
        100.0 * results.test_accuracy,
        results.test_loss,
        export_dir.display(),
        json_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Says where the run stopped and how to continue it: exit 130 after Ctrl-C, 0 when asked to stop.
fn report_stop(reason: StopReason, checkpoint: Option<PathBuf>, session: &Session) -> ExitCode {
    let at = session.position;
    let saved = match &checkpoint {
        Some(dir) => format!("checkpoint {}; continue with `trainer --resume {}`", dir.display(), dir.display()),
        None => "no checkpoint written (--keep_checkpoints 0)".into(),
    };
    match reason {
        StopReason::Interrupted => {
            tracing::warn!(
                "interrupted after {} steps ({} complete epochs): no model exported, no results written; {saved}",
                at.step(session.train.len().div_ceil(session.config.train.batch_size)),
                at.epochs_done
            );
            ExitCode::from(130)
        }
        StopReason::Asked => {
            tracing::info!(
                "stopped as asked after {} complete epochs and {} steps: no model exported; {saved}",
                at.epochs_done,
                at.step_in_epoch
            );
            ExitCode::SUCCESS
        }
    }
}

/// The config to train with, and the file it came from: `--config_file`, else the checkpoint's
/// when resuming, else the default file; then the command-line overrides, validated.
fn load_config(args: &TrainArgs, resume: Option<&Checkpoint>) -> anyhow::Result<(Config, PathBuf)> {
    let (mut config, source) = match (&args.config_file, resume) {
        (Some(path), Some(r)) => {
            let config = Config::load(path)?;
            let same = serde_json::to_value(config.model_spec()?)? == serde_json::to_value(r.meta.config.model_spec()?)?;
            if !same {
                bail!(
                    "{}: the architecture ([model]) differs from the one of checkpoint {}; leave out --config_file to continue with the checkpoint's config",
                    path.display(),
                    r.meta_path().display()
                );
            }
            (config, path.clone())
        }
        (Some(path), None) => (Config::load(path)?, path.clone()),
        (None, Some(r)) => (r.meta.config.clone(), r.meta_path()),
        (None, None) => (Config::load(Path::new(DEFAULT_CONFIG_FILE))?, PathBuf::from(DEFAULT_CONFIG_FILE)),
    };
    let t = &mut config.train;
    if let Some(v) = args.epochs {
        t.epochs = v;
    }
    if let Some(v) = args.batch_size {
        t.batch_size = v;
    }
    if let Some(v) = args.learning_rate {
        t.learning_rate = v;
    }
    if let Some(v) = args.seed {
        t.seed = v;
    }
    config.validate().map_err(|e| anyhow::anyhow!("after command-line overrides: {e}"))?;
    Ok((config, source))
}

/// Refuses a checkpoint the run cannot continue from; warns where the continuation will not
/// match an uninterrupted run.
fn check_resumable(r: &Checkpoint, config: &Config, train_images: usize, steps_per_epoch: usize, device: &str) -> anyhow::Result<()> {
    let (meta, path) = (&r.meta, r.meta_path());
    let at = meta.position;
    if meta.data.train_images != train_images {
        bail!(
            "checkpoint {} was made with {} training images, this run has {train_images} (--train_limit)",
            path.display(),
            meta.data.train_images
        );
    }
    if at.step_in_epoch > 0 && steps_per_epoch != meta.steps_per_epoch {
        bail!(
            "checkpoint {} stopped {} steps into an epoch of {} steps; train.batch_size {} would make epochs of {steps_per_epoch} steps (resume with batch_size {} or from an epoch's checkpoint)",
            path.display(),
            at.step_in_epoch,
            meta.steps_per_epoch,
            config.train.batch_size,
            meta.config.train.batch_size
        );
    }
    let done = at.epochs_done + (at.step_in_epoch > 0) as usize;
    if config.train.epochs < done {
        bail!("checkpoint {} has trained {done} epochs; train.epochs is {} (pass --epochs)", path.display(), config.train.epochs);
    }
    let mut differences = Vec::new();
    if config.train != meta.config.train {
        differences.push("the training settings".to_string());
    }
    if device != meta.device {
        differences.push(format!("the device ({device}, was {})", meta.device));
    }
    if rayon::current_num_threads() != meta.threads {
        differences.push(format!("the thread count ({}, was {})", rayon::current_num_threads(), meta.threads));
    }
    if !differences.is_empty() {
        tracing::warn!("resuming with other {}: the result will differ from an uninterrupted run's", differences.join(", "));
    }
    Ok(())
}

/// `--augment_threads`, else one thread when the CPU trains (its cores are busy) and every core
/// when a GPU does.
fn augment_threads(args: &TrainArgs, network: &Network) -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    args.augment_threads.unwrap_or(if matches!(network.device(), engine::Device::Cpu(_)) { 1 } else { cores }).max(1)
}

fn write_outputs(result_dir: &Path, results: &Results, test: &Dataset) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(result_dir).with_context(|| format!("cannot create {}", result_dir.display()))?;
    let json_path = result_dir.join(format!("{}.json", results.timestamp));
    let png_path = result_dir.join(format!("{}.png", results.timestamp));
    crate::report::write_json(&json_path, results)?;
    crate::plot::write_png(&png_path, results, test).with_context(|| format!("cannot draw {}", png_path.display()))?;
    Ok((json_path, png_path))
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Unix seconds now, moved forward past any export or result that already uses it.
fn free_timestamp(output_dir: &Path, result_dir: &Path) -> u64 {
    let mut t = unix_seconds();
    while output_dir.join(t.to_string()).exists() || result_dir.join(format!("{t}.json")).exists() {
        t += 1;
    }
    t
}

/// This run's name among the checkpoints: unix seconds at its start, moved past names in use.
fn free_run_id(checkpoints_dir: &Path) -> String {
    let mut t = unix_seconds();
    while checkpoints_dir.join(t.to_string()).exists() {
        t += 1;
    }
    t.to_string()
}

pub fn progress_bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>14} [{bar:30}] {pos:>6}/{len:6} {elapsed_precise} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}
