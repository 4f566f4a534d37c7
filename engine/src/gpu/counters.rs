//! What the GPU backend did, counted as it records: dispatches (per kernel), compute passes,
//! submissions, blocking maps, bytes written from and read back to the host. The GPU report
//! (`examples/gpu_report.rs`) and the tests read them per training step and inference batch.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::kernels::{KERNEL_COUNT, entry_point};

#[derive(Default)]
pub(crate) struct Counters {
    dispatches: [AtomicU64; KERNEL_COUNT],
    pub(crate) compute_passes: AtomicU64,
    pub(crate) submits: AtomicU64,
    pub(crate) blocking_maps: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    /// Every tiled product recorded while logging is on (the GPU report's per-shape table).
    gemms: Mutex<Option<Vec<GemmShape>>>,
}

/// One tiled product as dispatched: its shape, the tile and split-K chosen for it, and the
/// multiply-adds it does against those the workgroups issue (padding included).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GemmShape {
    pub kernel: &'static str,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Rows x columns of C per workgroup, and per thread.
    pub tile: [usize; 2],
    pub per_thread: [usize; 2],
    /// Whether A's and B's groups of four are read as single vec4 loads (aligned operands).
    pub vec4_loads: [bool; 2],
    pub splits: usize,
    pub useful_fma: u64,
    pub issued_fma: u64,
    /// A second dispatch sums the splits.
    pub reduce_pass: bool,
}

impl GemmShape {
    pub fn useful_fraction(&self) -> f64 {
        self.useful_fma as f64 / self.issued_fma.max(1) as f64
    }

    /// Multiply-adds per vec4 read from workgroup memory in the inner loop: a thread reads
    /// rows / 4 + columns / 4 vec4s for rows x columns multiply-adds.
    pub fn fma_per_shared_load(&self) -> f64 {
        let [rows, cols] = self.per_thread;
        (rows * cols) as f64 / (rows / 4 + cols / 4) as f64
    }
}

/// A snapshot of the counters (or the difference of two).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct GpuCounters {
    pub dispatches: u64,
    /// Dispatches per kernel (entry point name), in kernel order, kernels never run left out.
    pub dispatches_by_kernel: Vec<(&'static str, u64)>,
    pub compute_passes: u64,
    pub submits: u64,
    pub blocking_maps: u64,
    pub bytes_written: u64,
    pub bytes_read: u64,
}

impl Counters {
    pub(crate) fn dispatched(&self, kernel: usize) {
        self.dispatches[kernel].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn log_gemm(&self, shape: impl FnOnce() -> GemmShape) {
        if let Some(log) = self.gemms.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            log.push(shape());
        }
    }

    /// Starts (or stops, returning what was logged) the log of tiled products.
    pub(crate) fn set_gemm_log(&self, on: bool) -> Vec<GemmShape> {
        let mut log = self.gemms.lock().unwrap_or_else(|e| e.into_inner());
        let logged = log.take().unwrap_or_default();
        *log = on.then(Vec::new);
        logged
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> GpuCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by_kernel: Vec<(&'static str, u64)> =
            self.dispatches.iter().enumerate().map(|(k, c)| (entry_point(k), get(c))).filter(|&(_, n)| n > 0).collect();
        GpuCounters {
            dispatches: by_kernel.iter().map(|(_, n)| n).sum(),
            dispatches_by_kernel: by_kernel,
            compute_passes: get(&self.compute_passes),
            submits: get(&self.submits),
            blocking_maps: get(&self.blocking_maps),
            bytes_written: get(&self.bytes_written),
            bytes_read: get(&self.bytes_read),
        }
    }
}

impl GpuCounters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &GpuCounters) -> GpuCounters {
        let before = |name: &str| earlier.dispatches_by_kernel.iter().find(|(k, _)| *k == name).map_or(0, |(_, n)| *n);
        let by_kernel: Vec<(&'static str, u64)> =
            self.dispatches_by_kernel.iter().map(|&(k, n)| (k, n - before(k))).filter(|&(_, n)| n > 0).collect();
        GpuCounters {
            dispatches: self.dispatches - earlier.dispatches,
            dispatches_by_kernel: by_kernel,
            compute_passes: self.compute_passes - earlier.compute_passes,
            submits: self.submits - earlier.submits,
            blocking_maps: self.blocking_maps - earlier.blocking_maps,
            bytes_written: self.bytes_written - earlier.bytes_written,
            bytes_read: self.bytes_read - earlier.bytes_read,
        }
    }
}
