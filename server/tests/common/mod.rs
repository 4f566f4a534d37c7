//! A served model on an ephemeral port, exports to serve, and gRPC clients for the tests.
#![allow(dead_code)]

pub mod certs;

use std::net::SocketAddr;
use std::path::Path;

use clap::Parser;
use engine::Device;
use engine::model::{Config, Network};
use proto::tensorflow::serving::model_service_client::ModelServiceClient;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use proto::tensorflow::serving::{ModelSpec, PredictRequest};
use proto::tensorflow::{DataType, TensorProto};
use tonic::transport::Channel;

/// A tiny CNN, quick to run on the CPU.
pub const SMALL_CNN: &str = include_str!("../../../engine/tests/fixtures/tiny_cnn.toml");

/// Writes version `version` of a model (weights from `seed`) under `base`; returns its network.
pub fn export_version(base: &Path, version: i64, seed: u64) -> Network {
    export_config(base, version, seed, SMALL_CNN)
}

/// Like [`export_version`] for the architecture in `config`.
pub fn export_config(base: &Path, version: i64, seed: u64, config: &str) -> Network {
    let spec = Config::parse(config).unwrap().model_spec().unwrap();
    let net = Network::new(spec, Device::cpu(), seed).unwrap();
    engine::export::write(base, &version.to_string(), &net, serde_json::json!({}), 0).unwrap();
    net
}

/// Distinct test images: image i is a bright band whose position depends on i.
pub fn images(n: usize) -> Vec<f32> {
    (0..n * 784).map(|j| if (j % 784) / 28 % 10 == (j / 784) % 10 { 0.9 } else { ((j * 7919) % 97) as f32 / 400.0 }).collect()
}

/// What the engine itself predicts for `images` with `net`: (classes, probabilities).
pub fn expected(net: &Network, images: &[f32]) -> (Vec<i64>, Vec<f32>) {
    let mut inference = engine::predictor::Inference::new(net, 64);
    let p = inference.predict(net, images).unwrap();
    (p.classes, p.probabilities)
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub rest: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Starts the server with these flags (plus `--port 0`) on 127.0.0.1.
    pub async fn start(flags: &[&str]) -> Self {
        let server = Self::spawn(flags).await;
        server.wait_until_serving().await;
        server
    }

    /// Like [`Self::start`] without waiting until it serves (plain-text health checks cannot
    /// tell when a TLS server does).
    pub async fn spawn(flags: &[&str]) -> Self {
        let mut args = vec!["server", "--port", "0"];
        args.extend_from_slice(flags);
        let options = server::cli::Options::try_parse_from(args).expect("valid flags");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rest_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest = rest_listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(options, listener, Some(rest_listener), async {
            let _ = rx.await;
        }));
        Self { addr, rest, shutdown: Some(tx), task: Some(task) }
    }

    /// Waits until the server answers a health check (the listener accepts connections
    /// before the server has loaded its models and started).
    async fn wait_until_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        for _ in 0..400 {
            if let Ok(channel) = Channel::from_shared(self.url()).unwrap().connect().await
                && HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.is_ok()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the server did not start serving");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect().await.unwrap()
    }

    pub async fn predictions(&self) -> PredictionServiceClient<Channel> {
        PredictionServiceClient::new(self.channel().await).max_decoding_message_size(usize::MAX).max_encoding_message_size(usize::MAX)
    }

    pub async fn models(&self) -> ModelServiceClient<Channel> {
        ModelServiceClient::new(self.channel().await)
    }

    /// Stops accepting, lets requests in flight finish, and returns the server's result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

pub fn spec(name: &str, version: Option<i64>, signature: &str) -> ModelSpec {
    ModelSpec { name: name.into(), version_choice: version.map(VersionChoice::Version), signature_name: signature.into() }
}

pub fn float_tensor(dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(server::tensors::shape(dims)),
        tensor_content: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn predict_request(model: &str, version: Option<i64>, tensor: TensorProto) -> PredictRequest {
    PredictRequest { model_spec: Some(spec(model, version, "")), inputs: [("images".to_string(), tensor)].into(), output_filter: vec![] }
}

/// One HTTP/1.1 request to the REST port: (status code, JSON body).
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = http_exchange(tokio::net::TcpStream::connect(addr).await.unwrap(), method, path, &[], body.as_bytes()).await;
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

/// One HTTP/1.1 request with extra headers on `stream` (plain or TLS): (status, head, body).
pub async fn http_exchange(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut response = Vec::new();
    // A TLS peer may close without close_notify once the response is complete.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_string(), body.to_string())
}

/// The Prometheus scrape at `path` on the REST port.
pub async fn scrape(addr: SocketAddr, path: &str) -> String {
    let (status, head, body) = http_exchange(tokio::net::TcpStream::connect(addr).await.unwrap(), "GET", path, &[], b"").await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain"), "{head}");
    body
}

/// The value of the sample whose line starts with `series` (name and labels), if any.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
}
