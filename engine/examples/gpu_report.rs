//! What the GPU backend does for the default model (trainer/HyperParams.config), counted as it
//! records: per training step (batch 100) and per inference batch (1 and 256), the dispatches
//! (per kernel), compute passes, submissions, blocking maps, and bytes written and read back;
//! per tiled product of a training step, its shape, tile, outputs per thread, split-K,
//! useful/issued FMA ratio, FMAs per shared-memory load and which operands load as vec4; the
//! register blocking of every tile variant; and, read from naga's IR of the compiled shaders,
//! the integer divisions and modulos inside each kernel's hot loops.
//!
//!     cargo run --release -p engine --example gpu_report [-- --json]
//!
//! Any adapter will do (Mesa's lavapipe included): these are counts, not timings.

use engine::gpu::report::{GpuReport, measure};
use engine::gpu::{GemmShape, GpuCounters};
use engine::model::Config;
use engine::{Device, DeviceKind};

const TRAIN_BATCH: usize = 100;

fn main() {
    // SAFETY: no other thread exists yet.
    unsafe { engine::gpu::quiet_vulkan_loader() };
    let json_output = std::env::args().any(|a| a == "--json");
    let config = Config::parse(include_str!("../../trainer/HyperParams.config")).expect("the default config");
    let report = Device::open(DeviceKind::Gpu).and_then(|device| measure(&device, &config, TRAIN_BATCH)).unwrap_or_else(|e| {
        eprintln!("gpu_report: {e}");
        std::process::exit(1);
    });
    if json_output {
        println!("{}", serde_json::to_string_pretty(&report).expect("the report serialises"));
    } else {
        print_report(&report);
    }
}

fn print_report(r: &GpuReport) {
    println!("{}\n", r.device);
    print_counters(&format!("training step, batch {}", r.train_batch), &r.training_step);
    print_counters(&format!("reading back {} steps' loss and accuracy", r.steps_per_report), &r.report_readback);
    print_counters("inference, batch 1", &r.inference_batch_1);
    print_counters("inference, batch 256", &r.inference_batch_256);
    print_gemms(&r.training_step_gemms);
    println!("tile variants (from their WGSL constants): outputs per workgroup, per thread, threads, FMAs per vec4 shared-memory load");
    for b in &r.register_blocking {
        let ([bm, bn], [tm, tn]) = (b.workgroup_outputs, b.outputs_per_thread);
        println!("  {:8} {bm:4}x{bn:<4} {tm}x{tn} {:4} {:5.1}", b.tile, b.threads, b.fma_per_shared_load);
    }
    println!();
    println!("integer div / mod inside hot loops (naga IR; the K loop of tiled products): run-time divisor, constant divisor");
    for l in r.loop_integer_div_mod.iter().filter(|l| l.variable_div_mod + l.constant_div_mod > 0) {
        println!("  {:18} {:8} {:24} {:4} {:4}", l.file, l.variant, l.entry_point, l.variable_div_mod, l.constant_div_mod);
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
    println!(
        "  {:16} {:>6} {:>6} {:>7} {:>8} {:>7} {:>6} {:>8} {:>9} {:>6}",
        "kernel", "m", "n", "k", "tile", "thread", "splits", "useful", "FMA/load", "vec4"
    );
    for g in gemms {
        let vec4 = match g.vec4_loads {
            [true, true] => "A B",
            [true, false] => "A",
            [false, true] => "B",
            [false, false] => "-",
        };
        println!(
            "  {:16} {:6} {:6} {:7} {:>8} {:>7} {:6} {:7.1}% {:9.1} {:>6}",
            g.kernel,
            g.m,
            g.n,
            g.k,
            format!("{}x{}", g.tile[0], g.tile[1]),
            format!("{}x{}", g.per_thread[0], g.per_thread[1]),
            g.splits,
            100.0 * g.useful_fraction(),
            g.fma_per_shared_load(),
            vec4
        );
    }
    println!();
}
