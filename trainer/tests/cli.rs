//! The `trainer` binary end to end: outputs, subcommands, and its error messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).env("RUST_LOG", "warn").output().expect("run trainer")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn quick_train(dir: &Path, extra: &[&str]) -> Output {
    let repo = repo();
    let (config, data) = (repo.join("trainer/HyperParams.config"), repo.join("data/mnist"));
    let (models, results) = (dir.join("models"), dir.join("results"));
    let mut args = vec![
        "--config_file",
        config.to_str().unwrap(),
        "--data_dir",
        data.to_str().unwrap(),
        "--model_dir",
        models.to_str().unwrap(),
        "--result_dir",
        results.to_str().unwrap(),
        "--epochs",
        "1",
        "--train_limit",
        "300",
        "--test_limit",
        "200",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    trainer(&args)
}

#[test]
fn trains_exports_and_writes_results() {
    let dir = tempfile::tempdir().unwrap();
    let out = quick_train(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let exports: Vec<PathBuf> = std::fs::read_dir(dir.path().join("models/output")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(exports.len(), 1, "one export, no leftovers: {exports:?}");
    let export = &exports[0];
    let stamp = export.file_name().unwrap().to_str().unwrap().to_string();
    assert!(stamp.parse::<u64>().unwrap() > 1_600_000_000, "unix seconds: {stamp}");
    assert!(export.join("model.json").is_file() && export.join("weights.safetensors").is_file());

    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("results/{stamp}.json"))).unwrap()).unwrap();
    let acc = results["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    assert!(results["test_loss"].as_f64().unwrap().is_finite());
    let epoch = &results["epochs"][0];
    for key in ["epoch", "train_loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second"] {
        assert!(!epoch[key].is_null(), "epochs[0].{key} missing");
    }
    let cm = results["confusion_matrix"].as_array().unwrap();
    assert_eq!(cm.len(), 10);
    let total: u64 = cm.iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 200);
    let per_class = results["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    for key in ["precision", "recall", "f1"] {
        assert!(per_class[0][key].is_number(), "per_class[0].{key}");
    }
    assert_eq!(results["config"]["train"]["epochs"], 1, "the config with overrides applied");
    assert!(results["device"].as_str().unwrap().starts_with("cpu"));
    assert_eq!(Path::new(results["export_path"].as_str().unwrap()), export);
    assert!(results["peak_rss_bytes"].as_u64().unwrap() > 0);

    let png = std::fs::read(dir.path().join(format!("results/{stamp}.png"))).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // The PNG's mistakes quadrant comes from these: wrong, test-set indices, most confident first.
    let mistakes = results["confident_mistakes"].as_array().unwrap();
    let wrong = total - (0..10).map(|i| cm[i][i].as_u64().unwrap()).sum::<u64>();
    assert_eq!(mistakes.len() as u64, wrong.min(engine::predictor::CONFIDENT_MISTAKES as u64));
    for m in mistakes {
        assert!(m["index"].as_u64().unwrap() < 200 && m["label"] != m["predicted"], "{m}");
    }
    let confidence: Vec<f64> = mistakes.iter().map(|m| m["probability"].as_f64().unwrap()).collect();
    assert!(confidence.windows(2).all(|w| w[0] >= w[1]), "{confidence:?}");

    // evaluate the export: the same accuracy on the same 200... here on the full test set
    let data = repo().join("data/mnist");
    let out =
        trainer(&["evaluate", "--model", export.to_str().unwrap(), "--data_dir", data.to_str().unwrap(), "--json", "--device", "cpu"]);
    assert!(out.status.success(), "{}", text(&out));
    let ev: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ev["test_images"], 10_000);
    assert!((0.0..=1.0).contains(&ev["test_accuracy"].as_f64().unwrap()));
    let out = trainer(&["evaluate", "--model", export.to_str().unwrap(), "--data_dir", data.to_str().unwrap(), "--device", "cpu"]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("test accuracy "), "{}", text(&out));
}

#[test]
fn dashed_flags_and_train_subcommand_work() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo();
    let out = trainer(&[
        "train",
        "--config-file",
        repo.join("trainer/HyperParams.config").to_str().unwrap(),
        "--data-dir",
        repo.join("data/mnist").to_str().unwrap(),
        "--model-dir",
        dir.path().join("m").to_str().unwrap(),
        "--result-dir",
        dir.path().join("r").to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--train-limit",
        "100",
        "--test-limit",
        "100",
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.path().join("m/output").read_dir().unwrap().count() == 1);
}

#[test]
fn bad_config_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.config");
    let text_in = std::fs::read_to_string(repo().join("trainer/HyperParams.config")).unwrap();
    std::fs::write(&config, text_in.replace("rate = 0.4", "rate = 4.0")).unwrap();
    let out = quick_train(dir.path(), &["--config_file", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("bad.config: model.layers[6]") && t.contains("rate must be in [0, 1)") && !t.contains("panicked"), "{t}");
    assert!(!dir.path().join("models").exists(), "nothing exported");
}

#[test]
fn bad_override_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = quick_train(dir.path(), &["--batch_size", "0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("train.batch_size"), "{}", text(&out));
}

#[test]
fn missing_data_says_how_to_fetch_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = quick_train(dir.path(), &["--data_dir", dir.path().join("nowhere").to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("nowhere") && t.contains("scripts/fetch-mnist") && !t.contains("panicked"), "{t}");
}

#[test]
fn gpu_without_an_adapter_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo();
    // No Metal on Linux: wgpu finds no adapter at all.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["--device", "gpu", "--config_file", repo.join("trainer/HyperParams.config").to_str().unwrap()])
        .args(["--data_dir", repo.join("data/mnist").to_str().unwrap()])
        .args(["--model_dir", dir.path().join("m").to_str().unwrap(), "--result_dir", dir.path().join("r").to_str().unwrap()])
        .env("WGPU_BACKEND", "metal")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert!(t.contains("no GPU adapter found") && t.contains("--device cpu") && !t.contains("panicked"), "{t}");
    assert!(!dir.path().join("m").exists(), "nothing exported");
}

/// A tiny CNN, cheap enough for a software GPU.
const SMALL_MODEL: &str = include_str!("../../engine/tests/fixtures/tiny_cnn.toml");

#[test]
fn trains_and_evaluates_on_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.config");
    std::fs::write(&config, format!("{SMALL_MODEL}\n[train]\nbatch_size = 20\nlearning_rate = 0.01\n")).unwrap();
    let out = quick_train(dir.path(), &["--config_file", config.to_str().unwrap(), "--device", "gpu", "--train_limit", "1000"]);
    assert!(out.status.success(), "{}", text(&out));
    let export = std::fs::read_dir(dir.path().join("models/output")).unwrap().next().unwrap().unwrap().path();
    let stamp = export.file_name().unwrap().to_str().unwrap().to_string();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(format!("results/{stamp}.json"))).unwrap()).unwrap();
    assert!(results["device"].as_str().unwrap().starts_with("gpu"), "{}", results["device"]);
    let trained = results["test_accuracy"].as_f64().unwrap();
    assert!(trained > 0.5, "1,000 images teach it something: {trained}");

    // The export evaluates to the same accuracy on either device.
    let data = repo().join("data/mnist");
    let evaluate = |device: &str| {
        let args = ["evaluate", "--model", export.to_str().unwrap(), "--data_dir", data.to_str().unwrap(), "--json", "--device", device];
        // As a user without a desktop session runs it: no loader noise on stderr.
        let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("NODEVICE_SELECT")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (gpu, cpu) = (evaluate("gpu"), evaluate("cpu"));
    assert!(gpu["device"].as_str().unwrap().starts_with("gpu"));
    let (g, c) = (gpu["test_accuracy"].as_f64().unwrap(), cpu["test_accuracy"].as_f64().unwrap());
    assert!((g - c).abs() <= 0.0002, "GPU {g} vs CPU {c} on 10,000 images");
}

#[test]
fn evaluate_names_a_broken_export() {
    let dir = tempfile::tempdir().unwrap();
    let out = trainer(&["evaluate", "--model", dir.path().to_str().unwrap()]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("model.json") && !t.contains("panicked"), "{t}");
}

#[test]
fn help_explains_the_flags() {
    let out = trainer(&["--help"]);
    assert!(out.status.success());
    let t = text(&out);
    for flag in [
        "--config_file",
        "--model_dir",
        "--result_dir",
        "--data_dir",
        "--epochs",
        "--batch_size",
        "--device",
        "evaluate",
        "--resume",
        "--keep_checkpoints",
        "--stop_after_epochs",
        "--stop_after_steps",
        "--augment_threads",
    ] {
        assert!(t.contains(flag), "--help lacks {flag}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_without_an_export() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let repo = repo();
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["--config_file", repo.join("trainer/HyperParams.config").to_str().unwrap()])
        .args(["--data_dir", repo.join("data/mnist").to_str().unwrap()])
        .args(["--model_dir", dir.path().join("models").to_str().unwrap()])
        .args(["--result_dir", dir.path().join("results").to_str().unwrap()])
        .args(["--epochs", "3", "--device", "cpu"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The handler is installed before the "model:" line is logged.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines.by_ref().map_while(Result::ok).any(|l| l.contains("model:"));
    assert!(started, "training did not start");
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "trainer did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("no model exported")), "{rest:?}");
    let exported = dir.path().join("models/output");
    assert!(!exported.exists() || exported.read_dir().unwrap().next().is_none(), "nothing in {}", exported.display());
    assert!(!dir.path().join("results").exists());

    // ... but a checkpoint where it stopped, named in the log, which a run continues from.
    let checkpoints = checkpoints_of(&dir.path().join("models"));
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    let checkpoint = &checkpoints[0];
    assert!(rest.iter().any(|l| l.contains(&format!("--resume {}", checkpoint.display()))), "{rest:?}");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(checkpoint.join("checkpoint.json")).unwrap()).unwrap();
    let step = meta["position"]["epochs_done"].as_u64().unwrap() * 600 + meta["position"]["step_in_epoch"].as_u64().unwrap();
    // One more step from there (on the same 60,000 images), then stop as asked.
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["--resume", checkpoint.to_str().unwrap(), "--stop_after_steps", &(step + 1).to_string()])
        .args(["--data_dir", repo.join("data/mnist").to_str().unwrap(), "--device", "cpu"])
        .args(["--model_dir", dir.path().join("models").to_str().unwrap()])
        .args(["--result_dir", dir.path().join("results").to_str().unwrap()])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("stopped as asked"), "{}", text(&out));
    assert_eq!(checkpoints_of(&dir.path().join("models")).len(), 2);
}

/// Every checkpoint under `<models>/checkpoints/<run>/`, in order of run and position.
fn checkpoints_of(models: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for run in std::fs::read_dir(models.join("checkpoints")).into_iter().flatten() {
        for c in std::fs::read_dir(run.unwrap().path()).unwrap() {
            let c = c.unwrap().path();
            if !c.file_name().unwrap().to_string_lossy().starts_with('.') {
                found.push(c);
            }
        }
    }
    found.sort();
    found
}

fn the_export(models: &Path) -> PathBuf {
    let exports: Vec<PathBuf> = std::fs::read_dir(models.join("output")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(exports.len(), 1, "{exports:?}");
    exports[0].clone()
}

fn results_of(dir: &Path) -> serde_json::Value {
    let files: Vec<PathBuf> = std::fs::read_dir(dir.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap()
}

/// A results file's epochs and curve without the timings, which differ from run to run.
fn measured(results: &serde_json::Value) -> serde_json::Value {
    let mut epochs = results["epochs"].clone();
    for e in epochs.as_array_mut().unwrap() {
        for timing in ["seconds", "images_per_second", "eval_seconds", "input_wait_seconds"] {
            e.as_object_mut().unwrap().remove(timing);
        }
    }
    serde_json::json!({"epochs": epochs, "loss_curve": results["loss_curve"], "mistakes": results["confident_mistakes"]})
}

fn resume(dir: &Path, checkpoint: &Path, extra: &[&str]) -> Output {
    let data = repo().join("data/mnist");
    let mut args =
        vec!["--resume", checkpoint.to_str().unwrap(), "--data_dir", data.to_str().unwrap(), "--device", "cpu", "--threads", "2"];
    let (models, results) = (dir.join("models"), dir.join("results"));
    args.extend(["--model_dir", models.to_str().unwrap(), "--result_dir", results.to_str().unwrap()]);
    args.extend_from_slice(extra);
    trainer(&args)
}

/// The issue's resume test: 2 epochs on 300 images, stopped after epoch 1 and resumed, give the
/// weights file of an uninterrupted 2-epoch run byte for byte, and the same results.
#[test]
fn a_run_resumed_after_epoch_1_matches_an_uninterrupted_run_bit_for_bit() {
    let (whole, parts) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = quick_train(whole.path(), &["--epochs", "2", "--threads", "2"]);
    assert!(out.status.success(), "{}", text(&out));

    let out = quick_train(parts.path(), &["--epochs", "2", "--threads", "2", "--stop_after_epochs", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!parts.path().join("models/output").exists() && !parts.path().join("results").exists(), "stopped before exporting");
    let checkpoints = checkpoints_of(&parts.path().join("models"));
    assert_eq!(checkpoints.iter().map(|c| c.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(), ["epoch-0001"]);
    for file in ["checkpoint.json", "state.safetensors"] {
        assert!(checkpoints[0].join(file).is_file(), "{file}");
    }
    // The run's directory resumes its last checkpoint.
    let out = resume(parts.path(), checkpoints[0].parent().unwrap(), &[]);
    assert!(out.status.success(), "{}", text(&out));

    let (a, b) = (the_export(&whole.path().join("models")), the_export(&parts.path().join("models")));
    let (wa, wb) = (std::fs::read(a.join("weights.safetensors")).unwrap(), std::fs::read(b.join("weights.safetensors")).unwrap());
    assert!(wa == wb, "the resumed run's weights differ from the uninterrupted run's");
    let (ra, rb) = (results_of(whole.path()), results_of(parts.path()));
    assert_eq!(measured(&ra), measured(&rb));
    assert_eq!(ra["epochs"].as_array().unwrap().len(), 2);
    assert_eq!(Path::new(rb["resumed_from"].as_str().unwrap()), checkpoints[0]);
}

/// Stopped in the middle of an epoch (as Ctrl-C stops it), with augmentation, label smoothing
/// and a warm-up before a cosine decay: the resumed run still matches bit for bit.
#[test]
fn a_run_resumed_mid_epoch_with_augmentation_matches_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("augmented.config");
    let reference = std::fs::read_to_string(repo().join("trainer/HyperParams.config")).unwrap();
    // The schedule is the reference config's last table: replaced whole.
    let schedule = reference.find("[train.schedule]").expect("a schedule table");
    let augmented = reference[..schedule].replace("seed = 1234", "seed = 1234\nlabel_smoothing = 0.1")
        + "[train.schedule]\ntype = \"cosine\"\nwarmup_steps = 2\n\n[train.augment]\ntranslation = 2\nrotation = 10\nscale = 0.1\nelastic_alpha = 34\n";
    assert_ne!(augmented, reference);
    std::fs::write(&config, augmented).unwrap();
    let (whole, parts) = (dir.path().join("whole"), dir.path().join("parts"));
    let common = ["--config_file", config.to_str().unwrap(), "--epochs", "2", "--threads", "2"];
    let out = quick_train(&whole, &[&common[..], &["--augment_threads", "1"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    // 300 images in batches of 100: 3 steps an epoch; stop before step 4 (the second of epoch 2).
    let out = quick_train(&parts, &[&common[..], &["--stop_after_steps", "4", "--augment_threads", "3"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let checkpoints = checkpoints_of(&parts.join("models"));
    assert_eq!(checkpoints.last().unwrap().file_name().unwrap(), "epoch-0001-step-000001", "{checkpoints:?}");
    let out = resume(&parts, checkpoints.last().unwrap(), &["--augment_threads", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let weights = |models: &Path| std::fs::read(the_export(models).join("weights.safetensors")).unwrap();
    assert!(weights(&whole.join("models")) == weights(&parts.join("models")), "the resumed run's weights differ");
    assert_eq!(measured(&results_of(&whole)), measured(&results_of(&parts)));
    assert_eq!(results_of(&parts)["config"]["train"]["augment"]["rotation"], 10.0);
}

/// A run with the tiny CNN (quick), checkpoints kept per --keep_checkpoints.
fn tiny_run(dir: &Path, extra: &[&str]) -> Output {
    let config = dir.join("tiny.config");
    std::fs::write(&config, format!("{SMALL_MODEL}\n[train]\nbatch_size = 50\n")).unwrap();
    quick_train(dir, &[&["--config_file", config.to_str().unwrap()], extra].concat())
}

#[test]
fn old_checkpoints_are_pruned_and_none_are_written_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_run(dir.path(), &["--epochs", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let names: Vec<String> =
        checkpoints_of(&dir.path().join("models")).iter().map(|c| c.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["epoch-0002", "epoch-0003"], "the newest 2 by default");
    let results = results_of(dir.path());
    assert!(Path::new(results["checkpoints"].as_str().unwrap()).is_dir());

    let none = tempfile::tempdir().unwrap();
    let out = tiny_run(none.path(), &["--epochs", "2", "--keep_checkpoints", "0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!none.path().join("models/checkpoints").exists());
    assert!(results_of(none.path())["checkpoints"].is_null());
}

#[test]
fn bad_or_mismatched_checkpoints_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = tiny_run(dir.path(), &["--epochs", "3", "--stop_after_epochs", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let checkpoint = checkpoints_of(&dir.path().join("models")).pop().unwrap();
    assert_eq!(checkpoint.file_name().unwrap(), "epoch-0002");
    let refused = |out: Output, words: &[&str]| {
        let t = text(&out);
        assert!(!out.status.success() && !t.contains("panicked"), "{t}");
        for w in words {
            assert!(t.contains(w), "'{w}' missing from: {t}");
        }
        assert!(!dir.path().join("models/output").exists(), "nothing exported");
    };
    // Another architecture given with --config_file.
    let reference = repo().join("trainer/HyperParams.config");
    refused(resume(dir.path(), &checkpoint, &["--config_file", reference.to_str().unwrap()]), &["HyperParams.config", "architecture"]);
    // Other training data.
    refused(resume(dir.path(), &checkpoint, &["--train_limit", "200"]), &["checkpoint.json", "300 training images"]);
    // Fewer epochs than it has trained.
    refused(resume(dir.path(), &checkpoint, &["--epochs", "1"]), &["checkpoint.json", "has trained 2 epochs", "train.epochs is 1"]);
    // No checkpoint there; a parent of runs names them.
    refused(resume(dir.path(), dir.path(), &[]), &["holds no checkpoint"]);
    refused(resume(dir.path(), &dir.path().join("models/checkpoints"), &[]), &["holds no checkpoint", "pass one of the runs"]);

    // A damaged state file.
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["checkpoint.json", "state.safetensors"] {
            std::fs::copy(checkpoint.join(f), to.join(f)).unwrap();
        }
        to
    };
    let damaged = copy("damaged");
    let mut state = std::fs::read(damaged.join("state.safetensors")).unwrap();
    let last = state.len() - 1;
    state[last] ^= 0x55;
    std::fs::write(damaged.join("state.safetensors"), state).unwrap();
    refused(resume(dir.path(), &damaged, &[]), &["state.safetensors", "sha256"]);
    // A checkpoint.json whose architecture is not the one the state was saved from.
    let edited = copy("edited");
    let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(edited.join("checkpoint.json")).unwrap()).unwrap();
    meta["config"]["model"]["layers"][0]["filters"] = 5.into();
    std::fs::write(edited.join("checkpoint.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
    refused(resume(dir.path(), &edited, &[]), &["state.safetensors", "does not fit the architecture", "conv1.weight"]);
    // Not a checkpoint file at all.
    let garbage = copy("garbage");
    std::fs::write(garbage.join("checkpoint.json"), "{\"format\": 3}").unwrap();
    refused(resume(dir.path(), &garbage, &[]), &["garbage/checkpoint.json", "not a valid checkpoint"]);

    // The untouched checkpoint still resumes.
    let out = resume(dir.path(), &checkpoint, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

/// Writes an IDX image file of `n` `rows`x`cols` images and its label file (labels `i % 10`).
fn write_idx(dir: &Path, images: &str, labels: &str, n: usize, rows: usize, cols: usize) {
    let mut bytes = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend((0..n * rows * cols).map(|i| (i * 31 % 256) as u8));
    std::fs::write(dir.join(images), bytes).unwrap();
    let mut bytes = vec![0, 0, 8, 1];
    bytes.extend_from_slice(&(n as u32).to_be_bytes());
    bytes.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(dir.join(labels), bytes).unwrap();
}

#[test]
fn data_of_another_image_size_is_refused_naming_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", 100, 28, 28);
    write_idx(&data, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 50, 20, 20);
    let config = repo().join("trainer/HyperParams.config");
    let out = trainer(&[
        "--config_file",
        config.to_str().unwrap(),
        "--data_dir",
        data.to_str().unwrap(),
        "--model_dir",
        dir.path().join("models").to_str().unwrap(),
        "--result_dir",
        dir.path().join("results").to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let t = text(&out);
    assert!(!out.status.success() && !t.contains("panicked"), "{t}");
    assert!(t.contains("t10k-images-idx3-ubyte") && t.contains("20x20x1") && t.contains("28x28x1"), "{t}");
    assert!(!dir.path().join("models/output").exists(), "nothing trained");

    let trained = quick_train(dir.path(), &[]);
    assert!(trained.status.success(), "{}", text(&trained));
    let export = std::fs::read_dir(dir.path().join("models/output")).unwrap().next().unwrap().unwrap().path();
    let out = trainer(&["evaluate", "--model", export.to_str().unwrap(), "--data_dir", data.to_str().unwrap()]);
    let t = text(&out);
    assert!(!out.status.success() && !t.contains("panicked"), "{t}");
    assert!(t.contains("20x20x1") && t.contains("28x28x1") && t.contains(export.to_str().unwrap()), "{t}");
}

/// SIGKILL at the worst moment, in the middle of writing the export: no visible partial export
/// and no partial results file; the next run clears the hidden leftovers.
#[test]
fn kill_9_during_export_leaves_nothing_partial() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // A wide dense layer: ~60 MB of weights, so the export takes a while to write and sync.
    let config = dir.path().join("wide.config");
    std::fs::write(
        &config,
        "[model]\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 20000\nactivation = \"relu\"\n\
         [[model.layers]]\ntype = \"dense\"\nunits = 10\n[train]\nepochs = 1\nbatch_size = 50\n",
    )
    .unwrap();
    let repo = repo();
    let (output, results) = (dir.path().join("models/output"), dir.path().join("results"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["--config_file", config.to_str().unwrap(), "--data_dir", repo.join("data/mnist").to_str().unwrap()])
        .args(["--model_dir", dir.path().join("models").to_str().unwrap(), "--result_dir", results.to_str().unwrap()])
        .args(["--train_limit", "50", "--test_limit", "50", "--device", "cpu"])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let partial =
        |d: &Path| d.read_dir().is_ok_and(|mut entries| entries.any(|e| e.unwrap().file_name().to_string_lossy().contains(".partial-")));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !partial(&output) {
        assert!(child.try_wait().unwrap().is_none(), "the trainer finished before its export could be interrupted");
        assert!(Instant::now() < deadline, "no export started");
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let visible = |d: &Path| -> Vec<PathBuf> {
        d.read_dir()
            .map(|r| r.map(|e| e.unwrap().path()).filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
            .unwrap_or_default()
    };
    assert_eq!(visible(&output), Vec::<PathBuf>::new(), "no visible export");
    assert_eq!(visible(&results), Vec::<PathBuf>::new(), "no results file");

    // The next run (a small model) clears the leftovers of the killed one.
    let out = quick_train(dir.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!partial(&output), "the killed run's partial export was removed");
    assert_eq!(visible(&output).len(), 1);
}
