//! The GPU next to the CPU in one run: the reference CNN's training step (batch 100), inference
//! at batch 256, conv2's three passes and square matrix products (FLOP/s shown as elements/s).
//! No GPU adapter is a failure. On a software adapter (lavapipe) expect about 2 GFLOP/s.
//!
//!     cargo bench -p benches --bench gpu [-- FILTER]     (GEMM_SIZE=4096 for the big product)

use std::hint::black_box;
use std::time::Duration;

use benches::{reference, synthetic};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::model::Network;
use engine::predictor::Predictor;
use engine::{Device, Tensor};

fn devices() -> [(&'static str, Device); 2] {
    let gpu = Device::gpu().unwrap_or_else(|e| panic!("the GPU benches need a GPU adapter: {e}"));
    eprintln!("GPU: {}", gpu.describe());
    [("cpu", Device::cpu()), ("gpu", gpu)]
}

fn training_step(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_step_batch100");
    g.throughput(Throughput::Elements(100));
    for (name, device) in devices() {
        benches::train_step(&mut g, name, device, 100);
    }
    g.finish();
}

fn inference(c: &mut Criterion) {
    let config = reference();
    let images: Vec<f32> = synthetic(256).0.iter().map(|&p| p as f32 / 255.0).collect();
    let mut g = c.benchmark_group("infer_batch256");
    g.throughput(Throughput::Elements(256));
    for (name, device) in devices() {
        let mut predictor = Predictor::new(Network::new(config.model_spec().unwrap(), device, 1).unwrap(), 256);
        g.bench_function(name, |b| b.iter(|| black_box(predictor.predict(&images).unwrap())));
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let spec = reference().model_spec().unwrap();
    let shapes = spec.shapes().unwrap();
    let conv2 = spec.layers.iter().position(|l| l.name == "conv2").unwrap();
    let g2 = spec.layers[conv2].conv_geometry(shapes[conv2]).unwrap();
    let n = 100;
    let size: usize = std::env::var("GEMM_SIZE").ok().and_then(|s| s.parse().ok()).unwrap_or(1024);
    let mut g = c.benchmark_group("kernels_flops");
    for (name, d) in devices() {
        let x: Tensor = Tensor::zeros(&d, &[n * g2.in_len()]);
        let w = Tensor::zeros(&d, &[g2.weight_len()]);
        let bias = Tensor::zeros(&d, &[g2.out_c]);
        let mut y = Tensor::zeros(&d, &[n * g2.out_len()]);
        let (mut dx, mut dw, mut db) =
            (Tensor::zeros(&d, &[n * g2.in_len()]), Tensor::zeros(&d, &[g2.weight_len()]), Tensor::zeros(&d, &[g2.out_c]));
        g.throughput(Throughput::Elements(2 * (n * g2.positions() * g2.patch_len() * g2.out_c) as u64));
        g.bench_function(format!("conv2_forward_b100/{name}"), |b| {
            b.iter(|| {
                d.conv2d_forward(&g2, n, &x, &w, &bias, Default::default(), &mut y);
                d.synchronize()
            })
        });
        g.bench_function(format!("conv2_backward_input_b100/{name}"), |b| {
            b.iter(|| {
                d.conv2d_backward_input(&g2, n, &y, &w, None, &mut dx);
                d.synchronize()
            })
        });
        g.bench_function(format!("conv2_backward_weight_b100/{name}"), |b| {
            b.iter(|| {
                d.conv2d_backward_weight(&g2, n, &x, &y, &mut dw, &mut db);
                d.synchronize()
            })
        });
        let (a, bm) = (Tensor::zeros(&d, &[size * size]), Tensor::zeros(&d, &[size * size]));
        let mut cm = Tensor::zeros(&d, &[size * size]);
        g.throughput(Throughput::Elements(2 * (size * size * size) as u64));
        g.bench_function(format!("gemm_{size}/{name}"), |b| {
            b.iter(|| {
                d.matmul(size, size, size, &a, &bm, &mut cm);
                d.synchronize()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = training_step, inference, kernels
}
criterion_main!(benches);
