//! A server that never falls over: damaged versions are reported and skipped while hot reload
//! goes on, status tells the truth, non-finite numbers are refused, every request has a
//! deadline, and the model config file is re-read.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use proto::tensorflow::error::Code as TfCode;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::model_version_status::State;
use proto::tensorflow::serving::*;
use serde_json::{Value, json};
use tonic::Code;

/// Exports version `version`, then edits its model.json's architecture (as if a broken export
/// had been copied in).
fn export_damaged(base: &Path, version: i64, edit: impl FnOnce(&mut Value)) {
    let staging = base.with_file_name(format!("staging-{version}"));
    export_version(&staging, version, version as u64);
    let dir = staging.join(version.to_string());
    let path = dir.join("model.json");
    let mut model: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut model["architecture"]);
    std::fs::write(&path, serde_json::to_vec_pretty(&model).unwrap()).unwrap();
    std::fs::rename(&dir, base.join(version.to_string())).unwrap();
}

async fn status(server: &TestServer, model: &str) -> Result<Vec<ModelVersionStatus>, tonic::Status> {
    let request = GetModelStatusRequest { model_spec: Some(spec(model, None, "")) };
    Ok(server.models().await.get_model_status(request).await?.into_inner().model_version_status)
}

/// Polls GetModelStatus until `done` holds (20 s at most).
async fn wait_status(
    server: &TestServer,
    model: &str,
    what: &str,
    done: impl Fn(&[ModelVersionStatus]) -> bool,
) -> Vec<ModelVersionStatus> {
    let start = Instant::now();
    loop {
        let s = status(server, model).await.unwrap_or_default();
        if done(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "waiting for {what}; status: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_of(s: &[ModelVersionStatus], version: i64) -> Option<State> {
    s.iter().find(|v| v.version == version).and_then(|v| State::try_from(v.state).ok())
}

async fn predicted_version(server: &TestServer, model: &str) -> i64 {
    let r = server.predictions().await.predict(predict_request(model, None, float_tensor(&[1, 784], &images(1)))).await.unwrap();
    match r.into_inner().model_spec.unwrap().version_choice {
        Some(VersionChoice::Version(v)) => v,
        other => panic!("{other:?}"),
    }
}

fn poll_flags(base: &Path) -> Vec<String> {
    ["--model_name", "mnist", "--model_base_path", base.to_str().unwrap(), "--file_system_poll_wait_seconds", "1"]
        .map(String::from)
        .to_vec()
}

async fn start(flags: &[String]) -> TestServer {
    TestServer::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_version_is_reported_and_hot_reload_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 3, 3);
    let server = start(&poll_flags(&base)).await;
    assert_eq!(predicted_version(&server, "mnist").await, 3);

    // Version 4: a max-pool stride of [0, 0] (this once killed the version poller).
    export_damaged(&base, 4, |arch| {
        let layers = arch["layers"].as_array_mut().unwrap();
        let pool = layers.iter_mut().find(|l| l["type"] == "maxpool").unwrap();
        pool["stride"] = json!([0, 0]);
    });
    let s = wait_status(&server, "mnist", "version 4 to fail", |s| state_of(s, 4) == Some(State::End)).await;
    assert_eq!(s.iter().map(|v| v.version).collect::<Vec<_>>(), vec![4, 3], "newest first");
    let failed = s[0].status.as_ref().unwrap();
    assert_eq!(failed.error_code, TfCode::InvalidArgument as i32);
    assert!(failed.error_message.contains("4/model.json") && failed.error_message.contains("maxpool 'pool1'"), "{}", failed.error_message);
    assert_eq!(state_of(&s, 3), Some(State::Available));
    assert_eq!(predicted_version(&server, "mnist").await, 3, "version 3 keeps serving");
    let err = server.predictions().await.predict(predict_request("mnist", Some(4), float_tensor(&[1, 784], &images(1)))).await;
    assert_eq!(err.unwrap_err().code(), Code::NotFound);

    // REST says the same.
    let (code, body) = http(server.rest, "GET", "/v1/models/mnist", "").await;
    assert_eq!(code, 200);
    assert_eq!(body["model_version_status"][0]["version"], "4");
    assert_eq!(body["model_version_status"][0]["state"], "END");
    assert_eq!(body["model_version_status"][0]["status"]["error_code"], "INVALID_ARGUMENT");
    assert_eq!(body["model_version_status"][1]["state"], "AVAILABLE");
    let (code, body) = http(server.rest, "GET", "/v1/models/mnist/versions/4", "").await;
    assert_eq!((code, body["model_version_status"][0]["state"].as_str()), (200, Some("END")));

    // Version 5: no layers at all. Then a valid version 6 is loaded: hot reload is alive.
    export_damaged(&base, 5, |arch| arch["layers"] = json!([]));
    wait_status(&server, "mnist", "version 5 to fail", |s| state_of(s, 5) == Some(State::End)).await;
    export_version(&base, 6, 6);
    let s = wait_status(&server, "mnist", "version 6 to serve", |s| state_of(s, 6) == Some(State::Available)).await;
    assert_eq!(predicted_version(&server, "mnist").await, 6);
    // Version 3 was unloaded cleanly: END with OK.
    let s = if state_of(&s, 3) == Some(State::End) {
        s
    } else {
        wait_status(&server, "mnist", "version 3 to end", |s| state_of(s, 3) == Some(State::End)).await
    };
    let three = s.iter().find(|v| v.version == 3).unwrap();
    assert_eq!(three.status.as_ref().unwrap().error_code, TfCode::Ok as i32);
    assert_eq!(s.iter().map(|v| v.version).collect::<Vec<_>>(), vec![6, 5, 4, 3]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_or_half_copied_version_ends_with_its_error_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    let server = start(&poll_flags(&base)).await;
    // Version 2 half copied: weights truncated -> DATA_LOSS; finishing the copy loads it.
    let staging = dir.path().join("staging");
    export_version(&staging, 2, 2);
    let weights = std::fs::read(staging.join("2/weights.safetensors")).unwrap();
    std::fs::create_dir_all(base.join("2")).unwrap();
    std::fs::copy(staging.join("2/model.json"), base.join("2/model.json")).unwrap();
    std::fs::write(base.join("2/weights.safetensors"), &weights[..weights.len() / 3]).unwrap();
    let s = wait_status(&server, "mnist", "version 2 to fail", |s| state_of(s, 2) == Some(State::End)).await;
    let two = s.iter().find(|v| v.version == 2).unwrap().status.clone().unwrap();
    assert_eq!(two.error_code, TfCode::DataLoss as i32, "{}", two.error_message);
    assert!(two.error_message.contains("incomplete copy"), "{}", two.error_message);
    std::fs::write(base.join("2/weights.safetensors"), &weights).unwrap();
    wait_status(&server, "mnist", "version 2 to serve", |s| state_of(s, 2) == Some(State::Available)).await;
    // A version directory without model.json -> NOT_FOUND.
    std::fs::create_dir_all(base.join("7")).unwrap();
    let s = wait_status(&server, "mnist", "version 7 to fail", |s| state_of(s, 7) == Some(State::End)).await;
    assert_eq!(s[0].status.as_ref().unwrap().error_code, TfCode::NotFound as i32);
    // A non-canonical name is not a version directory.
    export_version(&dir.path().join("padded"), 8, 8);
    std::fs::rename(dir.path().join("padded/8"), base.join("008")).unwrap();
    // Deleting it forgets it; version 2 still serves.
    std::fs::remove_dir_all(base.join("7")).unwrap();
    let s = wait_status(&server, "mnist", "version 7 to be forgotten", |s| state_of(s, 7).is_none()).await;
    assert!(state_of(&s, 8).is_none(), "008 is not version 8: {s:?}");
    assert_eq!(predicted_version(&server, "mnist").await, 2);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn non_finite_inputs_are_refused_by_index_and_outputs_are_never_nan() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    let server = start(&poll_flags(&base)).await;
    let mut client = server.predictions().await;
    let mut x = images(2);
    x[784 + 100] = f32::NAN;
    let err = client.predict(predict_request("mnist", None, float_tensor(&[2, 784], &x))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("'images'") && err.message().contains("flat index 884 (example 1, element 100)"), "{}", err.message());
    let all_nan = vec![f32::NAN; 784];
    let err = client.predict(predict_request("mnist", None, float_tensor(&[1, 784], &all_nan))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // Finite but absurd inputs may overflow the model: then they are refused; an answer never
    // holds a NaN or infinite probability.
    let absurd: Vec<Vec<f32>> = vec![
        vec![3e38; 784],
        vec![f32::MAX; 784],
        (0..784).map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX }).collect(),
        (0..784).map(|i| if i % 3 == 0 { -3e38 } else { 3e38 }).collect(),
    ];
    let mut refused = 0;
    for x in &absurd {
        match client.predict(predict_request("mnist", None, float_tensor(&[1, 784], x))).await {
            Ok(r) => assert!(r.into_inner().outputs["probabilities"].float_val.iter().all(|p| p.is_finite())),
            Err(e) => {
                assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
                assert!(e.message().contains("example 0 overflows"), "{}", e.message());
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "at least one of these overflows the model");

    // REST takes TensorFlow Serving's NaN / Infinity literals and answers 400 naming the index.
    let mut row: Vec<String> = images(1).iter().map(f32::to_string).collect();
    row[5] = "NaN".into();
    row[6] = "-Infinity".into();
    let body = format!("{{\"instances\": [[{}]]}}", row.join(", "));
    let (code, r) = http(server.rest, "POST", "/v1/models/mnist:predict", &body).await;
    assert_eq!(code, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("NaN at flat index 5"), "{r}");
    row[5] = "Infinity".into();
    let (code, r) = http(server.rest, "POST", "/v1/models/mnist:predict", &format!("{{\"inputs\": [[{}]]}}", row.join(","))).await;
    assert_eq!(code, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("inf at flat index 5"), "{r}");
    for x in &absurd {
        let (code, r) = http(server.rest, "POST", "/v1/models/mnist:predict", &json!({"instances": [x]}).to_string()).await;
        match code {
            200 => assert!(r["predictions"][0]["probabilities"].as_array().unwrap().iter().all(Value::is_f64), "{r}"),
            _ => assert_eq!(code, 400, "{r}"),
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_has_a_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    // A batch waits up to 60 s for company: only a deadline ends the wait.
    let mut flags = poll_flags(&base);
    flags.extend(
        ["--enable_batching", "--max_batch_size", "1000", "--batch_timeout_micros", "60000000", "--rest_api_timeout_in_ms", "300"]
            .map(String::from),
    );
    let server = start(&flags).await;
    let start = Instant::now();
    let body = json!({"instances": [images(1)]}).to_string();
    let (code, r) = http(server.rest, "POST", "/v1/models/mnist:predict", &body).await;
    assert_eq!(code, 504, "{r}");
    assert!(r["error"].as_str().unwrap().contains("timed out"), "{r}");
    assert!(start.elapsed() < Duration::from_secs(10));

    let start = Instant::now();
    let mut request = tonic::Request::new(predict_request("mnist", None, float_tensor(&[1, 784], &images(1))));
    request.set_timeout(Duration::from_millis(300));
    let err = server.predictions().await.predict(request).await.unwrap_err();
    assert!(matches!(err.code(), Code::DeadlineExceeded | Code::Cancelled), "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_model_config_file_is_reread() {
    let dir = tempfile::tempdir().unwrap();
    export_version(&dir.path().join("a"), 1, 1);
    export_version(&dir.path().join("b"), 2, 2);
    let config = dir.path().join("models.config");
    let write = |names: &[&str]| {
        let configs: String = names.iter().map(|n| format!("  config {{ name: '{n}' base_path: '{n}' }}\n")).collect();
        std::fs::write(&config, format!("model_config_list {{\n{configs}}}\n")).unwrap();
    };
    write(&["a"]);
    let c = config.to_str().unwrap().to_string();
    let server = start(&["--model_config_file", &c, "--model_config_file_poll_wait_seconds", "1"].map(String::from)).await;
    assert_eq!(predicted_version(&server, "a").await, 1);
    assert_eq!(status(&server, "b").await.unwrap_err().code(), Code::NotFound);

    write(&["a", "b"]);
    wait_status(&server, "b", "model b to be added", |s| state_of(s, 2) == Some(State::Available)).await;
    assert_eq!(predicted_version(&server, "b").await, 2);

    // A file that does not parse is logged and the current config kept.
    std::fs::write(&config, "model_config_list { config { name: 'a' ").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(predicted_version(&server, "b").await, 2);

    write(&["b"]);
    let start = Instant::now();
    while status(&server, "a").await.is_ok() {
        assert!(start.elapsed() < Duration::from_secs(20), "model a was not removed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = server.predictions().await.predict(predict_request("a", None, float_tensor(&[1, 784], &images(1)))).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(predicted_version(&server, "b").await, 2);
    server.stop().await.unwrap();
}
