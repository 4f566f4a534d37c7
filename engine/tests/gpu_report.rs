//! The GPU report of the default model (what `cargo run -p engine --example gpu_report`
//! prints) held at its targets, so that no change regresses them silently: a training step is
//! at most 24 dispatches in one compute pass and one submission, with nothing read back; the
//! steps' loss and accuracy come back in one readback when reported; an inference batch is at
//! most 10 dispatches and one readback; no ReLU, dropout or input normalisation runs as its own
//! kernel; the tiled products (dense and convolutions) divide by no run-time value inside their
//! K loops, block at least 8x4 outputs per thread from vec4 shared-memory loads, get tiles that
//! fit their shapes and split the reduction at most 32 ways.

mod common;

use std::sync::OnceLock;

use engine::gpu::report::{GpuReport, measure};
use engine::model::Config;

fn report() -> &'static GpuReport {
    static REPORT: OnceLock<GpuReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let config = Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap();
        measure(common::gpu(), &config, 100).unwrap()
    })
}

fn kernels(c: &engine::gpu::GpuCounters) -> Vec<&'static str> {
    c.dispatches_by_kernel.iter().map(|(k, _)| *k).collect()
}

#[test]
fn a_training_step_is_at_most_24_dispatches_in_one_pass_with_nothing_read_back() {
    let step = &report().training_step;
    assert!(step.dispatches <= 24, "{} dispatches per training step: {:?}", step.dispatches, step.dispatches_by_kernel);
    assert_eq!((step.compute_passes, step.submits), (1, 1), "one compute pass, one submission");
    assert_eq!((step.blocking_maps, step.bytes_read), (0, 0), "a training step reads nothing back");
    let fused_away = ["activation_in_place", "slope_at_output_in_place", "dropout", "normalize_u8", "sgd", "momentum"];
    assert!(kernels(step).iter().all(|k| !fused_away.contains(k)), "unfused kernels ran: {:?}", step.dispatches_by_kernel);
    assert!(step.dispatches_by_kernel.contains(&("adam", 1)), "one optimizer dispatch: {:?}", step.dispatches_by_kernel);
}

#[test]
fn reported_steps_come_back_in_one_readback() {
    let r = report();
    assert_eq!(r.report_readback.blocking_maps, 1, "{} steps", r.steps_per_report);
    assert_eq!(r.report_readback.bytes_read, 8 * r.steps_per_report as u64, "a loss sum and a correct count per step");
}

#[test]
fn an_inference_batch_is_at_most_10_dispatches_and_one_readback() {
    for (n, c) in [(1u64, &report().inference_batch_1), (256, &report().inference_batch_256)] {
        assert!(c.dispatches <= 10, "batch {n}: {} dispatches: {:?}", c.dispatches, c.dispatches_by_kernel);
        assert_eq!((c.submits, c.blocking_maps), (1, 1), "batch {n}: one submission, one readback");
        assert_eq!(c.bytes_read, n * 11 * 4, "batch {n}: only the outputs (10 probabilities and the class) come back");
        assert!(!kernels(c).contains(&"activation_in_place"), "batch {n}: ReLU runs as its own kernel");
    }
}

#[test]
fn no_kernel_divides_by_a_run_time_value_inside_its_loops() {
    let r = report();
    assert_eq!(r.training_step_gemms.len(), 11, "{:?}", r.training_step_gemms);
    let loops = &r.loop_integer_div_mod;
    for entry in ["matmul", "forward", "backward_input", "backward_weight"] {
        assert!(loops.iter().any(|l| l.entry_point == entry), "{entry} is analysed: {loops:?}");
    }
    for l in loops.iter().filter(|l| l.file == "dense.wgsl" || l.file == "conv2d.wgsl") {
        assert_eq!(l.variable_div_mod, 0, "{l:?}");
    }
}

#[test]
fn every_tile_variant_blocks_at_least_8x4_outputs_per_thread_from_vec4_loads() {
    let r = report();
    assert!(r.register_blocking.len() >= 3, "{:?}", r.register_blocking);
    for b in &r.register_blocking {
        let [rows, cols] = b.outputs_per_thread;
        assert!(rows * cols >= 32 && rows >= 4 && cols >= 4, "{b:?}");
        assert!(b.fma_per_shared_load >= 10.0, "{b:?}");
    }
    let widest = r.register_blocking.iter().max_by_key(|b| b.workgroup_outputs[0] * b.workgroup_outputs[1]).unwrap();
    assert_eq!(widest.outputs_per_thread, [8, 8], "the widest tile is 8x8 per thread: {widest:?}");
}

#[test]
fn products_get_tiles_that_fit_their_shape_and_bounded_splits() {
    let gemms = &report().training_step_gemms;
    for g in gemms {
        assert!(g.splits <= 32, "{g:?}");
        if g.n <= 32 {
            assert!(g.tile[1] <= 32, "a product with {} columns gets a narrow tile: {g:?}", g.n);
        }
        if g.n >= 64 && g.m >= 64 && g.k >= 64 {
            assert!(g.useful_fraction() >= 0.75, "{g:?}");
        }
    }
    // Before: one 64x64 tile for every shape left dense2's products at 12-13% useful FMAs.
    let dense2 = gemms.iter().find(|g| g.kernel == "matmul" && g.n == 10).expect("dense2's forward");
    assert!(dense2.useful_fraction() >= 0.45, "{dense2:?}");
    // conv2's forward reads both operands as aligned vec4s (32 input channels, 64 filters).
    let conv2 = gemms.iter().find(|g| g.kernel == "forward" && g.n == 64).expect("conv2's forward");
    assert_eq!(conv2.vec4_loads, [true, true], "{conv2:?}");
    let split = gemms.iter().filter(|g| g.splits > 1).count() as u64;
    let reduces = report().training_step.dispatches_by_kernel.iter().find(|(k, _)| *k == "reduce_splits").map_or(0, |(_, n)| *n);
    assert_eq!(reduces, split, "one reduction pass per split product, none for a product in one split: {gemms:?}");
}
