//! `client bench`: a closed-loop load generator. `concurrency` workers, each on its own
//! connection, send requests back to back until `requests` are done; prints requests/s,
//! latency percentiles and errors (text, or JSON with --json).

use std::time::{Duration, Instant};

use proto::tensorflow::serving::PredictRequest;
use proto::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// What each request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rpc {
    /// Predict with `batch` images.
    Predict,
    /// grpc.health.v1 Check: a no-op unary RPC on the same server, the transport's ceiling.
    Health,
}

pub struct Report {
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    pub latencies: Vec<Duration>,
}

impl Report {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1);
        self.latencies[i].as_secs_f64() * 1e3
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests,
            "errors": self.errors,
            "seconds": self.seconds,
            "requests_per_s": self.requests as f64 / self.seconds,
            "p50_ms": self.percentile(0.50),
            "p90_ms": self.percentile(0.90),
            "p99_ms": self.percentile(0.99),
        })
    }

    pub fn text(&self) -> String {
        format!(
            "{} requests in {:.2} s: {:.0} requests/s; latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms; {} errors",
            self.requests,
            self.seconds,
            self.requests as f64 / self.seconds,
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.errors
        )
    }
}

pub async fn run(channels: Vec<Channel>, rpc: Rpc, request: PredictRequest, requests: usize) -> Report {
    let concurrency = channels.len();
    let start = Instant::now();
    let mut workers = Vec::new();
    for (w, channel) in channels.into_iter().enumerate() {
        let count = requests / concurrency + usize::from(w < requests % concurrency);
        let request = request.clone();
        workers.push(tokio::spawn(async move {
            let mut predict = PredictionServiceClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
            let mut health = HealthClient::new(channel);
            let (mut latencies, mut errors) = (Vec::with_capacity(count), 0usize);
            for _ in 0..count {
                let t = Instant::now();
                let ok = match rpc {
                    Rpc::Predict => predict.predict(request.clone()).await.is_ok(),
                    Rpc::Health => health.check(HealthCheckRequest { service: String::new() }).await.is_ok(),
                };
                latencies.push(t.elapsed());
                errors += usize::from(!ok);
            }
            (latencies, errors)
        }));
    }
    let mut report = Report { requests, errors: 0, seconds: 0.0, latencies: Vec::with_capacity(requests) };
    for w in workers {
        let (latencies, errors) = w.await.expect("bench worker");
        report.latencies.extend(latencies);
        report.errors += errors;
    }
    report.seconds = start.elapsed().as_secs_f64();
    report.latencies.sort();
    report
}
