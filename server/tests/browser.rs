//! The draw-a-digit page in headless Chromium (Debian's `chromium`, driven by playwright-core
//! from `web/tests/node_modules`, WebGPU on SwiftShader): the `server` binary serves a CNN
//! trained here on real MNIST, and `web/tests/page.test.mjs` checks the page against it. Also
//! the page's own unit tests: the MNIST-style preprocessing, and the plan replayer on a
//! hand-made plan. A missing chromium, node, playwright-core, MNIST or WebGPU adapter fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use engine::Device;
use engine::data::{Dataset, Split};
use engine::model::{Config, Network};
use engine::optim::Optimizer;
use engine::predictor::Inference;

/// A small CNN that learns MNIST to ~95% in a few hundred steps on the CPU.
const PAGE_CNN: &str = r#"
[model]
[[model.layers]]
type = "conv2d"
filters = 8
kernel_size = 5
padding = "same"
activation = "relu"
[[model.layers]]
type = "maxpool"
[[model.layers]]
type = "conv2d"
filters = 16
kernel_size = 5
padding = "same"
activation = "relu"
[[model.layers]]
type = "maxpool"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
"#;

/// Every layer kind (untrained): its plan puts more of the engine's WGSL through Chromium's compiler.
const EVERY_LAYER_CNN: &str = include_str!("../../engine/tests/fixtures/every_layer_cnn.toml");

const TRAINING_STEPS: usize = 300;
const TRAINING_BATCH: usize = 50;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn mnist_dir() -> PathBuf {
    repo().join("data/mnist")
}

/// Trains [`PAGE_CNN`] on the first TRAINING_STEPS * TRAINING_BATCH real training images and
/// exports it as version 1 under `base`; returns its accuracy on the first 1,000 test images.
fn export_trained(base: &Path) -> f64 {
    let dir = mnist_dir();
    let train =
        Dataset::load(&dir, Split::Train, 10).expect("MNIST missing: run scripts/fetch-mnist").truncate(TRAINING_STEPS * TRAINING_BATCH);
    let test = Dataset::load(&dir, Split::Test, 10).expect("MNIST missing: run scripts/fetch-mnist").truncate(1000);
    let config = Config::parse(PAGE_CNN).unwrap();
    let mut net = Network::new(config.model_spec().unwrap(), Device::cpu(), 11).unwrap();
    let mut optimizer = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut workspace = net.workspace(TRAINING_BATCH, true);
    for step in 0..TRAINING_STEPS {
        let images = &train.images[step * TRAINING_BATCH * 784..(step + 1) * TRAINING_BATCH * 784];
        let labels = &train.labels[step * TRAINING_BATCH..(step + 1) * TRAINING_BATCH];
        net.train_step(&mut workspace, &mut optimizer, images, labels, 2e-3, step as u32);
    }
    engine::export::write(base, "1", &net, serde_json::json!({}), 0).unwrap();
    Inference::new(&net, 500).evaluate(&net, &test, |_| {}).unwrap().accuracy
}

fn export_untrained(base: &Path, config: &str) {
    let net = Network::new(Config::parse(config).unwrap().model_spec().unwrap(), Device::cpu(), 5).unwrap();
    engine::export::write(base, "1", &net, serde_json::json!({}), 0).unwrap();
}

/// The `server` binary on 127.0.0.1 with a REST port of its own; killed when dropped.
struct Server {
    child: Child,
    rest: String,
}

impl Server {
    fn start(config_file: &Path, extra: &[&str]) -> Self {
        let rest_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_server"))
            .args(["--port", "0", "--host", "127.0.0.1", "--rest_api_port", &rest_port.to_string()])
            .arg("--model_config_file")
            .arg(config_file)
            .args(extra)
            .env_remove("MODEL_NAME")
            .env_remove("MODEL_PATH")
            .env("RUST_LOG", "warn") // its warnings and errors reach the test's output
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server binary starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on "), "the server's first line: {line:?}");
        let server = Self { child, rest: format!("127.0.0.1:{rest_port}") };
        server.wait_until_serving(&["mnist", "every_layer"]);
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.rest)
    }

    fn wait_until_serving(&self, models: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for model in models {
            while !get(&self.rest, &format!("/v1/models/{model}")).is_some_and(|body| body.contains("AVAILABLE")) {
                assert!(Instant::now() < deadline, "model {model} did not become available");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The body of a GET on `addr`, or None when the server does not answer (yet).
fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response.split_once("\r\n\r\n")?.1.to_string())
}

/// Runs `node web/tests/<script> <args>` and fails the test if it fails.
fn node(script: &str, args: &[&str]) {
    let tests = repo().join("web/tests");
    assert!(
        tests.join("node_modules/playwright-core/package.json").exists(),
        "playwright-core is not installed in web/tests: run `npm ci` there (scripts/test does)"
    );
    let status = Command::new("node")
        .arg(tests.join(script))
        .args(args)
        .current_dir(repo())
        .status()
        .unwrap_or_else(|e| panic!("cannot run node (apt-get install -y nodejs npm; scripts/test does): {e}"));
    assert!(status.success(), "node web/tests/{script} failed ({status}); its report is above");
}

#[test]
fn page_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let accuracy = export_trained(&dir.path().join("mnist"));
    assert!(accuracy > 0.9, "the page's model learned too little: {accuracy}");
    export_untrained(&dir.path().join("every_layer"), EVERY_LAYER_CNN);
    let config = dir.path().join("models.config");
    let entry = |name: &str| format!("  config {{ name: '{name}' base_path: '{}' }}\n", dir.path().join(name).display());
    std::fs::write(&config, format!("model_config_list {{\n{}{}}}\n", entry("mnist"), entry("every_layer"))).unwrap();

    let page = Server::start(&config, &[]);
    // A second server that lets the first one's pages call it (CORS).
    let cors = Server::start(&config, &["--rest_api_cors_origin", &page.url()]);
    let mnist = mnist_dir();
    node("page.test.mjs", &[&page.url(), mnist.to_str().unwrap(), &cors.url()]);
}

#[test]
fn preprocessing_makes_images_as_mnist_was_made() {
    node("preprocess.test.mjs", &[mnist_dir().to_str().unwrap()]);
}

#[test]
fn plan_replayer_runs_a_hand_made_plan() {
    node("replayer.test.mjs", &[]);
}
