//! The text-format config files at start-up (errors naming file, line and column or field) and
//! `version_labels`: resolved in gRPC and REST requests, and re-read with the model config.

mod common;

use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use proto::tensorflow::serving::GetModelStatusRequest;
use proto::tensorflow::serving::model_spec::VersionChoice;
use serde_json::json;
use tonic::Code;

/// Starts the server with `flags` (REST on when `rest`) and returns its start-up error.
async fn start_up_error(flags: &[&str], rest: bool) -> String {
    let mut args = vec!["server", "--port", "0"];
    args.extend_from_slice(flags);
    let options = server::cli::Options::try_parse_from(args).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rest = if rest { Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()) } else { None };
    let served = tokio::time::timeout(Duration::from_secs(30), server::serve(options, listener, rest, std::future::pending()));
    format!("{:#}", served.await.expect("start-up fails at once").expect_err("start-up fails"))
}

#[tokio::test(flavor = "multi_thread")]
async fn start_up_errors_name_the_file_and_line_and_column_or_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let model = ["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()];
    let with = |extra: &[&str]| -> Vec<String> { model.iter().chain(extra).map(|s| s.to_string()).collect() };
    let batching = file("batching.config", "max_batch_size { value: 8 }\n");
    let typo = file("typo.config", "max_batch_size { value: 8 }\n  max_batch_sise { value: 8 }\n");
    let no_pem = file("ssl.config", "server_key: 'key' server_cert: 'cert'");
    let no_ca = file("ssl_no_ca.config", &common::certs::TestPki::new("ca").ssl_config(true).replace("custom_ca", "# custom_ca"));
    let monitoring = file("monitoring.config", "prometheus_config { enable: true }");
    let monitoring_typo = file("monitoring_typo.config", "prometheus_config {\n  enable: true\n  pth: '/m' }");
    let models = file("models.config", "model_config_list {\n  config { name: 'mnist' base_path: 'mnist' model_platfrom: 'tf' }\n}");
    let labels = file(
        "labels.config",
        "model_config_list { config { name: 'mnist' base_path: 'mnist' version_labels { key: 'stable' value: 9 } } }",
    );
    let cases: Vec<(Vec<String>, bool, String)> = vec![
        (with(&["--batching_parameters_file", &batching]), true, "--batching_parameters_file needs --enable_batching".into()),
        (
            with(&["--enable_batching", "--batching_parameters_file", &typo]),
            true,
            format!("{typo}:2:3: field 'max_batch_sise' not found for message 'tensorflow.serving.BatchingParameters'"),
        ),
        (with(&["--ssl_config_file", &no_pem]), true, format!("{no_pem}: server_cert: holds no PEM certificate")),
        (with(&["--ssl_config_file", &no_ca]), true, format!("{no_ca}: client_verify: true needs custom_ca")),
        (with(&["--monitoring_config_file", &monitoring]), false, "pass --rest_api_port".into()),
        (with(&["--monitoring_config_file", &monitoring_typo]), true, format!("{monitoring_typo}:3:3: field 'pth' not found")),
        (vec!["--model_config_file".into(), models.clone()], true, format!("{models}:2:45: field 'model_platfrom' not found")),
        (
            vec!["--model_config_file".into(), labels.clone()],
            true,
            format!("{labels}: version_labels: cannot assign label 'stable' to version 9 of model mnist"),
        ),
    ];
    for (flags, rest, want) in cases {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let err = start_up_error(&flags, rest).await;
        assert!(err.contains(&want), "{flags:?}:\n{err}\nwanted: {want}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The file replaces the four batching flags: both at once is a usage error.
    let both = server::cli::Options::try_parse_from(["server", "--batching_parameters_file", &batching, "--max_batch_size", "8"]);
    assert!(both.unwrap_err().to_string().contains("cannot be used with"));
}

async fn version_for_label(server: &TestServer, label: &str) -> Result<i64, tonic::Status> {
    let mut request = predict_request("mnist", None, float_tensor(&[1, 784], &images(1)));
    request.model_spec.as_mut().unwrap().version_choice = Some(VersionChoice::VersionLabel(label.into()));
    let spec = server.predictions().await.predict(request).await?.into_inner().model_spec.unwrap();
    match spec.version_choice {
        Some(VersionChoice::Version(v)) => Ok(v),
        other => panic!("the response names its version: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn version_labels_resolve_on_grpc_and_rest_and_follow_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let one = export_version(&base, 1, 1);
    export_version(&base, 2, 2);
    let config = dir.path().join("models.config");
    let write = |labels: &[(&str, i64)]| {
        let labels: String = labels.iter().map(|(l, v)| format!("    version_labels {{ key: '{l}' value: {v} }}\n")).collect();
        let text = format!(
            "model_config_list {{\n  config {{\n    name: 'mnist' base_path: 'mnist'\n    model_version_policy {{ all {{}} }}\n{labels}  }}\n}}\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write(&[("stable", 1), ("canary", 2)]);
    let c = config.to_str().unwrap();
    let server = TestServer::start(&["--model_config_file", c, "--model_config_file_poll_wait_seconds", "1"]).await;

    assert_eq!(version_for_label(&server, "stable").await.unwrap(), 1);
    assert_eq!(version_for_label(&server, "canary").await.unwrap(), 2);
    let unknown = version_for_label(&server, "beta").await.unwrap_err();
    assert_eq!((unknown.code(), unknown.message()), (Code::InvalidArgument, "Unrecognized servable version label: beta"));
    let mut spec = spec("mnist", None, "");
    spec.version_choice = Some(VersionChoice::VersionLabel("canary".into()));
    let status = server.models().await.get_model_status(GetModelStatusRequest { model_spec: Some(spec) }).await.unwrap().into_inner();
    assert_eq!(status.model_version_status.iter().map(|s| s.version).collect::<Vec<_>>(), vec![2]);

    // REST: /labels/{label} in status, metadata and predict URLs.
    let (code, r) = http(server.rest, "GET", "/v1/models/mnist/labels/canary", "").await;
    assert_eq!((code, r["model_version_status"][0]["version"].as_str()), (200, Some("2")), "{r}");
    let (code, r) = http(server.rest, "GET", "/v1/models/mnist/labels/stable/metadata", "").await;
    assert_eq!((code, r["model_spec"]["version"].as_str()), (200, Some("1")), "{r}");
    let x = images(1);
    let (classes, _) = expected(&one, &x);
    let (code, r) = http(server.rest, "POST", "/v1/models/mnist/labels/stable:predict", &json!({"instances": [&x]}).to_string()).await;
    assert_eq!((code, r["predictions"][0]["classes"].as_i64()), (200, Some(classes[0])), "{r}");
    let (code, r) = http(server.rest, "POST", "/v1/models/mnist/labels/beta:predict", &json!({"instances": [&x]}).to_string()).await;
    assert_eq!((code, r["error"].as_str()), (400, Some("Unrecognized servable version label: beta")));

    // Labels move when the config file does.
    write(&[("stable", 2), ("canary", 2)]);
    let start = Instant::now();
    while version_for_label(&server, "stable").await.unwrap() != 2 {
        assert!(start.elapsed() < Duration::from_secs(20), "the label did not move");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A label naming a version that is not available is refused; the labels in force stay.
    write(&[("stable", 9)]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(version_for_label(&server, "stable").await.unwrap(), 2);
    assert_eq!(version_for_label(&server, "canary").await.unwrap(), 2);
    server.stop().await.unwrap();
}
