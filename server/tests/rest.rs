//! TensorFlow Serving's REST API over real HTTP: status, metadata, predict in row and columnar
//! form, and its error codes.

mod common;

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn rest_status_metadata_predict_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 7);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).await;
    let rest = server.rest;

    let (code, status) = http(rest, "GET", "/v1/models/mnist", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        status,
        json!({"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    );
    assert_eq!(http(rest, "GET", "/v1/models/mnist/versions/1", "").await.0, 200);

    let (code, meta) = http(rest, "GET", "/v1/models/mnist/metadata", "").await;
    assert_eq!(code, 200);
    assert_eq!(meta["model_spec"]["version"], "1");
    let input = &meta["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]["images"];
    assert_eq!(input["dtype"], "DT_FLOAT");
    assert_eq!(input["tensor_shape"]["dim"][1]["size"], "28");

    // Row format: instances as [28, 28] images and as {"images": [784]} objects.
    let x = images(2);
    let (classes, probs) = expected(&net, &x);
    let square: Vec<Vec<Vec<f32>>> = (0..2).map(|i| x[i * 784..(i + 1) * 784].chunks(28).map(<[f32]>::to_vec).collect()).collect();
    let (code, r) = http(rest, "POST", "/v1/models/mnist:predict", &json!({"instances": square}).to_string()).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["predictions"][1]["classes"], classes[1]);
    let p: Vec<f32> = r["predictions"][1]["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    for (g, w) in p.iter().zip(&probs[10..20]) {
        assert!((g - w).abs() < 1e-5);
    }
    let objects: Vec<_> = (0..2).map(|i| json!({"images": &x[i * 784..(i + 1) * 784]})).collect();
    let body = json!({"signature_name": "serving_default", "instances": objects}).to_string();
    let (code, r) = http(rest, "POST", "/v1/models/mnist/versions/1:predict", &body).await;
    assert_eq!((code, r["predictions"][0]["classes"].as_i64()), (200, Some(classes[0])));

    // Columnar format.
    let flat: Vec<&[f32]> = x.chunks(784).collect();
    let (code, r) = http(rest, "POST", "/v1/models/mnist:predict", &json!({"inputs": {"images": flat}}).to_string()).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["outputs"]["classes"], json!(classes));
    assert_eq!(r["outputs"]["probabilities"].as_array().unwrap().len(), 2);

    // Errors: {"error": ...} with TensorFlow Serving's codes.
    let one = json!({"instances": [&x[..784]]}).to_string();
    let cases = [
        ("GET", "/v1/models/nope", String::new(), 404),
        ("GET", "/v1/models/mnist/versions/9", String::new(), 404),
        ("POST", "/v1/models/nope:predict", one.clone(), 404),
        ("POST", "/v1/models/mnist:predict", json!({"signature_name": "x", "instances": [&x[..784]]}).to_string(), 400),
        ("POST", "/v1/models/mnist:predict", json!({"instances": [&x[..783]]}).to_string(), 400),
        ("POST", "/v1/models/mnist:predict", json!({"instances": [{"pixels": &x[..784]}]}).to_string(), 400),
        ("POST", "/v1/models/mnist:predict", json!({"instances": [[1, [2]]]}).to_string(), 400),
        // A number before a deeper list: as ragged as the other way round.
        ("POST", "/v1/models/mnist:predict", json!({"instances": [[json!(vec![0.5; 28]), json!(vec![[0.5]; 28])]]}).to_string(), 400),
        ("POST", "/v1/models/mnist:predict", "{not json".to_string(), 400),
        ("POST", "/v1/models/mnist:classify", one.clone(), 501),
    ];
    // Bodies beyond axum's default 2 MiB limit, as TensorFlow Serving takes them.
    let many: Vec<Vec<f32>> = (0..700).map(|i| x[(i % 2) * 784..(i % 2 + 1) * 784].iter().map(|v| v + 1e-7).collect()).collect();
    let body = json!({"instances": many}).to_string();
    assert!(body.len() > 4 << 20, "{} bytes", body.len());
    let (code, r) = http(rest, "POST", "/v1/models/mnist:predict", &body).await;
    assert_eq!(code, 200, "{r:.200}");
    assert_eq!(r["predictions"].as_array().unwrap().len(), 700);

    for (method, path, body, want) in cases {
        let (code, r) = http(rest, method, path, &body).await;
        assert_eq!(code, want, "{method} {path} {body:.60}: {r}");
        assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {r}");
    }
    server.stop().await.unwrap();
}

/// TensorFlow Serving's URL grammar and body handling: malformed paths are 400 naming the
/// request, gzip bodies are inflated.
#[tokio::test(flavor = "multi_thread")]
async fn rest_urls_and_bodies_as_tensorflow_serving() {
    use std::io::Write;

    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 7);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).await;
    let rest = server.rest;
    for (method, path, want) in [
        ("GET", "/v1/models", "Missing model name in request."),
        ("GET", "/v1/models/mnist/foo", "Malformed request: GET /v1/models/mnist/foo"),
        ("GET", "/v1/models/mnist/versions/x", "Malformed request: GET /v1/models/mnist/versions/x"),
        ("PUT", "/v1/models/mnist", "Malformed request: PUT /v1/models/mnist"),
        ("POST", "/v1/models/mnist:explain", "Malformed request: POST /v1/models/mnist:explain"),
        ("GET", "/v1/nothing", "Malformed request: GET /v1/nothing"),
    ] {
        let (code, r) = http(rest, method, path, "").await;
        assert_eq!((code, r["error"].as_str()), (400, Some(want)), "{method} {path}");
    }
    assert_eq!(http(rest, "GET", "/v2/models/mnist", "").await.0, 404);

    // gzip bodies: inflated, answered as the same body uncompressed.
    let x = images(3);
    let (classes, _) = expected(&net, &x);
    let rows: Vec<&[f32]> = x.chunks(784).collect();
    let body = json!({"instances": rows}).to_string();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let connect = || tokio::net::TcpStream::connect(rest);
    let (code, _, answer) =
        http_exchange(connect().await.unwrap(), "POST", "/v1/models/mnist:predict", &[("Content-Encoding", "gzip")], &gz).await;
    assert_eq!(code, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let got: Vec<i64> = answer["predictions"].as_array().unwrap().iter().map(|p| p["classes"].as_i64().unwrap()).collect();
    assert_eq!(got, classes);
    let (code, _, answer) =
        http_exchange(connect().await.unwrap(), "POST", "/v1/models/mnist:predict", &[("Content-Encoding", "gzip")], &gz[..gz.len() / 2])
            .await;
    assert!(code == 400 && answer.contains("gzip body"), "{code} {answer}");
    let (code, _, answer) =
        http_exchange(connect().await.unwrap(), "POST", "/v1/models/mnist:predict", &[("Content-Encoding", "br")], body.as_bytes()).await;
    assert!(code == 400 && answer.contains("'br' is not supported"), "{code} {answer}");
    server.stop().await.unwrap();
}
