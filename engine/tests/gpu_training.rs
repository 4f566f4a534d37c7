//! The whole network on the GPU against the CPU: a training run's loss curve, inference from
//! the same weights, and accuracy after training on a slice of real MNIST.

mod common;

use std::path::PathBuf;

use common::{EVERY_LAYER_CNN, SMALL_CNN, assert_close, gpu};
use engine::data::{Dataset, Split};
use engine::model::{Config, Network, OptimizerConfig};
use engine::optim::Optimizer;
use engine::predictor::Inference;
use engine::{Device, DeviceKind};

/// Synthetic separable data: class k lights up a band of rows.
fn synthetic(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = engine::rng::SplitMix64::new(17);
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let mut pixels = vec![0u8; n * 784];
    for (i, &l) in labels.iter().enumerate() {
        for (j, p) in pixels[i * 784..(i + 1) * 784].iter_mut().enumerate() {
            *p = if j / 28 / 3 == l as usize || rng.below(20) == 0 { 200 } else { 0 };
        }
    }
    (pixels, labels)
}

fn gpu_device() -> Device {
    // A second handle on the shared device's adapter would be a new device; open one per network.
    let _ = gpu();
    Device::open(DeviceKind::Gpu).expect("GPU device")
}

/// Per-step mean loss of `steps` steps on `device`, with batches of 17 (a short last batch too).
fn loss_curve(device: Device, steps: u32) -> (Vec<f32>, Network) {
    loss_curve_of(SMALL_CNN, device, steps)
}

fn loss_curve_of(config: &str, device: Device, steps: u32) -> (Vec<f32>, Network) {
    let spec = Config::parse(config).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec, device, 5).unwrap();
    let mut opt = Optimizer::new(&net, &OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, 1e-4);
    let mut ws = net.workspace(17, true);
    let (pixels, labels) = synthetic(40);
    let mut losses = Vec::new();
    for step in 0..steps {
        let n = if step % 3 == 2 { 6 } else { 17 };
        let at = (step as usize * 17) % 23;
        net.train_step(&mut ws, &mut opt, &pixels[at * 784..(at + n) * 784], &labels[at..at + n], 3e-3, step);
    }
    for s in ws.take_stats() {
        losses.push(s.loss_sum / s.examples as f32);
    }
    (losses, net)
}

#[test]
fn training_loss_curve_matches_cpu() {
    let (cpu, cpu_net) = loss_curve(Device::cpu(), 30);
    let (gpu, gpu_net) = loss_curve(gpu_device(), 30);
    assert!(cpu[29] < 0.5 * cpu[0], "the run learns: {cpu:?}");
    // Float reassociation differs between the devices; the curves agree to 1e-3 relative.
    assert_close("loss curve", &gpu, &cpu, 1e-4, 1e-3);
    for ((name, _, c), (_, _, g)) in cpu_net.export_params().iter().zip(&gpu_net.export_params()) {
        assert_close(name, g, c, 1e-3, 1e-2);
    }
}

/// Element-wise layers where no neighbour absorbs them: a ReLU after a pool (its forward runs
/// alone, its backward is the next conv's mask), two dropouts in a row (both run alone), a ReLU
/// on the logits (its forward is the dense epilogue, its backward runs alone).
const UNFUSABLE: &str = r#"
[model]
[[model.layers]]
type = "conv2d"
filters = 3
kernel_size = 3
strides = 2
[[model.layers]]
type = "maxpool"
[[model.layers]]
type = "relu"
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dropout"
rate = 0.3
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
[[model.layers]]
type = "relu"
"#;

#[test]
fn layers_that_fit_no_fusion_train_alike_on_both_devices() {
    let (cpu, cpu_net) = loss_curve_of(UNFUSABLE, Device::cpu(), 12);
    let (gpu, gpu_net) = loss_curve_of(UNFUSABLE, gpu_device(), 12);
    assert!(cpu[11] < cpu[0], "the run learns: {cpu:?}");
    assert_close("loss curve", &gpu, &cpu, 1e-4, 1e-3);
    for ((name, _, c), (_, _, g)) in cpu_net.export_params().iter().zip(&gpu_net.export_params()) {
        assert_close(name, g, c, 1e-3, 1e-2);
    }
}

/// Batch normalisation (per channel and per feature), average pooling and every activation
/// train alike on both devices, and the running averages they keep agree.
#[test]
fn every_layer_kind_trains_alike_on_both_devices() {
    let (cpu, cpu_net) = loss_curve_of(EVERY_LAYER_CNN, Device::cpu(), 12);
    let (gpu, gpu_net) = loss_curve_of(EVERY_LAYER_CNN, gpu_device(), 12);
    assert!(cpu[11] < cpu[0], "the run learns: {cpu:?}");
    assert_close("loss curve", &gpu, &cpu, 1e-4, 2e-3);
    // A bias right before a batch normalisation has a gradient of zero but for rounding, which
    // Adam scales up to full steps, differently on each device: those are left out.
    let before_norm = ["conv1.bias", "dense1.bias"];
    for ((name, _, c), (_, _, g)) in cpu_net.export_params().iter().zip(&gpu_net.export_params()) {
        if !before_norm.contains(&name.as_str()) {
            assert_close(name, g, c, 2e-3, 2e-2);
        }
    }
    let (pixels, _) = synthetic(20);
    let cpu = Inference::new(&cpu_net, 8).predict_u8(&cpu_net, &pixels);
    let gpu = Inference::new(&gpu_net, 8).predict_u8(&gpu_net, &pixels);
    assert_close("inference probabilities", &gpu.probabilities, &cpu.probabilities, 1e-3, 1e-2);
}

#[test]
fn inference_from_the_same_weights_matches_cpu() {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let cpu_net = Network::new(spec.clone(), Device::cpu(), 9).unwrap();
    let gpu_net = Network::from_params(spec, gpu_device(), cpu_net.export_params()).unwrap();
    let (pixels, _) = synthetic(37);
    // Capacity 16: 37 images go as 16 + 16 + 5.
    let cpu = Inference::new(&cpu_net, 16).predict_u8(&cpu_net, &pixels);
    let gpu = Inference::new(&gpu_net, 16).predict_u8(&gpu_net, &pixels);
    assert_eq!(gpu.classes, cpu.classes);
    assert_close("probabilities", &gpu.probabilities, &cpu.probabilities, 1e-6, 1e-4);
    let floats: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    let from_floats = Inference::new(&gpu_net, 64).predict(&gpu_net, &floats).unwrap();
    assert_eq!(from_floats.classes, cpu.classes);
}

/// Small enough to train in seconds on lavapipe, with every layer kind.
const SMALL_REAL_CNN: &str = r#"
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
type = "flatten"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = 10
"#;

fn accuracy_after_training(device: Device, train: &Dataset, test: &Dataset) -> f64 {
    let mut net = Network::new(Config::parse(SMALL_REAL_CNN).unwrap().model_spec().unwrap(), device, 1234).unwrap();
    let mut opt = Optimizer::new(&net, &OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, 0.0);
    let mut ws = net.workspace(50, true);
    for (step, start) in (0..train.len()).step_by(50).enumerate() {
        let (images, labels) = (&train.images[start * 784..(start + 50) * 784], &train.labels[start..start + 50]);
        net.train_step(&mut ws, &mut opt, images, labels, 1e-2, step as u32);
    }
    assert!(ws.take_stats().iter().all(|s| s.loss_sum.is_finite()));
    Inference::new(&net, 500).evaluate(&net, test, |_| {}).unwrap().accuracy
}

/// The bar: on a slice of real MNIST, GPU training reaches the CPU's accuracy within 0.5 points.
#[test]
fn gpu_training_on_real_mnist_matches_cpu_accuracy() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist");
    let train = Dataset::load(&dir, Split::Train, 10).expect("MNIST missing: run scripts/fetch-mnist").truncate(3000);
    let test = Dataset::load(&dir, Split::Test, 10).expect("MNIST missing: run scripts/fetch-mnist").truncate(2000);
    let cpu = accuracy_after_training(Device::cpu(), &train, &test);
    let gpu = accuracy_after_training(gpu_device(), &train, &test);
    assert!(cpu > 0.85, "the CPU run learns: {cpu}");
    assert!((gpu - cpu).abs() <= 0.005, "GPU accuracy {gpu} vs CPU {cpu}");
}

/// Two networks sharing one GPU device, predicting from two threads at once (as the server's
/// versions do), give exactly what each gives alone: the device's scratch buffers (split-K
/// partials, staged inputs) are never shared by two runs in flight.
#[test]
fn concurrent_inference_on_a_shared_device_matches_sequential() {
    const WIDE_DENSE: &str = "[model]\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"dense\"\nunits = 48\n\
                              activation = \"relu\"\n[[model.layers]]\ntype = \"dense\"\nunits = 10\n";
    let device = gpu_device();
    let spec = Config::parse(WIDE_DENSE).unwrap().model_spec().unwrap();
    let nets: Vec<Network> = (0..2).map(|seed| Network::new(spec.clone(), device.clone(), 100 + seed).unwrap()).collect();
    let inputs: Vec<Vec<f32>> = (0..12).map(|i| common::random(784 * (1 + i % 4), i as u64).iter().map(|v| v.abs()).collect()).collect();
    let alone: Vec<Vec<Vec<f32>>> =
        nets.iter().map(|net| inputs.iter().map(|x| Inference::new(net, 4).predict(net, x).unwrap().probabilities).collect()).collect();
    std::thread::scope(|scope| {
        let runs: Vec<_> = nets
            .iter()
            .zip(&alone)
            .map(|(net, want)| {
                let inputs = &inputs;
                scope.spawn(move || {
                    let mut inference = Inference::new(net, 4);
                    for round in 0..40 {
                        for (x, want) in inputs.iter().zip(want) {
                            assert_eq!(&inference.predict(net, x).unwrap().probabilities, want, "round {round}");
                        }
                    }
                })
            })
            .collect();
        for run in runs {
            run.join().unwrap();
        }
    });
}

type TrainingState = (Vec<engine::HostTensor>, engine::optim::OptimizerState);

/// `steps` training steps on the GPU from a saved state (or a fresh start); the states after.
fn gpu_steps(start: Option<TrainingState>, steps: std::ops::Range<u32>) -> TrainingState {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec, gpu_device(), 5).unwrap();
    let mut opt = Optimizer::new(&net, &OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-7 }, 1e-4);
    if let Some((network_state, optimizer_state)) = start {
        net.import_state(network_state).unwrap();
        opt.import_state(optimizer_state).unwrap();
    }
    let mut ws = net.workspace(17, true);
    let (pixels, labels) = synthetic(17);
    for step in steps {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 3e-3, step);
    }
    (net.export_state(), opt.export_state())
}

/// State read back from the GPU's packed parameter and optimizer arenas and written into a new
/// network's continues the run exactly.
#[test]
fn exported_state_continues_gpu_training_exactly() {
    let whole = gpu_steps(None, 0..6);
    let resumed = gpu_steps(Some(gpu_steps(None, 0..3)), 3..6);
    assert!(resumed == whole, "resumed GPU training differs from uninterrupted training");
}
