//! `--monitoring_config_file` and `--batching_parameters_file`: a Prometheus scrape on the REST
//! port with TensorFlow Serving's series after gRPC and REST traffic through padded batches.

mod common;

use common::*;
use serde_json::json;
use tonic::Code;

#[tokio::test(flavor = "multi_thread")]
async fn a_scrape_has_tensorflow_servings_series_and_ours() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 7);
    let monitoring = dir.path().join("monitoring.config");
    std::fs::write(&monitoring, "prometheus_config {\n  enable: true\n  path: \"/metrics\"\n}\n").unwrap();
    let batching = dir.path().join("batching.config");
    std::fs::write(
        &batching,
        "max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000 }\nallowed_batch_sizes: [4, 8]\n\
         num_batch_threads { value: 1 }\nthread_pool_name { value: 'mnist_pool' }\n",
    )
    .unwrap();
    let server = TestServer::start(&[
        "--model_name",
        "mnist",
        "--model_base_path",
        base.to_str().unwrap(),
        "--enable_batching",
        "--batching_parameters_file",
        batching.to_str().unwrap(),
        "--monitoring_config_file",
        monitoring.to_str().unwrap(),
    ])
    .await;
    let mut client = server.predictions().await;

    // Three images run padded to four (copies of the first): the answers are still each image's own.
    let x = images(3);
    let (classes, _) = expected(&net, &x);
    let r = client.predict(predict_request("mnist", None, float_tensor(&[3, 784], &x))).await.unwrap().into_inner();
    assert_eq!(r.outputs["classes"].int64_val, classes);
    let status = client.predict(predict_request("nope", None, float_tensor(&[1, 784], &x[..784]))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let (code, _) = http(server.rest, "POST", "/v1/models/mnist:predict", &json!({"instances": [&x[..784]]}).to_string()).await;
    assert_eq!(code, 200);
    assert_eq!(http(server.rest, "GET", "/v1/models/mnist", "").await.0, 200);
    assert_eq!(http(server.rest, "GET", "/v1/models/mnist/oops", "").await.0, 400);

    let text = scrape(server.rest, "/metrics").await;
    let at = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    let count = ":tensorflow:serving:request_count";
    assert_eq!(at(&format!("{count}{{model_name=\"mnist\",status=\"OK\"}}")), 3.0);
    assert_eq!(at(&format!("{count}{{model_name=\"nope\",status=\"NOT_FOUND\"}}")), 1.0);
    // A URL that matches no route names no model, as in TensorFlow Serving.
    assert_eq!(at(&format!("{count}{{model_name=\"\",status=\"INVALID_ARGUMENT\"}}")), 1.0);
    let latency = ":tensorflow:serving:request_latency_count";
    assert_eq!(at(&format!("{latency}{{API=\"Predict\",entrypoint=\"GRPC\",model_name=\"mnist\"}}")), 1.0);
    assert_eq!(at(&format!("{latency}{{API=\"predict\",entrypoint=\"REST\",model_name=\"mnist\"}}")), 1.0);
    assert_eq!(at(&format!("{latency}{{API=\"\",entrypoint=\"REST\",model_name=\"mnist\"}}")), 1.0);
    assert!(
        text.contains(":tensorflow:serving:request_latency_bucket{API=\"Predict\",entrypoint=\"GRPC\",model_name=\"mnist\",le=\"10\"}")
    );
    assert_eq!(at(":tensorflow:serving:request_example_counts_sum{model=\"mnist\"}"), 4.0);
    let batching = ":tensorflow:serving:batching_session";
    assert_eq!(at(&format!("{batching}:input_batch_size_sum")), 4.0);
    assert_eq!(at(&format!("{batching}:processed_batch_size_sum")), 8.0);
    assert_eq!(at(&format!("{batching}:padding_size_sum{{execution_batch_size=\"4\"}}")), 4.0);
    assert_eq!(at(&format!("{batching}:queuing_latency_count{{thread_pool_name=\"mnist_pool\"}}")), 2.0);
    let path = base.join("1").display().to_string();
    assert_eq!(at(&format!(":tensorflow:cc:saved_model:load_attempt_count{{model_path=\"{path}\",status=\"success\"}}")), 1.0);
    assert!(at(&format!(":tensorflow:cc:saved_model:load_latency{{model_path=\"{path}\"}}")) > 0.0);
    assert_eq!(at(":mnist_rs:serving:model_version_state{model_name=\"mnist\",state=\"AVAILABLE\",version=\"1\"}"), 1.0);
    assert_eq!(at(":mnist_rs:serving:model_versions_available{model_name=\"mnist\"}"), 1.0);
    assert_eq!(at(":mnist_rs:serving:batch_queue_depth{model_name=\"mnist\",version=\"1\"}"), 0.0);
    assert!(text.lines().any(|l| l.starts_with(":mnist_rs:serving:device{") && l.contains("kind=\"cpu\"")), "{text}");
    for kind in [("request_count", "counter"), ("request_latency", "histogram"), ("batching_session:padding_size", "histogram")] {
        assert!(text.contains(&format!("# TYPE :tensorflow:serving:{} {}", kind.0, kind.1)), "{kind:?}");
    }
    // Only the configured path serves metrics.
    assert_eq!(http(server.rest, "GET", "/monitoring/prometheus/metrics", "").await.0, 404);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_metrics_path_is_tensorflow_servings() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 7);
    let monitoring = dir.path().join("monitoring.config");
    std::fs::write(&monitoring, "prometheus_config: { enable: true }").unwrap();
    let server = TestServer::start(&[
        "--model_name",
        "mnist",
        "--model_base_path",
        base.to_str().unwrap(),
        "--monitoring_config_file",
        monitoring.to_str().unwrap(),
    ])
    .await;
    assert_eq!(http(server.rest, "GET", "/v1/models/mnist", "").await.0, 200);
    let text = scrape(server.rest, "/monitoring/prometheus/metrics").await;
    assert!(text.contains("# TYPE :tensorflow:serving:request_count counter"), "{text}");
    // Every sample line is `name{labels} value` with a name as TensorFlow Serving writes it.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(series.starts_with(":tensorflow:") || series.starts_with(":mnist_rs:"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    server.stop().await.unwrap();
}
