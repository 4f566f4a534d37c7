//! The training run: config -> network -> epochs (with test evaluation) -> export + results.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use engine::data::{Dataset, Split};
use engine::model::{Config, Network};
use engine::optim::{LrSchedule, Optimizer};
use engine::predictor::{Evaluation, Inference};
use engine::rng::SplitMix64;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::TrainArgs;
use crate::report::{CurvePoint, EpochRecord, Results, peak_rss_bytes};

/// Curve points recorded per epoch for the loss plot.
const CURVE_POINTS_PER_EPOCH: usize = 20;

pub fn run(args: &TrainArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args)?;
    let tc = config.train.clone();
    let spec = config.model_spec()?;
    let device = args.compute.open_device()?;
    let device_name = device.describe();

    let classes = spec.num_classes;
    let limit = |d: Dataset, n: Option<usize>| match n {
        Some(n) => d.truncate(n),
        None => d,
    };
    let train = limit(Dataset::load(&args.data.data_dir, Split::Train, classes)?, args.train_limit);
    let test = limit(Dataset::load(&args.data.data_dir, Split::Test, classes)?, args.test_limit);
    for data in [&train, &test] {
        data.check_input_shape(spec.input_shape)
            .with_context(|| format!("model.input_shape in {} does not fit the data", args.config_file.display()))?;
    }
    if train.is_empty() || test.is_empty() {
        bail!("no training or test images to use (check --train_limit / --test_limit)");
    }

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\ntrainer: interrupt received, stopping after this step (press Ctrl-C again to quit at once)");
        })
        .context("cannot install the Ctrl-C handler")?;
    }

    let mut network = Network::new(spec, device, tc.seed)?;
    network.set_label_smoothing(tc.label_smoothing)?;
    tracing::info!(
        "model: {} layers, {} parameters; device {device_name}; {} training and {} test images; {} epochs of batch {}",
        network.spec().layers.len(),
        network.parameter_count(),
        train.len(),
        test.len(),
        tc.epochs,
        tc.batch_size
    );
    let mut optimizer = Optimizer::new(&network, &tc.optimizer, tc.weight_decay);
    let steps_per_epoch = train.len().div_ceil(tc.batch_size);
    let schedule = LrSchedule::new(tc.learning_rate, &tc.schedule, steps_per_epoch, tc.epochs);
    let mut ws = network.workspace(tc.batch_size, true);
    if ws.capacity() < tc.batch_size {
        anyhow::bail!(
            "batch_size {} is too large for {device_name}: its largest activation must fit one {}-byte binding (at most {} examples)",
            tc.batch_size,
            network.device().max_tensor_bytes().unwrap_or(0),
            ws.capacity()
        );
    }
    let mut inference = Inference::new(&network, tc.eval_batch_size);

    let image_len = train.image_len();
    let mut order: Vec<u32> = (0..train.len() as u32).collect();
    let mut batch_pixels = vec![0u8; tc.batch_size * image_len];
    let mut batch_labels = vec![0u8; tc.batch_size];
    let mut shuffle_rng = SplitMix64::new(tc.seed ^ 0x0053_4855_4646_4C45);
    let log_every = (steps_per_epoch / CURVE_POINTS_PER_EPOCH).max(1);

    let mut epochs = Vec::new();
    let mut curve = Vec::new();
    let mut last_eval: Option<Evaluation> = None;
    let mut step = 0u32;
    let run_start = Instant::now();
    'epochs: for epoch in 1..=tc.epochs {
        shuffle_rng.shuffle(&mut order);
        let bar = progress_bar(train.len() as u64, &format!("epoch {epoch}/{}", tc.epochs));
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0u64, 0usize);
        let (mut win_loss, mut win_correct, mut win_seen) = (0.0f64, 0u64, 0usize);
        for (bi, idx) in order.chunks(tc.batch_size).enumerate() {
            if interrupted.load(Ordering::SeqCst) {
                bar.abandon();
                break 'epochs;
            }
            for (j, &i) in idx.iter().enumerate() {
                batch_pixels[j * image_len..(j + 1) * image_len].copy_from_slice(train.image(i as usize));
                batch_labels[j] = train.labels[i as usize];
            }
            let n = idx.len();
            let lr = schedule.at(step as usize);
            network.train_step(&mut ws, &mut optimizer, &batch_pixels[..n * image_len], &batch_labels[..n], lr, step);
            step += 1;
            bar.inc(n as u64);
            // The steps' loss and accuracy stay on the device until a report needs them.
            if (bi + 1) % log_every == 0 || bi + 1 == steps_per_epoch {
                for s in ws.take_stats() {
                    loss_sum += s.loss_sum as f64;
                    correct += s.correct as u64;
                    seen += s.examples;
                    win_loss += s.loss_sum as f64;
                    win_correct += s.correct as u64;
                    win_seen += s.examples;
                }
                if !win_loss.is_finite() {
                    bar.abandon();
                    bail!("training diverged: the loss is {} at epoch {epoch}, step {step}; lower train.learning_rate", win_loss);
                }
                let elapsed = start.elapsed().as_secs_f64();
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    win_loss / win_seen as f64,
                    100.0 * win_correct as f64 / win_seen as f64,
                    seen as f64 / elapsed
                ));
                curve.push(CurvePoint {
                    epoch: epoch as f64 - 1.0 + seen as f64 / train.len() as f64,
                    step: step as u64,
                    loss: win_loss / win_seen as f64,
                    accuracy: win_correct as f64 / win_seen as f64,
                });
                (win_loss, win_correct, win_seen) = (0.0, 0, 0);
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        bar.finish_and_clear();

        let eval_start = Instant::now();
        let eval_bar = progress_bar(test.len() as u64, &format!("evaluate {epoch}/{}", tc.epochs));
        let ev = inference.evaluate(&network, &test, |done| eval_bar.set_position(done as u64))?;
        eval_bar.finish_and_clear();
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            test_loss: ev.loss,
            test_accuracy: ev.accuracy,
            seconds,
            images_per_second: seen as f64 / seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            learning_rate: schedule.at(step.saturating_sub(1) as usize) as f64,
        };
        tracing::info!(
            "epoch {epoch}/{}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.1} s, {:.0} images/s",
            tc.epochs,
            record.train_loss,
            100.0 * record.train_accuracy,
            record.test_loss,
            100.0 * record.test_accuracy,
            record.seconds,
            record.images_per_second
        );
        epochs.push(record);
        last_eval = Some(ev);
    }
    if interrupted.load(Ordering::SeqCst) {
        tracing::warn!("interrupted after {step} steps ({} complete epochs): no model exported, no results written", epochs.len());
        return Ok(ExitCode::from(130));
    }
    let ev = last_eval.expect("at least one epoch ran");
    let total_train_seconds = run_start.elapsed().as_secs_f64();

    let stamp = free_timestamp(&args.model_dir.join("output"), &args.result_dir);
    let summary = serde_json::json!({
        "test_accuracy": ev.accuracy,
        "test_loss": ev.loss,
        "epochs": epochs,
        "train_images": train.len(),
        "test_images": test.len(),
        "device": device_name,
        "config": config,
        "config_file": args.config_file,
    });
    let export_dir = engine::export::write(&args.model_dir.join("output"), &stamp.to_string(), &network, summary, stamp)
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
        total_seconds: total_train_seconds,
        device: device_name,
        threads: rayon::current_num_threads(),
        config_file: args.config_file.clone(),
        config,
        export_path: export_dir.clone(),
        peak_rss_bytes: peak_rss_bytes(),
        loss_curve: curve,
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

fn load_config(args: &TrainArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(&args.config_file)?;
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
    t.validate().map_err(|e| anyhow::anyhow!("after command-line overrides: {e}"))?;
    Ok(config)
}

fn write_outputs(result_dir: &Path, results: &Results, test: &Dataset) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(result_dir).with_context(|| format!("cannot create {}", result_dir.display()))?;
    let json_path = result_dir.join(format!("{}.json", results.timestamp));
    let png_path = result_dir.join(format!("{}.png", results.timestamp));
    crate::report::write_json(&json_path, results)?;
    crate::plot::write_png(&png_path, results, test).with_context(|| format!("cannot draw {}", png_path.display()))?;
    Ok((json_path, png_path))
}

/// Unix seconds now, moved forward past any export or result that already uses it.
fn free_timestamp(output_dir: &Path, result_dir: &Path) -> u64 {
    let mut t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    while output_dir.join(t.to_string()).exists() || result_dir.join(format!("{t}.json")).exists() {
        t += 1;
    }
    t
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
