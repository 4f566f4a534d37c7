//! CPU benchmarks of the reference CNN: one training step (batch 100), inference at batch 1,
//! 64 and 256, and the heaviest kernels (throughput in FLOP/s shown as elements/s).
//!
//!     cargo bench -p benches --bench cpu

use std::hint::black_box;
use std::time::Duration;

use benches::{reference, synthetic};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use engine::model::{Config, Network};
use engine::predictor::Predictor;
use engine::{Device, Tensor};

fn network(config: &Config) -> Network {
    Network::new(config.model_spec().unwrap(), Device::cpu(), 1).unwrap()
}

fn training_step(c: &mut Criterion) {
    benches::cpu_threads();
    let mut g = c.benchmark_group("train");
    g.throughput(Throughput::Elements(100));
    benches::train_step(&mut g, "step_batch100", Device::cpu(), 100);
    g.finish();
}

fn inference(c: &mut Criterion) {
    benches::cpu_threads();
    let config = reference();
    let mut predictor = Predictor::new(network(&config), 256);
    let images: Vec<f32> = synthetic(256).0.iter().map(|&p| p as f32 / 255.0).collect();
    let mut g = c.benchmark_group("infer");
    for batch in [1usize, 64, 256] {
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch{batch}"), |b| b.iter(|| black_box(predictor.predict(&images[..batch * 784]).unwrap())));
    }
    g.finish();
}

fn kernels(c: &mut Criterion) {
    benches::cpu_threads();
    let d = Device::cpu();
    let spec = reference().model_spec().unwrap();
    let shapes = spec.shapes().unwrap();
    let conv2 = spec.layers.iter().position(|l| l.name == "conv2").unwrap();
    let g2 = spec.layers[conv2].conv_geometry(shapes[conv2]).unwrap();
    let n = 100;
    let x: Tensor = Tensor::zeros(&d, &[n * g2.in_len()]);
    let w = Tensor::zeros(&d, &[g2.weight_len()]);
    let bias = Tensor::zeros(&d, &[g2.out_c]);
    let mut y = Tensor::zeros(&d, &[n * g2.out_len()]);
    let (mut dx, mut dw, mut db) =
        (Tensor::zeros(&d, &[n * g2.in_len()]), Tensor::zeros(&d, &[g2.weight_len()]), Tensor::zeros(&d, &[g2.out_c]));
    let flops = 2 * (n * g2.positions() * g2.patch_len() * g2.out_c) as u64;
    let mut g = c.benchmark_group("kernels_flops");
    g.throughput(Throughput::Elements(flops));
    g.bench_function("conv2_forward_b100", |b| b.iter(|| d.conv2d_forward(&g2, n, &x, &w, &bias, Default::default(), &mut y)));
    g.bench_function("conv2_backward_input_b100", |b| b.iter(|| d.conv2d_backward_input(&g2, n, &y, &w, None, &mut dx)));
    g.bench_function("conv2_backward_weight_b100", |b| b.iter(|| d.conv2d_backward_weight(&g2, n, &x, &y, &mut dw, &mut db)));
    let (i, o) = (3136, 1024);
    let (dxd, wd, bd) = (Tensor::zeros(&d, &[n * i]), Tensor::zeros(&d, &[i * o]), Tensor::zeros(&d, &[o]));
    let mut yd = Tensor::zeros(&d, &[n * o]);
    g.throughput(Throughput::Elements(2 * (n * i * o) as u64));
    g.bench_function("dense1_forward_b100", |b| b.iter(|| d.dense_forward(n, i, o, &dxd, &wd, &bd, Default::default(), &mut yd)));
    let size = 1024;
    let (a, bm) = (Tensor::zeros(&d, &[size * size]), Tensor::zeros(&d, &[size * size]));
    let bz = Tensor::zeros(&d, &[size]);
    let mut cm = Tensor::zeros(&d, &[size * size]);
    g.throughput(Throughput::Elements(2 * (size * size * size) as u64));
    g.bench_function("gemm_1024", |b| b.iter(|| d.dense_forward(size, size, size, &a, &bm, &bz, Default::default(), &mut cm)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = training_step, inference, kernels
}
criterion_main!(benches);
