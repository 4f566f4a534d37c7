//! What the GPU backend does for the default model (trainer/HyperParams.config), counted as it
//! records: per training step (batch 100) and per inference batch (1 and 256), the dispatches
//! (per kernel), compute passes, submissions, blocking maps, and bytes written and read back;
//! per tiled product of a training step, its shape, tile, split-K and useful/issued FMA ratio,
//! and the register blocking of the tiled product; and, read from naga's IR of the compiled
//! shaders, the integer divisions and modulos inside each kernel's loops.
//!
//!     cargo run --release -p engine --example gpu_report [-- --json]
//!
//! Any adapter will do (Mesa's lavapipe included): these are counts, not timings.

use engine::gpu::{GemmShape, GpuCounters, inspect};
use engine::model::{Config, Network};
use engine::optim::Optimizer;
use engine::predictor::Inference;
use engine::{Device, DeviceKind};
use serde_json::json;

const TRAIN_BATCH: usize = 100;

fn main() {
    let json_output = std::env::args().any(|a| a == "--json");
    let device = Device::open(DeviceKind::Gpu).unwrap_or_else(|e| {
        eprintln!("gpu_report: {e}");
        std::process::exit(1);
    });
    let Device::Gpu(gpu) = &device else { unreachable!("--device gpu opens a GPU") };
    let gpu = gpu.clone();
    let config = Config::parse(include_str!("../../trainer/HyperParams.config")).expect("the default config");
    let mut net = Network::new(config.model_spec().unwrap(), device.clone(), 1).unwrap();
    let mut opt = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(TRAIN_BATCH, true);
    let pixels: Vec<u8> = (0..TRAIN_BATCH * 784).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..TRAIN_BATCH).map(|i| (i % 10) as u8).collect();
    // Warm-up steps grow every scratch buffer; the measured step is a steady one.
    for step in 0..2 {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, step);
    }
    ws.take_stats();
    let before = gpu.counters();
    gpu.log_gemms(true);
    net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, 2);
    let gemms = gpu.log_gemms(false);
    let train = gpu.counters().since(&before);

    let inference = |n: usize| -> GpuCounters {
        let mut inference = Inference::new(&net, n);
        let images = vec![0.5f32; n * 784];
        inference.predict(&net, &images).unwrap();
        let before = gpu.counters();
        inference.predict(&net, &images).unwrap();
        gpu.counters().since(&before)
    };
    let (infer1, infer256) = (inference(1), inference(256));
    let loops = inspect::loop_arithmetic();
    let per_thread = inspect::shader_constant("dense.wgsl", "PER_THREAD").unwrap_or(0) as f64;
    let blocking = json!({
        "outputs_per_thread": format!("{per_thread}x{per_thread}"),
        "fma_per_shared_load": per_thread * per_thread / (2.0 * per_thread),
    });

    if json_output {
        let report = json!({
            "device": gpu.describe(),
            "training_step_batch_100": train,
            "inference_batch_1": infer1,
            "inference_batch_256": infer256,
            "training_step_gemms": gemms,
            "gemm_register_blocking": blocking,
            "loop_integer_div_mod": loops,
        });
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        return;
    }
    println!("{}\n", gpu.describe());
    print_counters(&format!("training step, batch {TRAIN_BATCH}"), &train);
    print_counters("inference, batch 1", &infer1);
    print_counters("inference, batch 256", &infer256);
    print_gemms(&gemms);
    println!(
        "tiled product: {} outputs per thread, {:.1} FMAs per shared-memory load\n",
        blocking["outputs_per_thread"].as_str().unwrap(),
        blocking["fma_per_shared_load"].as_f64().unwrap()
    );
    println!("integer div / mod inside loops (naga IR): run-time divisor, constant divisor");
    for l in loops.iter().filter(|l| l.variable_div_mod + l.constant_div_mod > 0) {
        println!("  {:18} {:24} {:4} {:4}", l.file, l.entry_point, l.variable_div_mod, l.constant_div_mod);
    }
}

fn print_counters(what: &str, c: &GpuCounters) {
    println!(
        "{what}: {} dispatches, {} compute passes, {} submits, {} blocking maps, {} bytes written, {} bytes read back",
        c.dispatches, c.compute_passes, c.submits, c.blocking_maps, c.bytes_written, c.bytes_read
    );
    let kernels: Vec<String> = c.dispatches_by_kernel.iter().map(|(k, n)| format!("{k} x{n}")).collect();
    println!("  {}\n", kernels.join(", "));
}

fn print_gemms(gemms: &[GemmShape]) {
    println!("tiled products of the training step:");
    println!("  {:16} {:>6} {:>6} {:>7} {:>7} {:>6} {:>8} {:>6}", "kernel", "m", "n", "k", "tile", "splits", "useful", "reduce");
    for g in gemms {
        println!(
            "  {:16} {:6} {:6} {:7} {:>7} {:6} {:7.1}% {:>6}",
            g.kernel,
            g.m,
            g.n,
            g.k,
            format!("{}x{}", g.tile[0], g.tile[1]),
            g.splits,
            100.0 * g.useful_fma as f64 / g.issued_fma as f64,
            if g.reduce_pass { "yes" } else { "no" }
        );
    }
    println!();
}

