//! The models being served: version discovery under each base path, loading (verified and
//! warmed) before a version is visible, swapping in new versions while old ones finish their
//! requests, and unloading versions the policy no longer wants.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use engine::DeviceKind;
use engine::predictor::Prediction;

use crate::batcher::Batcher;
use crate::cli::BatchingOptions;
use crate::model_config::{ModelSource, VersionPolicy};
use crate::servable::Servable;

/// Images per engine call without batching (a workspace of ~6 MB for the reference CNN).
const UNBATCHED_CHUNK: usize = 32;

/// A version ready to serve, with its batcher when batching is on.
pub struct Loaded {
    pub servable: Arc<Servable>,
    batcher: Option<Batcher>,
    /// Without batching, engine calls in flight are capped at one per core (each already uses
    /// every core), which also caps the inference workspaces the pool keeps.
    engine_slots: Arc<tokio::sync::Semaphore>,
}

/// Why a prediction did not run.
#[derive(Debug)]
pub enum PredictError {
    QueueFull(usize),
    Engine(String),
}

impl Loaded {
    /// Runs `n` examples, through the batcher when there is one.
    pub async fn predict(&self, images: Vec<f32>, n: usize) -> Result<Prediction, PredictError> {
        match &self.batcher {
            Some(batcher) => {
                let reply = batcher.submit(images, n).map_err(|full| PredictError::QueueFull(full.queued_images))?;
                reply.await.map_err(|_| PredictError::Engine("the batch thread stopped".into()))?.map_err(PredictError::Engine)
            }
            None => {
                let _slot = self.engine_slots.acquire().await.map_err(|e| PredictError::Engine(e.to_string()))?;
                let servable = self.servable.clone();
                tokio::task::spawn_blocking(move || servable.predict(&images).map_err(|e| e.to_string()))
                    .await
                    .map_err(|e| PredictError::Engine(e.to_string()))?
                    .map_err(PredictError::Engine)
            }
        }
    }
}

#[derive(Default)]
struct ModelState {
    versions: BTreeMap<i64, Arc<Loaded>>,
    /// Last load error per version directory, so a broken version is logged once per error.
    failures: BTreeMap<i64, String>,
}

pub struct ModelManager {
    sources: Vec<ModelSource>,
    device: DeviceKind,
    batching: BatchingOptions,
    models: RwLock<BTreeMap<String, ModelState>>,
    engine_slots: Arc<tokio::sync::Semaphore>,
}

/// What a lookup names, in TensorFlow Serving's words for its errors.
fn request_name(name: &str, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("Specific({name}, {v})"),
        None => format!("Latest({name})"),
    }
}

impl ModelManager {
    pub fn new(sources: Vec<ModelSource>, device: DeviceKind, batching: BatchingOptions) -> Self {
        let models = sources.iter().map(|s| (s.name.clone(), ModelState::default())).collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { sources, device, batching, models: RwLock::new(models), engine_slots: Arc::new(tokio::sync::Semaphore::new(cores)) }
    }

    /// The served version `version` of `name`, or its newest. Errors are NOT_FOUND messages.
    pub fn resolve(&self, name: &str, version: Option<i64>) -> Result<Arc<Loaded>, String> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        let found = models.get(name).and_then(|m| match version {
            Some(v) => m.versions.get(&v).cloned(),
            None => m.versions.values().next_back().cloned(),
        });
        found.ok_or_else(|| format!("Servable not found for request: {}", request_name(name, version)))
    }

    /// Served versions of `name` (ascending). None: no such model.
    pub fn versions(&self, name: &str) -> Option<Vec<i64>> {
        let models = self.models.read().unwrap_or_else(|e| e.into_inner());
        models.get(name).map(|m| m.versions.keys().copied().collect())
    }

    pub fn model_names(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.name.clone()).collect()
    }

    /// Scans every base path once: loads wanted versions, unloads unwanted ones.
    pub fn poll(&self) {
        for source in &self.sources {
            self.poll_model(source);
        }
    }

    fn poll_model(&self, source: &ModelSource) {
        let on_disk = match version_dirs(&source.base_path) {
            Ok(v) => v,
            Err(e) => {
                self.note_failure(&source.name, -1, format!("cannot list versions in {}: {e}", source.base_path.display()));
                return;
            }
        };
        let loaded: Vec<i64> = self.versions(&source.name).unwrap_or_default();
        let mut wanted: Vec<i64> = Vec::new();
        let candidates: Vec<i64> = match &source.policy {
            VersionPolicy::Latest(_) | VersionPolicy::All => on_disk.iter().rev().copied().collect(),
            VersionPolicy::Specific(list) => on_disk.iter().rev().copied().filter(|v| list.contains(v)).collect(),
        };
        let limit = match source.policy {
            VersionPolicy::Latest(n) => n,
            _ => usize::MAX,
        };
        for version in candidates {
            if wanted.len() >= limit {
                break;
            }
            if loaded.contains(&version) || self.load(source, version) {
                wanted.push(version);
            }
        }
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        let state = models.entry(source.name.clone()).or_default();
        let unwanted: Vec<i64> = state.versions.keys().copied().filter(|v| !wanted.contains(v)).collect();
        // Requests in flight hold their version; it is freed when the last one finishes.
        for v in unwanted {
            state.versions.remove(&v);
            tracing::info!("model {} version {v}: unloaded", source.name);
        }
    }

    /// Loads one version; false (and one log line per distinct error) when it is incomplete or broken.
    fn load(&self, source: &ModelSource, version: i64) -> bool {
        let dir = source.base_path.join(version.to_string());
        let start = std::time::Instant::now();
        // Larger requests are split into chunks of this many images.
        let capacity = if self.batching.enable_batching { self.batching.max_batch_size } else { UNBATCHED_CHUNK };
        match Servable::load(&source.name, version, &dir, self.device, capacity) {
            Ok(servable) => {
                let servable = Arc::new(servable);
                let batcher = self.batching.enable_batching.then(|| {
                    let runner = servable.clone();
                    let run: crate::batcher::Runner = Arc::new(move |images: &[f32]| runner.predict(images).map_err(|e| e.to_string()));
                    Batcher::new(&self.batching, servable.num_classes(), run)
                });
                let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
                let state = models.entry(source.name.clone()).or_default();
                state.failures.remove(&version);
                state.versions.insert(version, Arc::new(Loaded { servable, batcher, engine_slots: self.engine_slots.clone() }));
                tracing::info!("model {} version {version}: loaded from {} in {:.0?}", source.name, dir.display(), start.elapsed());
                true
            }
            Err(e) => {
                self.note_failure(&source.name, version, format!("version {version} skipped, will retry: {e}"));
                false
            }
        }
    }

    fn note_failure(&self, name: &str, version: i64, message: String) {
        let mut models = self.models.write().unwrap_or_else(|e| e.into_inner());
        let state = models.entry(name.to_string()).or_default();
        if state.failures.get(&version) != Some(&message) {
            tracing::warn!("model {name}: {message}");
            state.failures.insert(version, message);
        }
    }

    /// Polls every `interval` on a thread until `stop` is set.
    pub fn spawn_poller(self: &Arc<Self>, interval: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
        let manager = self.clone();
        std::thread::Builder::new()
            .name("version-poller".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut waited = Duration::ZERO;
                    while waited < interval && !stop.load(Ordering::Relaxed) {
                        let step = Duration::from_millis(50).min(interval - waited);
                        std::thread::sleep(step);
                        waited += step;
                    }
                    if !stop.load(Ordering::Relaxed) {
                        manager.poll();
                    }
                }
            })
            .expect("spawn the version poller")
    }
}

/// Numeric subdirectories of `base` (ascending); hidden and non-numeric names are ignored.
fn version_dirs(base: &Path) -> std::io::Result<Vec<i64>> {
    let mut versions: Vec<i64> = std::fs::read_dir(base)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i64>().ok()).filter(|v| *v >= 0))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}
