//! One device and one batch scheduler per process, whatever the number of models and versions:
//! loading a version (or failing to, on every poll) opens no device and starts no thread.
//! Alone in its test binary, so that the process-wide counts are this test's own.

mod common;

use std::time::{Duration, Instant};

use common::*;
use engine::gpu::GpuDevice;

/// Threads of this process named `batch-N` (the shared scheduler's).
fn batch_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("batch-"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_version_shares_one_gpu_device_and_one_batch_scheduler() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    let config = dir.path().join("models.config");
    std::fs::write(
        &config,
        format!("model_config_list {{ config {{ name: 'mnist' base_path: '{}' model_version_policy {{ all {{}} }} }} }}", base.display()),
    )
    .unwrap();
    let flags = ["--model_config_file", config.to_str().unwrap(), "--file_system_poll_wait_seconds", "1", "--device", "gpu"];
    let batching = ["--enable_batching", "--num_batch_threads", "2", "--batch_timeout_micros", "100"];
    let server = TestServer::start(&[&flags[..], &batching[..]].concat()).await;
    assert_eq!(GpuDevice::opened_count(), 1);
    assert_eq!(batch_threads(), 2);

    for v in 2..=4 {
        export_version(&base, v, v as u64);
    }
    // A half-copied version 5, retried on every poll while it stays broken.
    std::fs::create_dir_all(base.join("5")).unwrap();
    std::fs::copy(base.join("4/model.json"), base.join("5/model.json")).unwrap();
    let start = Instant::now();
    let mut client = server.predictions().await;
    for v in 1..=4 {
        loop {
            let r = client.predict(predict_request("mnist", Some(v), float_tensor(&[1, 784], &images(1)))).await;
            if r.is_ok() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "version {v} was not served");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(GpuDevice::opened_count(), 1, "loading versions opened no device");
    assert_eq!(batch_threads(), 2, "four versions share the two batch threads");
    server.stop().await.unwrap();
}
