//! Reload soak on loopback: the `server` binary serves while 64 clients (half gRPC, half REST)
//! send predictions and versions are published, a corrupt one and a half-copied one among
//! them, old ones deleted, and a second model is added to and removed from the config file.
//! Every request must succeed (there is always a servable version), the versions in answers
//! must never go backwards, and the server's RSS after the last load/unload cycle must stay
//! within 5 MB of its value after the first (each the least of ten samples over 200 ms, so that
//! the buffers of the requests in flight at that instant do not count).
//!
//! The short form runs in the test suite. `scripts/reload-soak` runs the long form (the same
//! code, 50 cycles of the reference CNN) and keeps its report; the environment sets it up:
//! `SOAK_CYCLES`, `SOAK_CLIENTS`, `SOAK_MODEL` (`tiny` or `reference`), `SOAK_REPORT` (a JSON
//! file to write).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use engine::Device;
use engine::model::{Config, Network};
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::model_version_status::State;
use proto::tensorflow::serving::*;
use serde_json::json;

const REFERENCE_CNN: &str = include_str!("../../trainer/HyperParams.config");

struct Settings {
    cycles: usize,
    clients: usize,
    config: &'static str,
    model: String,
    report: Option<PathBuf>,
}

fn settings() -> Settings {
    let var = |name: &str| std::env::var(name).ok();
    let model = var("SOAK_MODEL").unwrap_or_else(|| "tiny".into());
    Settings {
        cycles: var("SOAK_CYCLES").and_then(|v| v.parse().ok()).unwrap_or(4),
        clients: var("SOAK_CLIENTS").and_then(|v| v.parse().ok()).unwrap_or(64),
        config: if model == "reference" { REFERENCE_CNN } else { SMALL_CNN },
        model,
        report: var("SOAK_REPORT").map(PathBuf::from),
    }
}

/// Publishes version `version` the way an operator should: exported elsewhere, then renamed in.
fn publish(base: &Path, version: i64, config: &str) {
    let staging = base.with_file_name("staging");
    let spec = Config::parse(config).unwrap().model_spec().unwrap();
    let net = Network::new(spec, Device::cpu(), version as u64).unwrap();
    let dir = engine::export::write(&staging, &version.to_string(), &net, json!({}), 0).unwrap();
    std::fs::create_dir_all(base).unwrap();
    std::fs::rename(dir, base.join(version.to_string())).unwrap();
}

struct ServerProcess {
    child: Child,
    grpc: SocketAddr,
    rest: SocketAddr,
}

impl ServerProcess {
    fn start(config_file: &Path) -> Self {
        let rest_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--port", "0", "--host", "127.0.0.1", "--rest_api_port", &rest_port.to_string()])
            .args(["--model_config_file", config_file.to_str().unwrap(), "--model_config_file_poll_wait_seconds", "1"])
            .args(["--file_system_poll_wait_seconds", "1", "--enable_batching", "--max_batch_size", "64", "--batch_timeout_micros", "500"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let grpc = line.trim().strip_prefix("listening on ").expect("the address").parse().unwrap();
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Self { child, grpc, rest: SocketAddr::from(([127, 0, 0, 1], rest_port)) }
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        kib / 1024.0
    }

    /// The resident set without the transient buffers of requests in flight: the smallest of
    /// ten samples 20 ms apart.
    async fn settled_rss_mb(&self) -> f64 {
        let mut least = f64::MAX;
        for _ in 0..10 {
            least = least.min(self.rss_mb());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        least
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Default)]
struct Tally {
    grpc: AtomicU64,
    rest: AtomicU64,
    failures: AtomicU64,
    backwards: AtomicU64,
    samples: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 10 {
            samples.push(what);
        }
    }
}

/// One client: predictions of the newest version until `stop`, each checked.
async fn client(id: usize, server: Arc<(SocketAddr, SocketAddr)>, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let rest = id % 2 == 1;
    let x = images(1);
    let body = json!({"instances": [&x]}).to_string();
    let mut grpc_client = None;
    let mut last = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let version = if rest {
            let (code, r) = http(server.1, "POST", "/v1/models/mnist:predict", &body).await;
            tally.rest.fetch_add(1, Ordering::Relaxed);
            if code != 200 {
                tally.fail(format!("REST {code}: {r}"));
                continue;
            }
            // REST answers carry no version: ask the metadata of what just served.
            None
        } else {
            if grpc_client.is_none() {
                let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.0)).unwrap().connect().await.unwrap();
                grpc_client = Some(prediction_service_client::PredictionServiceClient::new(channel));
            }
            let r = grpc_client.as_mut().unwrap().predict(predict_request("mnist", None, float_tensor(&[1, 784], &x))).await;
            tally.grpc.fetch_add(1, Ordering::Relaxed);
            match r {
                Ok(r) => match r.into_inner().model_spec.and_then(|s| s.version_choice) {
                    Some(VersionChoice::Version(v)) => Some(v),
                    other => {
                        tally.fail(format!("gRPC answer without a version: {other:?}"));
                        None
                    }
                },
                Err(s) => {
                    tally.fail(format!("gRPC {:?}: {}", s.code(), s.message()));
                    None
                }
            }
        };
        if let Some(v) = version {
            if v < last {
                tally.backwards.fetch_add(1, Ordering::Relaxed);
                tally.fail(format!("client {id}: version {v} after {last}"));
            }
            last = v;
        }
    }
}

async fn statuses(server: SocketAddr, model: &str) -> Option<Vec<ModelVersionStatus>> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{server}")).unwrap().connect().await.ok()?;
    let request = GetModelStatusRequest { model_spec: Some(spec(model, None, "")) };
    let r = model_service_client::ModelServiceClient::new(channel).get_model_status(request).await.ok()?;
    Some(r.into_inner().model_version_status)
}

/// Waits until `model`'s status satisfies `done` (60 s at most).
async fn wait_until(server: SocketAddr, model: &str, what: &str, done: impl Fn(Option<&[ModelVersionStatus]>) -> bool) {
    let start = Instant::now();
    loop {
        let s = statuses(server, model).await;
        if done(s.as_deref()) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "waiting for {what}: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is(s: Option<&[ModelVersionStatus]>, version: i64, state: State) -> bool {
    s.is_some_and(|s| s.iter().any(|v| v.version == version && v.state == state as i32))
}

fn write_config(path: &Path, models: &[(&str, &Path)]) {
    let configs: String = models.iter().map(|(n, b)| format!("  config {{ name: '{n}' base_path: '{}' }}\n", b.display())).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("model_config_list {{\n{configs}}}\n")).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_soak() {
    let settings = settings();
    let dir = tempfile::tempdir().unwrap();
    let (base, extra) = (dir.path().join("mnist"), dir.path().join("extra"));
    std::fs::create_dir_all(&base).unwrap();
    publish(&base, 1, settings.config);
    publish(&extra, 1, SMALL_CNN);
    let config_file = dir.path().join("models.config");
    write_config(&config_file, &[("mnist", &base)]);
    let server = ServerProcess::start(&config_file);
    wait_until(server.grpc, "mnist", "version 1", |s| is(s, 1, State::Available)).await;

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let addrs = Arc::new((server.grpc, server.rest));
    let clients: Vec<_> = (0..settings.clients).map(|id| tokio::spawn(client(id, addrs.clone(), tally.clone(), stop.clone()))).collect();

    let start = Instant::now();
    let mut rss = Vec::new();
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut version = 1i64;
    for cycle in 1..=settings.cycles {
        let next = version + 1;
        match cycle % 4 {
            // A corrupt version first (a flipped weight byte): reported, skipped, then deleted.
            1 => {
                publish(&base, next, settings.config);
                let weights = base.join(format!("{next}/weights.safetensors"));
                let mut bytes = std::fs::read(&weights).unwrap();
                let last = bytes.len() - 1;
                bytes[last] ^= 0x55;
                std::fs::write(&weights, bytes).unwrap();
                wait_until(server.grpc, "mnist", "the corrupt version to fail", |s| is(s, next, State::End)).await;
                std::fs::remove_dir_all(base.join(next.to_string())).unwrap();
                *faults.entry("corrupt").or_default() += 1;
                *faults.entry("deleted").or_default() += 1;
                publish(&base, next, settings.config);
            }
            // A half-copied version: model.json and part of the weights, then the rest.
            2 => {
                let staging = dir.path().join("half");
                publish(&staging, next, settings.config);
                let weights = std::fs::read(staging.join(format!("{next}/weights.safetensors"))).unwrap();
                std::fs::create_dir_all(base.join(next.to_string())).unwrap();
                std::fs::copy(staging.join(format!("{next}/model.json")), base.join(format!("{next}/model.json"))).unwrap();
                std::fs::write(base.join(format!("{next}/weights.safetensors")), &weights[..weights.len() / 2]).unwrap();
                wait_until(server.grpc, "mnist", "the half-copied version to fail", |s| is(s, next, State::End)).await;
                std::fs::write(base.join(format!("{next}/weights.safetensors")), &weights).unwrap();
                std::fs::remove_dir_all(staging).unwrap();
                *faults.entry("half_copied").or_default() += 1;
            }
            // A second model added to the config file, then removed.
            3 => {
                write_config(&config_file, &[("mnist", &base), ("extra", &extra)]);
                wait_until(server.grpc, "extra", "model extra to be added", |s| is(s, 1, State::Available)).await;
                *faults.entry("model_added").or_default() += 1;
                write_config(&config_file, &[("mnist", &base)]);
                wait_until(server.grpc, "extra", "model extra to be removed", |s| s.is_none()).await;
                *faults.entry("model_removed").or_default() += 1;
                publish(&base, next, settings.config);
            }
            _ => publish(&base, next, settings.config),
        }
        wait_until(server.grpc, "mnist", "the next version to serve", |s| is(s, next, State::Available)).await;
        wait_until(server.grpc, "mnist", "the previous version to end", |s| is(s, version, State::End)).await;
        // Old versions are deleted as operators prune them.
        if version > 2 {
            let _ = std::fs::remove_dir_all(base.join((version - 2).to_string()));
        }
        version = next;
        rss.push(server.settled_rss_mb().await);
        eprintln!("soak cycle {cycle}/{}: version {version}, RSS {:.1} MB", settings.cycles, rss[rss.len() - 1]);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let seconds = start.elapsed().as_secs_f64();
    let (grpc, rest) = (tally.grpc.load(Ordering::Relaxed), tally.rest.load(Ordering::Relaxed));
    let failures = tally.failures.load(Ordering::Relaxed);
    let growth = rss.last().unwrap() - rss.first().unwrap();
    let report = json!({
        "model": settings.model,
        "cycles": settings.cycles,
        "clients": settings.clients,
        "seconds": seconds,
        "requests": {"grpc": grpc, "rest": rest, "total": grpc + rest, "per_second": (grpc + rest) as f64 / seconds},
        "failures": failures,
        "failure_samples": *tally.samples.lock().unwrap(),
        "versions_backwards": tally.backwards.load(Ordering::Relaxed),
        "faults": faults,
        "rss_mb_after_each_cycle": rss,
        "rss_growth_mb": growth,
    });
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    if let Some(path) = &settings.report {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    assert!(grpc > 0 && rest > 0, "both APIs were used");
    assert_eq!(failures, 0, "every request succeeds: {:?}", tally.samples.lock().unwrap());
    assert!(growth.abs() <= 5.0, "RSS after the last cycle within 5 MB of the first: {rss:?}");
}
