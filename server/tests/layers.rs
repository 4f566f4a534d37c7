//! A model with every layer kind (batch normalisation, average pooling, every activation) is
//! served on both devices: its batch normalisations are folded at load, and the answers are
//! the trained network's own.

mod common;

use common::{TestServer, expected, float_tensor, images, predict_request};
use engine::Device;
use engine::model::{Config, Network, OptimizerConfig};
use engine::optim::Optimizer;
use proto::tensorflow::TensorProto;

const EVERY_LAYER_CNN: &str = include_str!("../../engine/tests/fixtures/every_layer_cnn.toml");

/// A few training steps, so the running averages and scales are not their initial values.
fn trained() -> Network {
    let spec = Config::parse(EVERY_LAYER_CNN).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec, Device::cpu(), 11).unwrap();
    let mut opt = Optimizer::new(&net, &OptimizerConfig::Sgd, 0.0);
    let mut ws = net.workspace(20, true);
    let pixels: Vec<u8> = images(20).iter().map(|v| (v * 255.0) as u8).collect();
    let labels: Vec<u8> = (0..20).map(|i| i % 10).collect();
    for step in 0..4 {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 0.05, step);
    }
    net
}

fn floats(t: &TensorProto) -> &[f32] {
    &t.float_val
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_layer_kind_is_served_on_both_devices() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rich");
    let net = trained();
    engine::export::write(&base, "1", &net, serde_json::json!({}), 0).unwrap();
    let input = images(6);
    let (classes, probabilities) = expected(&net, &input);
    for device in ["cpu", "gpu"] {
        let server = TestServer::start(&["--model_name", "rich", "--model_base_path", base.to_str().unwrap(), "--device", device]).await;
        let response = server
            .predictions()
            .await
            .predict(predict_request("rich", None, float_tensor(&[6, 784], &input)))
            .await
            .unwrap_or_else(|e| panic!("--device {device}: {e}"))
            .into_inner();
        assert_eq!(response.outputs["classes"].int64_val, classes, "--device {device}");
        for (got, want) in floats(&response.outputs["probabilities"]).iter().zip(&probabilities) {
            assert!((got - want).abs() < 1e-4, "--device {device}: probability {got}, the trained network gives {want}");
        }
        server.stop().await.unwrap();
    }
}
