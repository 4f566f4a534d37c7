//! The `server` binary: start-up, flags and environment, errors, and SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;

fn server() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_server"));
    c.env_remove("MODEL_NAME").env_remove("MODEL_PATH").env("RUST_LOG", "info");
    c
}

#[test]
fn sigterm_finishes_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    // The container's way: MODEL_NAME and MODEL_PATH.
    let mut child = server()
        .args(["--port", "0", "--host", "127.0.0.1"])
        .env("MODEL_NAME", "mnist")
        .env("MODEL_PATH", &base)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.trim().strip_prefix("listening on ").expect("first line names the address").to_string();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut client = proto::tensorflow::serving::prediction_service_client::PredictionServiceClient::new(channel);
        let r = client.predict(predict_request("mnist", None, float_tensor(&[1, 784], &images(1)))).await.unwrap();
        assert_eq!(r.into_inner().outputs["classes"].int64_val.len(), 1);
    });

    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("loaded from") && log.contains("shutting down"), "{log}");
    // stderr is a pipe here, not a terminal: plain text, no colour codes.
    assert!(!log.contains('\x1b'), "ANSI escapes in a log that is not a terminal: {log:?}");
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = server().args(["--port", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--model_base_path") && err.contains("MODEL_PATH") && !err.contains("panicked"), "{err}");

    let config = dir.path().join("bad.config");
    std::fs::write(&config, "model_config_list { config { name: 'a' } }").unwrap();
    let out = server().args(["--port", "0", "--model_config_file", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.config") && err.contains("base_path is empty"), "{err}");

    let out = server().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--model_base_path",
        "--model_config_file",
        "--model_config_file_poll_wait_seconds",
        "--enable_batching",
        "--batching_parameters_file",
        "--max_enqueued_batches",
        "--monitoring_config_file",
        "--ssl_config_file",
        "--grpc_health_port",
        "MODEL_NAME",
    ] {
        assert!(help.contains(flag), "--help mentions {flag}");
    }
}

/// Whoever started the server may close its stdout at once: the announcements it cannot print
/// are no reason to stop serving.
#[test]
fn a_closed_stdout_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, rest_port) = (free_port(), free_port());
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = server()
        .args(["--port", &port.to_string(), "--rest_api_port", &rest_port.to_string(), "--host", "127.0.0.1"])
        .args(["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()])
        .stdout(writer)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answered = runtime.block_on(async {
        for _ in 0..200 {
            if let Ok(channel) = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await {
                let mut client = proto::tensorflow::serving::prediction_service_client::PredictionServiceClient::new(channel);
                if client.predict(predict_request("mnist", None, float_tensor(&[1, 784], &images(1)))).await.is_ok() {
                    return true;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    });
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(answered && still_running, "the server answers with its stdout closed");
}
