//! Model files: `<dir>/model.json` (format, architecture, input / outputs / signature, training
//! summary, sha256 and size of the weights) and `<dir>/weights.safetensors` (one f32 tensor per
//! parameter). An export is written into a temporary sibling directory and renamed into place,
//! so a reader never sees half a model.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::model::fold::fold_batchnorm;
use crate::model::{ModelSpec, Network};

pub const FORMAT: &str = "mnist-cnn";
pub const FORMAT_VERSION: u32 = 1;
pub const MODEL_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "weights.safetensors";
pub const INPUT_NAME: &str = "images";
pub const SIGNATURE_NAME: &str = "serving_default";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelFile {
    pub format: String,
    pub format_version: u32,
    pub created_unix: u64,
    pub architecture: ModelSpec,
    pub input: TensorSpec,
    pub outputs: Vec<TensorSpec>,
    pub signature: Signature,
    /// Free-form summary of the run that produced the model (config, accuracy, device ...).
    pub training: serde_json::Value,
    pub weights: WeightsInfo,
}

/// A named tensor of a signature; `-1` marks the batch dimension.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_shapes: Vec<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f32; 2]>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Signature {
    pub name: String,
    pub method_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WeightsInfo {
    pub file: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub parameters: usize,
}

/// Writes `network` as `<parent>/<name>/` atomically and returns that directory.
pub fn write(parent: &Path, name: &str, network: &Network, training: serde_json::Value, created_unix: u64) -> Result<PathBuf> {
    write_dir_atomically(parent, name, "an export", |tmp| write_files(tmp, network, training, created_unix))
}

/// Creates `<parent>/<name>/` so that a reader, or a crash at any moment, sees the whole
/// directory or none: `fill` writes the files (each synced, e.g. with [`write_synced`]) into a
/// hidden sibling, which is then renamed into place and the rename synced. An existing `name`
/// is never overwritten (`what` names it in the error).
pub fn write_dir_atomically(parent: &Path, name: &str, what: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    fs::create_dir_all(parent).map_err(|e| EngineError::io(parent, format!("cannot create directory: {e}")))?;
    let target = parent.join(name);
    if target.exists() {
        return Err(EngineError::io(&target, format!("already exists; refusing to overwrite {what}")));
    }
    remove_stale_partials(parent);
    let tmp = parent.join(format!(".{name}{PARTIAL}{}", std::process::id()));
    let result = fs::create_dir_all(&tmp)
        .map_err(|e| EngineError::io(&tmp, e))
        .and_then(|()| fill(&tmp))
        .and_then(|()| fs::rename(&tmp, &target).map_err(|e| EngineError::io(&target, format!("cannot move {what} into place: {e}"))))
        .and_then(|()| sync_dir(parent));
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result.map(|()| target)
}

/// Makes a rename in `dir` durable (a no-op where directories cannot be opened).
fn sync_dir(dir: &Path) -> Result<()> {
    match fs::File::open(dir) {
        Ok(d) => d.sync_all().map_err(|e| EngineError::io(dir, format!("cannot sync the directory: {e}"))),
        Err(_) => Ok(()),
    }
}

/// Marks a hidden work-in-progress sibling: `.<name>.partial-<pid>`.
const PARTIAL: &str = ".partial-";

/// Removes the hidden partial exports and files of processes that no longer run (a trainer
/// killed with SIGKILL cannot clean up after itself). Only on Linux, where `/proc` tells.
fn remove_stale_partials(dir: &Path) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.starts_with('.')).and_then(|n| n.rsplit_once(PARTIAL)).map(|(_, pid)| pid) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let path = entry.path();
            let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        }
    }
}

/// Writes `bytes` to `path` so that a reader (or a crash at any moment) sees either nothing or
/// the whole file: a hidden sibling is written, synced and renamed into place.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    remove_stale_partials(dir);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}{PARTIAL}{}", std::process::id()));
    let result = write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn write_files(dir: &Path, network: &Network, training: serde_json::Value, created_unix: u64) -> Result<()> {
    let params = network.export_params();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        params.iter().map(|(name, shape, values)| (name.clone(), shape.clone(), bytemuck::cast_slice(values).to_vec())).collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| Ok((name.as_str(), TensorView::new(Dtype::F32, shape.clone(), data)?)))
        .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(|e| EngineError::Tensor { name: "weights".into(), message: e.to_string() })?;
    let weights =
        safetensors::serialize(views, None).map_err(|e| EngineError::Tensor { name: "weights".into(), message: e.to_string() })?;
    write_synced(&dir.join(WEIGHTS_FILE), &weights)?;
    let spec = network.spec();
    let [h, w, c] = spec.input_shape;
    let (h, w, c, k) = (h as i64, w as i64, c as i64, spec.num_classes as i64);
    let model = ModelFile {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        created_unix,
        architecture: spec.clone(),
        input: TensorSpec {
            name: INPUT_NAME.into(),
            dtype: "float32".into(),
            shape: vec![-1, h * w * c],
            accepted_shapes: vec![vec![-1, h * w * c], vec![-1, h, w], vec![-1, h, w, c]],
            range: Some([0.0, 1.0]),
        },
        outputs: vec![
            TensorSpec { name: "classes".into(), dtype: "int64".into(), shape: vec![-1], accepted_shapes: vec![], range: None },
            TensorSpec { name: "probabilities".into(), dtype: "float32".into(), shape: vec![-1, k], accepted_shapes: vec![], range: None },
        ],
        signature: Signature { name: SIGNATURE_NAME.into(), method_name: "tensorflow/serving/predict".into() },
        training,
        weights: WeightsInfo {
            file: WEIGHTS_FILE.into(),
            sha256: sha256_hex(&weights),
            size_bytes: weights.len() as u64,
            parameters: network.parameter_count(),
        },
    };
    let json = serde_json::to_vec_pretty(&model).map_err(|e| EngineError::io(dir.join(MODEL_FILE), e))?;
    write_synced(&dir.join(MODEL_FILE), &json)
}

/// Writes `bytes` to a new file at `path` and syncs it to disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = fs::File::create(path).map_err(|e| EngineError::io(path, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| EngineError::io(path, e))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Largest model.json read.
const MAX_MODEL_FILE_BYTES: u64 = 16 << 20;

/// Reads a regular file of at most `max` bytes: a FIFO, a device or a directory (also behind a
/// symlink) is refused before it is opened, and no more than `max + 1` bytes are read.
fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let missing = |message: String| EngineError::ModelMissing { path: path.to_path_buf(), message };
    let meta = fs::metadata(path).map_err(|e| missing(format!("cannot read: {e}")))?;
    if !meta.is_file() {
        return Err(EngineError::Model { path: path.to_path_buf(), message: "is not a regular file".into() });
    }
    let file = fs::File::open(path).map_err(|e| missing(format!("cannot read: {e}")))?;
    let mut bytes = Vec::with_capacity(meta.len().min(max) as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| missing(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(EngineError::Model { path: path.to_path_buf(), message: format!("is larger than {max} bytes") });
    }
    Ok(bytes)
}

/// Reads and validates `<dir>/model.json` alone (no weights).
pub fn read_model_file(dir: &Path) -> Result<ModelFile> {
    let path = dir.join(MODEL_FILE);
    let text = read_regular_file(&path, MAX_MODEL_FILE_BYTES)?;
    parse_model_file(&path, &text)
}

/// Parses and validates model.json's bytes (read from `path`, which errors name): the format,
/// the architecture through the validation gate, the weights file name.
pub fn parse_model_file(path: &Path, text: &[u8]) -> Result<ModelFile> {
    let bad = |message: String| EngineError::Model { path: path.to_path_buf(), message };
    let model: ModelFile = serde_json::from_slice(text).map_err(|e| bad(format!("invalid model file: {e}")))?;
    if model.format != FORMAT || model.format_version != FORMAT_VERSION {
        return Err(bad(format!(
            "format '{}' version {} is not supported (expected '{FORMAT}' version {FORMAT_VERSION})",
            model.format, model.format_version
        )));
    }
    model.architecture.parameters().map_err(|e| bad(e.to_string()))?;
    let file = &model.weights.file;
    if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
        return Err(bad(format!("weights.file '{file}' must be a file name inside the model directory")));
    }
    Ok(model)
}

/// Bytes a safetensors file of these parameters may hold: the f32 data and a header of at most
/// a few hundred bytes per tensor.
fn max_weights_bytes(params: &[(String, Vec<usize>)]) -> u64 {
    params.iter().map(|(name, shape)| 4 * shape.iter().product::<usize>() as u64 + 256 + 2 * name.len() as u64).sum::<u64>() + 4096
}

/// Loads an export onto `device`, verifying the weights' size and sha256 against model.json.
pub fn load(dir: &Path, device: Device) -> Result<(ModelFile, Network)> {
    let model = read_model_file(dir)?;
    let path = dir.join(&model.weights.file);
    let on_disk =
        fs::metadata(&path).map_err(|e| EngineError::ModelMissing { path: path.clone(), message: format!("cannot read: {e}") })?;
    if on_disk.is_file() {
        check_weights_size(&model, &path, on_disk.len())?;
    }
    let bytes = read_regular_file(&path, model.weights.size_bytes)?;
    let network = load_weights(&model, &path, &bytes, device)?;
    Ok((model, network))
}

/// The weights file's size against model.json and against what the architecture can hold,
/// before it is read.
fn check_weights_size(model: &ModelFile, path: &Path, size: u64) -> Result<()> {
    if size != model.weights.size_bytes {
        return Err(EngineError::ModelCorrupt {
            path: path.to_path_buf(),
            message: format!("{size} bytes, model.json says {} (incomplete copy?)", model.weights.size_bytes),
        });
    }
    let params =
        model.architecture.stored_tensors().map_err(|e| EngineError::Model { path: path.to_path_buf(), message: e.to_string() })?;
    if size > max_weights_bytes(&params) {
        return Err(EngineError::Model {
            path: path.to_path_buf(),
            message: format!("{size} bytes is more than the architecture's parameters can take"),
        });
    }
    Ok(())
}

/// Builds the network of a validated `model` from its weights file's bytes (read from `path`,
/// which errors name): size and sha256 against model.json, every stored tensor's name, dtype,
/// shape and finiteness against the architecture (and running variances not negative). The
/// network is for inference: batch normalisations after a conv2d or dense layer are folded
/// into it ([`fold_batchnorm`]).
pub fn load_weights(model: &ModelFile, path: &Path, bytes: &[u8], device: Device) -> Result<Network> {
    let bad = |message: String| EngineError::Model { path: path.to_path_buf(), message };
    let corrupt = |message: String| EngineError::ModelCorrupt { path: path.to_path_buf(), message };
    check_weights_size(model, path, bytes.len() as u64)?;
    let digest = sha256_hex(bytes);
    if digest != model.weights.sha256 {
        return Err(corrupt(format!("sha256 {digest} does not match model.json's {} (corrupt file?)", model.weights.sha256)));
    }
    let params = model.architecture.stored_tensors().map_err(|e| bad(e.to_string()))?;
    let tensors = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("invalid safetensors: {e}")))?;
    if tensors.len() != params.len() {
        return Err(bad(format!("{} tensors, the architecture has {} stored tensors", tensors.len(), params.len())));
    }
    let mut values = Vec::new();
    for (name, shape) in params {
        let view = tensors.tensor(&name).map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        if view.dtype() != Dtype::F32 || view.shape() != shape.as_slice() {
            return Err(bad(format!("tensor '{name}' is {:?} {:?}, expected F32 {shape:?}", view.dtype(), view.shape())));
        }
        let data: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!("tensor '{name}' holds {} at index {i}; parameters must be finite", data[i])));
        }
        if name.ends_with(".moving_variance")
            && let Some(i) = data.iter().position(|&v| v < 0.0)
        {
            return Err(bad(format!("tensor '{name}' holds {} at index {i}; a variance cannot be negative", data[i])));
        }
        values.push((name, shape, data));
    }
    let (spec, values) = fold_batchnorm(model.architecture.clone(), values);
    Network::from_params(spec, device, values)
}
