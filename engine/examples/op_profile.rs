//! Times each op of the reference CNN's training step at batch 100, or `BATCH` (fastest of
//! `REPS` runs, 20 by default: robust to a noisy machine), on `DEVICE` (cpu, gpu or auto).
//! `[BATCH=256] [DEVICE=gpu] cargo run --release -p engine --example op_profile`

use std::time::Instant;

use engine::backend::{Activation, Conv2dGeometry, Epilogue, PoolGeometry};
use engine::model::Config;
use engine::{Device, Tensor};

fn reps() -> usize {
    std::env::var("REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// Fastest of `REPS` runs of `f`, waiting for the device each time.
fn time(d: &Device, name: &str, flops: f64, mut f: impl FnMut()) -> f64 {
    f();
    d.synchronize();
    let ms = (0..reps())
        .map(|_| {
            let start = Instant::now();
            f();
            d.synchronize();
            start.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min);
    if flops > 0.0 {
        println!("{name:32} {ms:8.3} ms  {:7.1} GFLOP/s", flops / ms / 1e6);
    } else {
        println!("{name:32} {ms:8.3} ms");
    }
    ms
}

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { engine::gpu::quiet_vulkan_loader() };
    let n: usize = std::env::var("BATCH").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let kind = std::env::var("DEVICE").unwrap_or_else(|_| "cpu".into());
    let d = Device::open(kind.parse().expect("DEVICE is cpu, gpu or auto")).expect("device");
    println!("{} at batch {n}", d.describe());
    let config = Config::load(std::path::Path::new("trainer/HyperParams.config")).expect("run from the repository root");
    let spec = config.model_spec().unwrap();
    let shapes = spec.shapes().unwrap();
    let mut total = 0.0;
    for (i, layer) in spec.layers.iter().enumerate() {
        let input = shapes[i];
        if let Ok(g) = layer.conv_geometry(input) {
            total += conv(&d, &g, n, &layer.name);
        }
        if let Ok(g) = layer.pool_geometry(input) {
            total += pool(&d, &g, n, &layer.name);
        }
        if let engine::model::LayerKind::Dense { units } = layer.kind {
            total += dense(&d, n, input.len(), units, &layer.name);
        }
    }
    println!("{:32} {total:8.3} ms  => {:.0} images/s (kernels above only)", "sum", n as f64 / total * 1e3);
    full_step(d, &config, n);
}

fn conv(d: &Device, g: &Conv2dGeometry, n: usize, name: &str) -> f64 {
    let x: Tensor = Tensor::zeros(d, &[n * g.in_len()]);
    let w = Tensor::from_host(d, "w", &[g.weight_len()], &vec![0.01; g.weight_len()]).unwrap();
    let b = Tensor::zeros(d, &[g.out_c]);
    let mut y = Tensor::zeros(d, &[n * g.out_len()]);
    let mut dx = Tensor::zeros(d, &[n * g.in_len()]);
    let (mut dw, mut db) = (Tensor::zeros(d, &[g.weight_len()]), Tensor::zeros(d, &[g.out_c]));
    let flops = 2.0 * (n * g.positions() * g.patch_len() * g.out_c) as f64;
    let mut t = time(d, &format!("{name} forward"), flops, || d.conv2d_forward(g, n, &x, &w, &b, Epilogue::default(), &mut y));
    if g.in_c > 1 {
        t += time(d, &format!("{name} backward_input"), flops, || d.conv2d_backward_input(g, n, &y, &w, None, &mut dx));
    }
    t + time(d, &format!("{name} backward_weight"), flops, || d.conv2d_backward_weight(g, n, &x, &y, &mut dw, &mut db))
}

fn pool(d: &Device, g: &PoolGeometry, n: usize, name: &str) -> f64 {
    let x = Tensor::zeros(d, &[n * g.in_len()]);
    let mut y = Tensor::zeros(d, &[n * g.out_len()]);
    let mut a = Tensor::<u32>::zeros(d, &[n * g.out_len()]);
    let mut dx = Tensor::zeros(d, &[n * g.in_len()]);
    let relu_len = n * g.in_len();
    let mut r = Tensor::zeros(d, &[relu_len]);
    time(d, &format!("{name} relu fwd+bwd (input)"), 0.0, || {
        d.activation_in_place(Activation::Relu, relu_len, &mut r);
        d.activation_slope_at_output(Activation::Relu, relu_len, &x, &mut r)
    }) + time(d, &format!("{name} forward"), 0.0, || d.max_pool_forward(g, n, &x, &mut y, &mut a))
        + time(d, &format!("{name} backward"), 0.0, || d.max_pool_backward(g, n, &y, &a, None, &mut dx))
}

fn dense(d: &Device, n: usize, inputs: usize, outputs: usize, name: &str) -> f64 {
    let x = Tensor::zeros(d, &[n * inputs]);
    let w = Tensor::zeros(d, &[inputs * outputs]);
    let b = Tensor::zeros(d, &[outputs]);
    let mut y = Tensor::zeros(d, &[n * outputs]);
    let mut dx = Tensor::zeros(d, &[n * inputs]);
    let (mut dw, mut db) = (Tensor::zeros(d, &[inputs * outputs]), Tensor::zeros(d, &[outputs]));
    let flops = 2.0 * (n * inputs * outputs) as f64;
    let mut state = [Tensor::zeros(d, &[inputs * outputs]), Tensor::zeros(d, &[inputs * outputs])];
    let mut p = Tensor::zeros(d, &[inputs * outputs]);
    let step = engine::cpu::optim::AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        epsilon: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        bias1: 0.1,
        bias2: 0.001,
    };
    time(d, &format!("{name} forward"), flops, || d.dense_forward(n, inputs, outputs, &x, &w, &b, Epilogue::default(), &mut y))
        + time(d, &format!("{name} backward_input"), flops, || d.dense_backward_input(n, inputs, outputs, &y, &w, None, &mut dx))
        + time(d, &format!("{name} backward_weight"), flops, || d.dense_backward_weight(n, inputs, outputs, &x, &y, &mut dw, &mut db))
        + time(d, &format!("{name} adam (weight)"), 0.0, || {
            d.optimizer_update(engine::backend::UpdateRule::Adam(step), &mut p, &dw, &mut state)
        })
}

/// Whole training steps of the reference CNN at batch 100 on synthetic data.
pub fn full_step(d: Device, config: &Config, n: usize) {
    let spec = config.model_spec().unwrap();
    let mut net = engine::model::Network::new(spec, d, 1).unwrap();
    let mut opt = engine::optim::Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(n, true);
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let mut step = 0;
    // Reading the step's loss back waits for it, so there is nothing more to wait for.
    let host = Device::cpu();
    time(&host, &format!("train_step (batch {n})"), 0.0, || {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, step);
        ws.take_stats();
        step += 1;
    });
}
