//! The one validation gate: every architecture, whether from a config file or a model.json,
//! is checked before any shape arithmetic, and no model file can make loading panic.

mod common;

use std::path::{Path, PathBuf};

use common::SMALL_CNN;
use engine::export::{self, MODEL_FILE, WEIGHTS_FILE};
use engine::model::{Config, Network};
use engine::rng::SplitMix64;
use engine::{Device, EngineError};
use serde_json::{Value, json};

fn exported(dir: &Path) -> PathBuf {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let net = Network::new(spec, Device::cpu(), 5).unwrap();
    export::write(dir, "1", &net, Value::Null, 1).unwrap()
}

fn model_json(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(MODEL_FILE)).unwrap()).unwrap()
}

/// Loads the export after `edit` changed its model.json; the error, which must not be a panic.
fn load_edited(edit: impl FnOnce(&mut Value)) -> EngineError {
    let tmp = tempfile::tempdir().unwrap();
    let dir = exported(tmp.path());
    let mut model = model_json(&dir);
    edit(&mut model);
    std::fs::write(dir.join(MODEL_FILE), serde_json::to_vec(&model).unwrap()).unwrap();
    match export::load(&dir, Device::cpu()) {
        Ok(_) => panic!("the edited model loaded: {}", model["architecture"]),
        Err(e) => e,
    }
}

fn layer_index(model: &Value, kind: &str) -> usize {
    model["architecture"]["layers"].as_array().unwrap().iter().position(|l| l["type"] == kind).unwrap()
}

#[test]
fn a_zero_pool_stride_in_model_json_is_an_error_naming_the_file_and_layer() {
    let e = load_edited(|m| {
        let i = layer_index(m, "maxpool");
        m["architecture"]["layers"][i]["stride"] = json!([0, 0]);
    });
    let text = e.to_string();
    assert!(matches!(e, EngineError::Model { .. }), "{e:?}");
    assert!(text.contains(MODEL_FILE) && text.contains("maxpool 'pool1'") && text.contains("strides must be at least 1"), "{text}");
}

#[test]
fn every_bad_architecture_is_refused_by_name() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let layer = |kind: &'static str, field: &'static str, value: Value| -> Edit {
        Box::new(move |m: &mut Value| {
            let i = layer_index(m, kind);
            m["architecture"]["layers"][i][field] = value.clone();
        })
    };
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|m| m["architecture"]["layers"] = json!([])), "no layers"),
        (Box::new(|m| m["architecture"]["num_classes"] = json!(0)), "num_classes"),
        (Box::new(|m| m["architecture"]["input_shape"] = json!([0, 28, 1])), "input_shape"),
        (Box::new(|m| m["architecture"]["input_shape"] = json!([16384, 16384, 4096])), "input_shape"),
        (layer("conv2d", "stride", json!([0, 1])), "conv2d 'conv1'): strides must be at least 1"),
        (layer("conv2d", "kernel", json!([40, 40])), "does not fit input 28x28x1"),
        (layer("conv2d", "filters", json!(0)), "filters must be at least 1"),
        (layer("conv2d", "padding", json!(usize::MAX)), "padding must be at most"),
        (layer("conv2d", "filters", json!(1 << 20)), "more than"),
        (layer("maxpool", "size", json!([0, 2])), "pool_size must be at least 1"),
        (layer("maxpool", "size", json!([99, 99])), "does not fit"),
        (Box::new(|m| m["architecture"]["num_classes"] = json!(7)), "7 class logits"),
        (layer("dense", "units", json!(0)), "units must be at least 1"),
        (layer("dense", "name", json!("conv1")), "also named 'conv1'"),
        (layer("dense", "name", json!("")), "layer name"),
        (Box::new(|m| m["weights"]["file"] = json!("../../etc/passwd")), "must be a file name"),
        // Each tensor within bounds, but 28x28x262144 activations per example: refused, not allocated.
        (
            Box::new(|m| {
                let i = layer_index(m, "conv2d");
                m["architecture"]["layers"][i]["filters"] = json!(262_144);
                m["architecture"]["layers"][i]["stride"] = json!([1, 1]);
                m["architecture"]["layers"][i]["padding"] = json!("same");
            }),
            "activations of one example",
        ),
    ];
    for (edit, want) in cases {
        let e = load_edited(edit).to_string();
        assert!(e.contains(MODEL_FILE) && e.contains(want), "expected '{want}' in: {e}");
    }
}

#[test]
fn a_dropout_rate_outside_zero_one_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = exported(tmp.path());
    let mut model = model_json(&dir);
    let layers = model["architecture"]["layers"].as_array_mut().unwrap();
    layers.insert(1, json!({"name": "drop", "type": "dropout", "rate": 1.5}));
    std::fs::write(dir.join(MODEL_FILE), serde_json::to_vec(&model).unwrap()).unwrap();
    let e = export::read_model_file(&dir).unwrap_err().to_string();
    assert!(e.contains("dropout 'drop'") && e.contains("rate must be in [0, 1)"), "{e}");
}

#[test]
fn parameter_tensors_that_do_not_match_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = exported(tmp.path());
    // Weights of another architecture, with a matching checksum: only the shapes can tell.
    let other = Config::parse(&SMALL_CNN.replace("filters = 4", "filters = 5")).unwrap().model_spec().unwrap();
    let other = Network::new(other, Device::cpu(), 1).unwrap();
    let other_dir = export::write(tmp.path(), "2", &other, Value::Null, 2).unwrap();
    std::fs::copy(other_dir.join(WEIGHTS_FILE), dir.join(WEIGHTS_FILE)).unwrap();
    let mut model = model_json(&dir);
    model["weights"] = model_json(&other_dir)["weights"].clone();
    std::fs::write(dir.join(MODEL_FILE), serde_json::to_vec(&model).unwrap()).unwrap();
    let e = export::load(&dir, Device::cpu()).err().expect("refused").to_string();
    assert!(e.contains(WEIGHTS_FILE) && e.contains("conv1.weight") && e.contains("[3, 3, 1, 4]"), "{e}");
}

#[test]
fn non_finite_parameters_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let net = Network::new(spec.clone(), Device::cpu(), 5).unwrap();
    let mut params = net.export_params();
    params[1].2[2] = f32::NAN;
    let poisoned = Network::from_params(spec, Device::cpu(), params).unwrap();
    let dir = export::write(tmp.path(), "1", &poisoned, Value::Null, 1).unwrap();
    let e = export::load(&dir, Device::cpu()).err().expect("refused").to_string();
    assert!(e.contains("conv1.bias") && e.contains("NaN at index 2"), "{e}");
}

/// Numbers that break naive shape arithmetic: zero, one, powers of two at type boundaries.
const NASTY: [u64; 12] = [0, 1, 2, 3, 28, 65_535, 65_536, 1 << 31, 1 << 32, (1 << 32) + 1, 1 << 63, u64::MAX];

fn mutate_numbers(v: &mut Value, rng: &mut SplitMix64, rate: usize) {
    match v {
        Value::Number(_) if rng.below(rate) == 0 => *v = json!(NASTY[rng.below(NASTY.len())]),
        Value::Array(items) => items.iter_mut().for_each(|i| mutate_numbers(i, rng, rate)),
        Value::Object(map) => map.values_mut().for_each(|i| mutate_numbers(i, rng, rate)),
        _ => {}
    }
}

#[test]
fn no_model_json_numbers_make_loading_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = exported(tmp.path());
    let original = model_json(&dir);
    let mut rng = SplitMix64::new(42);
    for round in 0..400 {
        let mut model = original.clone();
        mutate_numbers(&mut model["architecture"], &mut rng, 3);
        std::fs::write(dir.join(MODEL_FILE), serde_json::to_vec(&model).unwrap()).unwrap();
        let outcome = std::panic::catch_unwind(|| export::load(&dir, Device::cpu()).map(|_| ()));
        assert!(outcome.is_ok(), "round {round}: loading panicked on {}", model["architecture"]);
    }
}

#[test]
fn config_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("zero-stride.config");
    std::fs::write(&path, SMALL_CNN.replace("type = \"maxpool\"", "type = \"maxpool\"\nstrides = 0")).unwrap();
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(e.contains("zero-stride.config: model.layers[1]: maxpool 'pool1': strides must be at least 1"), "{e}");
}

/// A weights file that is not a regular file (a FIFO would block the reader forever, a device
/// never ends) is refused before it is opened.
#[cfg(unix)]
#[test]
fn special_files_are_refused_without_reading_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = exported(tmp.path());
    let weights = dir.join(WEIGHTS_FILE);
    std::fs::remove_file(&weights).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &weights).unwrap();
    let mut model = model_json(&dir);
    model["weights"]["size_bytes"] = json!(0);
    std::fs::write(dir.join(MODEL_FILE), serde_json::to_vec(&model).unwrap()).unwrap();
    let e = export::load(&dir, Device::cpu()).err().expect("refused").to_string();
    assert!(e.contains(WEIGHTS_FILE) && e.contains("not a regular file"), "{e}");
    std::fs::remove_file(&weights).unwrap();
    let fifo = std::process::Command::new("mkfifo").arg(&weights).status().unwrap();
    assert!(fifo.success());
    let e = export::load(&dir, Device::cpu()).err().expect("refused").to_string();
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::remove_file(dir.join(MODEL_FILE)).unwrap();
    std::process::Command::new("mkfifo").arg(dir.join(MODEL_FILE)).status().unwrap();
    let e = export::load(&dir, Device::cpu()).err().expect("refused").to_string();
    assert!(e.contains(MODEL_FILE) && e.contains("not a regular file"), "{e}");
}
