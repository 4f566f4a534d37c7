//! The CPU kernels' threads: rayon's global pool, sized once, with denormal floats flushed to
//! zero on every worker. Gradients and activations that shrink towards zero during training
//! otherwise become denormals, which x86 CPUs add and multiply tens of times slower than normal
//! floats. Flushing changes results only below 1.2e-38, and identically from run to run.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Sizes rayon's global pool (`None`: one thread per core) with denormals flushed on each
/// worker, and flushes them on the calling thread too. Call before anything uses rayon.
pub fn configure(threads: Option<usize>) -> Result<(), rayon::ThreadPoolBuildError> {
    flush_denormals_on_this_thread();
    let mut builder = rayon::ThreadPoolBuilder::new().start_handler(|_| flush_denormals_on_this_thread());
    if let Some(t) = threads {
        builder = builder.num_threads(t);
    }
    builder.build_global()
}

/// How long the pool's threads stay awake after a call of [`in_pool`], for the next one.
const STAY_AWAKE: Duration = Duration::from_millis(1);

/// Until when (nanoseconds on [`clock`]) the pool's threads stay awake.
static AWAKE_UNTIL: AtomicU64 = AtomicU64::new(0);
/// Pool threads staying awake now.
static AWAKE: AtomicUsize = AtomicUsize::new(0);

/// Runs `work` as one job of the pool and waits for it, with every pool thread kept awake and
/// stealing during it and for [`STAY_AWAKE`] after it, as ONNX Runtime's threads spin. A lone
/// image's layers are parallel loops of tens of microseconds: handed to sleeping threads, each
/// would wait as long again for the threads to wake, and for the caller to be woken back. The
/// thread that ran the work stays awake too: the next call may start on any of them.
pub fn in_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    AWAKE_UNTIL.fetch_max(clock() + STAY_AWAKE.as_nanos() as u64, Ordering::Relaxed);
    wake_helpers();
    rayon::scope(|_| busy(work))
}

/// Spawns a [`stay_awake`] job for each pool thread not already staying awake. Rayon boxes each
/// spawned job: one small allocation per thread woken, at most one per idle millisecond.
#[inline(never)]
fn wake_helpers() {
    while claim_awake_thread() {
        rayon::spawn(stay_awake);
    }
}

thread_local! {
    /// Whether this thread runs an [`in_pool`] work or a [`stay_awake`] loop. A helper that this
    /// thread picks up from its own queue while it waits inside the work returns at once: it
    /// would hold the work up until the threads stop staying awake.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with [`BUSY`] set on this thread.
fn busy<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            BUSY.set(self.0);
        }
    }
    let _restore = Restore(BUSY.replace(true));
    f()
}

/// Pool threads staying awake after a call of [`in_pool`] now.
pub fn threads_staying_awake() -> usize {
    AWAKE.load(Ordering::Acquire)
}

/// Counts one more thread staying awake, if fewer than all are.
fn claim_awake_thread() -> bool {
    let threads = rayon::current_num_threads();
    AWAKE.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < threads).then_some(n + 1)).is_ok()
}

/// Runs the pool's jobs as they come, giving the core to other threads between them, until
/// [`AWAKE_UNTIL`].
fn stay_awake() {
    if BUSY.get() {
        AWAKE.fetch_sub(1, Ordering::AcqRel);
        return;
    }
    busy(|| {
        loop {
            while clock() < AWAKE_UNTIL.load(Ordering::Relaxed) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::thread::yield_now();
                }
            }
            AWAKE.fetch_sub(1, Ordering::AcqRel);
            // Extended between the last check and the count going down: carry on if still wanted.
            if clock() >= AWAKE_UNTIL.load(Ordering::Relaxed) || !claim_awake_thread() {
                return;
            }
        }
    })
}

/// Nanoseconds since the first call.
fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Sets flush-to-zero and denormals-are-zero for this thread's floating-point unit.
pub fn flush_denormals_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    {
        // MXCSR bit 15: flush-to-zero; bit 6: denormals-are-zero.
        const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);
        let mut csr = 0u32;
        // SAFETY: stmxcsr / ldmxcsr read and write this thread's SSE control register only.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= FTZ_DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // FPCR bit 24: flush-to-zero.
        // SAFETY: reads and writes this thread's floating-point control register only.
        unsafe {
            let mut fpcr: u64;
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
            fpcr |= 1 << 24;
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr, options(nomem, nostack, preserves_flags));
        }
    }
}

/// Whether this thread flushes denormals to zero.
pub fn denormals_flushed_on_this_thread() -> bool {
    let tiny = std::hint::black_box(f32::MIN_POSITIVE);
    std::hint::black_box(tiny * std::hint::black_box(0.5)) == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushing_turns_denormal_products_into_zero() {
        std::thread::spawn(|| {
            assert!(!denormals_flushed_on_this_thread(), "a new thread keeps IEEE denormals");
            flush_denormals_on_this_thread();
            assert!(denormals_flushed_on_this_thread());
        })
        .join()
        .unwrap();
    }
}
