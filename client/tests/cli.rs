//! The `client` binary against our server (started in-process on an ephemeral port).

use std::process::{Command, Output};

use clap::Parser;
use engine::model::{Config, Network};

const SMALL_CNN: &str = include_str!("../../engine/tests/fixtures/tiny_cnn.toml");

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_client")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn data(name: &str) -> String {
    format!("{}/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn predicts_prints_and_reports_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = Network::new(Config::parse(SMALL_CNN).unwrap().model_spec().unwrap(), engine::Device::cpu(), 3).unwrap();
    engine::export::write(&base, "1", &net, serde_json::json!({}), 0).unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let options =
        server::cli::Options::try_parse_from(["server", "--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server::serve(options, listener, None, async {
        let _ = stopped.await;
    }));

    // TensorFlow Serving's text form. The listener is bound: the connection waits for the model to load.
    let out = client(&["--image", &data("7.png"), "--model", "mnist", "--server", &addr]);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout);
    for want in [
        "outputs {\n  key: \"classes\"",
        "dtype: DT_INT64",
        "int64_val: ",
        "key: \"probabilities\"",
        "dtype: DT_FLOAT",
        "size: 10",
        "model_spec {\n  name: \"mnist\"",
        "value: 1",
        "signature_name: \"serving_default\"",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    assert_eq!(t.matches("float_val: ").count(), 10);

    // A directory is one batched request; JSON output.
    let out = client(&["--image", &data(""), "--server", &addr, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["predictions"].as_array().unwrap().len(), 10);
    assert_eq!(j["version"], 1);
    let p: f64 = j["predictions"][3]["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
    assert!((p - 1.0).abs() < 1e-4);

    // Load generator, and its no-op ceiling.
    for rpc in ["predict", "health"] {
        let out = client(&["bench", "--server", &addr, "--concurrency", "4", "--requests", "40", "--rpc", rpc, "--json"]);
        assert!(out.status.success(), "{}", text(&out));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((j["requests"].as_u64(), j["errors"].as_u64()), (Some(40), Some(0)), "{rpc}");
        assert!(j["p99_ms"].as_f64().unwrap() >= j["p50_ms"].as_f64().unwrap());
    }

    // Errors: one line naming the status, the file, or the address; non-zero exit.
    let out = client(&["--image", &data("0.png"), "--model", "nope", "--server", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("NotFound") && text(&out).contains("nope"), "{}", text(&out));
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"not an image").unwrap();
    let out = client(&["--image", bad.to_str().unwrap(), "--server", &addr]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("bad.png"), "{}", text(&out));
    runtime.block_on(async {
        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    });
    let out = client(&["--image", &data("0.png"), "--server", &addr, "--connect_timeout", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains(&format!("cannot reach the server at {addr}")), "{}", text(&out));
}

#[test]
fn other_image_formats_sizes_and_colours_are_read() {
    // A dark digit on white paper, 56x40 RGB JPEG and BMP: read and converted before connecting.
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::from_fn(56, 40, |x, y| {
        if (20..36).contains(&x) && (8..32).contains(&y) { image::Rgb([10, 10, 10]) } else { image::Rgb([245, 245, 245]) }
    });
    for name in ["paper.jpg", "paper.bmp"] {
        let path = dir.path().join(name);
        img.save(&path).unwrap();
        let out = client(&["--image", path.to_str().unwrap(), "--server", "127.0.0.1:1", "--connect_timeout", "0.2"]);
        assert!(text(&out).contains("cannot reach the server"), "{name}: {}", text(&out));
    }
}

#[path = "../../server/tests/common/certs.rs"]
mod certs;

/// `--tls-ca`, `--tls-cert`, `--tls-key` against a server with TensorFlow Serving's
/// `client_verify: true`, and `client health` (the container's health check).
#[test]
fn mutual_tls_and_the_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = Network::new(Config::parse(SMALL_CNN).unwrap().model_spec().unwrap(), engine::Device::cpu(), 3).unwrap();
    engine::export::write(&base, "1", &net, serde_json::json!({}), 0).unwrap();
    let pki = certs::TestPki::new("test CA");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let ssl = file("ssl.config", &pki.ssl_config(true));
    let (ca, cert, key) = (file("ca.pem", &pki.ca), file("client.pem", &pki.client.cert), file("client.key", &pki.client.key));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let flags = ["server", "--model_name", "mnist", "--model_base_path", base.to_str().unwrap(), "--ssl_config_file", &ssl];
    let options = server::cli::Options::try_parse_from(flags).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server::serve(options, listener, None, async {
        let _ = stopped.await;
    }));

    let tls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    let out = client(&[&["--image", &data("7.png"), "--server", &addr, "--json"][..], &tls].concat());
    assert!(out.status.success(), "{}", text(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["version"], 1);
    let out = client(&[&["health", "--server", &addr][..], &tls].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "SERVING");

    // Without a client certificate the server refuses; without TLS the client cannot talk to it.
    let out = client(&["--image", &data("7.png"), "--server", &addr, "--tls-ca", &ca]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = client(&["health", "--server", &addr, "--connect_timeout", "2"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // A certificate needs its key; a file that is missing is named.
    let out = client(&["health", "--server", &addr, "--tls-ca", &ca, "--tls-cert", &cert]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--tls-key"), "{}", text(&out));
    let out = client(&["health", "--server", &addr, "--tls-ca", "/nonexistent/ca.pem"]);
    assert!(out.status.code() == Some(1) && text(&out).contains("/nonexistent/ca.pem"), "{}", text(&out));
    runtime.block_on(async {
        let _ = stop.send(());
        serving.await.unwrap().unwrap();
    });
}
