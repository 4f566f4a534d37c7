//! Model files: export -> load -> identical predictions; damaged exports are refused by name.

mod common;

use common::{EVERY_LAYER_CNN, SMALL_CNN, random};
use engine::export::{self, MODEL_FILE, WEIGHTS_FILE};
use engine::model::{Config, Network};
use engine::predictor::Predictor;
use engine::{Device, EngineError};

fn small_network(seed: u64) -> Network {
    Network::new(Config::parse(SMALL_CNN).unwrap().model_spec().unwrap(), Device::cpu(), seed).unwrap()
}

#[test]
fn round_trip_gives_identical_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_network(1);
    let images: Vec<f32> = random(7 * 784, 2).iter().map(|v| v.abs()).collect();
    let before = Predictor::new(small_network(1), 4).predict(&images).unwrap();
    let path = export::write(dir.path(), "123", &net, serde_json::json!({"note": "test"}), 123).unwrap();
    assert_eq!(path, dir.path().join("123"));
    let (model, loaded) = export::load(&path, Device::cpu()).unwrap();
    assert_eq!(model.architecture, *net.spec());
    assert_eq!(model.signature.name, "serving_default");
    assert_eq!(model.input.name, "images");
    assert_eq!(model.outputs.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(), ["classes", "probabilities"]);
    assert_eq!(model.weights.parameters, net.parameter_count());
    assert_eq!(model.training["note"], "test");
    let after = Predictor::new(loaded, 4).predict(&images).unwrap();
    assert_eq!(before, after, "bitwise-identical outputs after the round trip");
    assert_eq!(after.classes.len(), 7);
    for row in after.probabilities.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // nothing but the export itself was left behind
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("123")]);
}

/// A model with batch normalisations exports their running averages; loading it for inference
/// folds those right after a conv or dense layer into it (the one after an activation stays),
/// with the same predictions as the trained network.
#[test]
fn batch_norms_are_exported_and_folded_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Config::parse(EVERY_LAYER_CNN).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec.clone(), Device::cpu(), 3).unwrap();
    // Move the running averages and scales away from their initial values with a few steps.
    let mut opt = engine::optim::Optimizer::new(&net, &engine::model::OptimizerConfig::Sgd, 0.0);
    let mut ws = net.workspace(16, true);
    let pixels: Vec<u8> = (0..16 * 784).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..16).map(|i| i % 10).collect();
    for step in 0..5 {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 0.05, step);
    }
    let stored: Vec<String> = net.export_params().into_iter().map(|(name, _, _)| name).collect();
    assert!(stored.contains(&"batchnorm1.moving_variance".to_string()), "{stored:?}");
    let images: Vec<f32> = random(9 * 784, 5).iter().map(|v| v.abs()).collect();
    let mut inference = engine::predictor::Inference::new(&net, 9);
    let before = inference.predict(&net, &images).unwrap();
    let path = export::write(dir.path(), "7", &net, serde_json::json!({}), 7).unwrap();
    let (model, loaded) = export::load(&path, Device::cpu()).unwrap();
    assert_eq!(model.architecture, spec, "model.json keeps the trained architecture");
    let kept: Vec<&str> = loaded.spec().layers.iter().filter(|l| l.kind.type_name() == "batchnorm").map(|l| l.name.as_str()).collect();
    assert_eq!(kept, ["batchnorm2"], "the batch norms after conv1 and dense1 are folded, the one after tanh is not");
    let after = Predictor::new(loaded, 9).predict(&images).unwrap();
    assert_eq!(after.classes, before.classes);
    for (a, b) in after.probabilities.iter().zip(&before.probabilities) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn existing_export_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_network(1);
    export::write(dir.path(), "5", &net, serde_json::Value::Null, 5).unwrap();
    let e = export::write(dir.path(), "5", &net, serde_json::Value::Null, 5).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
}

fn damaged(edit: impl FnOnce(&std::path::Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = export::write(dir.path(), "1", &small_network(3), serde_json::Value::Null, 1).unwrap();
    edit(&path);
    match export::load(&path, Device::cpu()) {
        Ok(_) => panic!("a damaged export loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn corrupt_weights_fail_the_checksum() {
    let e = damaged(|p| {
        let f = p.join(WEIGHTS_FILE);
        let mut bytes = std::fs::read(&f).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        std::fs::write(&f, bytes).unwrap();
    });
    assert!(e.contains(WEIGHTS_FILE) && e.contains("sha256"), "{e}");
}

#[test]
fn truncated_weights_are_reported_as_incomplete() {
    let e = damaged(|p| {
        let f = p.join(WEIGHTS_FILE);
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert!(e.contains(WEIGHTS_FILE) && e.contains("incomplete"), "{e}");
}

#[test]
fn missing_or_invalid_model_json() {
    let e = damaged(|p| std::fs::remove_file(p.join(MODEL_FILE)).unwrap());
    assert!(e.contains(MODEL_FILE) && e.contains("cannot read"), "{e}");
    let e = damaged(|p| std::fs::write(p.join(MODEL_FILE), "{\"format\": 1").unwrap());
    assert!(e.contains(MODEL_FILE) && e.contains("invalid"), "{e}");
    let e = damaged(|p| {
        let text = std::fs::read_to_string(p.join(MODEL_FILE)).unwrap();
        std::fs::write(p.join(MODEL_FILE), text.replace("\"format_version\": 1", "\"format_version\": 99")).unwrap();
    });
    assert!(e.contains("version 99"), "{e}");
}

#[test]
fn parameters_must_match_the_architecture() {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let e = Network::from_params(spec, Device::cpu(), vec![("conv1.weight".into(), vec![5, 5, 1, 4], vec![0.0; 100])]).err().unwrap();
    assert!(matches!(e, EngineError::Tensor { .. }), "{e}");
}

#[test]
fn predictor_rejects_partial_images() {
    let mut p = Predictor::new(small_network(1), 2);
    let e = p.predict(&[0.5; 785]).unwrap_err().to_string();
    assert!(e.contains("images") && e.contains("785"), "{e}");
}
