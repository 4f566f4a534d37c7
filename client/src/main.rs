//! `client`: asks a TensorFlow Serving (or our) server to classify digit images, and load-tests it.

mod bench;
mod images;
mod text_format;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use proto::tensorflow::serving::{ModelSpec, PredictRequest, PredictResponse};
use proto::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto::Dim};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Parser, Debug)]
#[command(
    name = "client",
    about = "Classify digit images with a model served over TensorFlow Serving's gRPC API",
    long_about = "Classify digit images with a model served over TensorFlow Serving's gRPC API (our server or \
TensorFlow Serving itself). Any PNG, JPEG or BMP works: it is converted to 28x28 grayscale, inverted when the \
digit is dark on a light background, and scaled to [0, 1]. Several --image values, or a directory, go in one \
batched request. Prints the response as TensorFlow Serving's Python client does, or JSON with --json.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    predict: PredictArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load-test the server: requests/s, latency percentiles, errors.
    Bench(BenchArgs),
    /// Ask grpc.health.v1 whether the server serves: prints the status, exits 0 only for SERVING
    /// (a container health check).
    Health(HealthArgs),
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8500")]
    server: String,
    /// The service to ask about (empty: the server as a whole).
    #[arg(long, default_value = "")]
    service: String,
    /// Seconds to wait for the connection.
    #[arg(long = "connect_timeout", default_value_t = 5.0)]
    connect_timeout: f64,
    #[command(flatten)]
    tls: tls::TlsArgs,
}

#[derive(Args, Debug, Clone)]
struct Target {
    /// Server address (host:port).
    #[arg(long, default_value = "127.0.0.1:8500")]
    server: String,
    /// Model name.
    #[arg(long, default_value = "mnist")]
    model: String,
    /// Model version (default: the newest served).
    #[arg(long)]
    version: Option<i64>,
    /// Signature name (default: serving_default).
    #[arg(long, default_value = "")]
    signature: String,
    /// Seconds to wait for the connection.
    #[arg(long = "connect_timeout", default_value_t = 5.0)]
    connect_timeout: f64,
    #[command(flatten)]
    tls: tls::TlsArgs,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// Image files or directories of images (one batched request).
    #[arg(long, num_args = 1.., value_name = "PATH")]
    image: Vec<PathBuf>,
    #[command(flatten)]
    target: Target,
    /// Print JSON: per image its class and probabilities, plus the model version.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct BenchArgs {
    #[command(flatten)]
    target: Target,
    /// Requests in flight at once (one connection each).
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Images per Predict request.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// predict, or health (a no-op RPC on the same server: the transport's ceiling).
    #[arg(long, value_enum, default_value = "predict")]
    rpc: bench::Rpc,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

async fn connect(target: &Target) -> anyhow::Result<Channel> {
    open_channel(&target.server, target.connect_timeout, &target.tls).await
}

/// A channel to `server` (host:port or a URI), over TLS when `tls` names certificates.
async fn open_channel(server: &str, connect_timeout: f64, tls: &tls::TlsArgs) -> anyhow::Result<Channel> {
    let tls = tls.config()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if server.contains("://") { server.to_string() } else { format!("{scheme}://{server}") };
    let mut endpoint = Endpoint::from_shared(uri).with_context(|| format!("invalid server address '{server}'"))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).with_context(|| format!("TLS to {server}"))?;
    }
    endpoint
        .connect_timeout(Duration::from_secs_f64(connect_timeout))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))
}

async fn health(args: HealthArgs) -> anyhow::Result<()> {
    let channel = open_channel(&args.server, args.connect_timeout, &args.tls).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: args.service.clone() })
        .await
        .map_err(|s| status_error(&args.server, &s))?;
    let status = ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown);
    println!("{}", status.as_str_name());
    anyhow::ensure!(status == ServingStatus::Serving, "server {} is not serving: {}", args.server, status.as_str_name());
    Ok(())
}

fn request(target: &Target, pixels: Vec<f32>, n: usize) -> PredictRequest {
    let content: Vec<u8> = pixels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto {
            dim: [n as i64, 28, 28, 1].iter().map(|&size| Dim { size, name: String::new() }).collect(),
            unknown_rank: false,
        }),
        tensor_content: content,
        ..Default::default()
    };
    PredictRequest {
        model_spec: Some(ModelSpec {
            name: target.model.clone(),
            version_choice: target.version.map(VersionChoice::Version),
            signature_name: target.signature.clone(),
        }),
        inputs: [("images".to_string(), tensor)].into(),
        output_filter: vec![],
    }
}

fn json(files: &[PathBuf], r: &PredictResponse) -> serde_json::Value {
    let classes = r.outputs.get("classes").map(|t| t.int64_val.clone()).unwrap_or_default();
    let probs = r.outputs.get("probabilities").map(|t| t.float_val.clone()).unwrap_or_default();
    let k = probs.len() / classes.len().max(1);
    let version = match r.model_spec.as_ref().and_then(|s| s.version_choice.clone()) {
        Some(VersionChoice::Version(v)) => serde_json::json!(v),
        _ => serde_json::Value::Null,
    };
    let predictions: Vec<serde_json::Value> = classes
        .iter()
        .enumerate()
        .map(|(i, c)| serde_json::json!({"image": files.get(i), "class": c, "probabilities": &probs[i * k..(i + 1) * k]}))
        .collect();
    serde_json::json!({"model": r.model_spec.as_ref().map(|s| s.name.clone()), "version": version, "predictions": predictions})
}

fn status_error(server: &str, s: &tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("server {server} answered {:?}: {}", s.code(), s.message())
}

async fn predict(args: PredictArgs) -> anyhow::Result<()> {
    if args.image.is_empty() {
        bail!("no --image given (see client --help)");
    }
    let files = images::expand(&args.image)?;
    let mut pixels = Vec::with_capacity(files.len() * 784);
    for f in &files {
        pixels.extend(images::load(f)?);
    }
    let channel = connect(&args.target).await?;
    let mut client = PredictionServiceClient::new(channel).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX);
    let response =
        client.predict(request(&args.target, pixels, files.len())).await.map_err(|s| status_error(&args.target.server, &s))?.into_inner();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&json(&files, &response))?);
    } else {
        print!("{}", text_format::predict_response(&response));
    }
    Ok(())
}

async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.concurrency >= 1 && args.requests >= 1 && args.batch >= 1,
        "--concurrency, --requests and --batch must be at least 1"
    );
    let mut channels = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        channels.push(connect(&args.target).await?);
    }
    let pixels: Vec<f32> = (0..args.batch * 784).map(|i| ((i * 37) % 256) as f32 / 255.0).collect();
    let req = request(&args.target, pixels, args.batch);
    // One request first, so a wrong model name fails loudly instead of counting errors.
    if args.rpc == bench::Rpc::Predict {
        PredictionServiceClient::new(channels[0].clone()).predict(req.clone()).await.map_err(|s| status_error(&args.target.server, &s))?;
    }
    let report = bench::run(channels, args.rpc, req, args.requests).await;
    if args.json {
        let mut j = report.json();
        j["concurrency"] = args.concurrency.into();
        j["batch"] = args.batch.into();
        j["rpc"] = format!("{:?}", args.rpc).to_lowercase().into();
        println!("{j}");
    } else {
        println!("{}", report.text());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let result = runtime.block_on(async {
        match cli.command {
            Some(Command::Bench(args)) => run_bench(args).await,
            Some(Command::Health(args)) => health(args).await,
            None => predict(cli.predict).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("client: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
