//! The CPU kernels' threads: rayon's global pool, sized once, with denormal floats flushed to
//! zero on every worker. Gradients and activations that shrink towards zero during training
//! otherwise become denormals, which x86 CPUs add and multiply tens of times slower than normal
//! floats. Flushing changes results only below 1.2e-38, and identically from run to run.

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
