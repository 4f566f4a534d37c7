//! Flags, named as TensorFlow Serving's model server names them.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser};
use engine::DeviceKind;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "server",
    version,
    about = "Serve exported MNIST models over TensorFlow Serving's gRPC API",
    long_about = "Serve the models the trainer exports over TensorFlow Serving's gRPC API (PredictionService, \
ModelService, grpc.health.v1, reflection), so an unchanged TensorFlow Serving client works. Versions are \
numeric subdirectories of a model's base path (<base>/1, <base>/2, ...); new ones are picked up while serving.\n\n\
Either --model_name and --model_base_path (or the MODEL_NAME and MODEL_PATH environment variables, as in \
TensorFlow Serving's container), or --model_config_file for several models. Boolean flags accept \
TensorFlow Serving's --flag=true form."
)]
pub struct Options {
    /// gRPC port (0 picks a free one, printed at start).
    #[arg(long, default_value_t = 8500)]
    pub port: u16,
    /// REST port (TensorFlow Serving's JSON API under /v1/models/...; 0: no REST).
    #[arg(long = "rest_api_port", default_value_t = 0)]
    pub rest_api_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// Name of the served model (one-model mode).
    #[arg(long = "model_name", env = "MODEL_NAME", default_value = "default")]
    pub model_name: String,
    /// Directory holding the model's numeric version directories (one-model mode).
    #[arg(long = "model_base_path", env = "MODEL_PATH", value_name = "DIR")]
    pub model_base_path: Option<PathBuf>,
    /// TensorFlow Serving model config (text protobuf: model_config_list { config { name: ... base_path: ...
    /// model_version_policy { latest | specific | all } } }); overrides --model_name / --model_base_path.
    #[arg(long = "model_config_file", value_name = "FILE")]
    pub model_config_file: Option<PathBuf>,
    /// Seconds between scans of the base paths for new versions (0: scan once at start).
    #[arg(long = "file_system_poll_wait_seconds", default_value_t = 1)]
    pub file_system_poll_wait_seconds: i64,
    /// Seconds between re-reads of --model_config_file (0: never): models added are loaded,
    /// models removed unloaded; a file that does not parse is logged and the current config kept.
    #[arg(long = "model_config_file_poll_wait_seconds", default_value_t = 0)]
    pub model_config_file_poll_wait_seconds: i64,
    /// Lets pages from this origin (e.g. https://example.com) call the REST API from a browser (CORS);
    /// off by default. Not a TensorFlow Serving flag.
    #[arg(long = "rest_api_cors_origin", value_name = "ORIGIN")]
    pub rest_api_cors_origin: Option<String>,
    /// Deadline of a REST request in milliseconds; past it the answer is 504.
    #[arg(long = "rest_api_timeout_in_ms", default_value_t = 30_000)]
    pub rest_api_timeout_in_ms: u64,
    /// TensorFlow Serving monitoring config (text protobuf: prometheus_config { enable: true path: '/metrics' });
    /// Prometheus metrics on the REST port at that path (empty: /monitoring/prometheus/metrics). Needs --rest_api_port.
    #[arg(long = "monitoring_config_file", value_name = "FILE")]
    pub monitoring_config_file: Option<PathBuf>,
    /// TensorFlow Serving SSL config (text protobuf SSLConfig with inline PEM: server_key, server_cert, custom_ca,
    /// client_verify): gRPC over TLS, mutual TLS (client certificates verified against custom_ca) with
    /// client_verify: true. REST is served over TLS with the same settings.
    #[arg(long = "ssl_config_file", value_name = "FILE")]
    pub ssl_config_file: Option<PathBuf>,
    /// Plain-text gRPC port serving only grpc.health.v1 (0: none): for Kubernetes' native gRPC probes, which
    /// dial without TLS, when --ssl_config_file is given. Not a TensorFlow Serving flag.
    #[arg(long = "grpc_health_port", default_value_t = 0)]
    pub grpc_health_port: u16,
    #[command(flatten)]
    pub batching: BatchingOptions,
    /// cpu, gpu, or auto (a hardware GPU when one is usable, else the CPU).
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
}

#[derive(Args, Debug, Clone)]
pub struct BatchingOptions {
    /// Merge concurrent requests into one engine call.
    #[arg(long = "enable_batching", action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    pub enable_batching: bool,
    /// TensorFlow Serving batching parameters (text protobuf BatchingParameters: max_batch_size { value: 128 }
    /// batch_timeout_micros { value: 0 } max_enqueued_batches { value: 1000000 } num_batch_threads { value: 8 }
    /// allowed_batch_sizes: [32, 64, 128] ...); unset fields take TensorFlow Serving's defaults (1000, 0, 10, one
    /// thread per core). Only with --enable_batching; replaces the four flags below.
    #[arg(long = "batching_parameters_file", value_name = "FILE",
          conflicts_with_all = ["max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"])]
    pub batching_parameters_file: Option<PathBuf>,
    /// Most images in one merged batch.
    #[arg(long = "max_batch_size", default_value_t = 128)]
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for others, in microseconds.
    #[arg(long = "batch_timeout_micros", default_value_t = 1000)]
    pub batch_timeout_micros: u64,
    /// Threads running merged batches (0: one per core).
    #[arg(long = "num_batch_threads", default_value_t = 0)]
    pub num_batch_threads: usize,
    /// Batches that may wait; a request beyond them is answered UNAVAILABLE at once.
    #[arg(long = "max_enqueued_batches", default_value_t = 64)]
    pub max_enqueued_batches: usize,
}
