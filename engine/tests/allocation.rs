//! After warm-up, a training step and an inference batch make no heap allocation of their own.
//! The exceptions: the `gemm` crate allocates its packing buffers on every call (gemm-common
//! 0.19, gemm.rs), and rayon boxes the job that keeps a pool thread awake after an inference
//! (`cpu::threads::wake_helpers`, one small box per thread woken). Allocations are attributed
//! by backtrace, in this test binary only.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use engine::Device;
use engine::data::Dataset;
use engine::model::{Config, Network};
use engine::optim::Optimizer;
use engine::predictor::{Inference, Prediction};

struct Attributing;

static WATCHING: AtomicBool = AtomicBool::new(false);
static IN_GEMM: AtomicUsize = AtomicUsize::new(0);
static OURS: AtomicUsize = AtomicUsize::new(0);
static FIRST_OFFENDER: Mutex<Option<String>> = Mutex::new(None);
thread_local! { static BUSY: Cell<bool> = const { Cell::new(false) }; }

fn record() {
    if !WATCHING.load(Ordering::Relaxed) || BUSY.with(|b| b.replace(true)) {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    if trace.contains("gemm_common::") || trace.contains("engine::cpu::threads::wake_helpers") {
        IN_GEMM.fetch_add(1, Ordering::Relaxed);
    } else {
        OURS.fetch_add(1, Ordering::Relaxed);
        FIRST_OFFENDER.lock().unwrap().get_or_insert(trace);
    }
    BUSY.with(|b| b.set(false));
}

// SAFETY: forwards to the system allocator; only observes calls.
unsafe impl GlobalAlloc for Attributing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Attributing = Attributing;

/// Callers run the engine on a rayon worker (as the trainer does): parallel loops started from
/// outside the pool go through rayon's global injector, which allocates a queue block every few
/// dozen jobs.
#[test]
fn steady_state_training_and_inference_do_not_allocate() {
    rayon::scope(|_| steady_state());
}

fn steady_state() {
    let config = Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap();
    let mut net = Network::new(config.model_spec().unwrap(), Device::cpu(), 7).unwrap();
    let mut opt = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(32, true);
    let mut inference = Inference::new(&net, 32);
    let pixels: Vec<u8> = (0..32 * 784).map(|i| (i * 13 % 256) as u8).collect();
    let labels: Vec<u8> = (0..32).map(|i| (i % 10) as u8).collect();
    let mut out = Prediction { classes: Vec::with_capacity(32), probabilities: Vec::with_capacity(320) };
    for step in 0..2 {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, step);
    }
    inference.predict_u8_into(&net, &pixels, &mut out);

    WATCHING.store(true, Ordering::SeqCst);
    for step in 2..4 {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, step);
        out.classes.clear();
        out.probabilities.clear();
        inference.predict_u8_into(&net, &pixels, &mut out);
    }
    WATCHING.store(false, Ordering::SeqCst);

    let ours = OURS.load(Ordering::SeqCst);
    assert_eq!(
        ours,
        0,
        "{ours} allocations outside the gemm crate and the pool's helper jobs; the first:\n{}",
        FIRST_OFFENDER.lock().unwrap().clone().unwrap_or_default()
    );
    assert_eq!(out.classes.len(), 32);

    // Evaluation allocates its buffers once per call, never per batch: 1 batch and 5 batches
    // make the same number of allocations.
    let mut evaluate_allocations = |images: usize| {
        let data = Dataset {
            images: (0..images * 784).map(|i| (i * 7 % 256) as u8).collect(),
            labels: (0..images).map(|i| (i % 10) as u8).collect(),
            rows: 28,
            cols: 28,
            images_path: "synthetic".into(),
        };
        OURS.store(0, Ordering::SeqCst);
        WATCHING.store(true, Ordering::SeqCst);
        let ev = inference.evaluate(&net, &data, |_| {}).unwrap();
        WATCHING.store(false, Ordering::SeqCst);
        assert_eq!(ev.confusion.total(), images as u64);
        OURS.load(Ordering::SeqCst)
    };
    let (one, five) = (evaluate_allocations(32), evaluate_allocations(5 * 32));
    assert_eq!(one, five, "evaluation allocations: {one} for one batch, {five} for five");
    eprintln!("allocations inside the gemm crate over 2 steps + 2 inference batches: {}", IN_GEMM.load(Ordering::SeqCst));
}
