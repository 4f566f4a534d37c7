//! The models being served: version discovery under each base path, loading (validated,
//! verified and warmed) before a version is visible, swapping in new versions while old ones
//! finish their requests, unloading versions the policy no longer wants, re-reading the model
//! config file, and each version's status.
//!
//! Resources belong to the process, not to a version: one device and one batch scheduler are
//! shared by every model and version, so loading a version creates neither. Every load and poll
//! runs inside [`fault::contain`]: a version that fails or panics is reported as END with its
//! error, and polling carries on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use engine::Device;
use engine::predictor::Prediction;
use proto::tensorflow::error::Code;

use crate::batcher::{BatchQueue, BatchScheduler};
use crate::batching_config::BatchingConfig;
use crate::engine_call::off_async_threads;
use crate::fault;
use crate::metrics::{Metrics, VersionGauge};
use crate::model_config::{self, ModelSource, VersionPolicy};
use crate::servable::Servable;
use crate::versions::{self, Entry, State, VersionStatus};

/// Images per engine call without batching (a workspace of ~6 MB for the reference CNN).
const UNBATCHED_CHUNK: usize = 32;
/// END records kept per model (oldest versions forgotten first).
const ENDED_VERSIONS_KEPT: usize = 32;

/// A version ready to serve, with its queue on the shared batch scheduler when batching is on.
pub struct Loaded {
    pub servable: Arc<Servable>,
    queue: Option<BatchQueue>,
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
    /// Images waiting in this version's batch queue.
    pub fn queued_images(&self) -> usize {
        self.queue.as_ref().map_or(0, BatchQueue::queued_images)
    }

    /// Runs `n` examples, through the batch scheduler when batching is on.
    pub async fn predict(&self, images: Vec<f32>, n: usize) -> Result<Prediction, PredictError> {
        match &self.queue {
            Some(queue) => {
                let reply = queue.submit(images, n).map_err(|full| PredictError::QueueFull(full.queued_images))?;
                reply.await.map_err(|_| PredictError::Engine("the batch was dropped".into()))?.map_err(PredictError::Engine)
            }
            None => {
                let slot = self.engine_slots.clone().acquire_owned().await.map_err(|e| PredictError::Engine(e.to_string()))?;
                let servable = self.servable.clone();
                let device = servable.device().kind();
                off_async_threads(device, move || {
                    let _slot = slot;
                    fault::contain(|| servable.predict(&images).map_err(|e| e.to_string()))
                        .unwrap_or_else(|cause| Err(format!("the engine failed: {cause}")))
                })
                .await
                .map_err(PredictError::Engine)?
                .map_err(PredictError::Engine)
            }
        }
    }
}

#[derive(Default)]
struct ModelState {
    versions: BTreeMap<i64, Entry>,
    /// The last error listing the base path, logged once.
    listing_error: Option<String>,
}

pub struct ModelManager {
    sources: RwLock<Vec<ModelSource>>,
    config_file: Option<PathBuf>,
    /// The last error reading the config file, logged once.
    config_error: Mutex<Option<String>>,
    device: Device,
    /// None: batching is off.
    batching: Option<BatchingConfig>,
    scheduler: Option<BatchScheduler>,
    metrics: Arc<Metrics>,
    /// The `version_labels` in force, per model: applied only once every label names an
    /// AVAILABLE version, as TensorFlow Serving does.
    labels: RwLock<BTreeMap<String, BTreeMap<String, i64>>>,
    /// The last error applying labels, logged once.
    labels_error: Mutex<Option<String>>,
    models: RwLock<BTreeMap<String, ModelState>>,
    engine_slots: Arc<tokio::sync::Semaphore>,
    engine_slots_total: usize,
    /// One poll or config reload at a time.
    polling: Mutex<()>,
}

/// What a lookup names, in TensorFlow Serving's words for its errors.
fn request_name(name: &str, version: Option<i64>) -> String {
    match version {
        Some(v) => format!("Specific({name}, {v})"),
        None => format!("Latest({name})"),
    }
}

impl ModelManager {
    /// `config_file`: where `sources` came from, re-read by [`Self::reload_config`].
    /// `batching`: None turns batching off.
    pub fn new(
        sources: Vec<ModelSource>,
        config_file: Option<PathBuf>,
        device: Device,
        batching: Option<BatchingConfig>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let models = sources.iter().map(|s| (s.name.clone(), ModelState::default())).collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            sources: RwLock::new(sources),
            config_file,
            config_error: Mutex::new(None),
            device,
            scheduler: batching.as_ref().map(|config| BatchScheduler::new(config, metrics.clone())),
            batching,
            metrics,
            labels: RwLock::new(BTreeMap::new()),
            labels_error: Mutex::new(None),
            models: RwLock::new(models),
            engine_slots: Arc::new(tokio::sync::Semaphore::new(cores)),
            engine_slots_total: cores,
            polling: Mutex::new(()),
        }
    }

    /// The process's device, shared by every version.
    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The shared batch scheduler, when batching is on.
    pub fn scheduler(&self) -> Option<&BatchScheduler> {
        self.scheduler.as_ref()
    }

    fn read_models(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelState>> {
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_models(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelState>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }

    fn current_sources(&self) -> Vec<ModelSource> {
        self.sources.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The served version `version` of `name`, or its newest. Errors are NOT_FOUND messages.
    pub fn resolve(&self, name: &str, version: Option<i64>) -> Result<Arc<Loaded>, String> {
        let models = self.read_models();
        let found = models.get(name).and_then(|m| match version {
            Some(v) => m.versions.get(&v).and_then(|e| e.serving.clone()),
            None => m.versions.values().rev().find_map(|e| e.serving.clone()),
        });
        found.ok_or_else(|| format!("Servable not found for request: {}", request_name(name, version)))
    }

    /// AVAILABLE versions of `name` (ascending). None: no such model.
    pub fn versions(&self, name: &str) -> Option<Vec<i64>> {
        let models = self.read_models();
        models.get(name).map(|m| m.versions.iter().filter(|(_, e)| e.serving.is_some()).map(|(v, _)| *v).collect())
    }

    /// Every version known of `name` (`version`: only that one), newest first, as
    /// GetModelStatus reports them. Errors are NOT_FOUND messages.
    pub fn status(&self, name: &str, version: Option<i64>) -> Result<Vec<VersionStatus>, String> {
        let models = self.read_models();
        let state = models.get(name).filter(|m| !m.versions.is_empty());
        let state = state.ok_or_else(|| format!("Could not find any versions of model {name}"))?;
        match version {
            None => Ok(state.versions.iter().rev().map(|(v, e)| e.status(*v)).collect()),
            Some(v) => {
                state.versions.get(&v).map(|e| vec![e.status(v)]).ok_or_else(|| format!("Could not find version {v} of model {name}"))
            }
        }
    }

    pub fn model_names(&self) -> Vec<String> {
        self.current_sources().into_iter().map(|s| s.name).collect()
    }

    /// The version `label` names for model `name`; an unknown label is an INVALID_ARGUMENT
    /// message, as in TensorFlow Serving.
    pub fn resolve_label(&self, name: &str, label: &str) -> Result<i64, String> {
        let labels = self.labels.read().unwrap_or_else(|e| e.into_inner());
        labels.get(name).and_then(|l| l.get(label)).copied().ok_or_else(|| format!("Unrecognized servable version label: {label}"))
    }

    /// Puts the config's `version_labels` in force once each names an AVAILABLE version;
    /// otherwise keeps the labels in force and says which label cannot be assigned.
    pub fn apply_version_labels(&self) -> Result<(), String> {
        let wanted: BTreeMap<String, BTreeMap<String, i64>> =
            self.current_sources().into_iter().map(|s| (s.name, s.version_labels)).filter(|(_, l)| !l.is_empty()).collect();
        if *self.labels.read().unwrap_or_else(|e| e.into_inner()) == wanted {
            return Ok(());
        }
        for (name, labels) in &wanted {
            for (label, &version) in labels {
                if !self.is_serving(name, version) {
                    return Err(format!(
                        "version_labels: cannot assign label '{label}' to version {version} of model {name}, which is not currently \
                         available for inference"
                    ));
                }
            }
        }
        tracing::info!("version labels: {wanted:?}");
        *self.labels.write().unwrap_or_else(|e| e.into_inner()) = wanted;
        Ok(())
    }

    /// [`Self::apply_version_labels`], logging a failure once.
    fn refresh_version_labels(&self) {
        let outcome = self.apply_version_labels().err();
        let mut last = self.labels_error.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = &outcome
            && last.as_ref() != Some(e)
        {
            tracing::warn!("{e}; keeping the labels in force (retried at each config poll)");
        }
        *last = outcome;
    }

    /// Every known version with its state and queue, for the metrics.
    pub fn version_gauges<T>(&self, f: impl FnOnce(&[VersionGauge]) -> T) -> T {
        let models = self.read_models();
        let gauges: Vec<VersionGauge> = models
            .iter()
            .flat_map(|(name, m)| {
                m.versions.iter().map(move |(v, e)| VersionGauge {
                    model: name,
                    version: *v,
                    state: e.state.as_str_name(),
                    queued_images: e.serving.as_ref().map_or(0, |l| l.queued_images()),
                })
            })
            .collect();
        f(&gauges)
    }

    /// Scans every base path once: loads wanted versions, unloads unwanted ones, ends versions
    /// no request holds any more. Never panics.
    pub fn poll(&self) {
        let _one_at_a_time = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        self.poll_sources(&self.current_sources());
    }

    fn poll_sources(&self, sources: &[ModelSource]) {
        for source in sources {
            if let Err(cause) = fault::contain(|| self.poll_model(source)) {
                self.note_listing_error(&source.name, format!("polling failed: {cause}"));
            }
        }
        self.reap();
        let mut models = self.write_models();
        for model in models.values_mut() {
            // Failed versions stay while their directory does (their record stops retries).
            let ended: Vec<i64> =
                model.versions.iter().filter(|(_, e)| e.state == State::End && e.error.is_none()).map(|(v, _)| *v).collect();
            for v in ended.iter().take(ended.len().saturating_sub(ENDED_VERSIONS_KEPT)) {
                model.versions.remove(v);
            }
        }
    }

    /// Ends UNLOADING versions that no request holds any more.
    pub fn reap(&self) {
        let draining = |m: &ModelState| m.versions.values().any(|e| e.state == State::Unloading);
        if !self.read_models().values().any(draining) {
            return;
        }
        let mut models = self.write_models();
        for (name, model) in models.iter_mut() {
            for (v, entry) in model.versions.iter_mut() {
                if entry.reap() {
                    tracing::info!("model {name} version {v}: unloaded");
                }
            }
        }
    }

    fn poll_model(&self, source: &ModelSource) {
        let on_disk = match version_dirs(&source.base_path) {
            Ok(v) => {
                if let Some(m) = self.write_models().get_mut(&source.name) {
                    m.listing_error = None;
                }
                v
            }
            Err(e) => {
                // Keep serving what is loaded: the directory may be back on the next poll.
                self.note_listing_error(&source.name, format!("cannot list versions in {}: {e}", source.base_path.display()));
                return;
            }
        };
        let candidates: Vec<i64> = match &source.policy {
            VersionPolicy::Latest(_) | VersionPolicy::All => on_disk.iter().rev().copied().collect(),
            VersionPolicy::Specific(list) => on_disk.iter().rev().copied().filter(|v| list.contains(v)).collect(),
        };
        let limit = match source.policy {
            VersionPolicy::Latest(n) => n,
            _ => usize::MAX,
        };
        let mut wanted: Vec<i64> = Vec::new();
        for version in candidates {
            if wanted.len() >= limit {
                break;
            }
            if self.is_serving(&source.name, version) || self.load(source, version) {
                wanted.push(version);
            }
        }
        let released = {
            let mut models = self.write_models();
            let model = models.entry(source.name.clone()).or_default();
            // A failed version whose directory is gone is forgotten; its failure is moot.
            model.versions.retain(|v, e| on_disk.contains(v) || e.error.is_none());
            let mut released = Vec::new();
            for (v, entry) in model.versions.iter_mut() {
                if entry.state == State::Available && !wanted.contains(v) {
                    let loaded = entry.serving.take().expect("an AVAILABLE version is serving");
                    entry.draining = Some(Arc::downgrade(&loaded));
                    entry.state = State::Unloading;
                    tracing::info!("model {} version {v}: unloading (requests in flight finish first)", source.name);
                    released.push(loaded);
                }
            }
            released
        };
        // Dropped outside the lock: the last reference frees the weights.
        drop(released);
    }

    fn is_serving(&self, name: &str, version: i64) -> bool {
        self.read_models().get(name).and_then(|m| m.versions.get(&version)).is_some_and(|e| e.serving.is_some())
    }

    /// Loads one version; false when it is incomplete, broken or unchanged since it failed.
    fn load(&self, source: &ModelSource, version: i64) -> bool {
        let dir = source.base_path.join(version.to_string());
        let files = versions::fingerprint(&dir);
        {
            let mut models = self.write_models();
            let entry = models.entry(source.name.clone()).or_default().versions.entry(version).or_insert_with(Entry::loading);
            if entry.failed_files.as_ref() == Some(&files) || entry.retry_at.is_some_and(|at| Instant::now() < at) {
                return false;
            }
            entry.state = State::Loading;
            entry.error = None;
        }
        let start = Instant::now();
        // Larger requests are split into chunks of this many images.
        let capacity = self.batching.as_ref().map_or(UNBATCHED_CHUNK, |b| b.max_batch_size);
        // Engine calls one version can have in flight: one per batch thread, or one per core.
        let concurrency = self.scheduler.as_ref().map_or(self.engine_slots_total, BatchScheduler::threads);
        let outcome = fault::contain(|| Servable::load(&source.name, version, &dir, &self.device, capacity, concurrency));
        self.metrics.load(&dir.display().to_string(), matches!(outcome, Ok(Ok(_))), start.elapsed());
        let failure = match outcome {
            Ok(Ok(servable)) => {
                let servable = Arc::new(servable);
                let queue = self.scheduler.as_ref().map(|scheduler| {
                    let runner = servable.clone();
                    let run: crate::batcher::Runner = Arc::new(move |images: &[f32]| runner.predict(images).map_err(|e| e.to_string()));
                    scheduler.queue(run, servable.num_classes())
                });
                let loaded = Arc::new(Loaded { servable, queue, engine_slots: self.engine_slots.clone() });
                let mut models = self.write_models();
                let entry = models.entry(source.name.clone()).or_default().versions.entry(version).or_insert_with(Entry::loading);
                *entry = Entry { state: State::Available, serving: Some(loaded), ..Entry::loading() };
                tracing::info!("model {} version {version}: loaded from {} in {:.0?}", source.name, dir.display(), start.elapsed());
                return true;
            }
            Ok(Err(e)) => (versions::load_error_code(&e), e.to_string()),
            Err(cause) => (Code::Internal, format!("loading {} failed: {cause}", dir.display())),
        };
        let mut models = self.write_models();
        let entry = models.entry(source.name.clone()).or_default().versions.entry(version).or_insert_with(Entry::loading);
        if entry.logged.as_ref() != Some(&failure.1) {
            let retry = if versions::is_transient(failure.0) { "retried after a pause" } else { "retried when its files change" };
            tracing::warn!("model {} version {version}: not loaded ({}): {}; {retry}", source.name, failure.0.as_str_name(), failure.1);
            entry.logged = Some(failure.1.clone());
        }
        entry.state = State::End;
        if versions::is_transient(failure.0) {
            entry.retry_at = Some(Instant::now() + versions::retry_delay(entry.attempts));
            entry.attempts += 1;
            entry.failed_files = None;
        } else {
            entry.failed_files = Some(files);
        }
        entry.error = Some(failure);
        false
    }

    fn note_listing_error(&self, name: &str, message: String) {
        let mut models = self.write_models();
        let model = models.entry(name.to_string()).or_default();
        if model.listing_error.as_ref() != Some(&message) {
            tracing::warn!("model {name}: {message}");
            model.listing_error = Some(message);
        }
    }

    /// Re-reads the model config file: models added are loaded, models removed unloaded (their
    /// requests in flight finish). A file that cannot be read or parsed is logged once and the
    /// current config kept.
    pub fn reload_config(&self) {
        let Some(path) = &self.config_file else { return };
        let sources = match model_config::load_model_config(path) {
            Ok(sources) => {
                *self.config_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                sources
            }
            Err(e) => {
                let mut last = self.config_error.lock().unwrap_or_else(|e| e.into_inner());
                if last.as_deref() != Some(&e.to_string()) {
                    tracing::warn!("{e}; keeping the current model config");
                    *last = Some(e.to_string());
                }
                return;
            }
        };
        let _one_at_a_time = self.polling.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.current_sources();
        if old == sources {
            self.refresh_version_labels();
            return;
        }
        // A model whose base path changed is a different model: unload it and load it anew.
        let kept = |s: &ModelSource| sources.iter().any(|n| n.name == s.name && n.base_path == s.base_path);
        let removed: Vec<String> = old.iter().filter(|s| !kept(s)).map(|s| s.name.clone()).collect();
        let dropped: Vec<ModelState> = {
            let mut models = self.write_models();
            removed.iter().filter_map(|name| models.remove(name)).collect()
        };
        drop(dropped);
        let added: Vec<&str> = sources.iter().filter(|s| !old.iter().any(|o| o == *s)).map(|s| s.name.as_str()).collect();
        tracing::info!("model config {} reloaded: removed {removed:?}, added or changed {added:?}", path.display());
        *self.sources.write().unwrap_or_else(|e| e.into_inner()) = sources.clone();
        self.poll_sources(&sources);
        self.refresh_version_labels();
    }

    /// Polls versions every `versions` and re-reads the config file every `config`, on a
    /// thread, until `stop` is set. Neither a failing poll nor a panic stops it.
    pub fn spawn_poller(
        self: &Arc<Self>,
        versions: Option<Duration>,
        config: Option<Duration>,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<()> {
        let manager = self.clone();
        std::thread::Builder::new()
            .name("version-poller".into())
            .spawn(move || {
                let tick = Duration::from_millis(50);
                let (mut next_poll, mut next_config) = (versions.map(|d| Instant::now() + d), config.map(|d| Instant::now() + d));
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    let now = Instant::now();
                    if let (Some(due), Some(every)) = (next_config, config)
                        && now >= due
                    {
                        if let Err(cause) = fault::contain(|| manager.reload_config()) {
                            tracing::error!("model config reload failed: {cause}");
                        }
                        next_config = Some(Instant::now() + every);
                    }
                    if let (Some(due), Some(every)) = (next_poll, versions)
                        && now >= due
                    {
                        manager.poll();
                        next_poll = Some(Instant::now() + every);
                    }
                    if let Err(cause) = fault::contain(|| manager.reap()) {
                        tracing::error!("ending unloaded versions failed: {cause}");
                    }
                }
            })
            .expect("spawn the version poller")
    }
}

/// Numeric subdirectories of `base` (ascending); hidden, non-numeric and non-canonical names
/// (`007`, `+7`) are ignored.
fn version_dirs(base: &Path) -> std::io::Result<Vec<i64>> {
    let canonical = |name: &str| name.parse::<i64>().ok().filter(|v| *v >= 0 && v.to_string() == name);
    let mut versions: Vec<i64> = std::fs::read_dir(base)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(canonical))
        .collect();
    versions.sort_unstable();
    Ok(versions)
}
