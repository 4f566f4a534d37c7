//! Training: optimizers decrease the loss, runs are reproducible, and a short run on real MNIST
//! learns (needs `scripts/fetch-mnist` to have run; a missing data set fails the test).

mod common;

use std::path::PathBuf;

use common::{EVERY_LAYER_CNN, SMALL_CNN};
use engine::Device;
use engine::data::{Dataset, Split};
use engine::model::{Config, Network, OptimizerConfig};
use engine::optim::Optimizer;
use engine::predictor::Inference;

/// Synthetic separable data: class k lights up a band of rows.
fn synthetic(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = engine::rng::SplitMix64::new(17);
    let mut pixels = vec![0u8; n * 784];
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    for (i, &l) in labels.iter().enumerate() {
        for r in 0..28 {
            for c in 0..28 {
                let on = r / 3 == l as usize || rng.below(20) == 0;
                pixels[i * 784 + r * 28 + c] = if on { 200 } else { 0 };
            }
        }
    }
    (pixels, labels)
}

fn train_steps(optimizer: OptimizerConfig, lr: f32, steps: u32, seed: u64) -> (Network, Vec<f32>) {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec, Device::cpu(), seed).unwrap();
    let mut opt = Optimizer::new(&net, &optimizer, 1e-4);
    let mut ws = net.workspace(20, true);
    let (pixels, labels) = synthetic(20);
    (0..steps).for_each(|s| net.train_step(&mut ws, &mut opt, &pixels, &labels, lr, s));
    let losses = ws.take_stats().iter().map(|s| s.loss_sum / 20.0).collect();
    (net, losses)
}

#[test]
fn every_optimizer_decreases_the_loss() {
    for (opt, lr) in [
        (OptimizerConfig::Sgd, 0.1),
        (OptimizerConfig::Momentum { momentum: 0.9, nesterov: false }, 0.02),
        (OptimizerConfig::Momentum { momentum: 0.9, nesterov: true }, 0.02),
        (OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, 1e-2),
        (OptimizerConfig::Adamw { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, 1e-2),
    ] {
        let (_, losses) = train_steps(opt.clone(), lr, 30, 1);
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last < 0.5 * first, "{opt:?}: loss {first} -> {last}");
    }
}

#[test]
fn same_seed_and_threads_give_identical_weights() {
    let adam = OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
    let (a, la) = train_steps(adam.clone(), 1e-3, 8, 42);
    let (b, lb) = train_steps(adam.clone(), 1e-3, 8, 42);
    let (c, _) = train_steps(adam, 1e-3, 8, 43);
    assert_eq!(la, lb);
    assert_eq!(a.export_params(), b.export_params(), "bitwise-identical weights");
    assert_ne!(a.export_params(), c.export_params(), "another seed gives other weights");
}

#[test]
fn adam_first_step_moves_each_weight_by_the_learning_rate() {
    // With bias correction, Adam's first update is lr * g / (|g| + eps): about lr for every
    // parameter with a non-zero gradient.
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec, Device::cpu(), 3).unwrap();
    let before = net.export_params();
    let mut opt = Optimizer::new(&net, &OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, 0.0);
    let mut ws = net.workspace(20, true);
    let (pixels, labels) = synthetic(20);
    net.train_step(&mut ws, &mut opt, &pixels, &labels, 0.01, 0);
    let grads: Vec<Vec<f32>> = opt.grads().iter().map(|g| g.to_host()).collect();
    for ((_, _, b), ((_, _, a), g)) in before.iter().zip(net.export_params().iter().zip(&grads)) {
        for ((b, a), g) in b.iter().zip(a).zip(g) {
            if g.abs() > 1e-4 {
                assert!(((b - a) - 0.01 * g.signum()).abs() < 1e-4, "moved {} for gradient {g}", b - a);
            }
        }
    }
}

fn mnist_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/mnist")
}

/// The reference CNN on the first 6,000 real training images, one epoch: > 90% on the 10k test set.
#[test]
fn short_real_mnist_run_beats_90_percent() {
    let dir = mnist_dir();
    let train = Dataset::load(&dir, Split::Train, 10).expect("MNIST missing: run scripts/fetch-mnist").truncate(6000);
    let test = Dataset::load(&dir, Split::Test, 10).expect("MNIST missing: run scripts/fetch-mnist");
    let config = Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap();
    let mut net = Network::new(config.model_spec().unwrap(), Device::cpu(), 1234).unwrap();
    let mut opt = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(100, true);
    for (step, start) in (0..train.len()).step_by(100).enumerate() {
        net.train_step(
            &mut ws,
            &mut opt,
            &train.images[start * 784..(start + 100) * 784],
            &train.labels[start..start + 100],
            1e-3,
            step as u32,
        );
    }
    let stats = ws.take_stats();
    assert_eq!((stats.len(), stats.iter().map(|s| s.examples).sum::<usize>()), (train.len() / 100, train.len()));
    assert!(stats.iter().all(|s| s.loss_sum.is_finite()));
    let eval = Inference::new(&net, 1000).evaluate(&net, &test, |_| {}).unwrap();
    assert!(eval.accuracy > 0.90, "test accuracy {} after 6,000 images", eval.accuracy);
    assert_eq!(eval.confusion.total(), 10_000);
}

type TrainingState = (Vec<engine::HostTensor>, engine::optim::OptimizerState);

/// Trains `steps` steps of SMALL_CNN on `device` from `start` (a network and optimizer state
/// to continue from, or a fresh start), returning both states after.
fn continue_training(device: Device, start: Option<TrainingState>, steps: std::ops::Range<u32>) -> TrainingState {
    continue_training_of(SMALL_CNN, device, start, steps)
}

fn continue_training_of(config: &str, device: Device, start: Option<TrainingState>, steps: std::ops::Range<u32>) -> TrainingState {
    let spec = Config::parse(config).unwrap().model_spec().unwrap();
    let adam = OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };
    let mut net = Network::new(spec, device, 42).unwrap();
    let mut opt = Optimizer::new(&net, &adam, 1e-4);
    if let Some((network_state, optimizer_state)) = start {
        net.import_state(network_state).unwrap();
        opt.import_state(optimizer_state).unwrap();
    }
    let mut ws = net.workspace(20, true);
    let (pixels, labels) = synthetic(20);
    for s in steps {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, s);
    }
    (net.export_state(), opt.export_state())
}

/// Saving the network's and optimizer's state after 5 steps and continuing in a new network
/// gives the weights and moments of 10 uninterrupted steps, bit for bit.
#[test]
fn exported_state_continues_training_bit_for_bit() {
    let whole = continue_training(Device::cpu(), None, 0..10);
    let half = continue_training(Device::cpu(), None, 0..5);
    assert_eq!(half.1.steps, 5);
    assert_eq!(half.1.tensors.len(), 2 * half.0.len(), "Adam keeps two moments per parameter");
    assert!(half.1.tensors.iter().any(|(name, _, _)| name == "conv1.weight.m"), "state named after its parameter");
    let resumed = continue_training(Device::cpu(), Some(half), 5..10);
    assert!(resumed == whole, "resumed training differs from uninterrupted training");
    assert_ne!(continue_training(Device::cpu(), None, 0..9).0, whole.0, "the comparison sees one step");
}

/// The same with batch normalisations: their running averages are part of the saved state.
#[test]
fn exported_state_with_running_averages_continues_training_bit_for_bit() {
    let whole = continue_training_of(EVERY_LAYER_CNN, Device::cpu(), None, 0..6);
    let half = continue_training_of(EVERY_LAYER_CNN, Device::cpu(), None, 0..3);
    assert!(half.0.iter().any(|(name, _, _)| name == "batchnorm2.moving_mean"), "running averages are saved");
    let resumed = continue_training_of(EVERY_LAYER_CNN, Device::cpu(), Some(half), 3..6);
    assert!(resumed == whole, "resumed training differs from uninterrupted training");
}

#[test]
fn mismatched_state_is_refused_naming_the_tensor() {
    let spec = Config::parse(SMALL_CNN).unwrap().model_spec().unwrap();
    let mut net = Network::new(spec, Device::cpu(), 1).unwrap();
    let good = net.export_state();
    let mut renamed = good.clone();
    renamed[1].0 = "conv9.bias".into();
    let e = net.import_state(renamed).unwrap_err().to_string();
    assert!(e.contains("conv9.bias") && e.contains("conv1.bias"), "{e}");
    let mut reshaped = good.clone();
    reshaped[0].1 = vec![3, 3, 1, 5];
    assert!(net.import_state(reshaped).unwrap_err().to_string().contains("conv1.weight"));
    let mut nan = good.clone();
    nan[2].2[7] = f32::NAN;
    let e = net.import_state(nan).unwrap_err().to_string();
    assert!(e.contains(&good[2].0) && e.contains("index 7"), "{e}");
    let e = net.import_state(good[..3].to_vec()).unwrap_err().to_string();
    assert!(e.contains("network state") && e.contains("3 tensors"), "{e}");
    // A momentum optimizer's state does not fit Adam.
    let momentum = Optimizer::new(&net, &OptimizerConfig::Momentum { momentum: 0.9, nesterov: false }, 0.0).export_state();
    let mut adam = Optimizer::new(&net, &OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }, 0.0);
    let e = adam.import_state(momentum).unwrap_err().to_string();
    assert!(e.contains("optimizer state"), "{e}");
    net.import_state(good).unwrap();
}

/// CPU inference transforms the Winograd filters once per set of weights: after a training
/// step, and after weights are imported into a network that has already inferred, it gives
/// what a network built with those weights gives.
#[test]
fn inference_uses_the_weights_of_the_latest_step_and_import() {
    let config = Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap();
    let mut net = Network::new(config.model_spec().unwrap(), Device::cpu(), 3).unwrap();
    let mut opt = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(20, true);
    let (pixels, labels) = synthetic(20);
    let image = &pixels[..784];
    let mut inference = Inference::new(&net, 20);
    let before = inference.predict_u8(&net, image);
    net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-2, 0);
    let after = inference.predict_u8(&net, image);
    assert_ne!(before.probabilities, after.probabilities, "a step changes the prediction");

    let mut other = Network::new(config.model_spec().unwrap(), Device::cpu(), 99).unwrap();
    let mut other_inference = Inference::new(&other, 20);
    let _ = other_inference.predict_u8(&other, image);
    other.import_state(net.export_state()).unwrap();
    assert_eq!(other_inference.predict_u8(&other, image).probabilities, after.probabilities);
}
