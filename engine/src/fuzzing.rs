//! The bodies of the engine's fuzz targets (`fuzz/fuzz_targets/`), kept here so that the tests
//! replay the kept corpora (`fuzz/corpus/`) through exactly what the fuzzer runs. Each takes
//! arbitrary bytes and must return without panicking, whatever they hold.

use std::path::Path;

use crate::data::idx;
use crate::device::Device;
use crate::export;
use crate::model::Config;
use crate::predictor::Inference;

/// IDX files (MNIST images and labels).
pub fn idx_file(data: &[u8]) {
    for ndims in [1, 3] {
        let _ = idx::parse(Path::new("fuzz-idx"), data.to_vec(), ndims);
    }
}

/// The hyperparameter config (TOML) and the architecture it describes.
pub fn toml_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
}

/// Splits `data` into a model.json and a weights file: a little-endian u32 length of the
/// model.json, then its bytes, then the weights.
pub fn split_model_files(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let rest = &data[4..];
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// The inverse of [`split_model_files`], for writing seeds.
pub fn join_model_files(model_json: &[u8], weights: &[u8]) -> Vec<u8> {
    let mut out = (model_json.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(model_json);
    out.extend_from_slice(weights);
    out
}

/// Largest activation per example the target runs a prediction through (bounded memory).
const MAX_PREDICTED_VALUES: usize = 1 << 20;

/// model.json + weights.safetensors, loaded as the server loads a version. model.json's size and
/// sha256 are set to the weights' own, so mutations reach the safetensors parser and the shape
/// checks rather than stopping at the checksum; a model that loads runs one prediction.
pub fn model_files(data: &[u8]) {
    let Some((model_json, weights)) = split_model_files(data) else { return };
    let mut json: serde_json::Value = match serde_json::from_slice(model_json) {
        Ok(v) => v,
        Err(_) => return,
    };
    if let Some(w) = json.get_mut("weights").and_then(|w| w.as_object_mut()) {
        w.insert("sha256".into(), export::sha256_hex(weights).into());
        w.insert("size_bytes".into(), (weights.len() as u64).into());
    }
    let Ok(text) = serde_json::to_vec(&json) else { return };
    let Ok(model) = export::parse_model_file(Path::new("fuzz/model.json"), &text) else { return };
    let Ok(network) = export::load_weights(&model, Path::new("fuzz/weights.safetensors"), weights, Device::cpu()) else { return };
    let Ok(shapes) = model.architecture.shapes() else { return };
    if shapes.iter().all(|s| s.len() <= MAX_PREDICTED_VALUES) {
        let prediction = Inference::new(&network, 1).predict(&network, &vec![0.5; network.input_len()]);
        assert!(prediction.is_ok_and(|p| p.classes.len() == 1), "a loaded model predicts one class per image");
    }
}

/// Runs `run` on every kept input of `target` under `fuzz_dir` (`seeds/TARGET/` and
/// `regressions/TARGET/`), as the test suites do; a panic names the input. Returns how many ran.
pub fn replay_kept_inputs(fuzz_dir: &Path, target: &str, run: fn(&[u8])) -> usize {
    let mut files: Vec<std::path::PathBuf> = ["seeds", "regressions"]
        .iter()
        .filter_map(|kind| std::fs::read_dir(fuzz_dir.join(kind).join(target)).ok())
        .flat_map(|dir| dir.flatten().map(|e| e.path()))
        .collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz target {target} panics on {}", file.display());
        }
    }
    files.len()
}
