//! A TensorFlow-Serving-compatible model server for the engine's exports.
//!
//! - [`cli`]: flags named as TensorFlow Serving's.
//! - [`text_proto`]: the text-format config files, parsed over `proto/`'s descriptors.
//! - [`model_config`]: `--model_config_file` (text `ModelServerConfig`).
//! - [`manager`]: version discovery, loading, hot swap, unloading, config reload.
//! - [`versions`]: each version's state as GetModelStatus reports it.
//! - [`servable`]: one loaded version and its inference workspaces.
//! - [`engine_call`]: engine calls off the async threads (the kernels' pool, or a blocking thread).
//! - [`batcher`]: dynamic batching on one scheduler shared by every version.
//! - [`batching_config`]: the batching flags or `--batching_parameters_file`.
//! - [`metrics`]: Prometheus metrics with TensorFlow Serving's names (`--monitoring_config_file`,
//!   [`monitoring_config`]).
//! - [`tls`]: `--ssl_config_file`, TLS and mutual TLS for gRPC and REST.
//! - [`logging`]: plain-text logs unless stderr is a terminal.
//! - [`memory`]: heap settings that give unloaded versions' memory back.
//! - [`fault`]: panic containment for loading, polling and batches.
//! - [`fuzzing`]: the fuzz targets' bodies (Predict requests, REST bodies, model config files).
//! - [`tensors`]: TensorProto validation and outputs.
//! - [`grpc`]: PredictionService and ModelService.
//! - [`rest`]: TensorFlow Serving's REST API, translated to the gRPC services.

#![recursion_limit = "256"]

pub mod batcher;
pub mod batching_config;
pub mod cli;
pub mod engine_call;
pub mod fault;
pub mod fuzzing;
pub mod grpc;
pub mod logging;
pub mod manager;
pub mod memory;
pub mod metrics;
pub mod model_config;
pub mod monitoring_config;
pub mod rest;
pub mod servable;
pub mod tensors;
pub mod text_proto;
pub mod tls;
pub mod versions;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use proto::tensorflow::serving::model_service_server::ModelServiceServer;
use proto::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use tonic::transport::server::TcpIncoming;

use crate::batching_config::BatchingConfig;
use crate::cli::Options;
use crate::manager::ModelManager;
use crate::metrics::Metrics;
use crate::model_config::{ModelSource, VersionPolicy};

/// TensorFlow Serving accepts messages up to INT32_MAX bytes.
const MAX_MESSAGE_BYTES: usize = i32::MAX as usize;

/// The models `options` name: the config file's, or the one `--model_name` / `--model_base_path`.
pub fn model_sources(options: &Options) -> anyhow::Result<Vec<ModelSource>> {
    if let Some(path) = &options.model_config_file {
        return Ok(model_config::load_model_config(path)?);
    }
    let base = options
        .model_base_path
        .clone()
        .context("no model to serve: pass --model_base_path (or set MODEL_PATH) with --model_name, or --model_config_file")?;
    Ok(vec![ModelSource {
        name: options.model_name.clone(),
        base_path: base,
        policy: VersionPolicy::Latest(1),
        version_labels: Default::default(),
    }])
}

/// The batching `options` ask for: none without `--enable_batching`; the parameters file's,
/// or the flags'.
pub fn batching_config(options: &Options) -> anyhow::Result<Option<BatchingConfig>> {
    let flags = &options.batching;
    match (&flags.batching_parameters_file, flags.enable_batching) {
        (Some(_), false) => anyhow::bail!("--batching_parameters_file needs --enable_batching (as in TensorFlow Serving)"),
        (Some(path), true) => Ok(Some(BatchingConfig::load(path)?)),
        (None, true) => Ok(Some(BatchingConfig::from_flags(flags))),
        (None, false) => Ok(None),
    }
}

/// The Prometheus path `options` ask for (it needs the REST port).
/// `--rest_api_cors_origin`, checked: an origin is a header value and needs the REST port.
fn cors_origin(options: &Options, rest: bool) -> anyhow::Result<Option<axum::http::HeaderValue>> {
    let Some(origin) = &options.rest_api_cors_origin else { return Ok(None) };
    if !rest {
        anyhow::bail!("--rest_api_cors_origin needs --rest_api_port");
    }
    let valid = origin.starts_with("http://") || origin.starts_with("https://");
    match axum::http::HeaderValue::from_str(origin) {
        Ok(value) if valid && !origin.ends_with('/') => Ok(Some(value)),
        _ => anyhow::bail!(
            "--rest_api_cors_origin {origin:?}: expected an origin such as https://example.com (scheme, host, optional port, no path)"
        ),
    }
}

fn metrics_path(options: &Options, rest: bool) -> anyhow::Result<Option<String>> {
    let Some(file) = &options.monitoring_config_file else { return Ok(None) };
    let path = monitoring_config::load(file)?;
    if path.is_some() && !rest {
        anyhow::bail!(
            "{}: Prometheus metrics are served on the REST port: pass --rest_api_port (as in TensorFlow Serving)",
            file.display()
        );
    }
    Ok(path)
}

/// Loads the models, then serves gRPC on `listener` (and REST on `rest`) until `shutdown`
/// resolves; in-flight requests finish before this returns. With `--grpc_health_port`, a
/// plain-text gRPC server for grpc.health.v1 only listens there too.
pub async fn serve(
    options: Options,
    listener: tokio::net::TcpListener,
    rest: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let sources = model_sources(&options)?;
    let batching = batching_config(&options)?;
    let metrics_path = metrics_path(&options, rest.is_some())?;
    let cors_origin = cors_origin(&options, rest.is_some())?;
    let tls = options.ssl_config_file.as_deref().map(tls::Tls::load).transpose()?;
    let health_listener = match options.grpc_health_port {
        0 => None,
        port => {
            let address = format!("{}:{port}", options.host);
            let listener = tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
            tracing::info!("gRPC health (plain text) listening on {}", listener.local_addr()?);
            Some(listener)
        }
    };
    let device_kind = options.device;
    let device = tokio::task::spawn_blocking(move || engine::Device::open(device_kind)).await??;
    tracing::info!("device: {}", device.describe());
    let metrics = Arc::new(Metrics::new());
    metrics.set_device(&format!("{:?}", device.kind()).to_lowercase(), &device.describe());
    let manager = Arc::new(ModelManager::new(sources, options.model_config_file.clone(), device, batching, metrics));
    let poll_manager = manager.clone();
    tokio::task::spawn_blocking(move || poll_manager.poll()).await?;
    for name in manager.model_names() {
        match manager.versions(&name).unwrap_or_default().last() {
            Some(v) => tracing::info!("serving model {name} version {v}"),
            None => tracing::warn!("model {name}: no servable version yet; requests answer NOT_FOUND until one appears"),
        }
    }
    if let Err(e) = manager.apply_version_labels() {
        let file = options.model_config_file.as_deref().unwrap_or(std::path::Path::new("")).display().to_string();
        anyhow::bail!("{file}: {e}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let every = |s: i64| (s > 0).then(|| Duration::from_secs(s as u64));
    let versions_every = every(options.file_system_poll_wait_seconds);
    let config_every = every(options.model_config_file_poll_wait_seconds).filter(|_| options.model_config_file.is_some());
    let poller =
        (versions_every.is_some() || config_every.is_some()).then(|| manager.spawn_poller(versions_every, config_every, stop.clone()));

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<PredictionServiceServer<grpc::Services>>().await;
    health_reporter.set_serving::<ModelServiceServer<grpc::Services>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let prediction = PredictionServiceServer::new(grpc::Services { manager: manager.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let models = ModelServiceServer::new(grpc::Services { manager: manager.clone() })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let rest_task = rest.map(|rest| {
        let timeout = Duration::from_millis(options.rest_api_timeout_in_ms);
        let app = rest::router(Arc::new(grpc::Services { manager: manager.clone() }), timeout, metrics_path, cors_origin.clone());
        let stop = stopped(stop_rx.clone());
        match &tls {
            None => tokio::spawn(async move { Ok(axum::serve(rest, app).with_graceful_shutdown(stop).await?) }),
            Some(tls) => {
                let config = tls.rest.clone();
                tokio::spawn(async move {
                    let handle = axum_server::Handle::new();
                    let graceful = handle.clone();
                    tokio::spawn(async move {
                        stop.await;
                        graceful.graceful_shutdown(None);
                    });
                    axum_server::from_tcp_rustls(rest.into_std()?, config)?.handle(handle).serve(app.into_make_service()).await?;
                    anyhow::Ok(())
                })
            }
        }
    });
    let health_task = health_listener.map(|listener| {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let service = health.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(incoming, stop))
    });

    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder.tls_config(tls.grpc.clone()).context("gRPC TLS")?;
    }
    let result = builder
        .add_service(health)
        .add_service(reflection)
        .add_service(prediction)
        .add_service(models)
        .serve_with_incoming_shutdown(incoming, stopped(stop_rx))
        .await;
    if let Some(task) = rest_task {
        task.await?.context("REST server failed")?;
    }
    if let Some(task) = health_task {
        task.await?.context("gRPC health server failed")?;
    }
    stop.store(true, Ordering::Relaxed);
    if let Some(poller) = poller {
        let _ = tokio::task::spawn_blocking(move || poller.join()).await;
    }
    result.context("gRPC server failed")
}
