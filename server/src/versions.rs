//! The life of a model version as TensorFlow Serving reports it: LOADING while it is read,
//! verified and warmed; AVAILABLE while it serves; UNLOADING while requests still hold it after
//! the policy dropped it; END once released (status OK), or END with the error of a failed load.

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use engine::EngineError;
use proto::tensorflow::error::Code;
pub use proto::tensorflow::serving::model_version_status::State;

use crate::manager::Loaded;

/// What GetModelStatus says of one version.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionStatus {
    pub version: i64,
    pub state: State,
    /// OK unless the version failed to load.
    pub code: Code,
    pub message: String,
}

/// The files of a version directory (name, size, modification and change times, mode, inode,
/// symlinks followed): a version that failed for a reason in its files is retried only once
/// they change (a copy in progress, a file fixed, replaced or made readable).
pub type Fingerprint = Vec<(String, u64, Option<SystemTime>, [i64; 4])>;

pub fn fingerprint(dir: &Path) -> Fingerprint {
    #[cfg(unix)]
    let unix = |m: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        [m.ino() as i64, m.mode() as i64, m.ctime(), m.ctime_nsec()]
    };
    #[cfg(not(unix))]
    let unix = |_: &std::fs::Metadata| [0i64; 4];
    let mut files: Fingerprint = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::metadata(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().ok(), unix(&meta)))
        })
        .collect();
    files.sort();
    files
}

/// One version's record in the manager.
pub struct Entry {
    pub state: State,
    pub error: Option<(Code, String)>,
    /// Set while AVAILABLE.
    pub serving: Option<Arc<Loaded>>,
    /// Set while UNLOADING: the version ends when the last request holding it finishes.
    pub draining: Option<Weak<Loaded>>,
    /// The directory as it was when the last load failed for a reason in its files.
    pub failed_files: Option<Fingerprint>,
    /// After a failure not in the files (the device, a caught panic): when to try again, and
    /// how many tries failed so far.
    pub retry_at: Option<std::time::Instant>,
    pub attempts: u32,
    /// The last failure logged, so each distinct failure is logged once.
    pub logged: Option<String>,
}

impl Entry {
    pub fn loading() -> Self {
        Self {
            state: State::Loading,
            error: None,
            serving: None,
            draining: None,
            failed_files: None,
            retry_at: None,
            attempts: 0,
            logged: None,
        }
    }

    pub fn status(&self, version: i64) -> VersionStatus {
        let (code, message) = self.error.clone().unwrap_or((Code::Ok, String::new()));
        VersionStatus { version, state: self.state, code, message }
    }

    /// Moves UNLOADING to END once no request holds the version; true if it did.
    pub fn reap(&mut self) -> bool {
        if self.state == State::Unloading && self.draining.as_ref().is_none_or(|w| w.strong_count() == 0) {
            self.state = State::End;
            self.draining = None;
            return true;
        }
        false
    }
}

/// Whether a load that failed with `code` can succeed without its files changing.
pub fn is_transient(code: Code) -> bool {
    matches!(code, Code::Internal | Code::ResourceExhausted | Code::Unavailable)
}

/// The wait before retrying a transient failure: 1 s, doubling, at most a minute.
pub fn retry_delay(attempts: u32) -> std::time::Duration {
    std::time::Duration::from_secs(1u64 << attempts.min(6)).min(std::time::Duration::from_secs(60))
}

/// TensorFlow Serving's error code for a version that failed to load.
pub fn load_error_code(e: &EngineError) -> Code {
    match e {
        EngineError::ModelMissing { .. } | EngineError::MissingData { .. } => Code::NotFound,
        EngineError::ModelCorrupt { .. } => Code::DataLoss,
        EngineError::Device(_) | EngineError::Io { .. } => Code::Internal,
        _ => Code::InvalidArgument,
    }
}
