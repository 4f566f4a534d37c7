//! Shared pieces of the criterion benchmarks in `benches/` (cpu.rs, gpu.rs): the reference
//! model, synthetic batches, and the training-step benchmark body.

use std::hint::black_box;

use criterion::BenchmarkGroup;
use criterion::measurement::WallTime;
use engine::Device;
use engine::model::{Config, Network};
use engine::optim::Optimizer;

/// The CPU threads as `trainer` and `server` set them up (one per core, denormals flushed);
/// later calls leave the pool as it is.
pub fn cpu_threads() {
    let _already_built = engine::cpu::threads::configure(None);
}

/// The reference CNN of `trainer/HyperParams.config`.
pub fn reference() -> Config {
    Config::parse(include_str!("../../trainer/HyperParams.config")).expect("reference config")
}

/// `n` synthetic images (u8 pixels) and labels.
pub fn synthetic(n: usize) -> (Vec<u8>, Vec<u8>) {
    ((0..n * 784).map(|i| (i * 37 % 256) as u8).collect(), (0..n).map(|i| (i % 10) as u8).collect())
}

/// Benchmarks whole training steps of the reference CNN at `batch` on `device` as `id`. Each
/// step's loss is read back, so on a GPU it includes waiting for the device.
pub fn train_step(group: &mut BenchmarkGroup<'_, WallTime>, id: &str, device: Device, batch: usize) {
    let config = reference();
    let mut net = Network::new(config.model_spec().unwrap(), device, 1).unwrap();
    let mut opt = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(batch, true);
    let (pixels, labels) = synthetic(batch);
    let mut step = 0u32;
    group.bench_function(id, |b| {
        b.iter(|| {
            step += 1;
            net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, step);
            black_box(ws.take_stats())
        })
    });
}
