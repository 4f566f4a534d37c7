use std::path::PathBuf;

/// Errors of the engine: each names the file, key, layer or tensor involved.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {message}")]
    Io { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Idx { path: PathBuf, message: String },
    #[error("MNIST data not found: {path} is missing; fetch it with `scripts/fetch-mnist` (or pass --data_dir)")]
    MissingData { path: PathBuf },
    #[error("config {path}: {message}")]
    Config { path: String, message: String },
    #[error("architecture: {message}")]
    Spec { message: String },
    #[error("layer {index} ({kind} '{name}'): {message}")]
    Shape { index: usize, kind: String, name: String, message: String },
    /// A model file that is invalid: bad JSON, an unsupported format, an architecture that
    /// fails validation, parameters that do not fit it.
    #[error("model {path}: {message}")]
    Model { path: PathBuf, message: String },
    /// A model file that cannot be read (missing, unreadable): perhaps not copied yet.
    #[error("model {path}: {message}")]
    ModelMissing { path: PathBuf, message: String },
    /// A model file whose bytes do not match model.json's size or checksum: damaged or half copied.
    #[error("model {path}: {message}")]
    ModelCorrupt { path: PathBuf, message: String },
    #[error("tensor '{name}': {message}")]
    Tensor { name: String, message: String },
    #[error("device: {0}")]
    Device(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        EngineError::Io { path: path.into(), message: err.to_string() }
    }
}
