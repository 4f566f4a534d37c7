//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]

use engine::rng::SplitMix64;

pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
}

/// Distinct values far apart (no ties, no values near 0), shuffled: safe for max / ReLU kinks.
pub fn distinct(len: usize, seed: u64) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len).map(|i| (i as f32 - len as f32 / 2.0 + 0.25) * 0.1).collect();
    SplitMix64::new(seed).shuffle(&mut v);
    v
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum::<f64>() as f32
}

/// Compares `analytic` with central differences of `loss` around `x` at up to 40 sampled
/// indices, with |num - ana| <= atol + rtol * |num|.
pub fn check_gradient(what: &str, x: &[f32], analytic: &[f32], eps: f32, atol: f32, rtol: f32, mut loss: impl FnMut(&[f32]) -> f32) {
    assert_eq!(x.len(), analytic.len(), "{what}: gradient length");
    let mut rng = SplitMix64::new(99);
    let picks: Vec<usize> = if x.len() <= 40 { (0..x.len()).collect() } else { (0..40).map(|_| rng.below(x.len())).collect() };
    let mut probe = x.to_vec();
    for i in picks {
        probe[i] = x[i] + eps;
        let up = loss(&probe) as f64;
        probe[i] = x[i] - eps;
        let down = loss(&probe) as f64;
        probe[i] = x[i];
        let numeric = ((up - down) / (2.0 * eps as f64)) as f32;
        let diff = (numeric - analytic[i]).abs();
        assert!(diff <= atol + rtol * numeric.abs(), "{what}[{i}]: numeric {numeric} vs analytic {} (diff {diff})", analytic[i]);
    }
}

/// A small CNN with every layer kind, for tests that train or export quickly.
pub const SMALL_CNN: &str = r#"
[model]
[[model.layers]]
type = "conv2d"
filters = 4
kernel_size = 3
strides = 2
activation = "relu"
[[model.layers]]
type = "maxpool"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = 10
"#;

/// The GPU device shared by a test binary: any adapter, lavapipe included. No adapter is a
/// test failure (with wgpu's reason), never a skip.
pub fn gpu() -> &'static engine::Device {
    static GPU: std::sync::OnceLock<engine::Device> = std::sync::OnceLock::new();
    GPU.get_or_init(|| engine::Device::gpu().unwrap_or_else(|e| panic!("GPU tests need a working GPU device: {e}")))
}

/// Asserts `|got - want| <= atol + rtol * |want|` element-wise, naming the first mismatch.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| {
        let (diff, tol) = ((got[i] - want[i]).abs(), atol + rtol * want[i].abs());
        diff.is_nan() || diff > tol
    }) {
        panic!("{what}[{i}]: got {} want {} (atol {atol}, rtol {rtol})", got[i], want[i]);
    }
}

/// Runs one test body on the CPU and on the GPU; each run returns named outputs, and the GPU's
/// must match the CPU's within `atol + rtol * |cpu|`.
pub fn same_on_both(name: &str, atol: f32, rtol: f32, body: impl Fn(&engine::Device) -> Vec<(&'static str, Vec<f32>)>) {
    let want = body(&engine::Device::cpu());
    let got = body(gpu());
    assert_eq!(want.len(), got.len());
    for ((what, w), (_, g)) in want.iter().zip(&got) {
        assert_close(&format!("{name}: {what}"), g, w, atol, rtol);
    }
}

/// A small CNN (28x28x1 input) with every layer kind and activation: batch normalisation per
/// channel (foldable into the conv before it, and after an activation, where it is not) and per
/// feature, average and global average pooling, each activation as a layer and as a key, and a
/// sigmoid before a dropout (they do not commute, so neither fuses).
pub const EVERY_LAYER_CNN: &str = include_str!("../fixtures/every_layer_cnn.toml");

/// A square convolution's geometry: `in_hw` input, `kernel` x `kernel`, equal stride and padding.
pub fn conv(in_hw: (usize, usize), in_c: usize, out_c: usize, kernel: usize, stride: usize, pad: usize) -> engine::backend::Conv2dGeometry {
    let out = |i: usize| (i + 2 * pad - kernel) / stride + 1;
    engine::backend::Conv2dGeometry {
        in_h: in_hw.0,
        in_w: in_hw.1,
        in_c,
        out_h: out(in_hw.0),
        out_w: out(in_hw.1),
        out_c,
        kernel_h: kernel,
        kernel_w: kernel,
        stride_h: stride,
        stride_w: stride,
        pad_top: pad,
        pad_left: pad,
    }
}
