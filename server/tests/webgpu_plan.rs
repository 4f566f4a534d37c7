//! The routes of the draw-a-digit page: the WebGPU inference plan and its weights blob, the
//! model list, and CORS (off unless --rest_api_cors_origin names an origin).

mod common;

use std::net::SocketAddr;

use common::{TestServer, export_version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One GET with extra header lines: (status, headers, body bytes).
async fn get(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), response[split + 4..].to_vec())
}

/// The body of a chunked or plain response, decoded.
fn body(head: &str, raw: Vec<u8>) -> Vec<u8> {
    if !head.contains("transfer-encoding: chunked") {
        return raw;
    }
    let (mut out, mut at) = (Vec::new(), 0);
    loop {
        let line_end = at + raw[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[at..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        at = line_end + 2 + size + 2;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_weights_and_the_model_list_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // The newest version is served (version 1 is not: TensorFlow Serving's default policy).
    export_version(dir.path(), 1, 1);
    export_version(dir.path(), 2, 2);
    let base = dir.path().to_str().unwrap();
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base, "--file_system_poll_wait_seconds", "0"]).await;

    let (status, head, raw) = get(server.rest, "/v1/models/mnist/webgpu_plan?batch=3", "").await;
    assert_eq!(status, 200, "{head}");
    let plan: serde_json::Value = serde_json::from_slice(&body(&head, raw)).unwrap();
    assert_eq!(plan["format"], "mnist-rs-webgpu-plan");
    assert_eq!((plan["model"].as_str(), plan["version"].as_i64(), plan["batch"].as_u64()), (Some("mnist"), Some(2), Some(3)));
    assert_eq!(plan["input"]["shape"], serde_json::json!([3, 784]));
    assert!(plan["dispatches"].as_array().unwrap().len() >= 4);
    let url = plan["weights"]["url"].as_str().unwrap().to_string();
    assert_eq!(url, "/v1/models/mnist/versions/2/webgpu_weights");

    let (status, head, raw) = get(server.rest, &url, "").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/octet-stream"), "{head}");
    assert_eq!(body(&head, raw).len() as u64, plan["weights"]["bytes"].as_u64().unwrap());

    let (status, _, raw) = get(server.rest, "/v1/models/mnist/versions/2/webgpu_plan", "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&raw));
    for (path, want) in [
        ("/v1/models/mnist/webgpu_plan?batch=0", 400),
        ("/v1/models/mnist/webgpu_plan?batch=lots", 400),
        ("/v1/models/nope/webgpu_plan", 404),
        ("/v1/models/mnist/versions/1/webgpu_weights", 404),
    ] {
        assert_eq!(get(server.rest, path, "").await.0, want, "{path}");
    }

    let (status, head, raw) = get(server.rest, "/page/models", "").await;
    assert_eq!(status, 200);
    let models: serde_json::Value = serde_json::from_slice(&body(&head, raw)).unwrap();
    assert_eq!(models, serde_json::json!({"models": [{"name": "mnist", "versions": [2]}]}));
    // No CORS unless asked for.
    let (_, head, _) = get(server.rest, "/page/models", "Origin: https://example.com\r\n").await;
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_origin_may_call_the_rest_api() {
    let dir = tempfile::tempdir().unwrap();
    export_version(dir.path(), 1, 1);
    let base = dir.path().to_str().unwrap();
    let flags = ["--model_name", "mnist", "--model_base_path", base, "--rest_api_cors_origin", "https://example.com"];
    let server = TestServer::start(&flags).await;
    let (status, head, _) = get(server.rest, "/v1/models/mnist", "Origin: https://example.com\r\n").await;
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: https://example.com"), "{head}");
    let (_, head, _) = get(server.rest, "/v1/models/mnist", "Origin: https://elsewhere.example\r\n").await;
    assert!(!head.contains("access-control-allow-origin: https://elsewhere"), "{head}");
    server.stop().await.unwrap();
}
