//! CPU kernels (rayon + GEMM), one file per op family. They take plain slices and explicit
//! shapes, so they are also the oracle that other backends are tested against.
//!
//! Parallel reductions split the batch into a fixed number of chunks derived from the thread
//! count and sum the partial results in chunk order: the same seed and thread count give
//! bitwise-identical results.

/// Compiles a function for AVX-512 and AVX2+FMA as well as baseline x86-64 and picks the best
/// at run time, so the shipped binary runs on any x86-64 CPU yet vectorises where it can.
macro_rules! vectorized {
    ($item:item) => {
        #[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma", "x86_64+avx2+fma"))]
        $item
    };
}

pub mod batchnorm;
pub mod conv2d;
pub mod conv_direct;
pub mod dense;
pub mod elementwise;
pub mod gemm;
pub mod optim;
pub mod pool;
pub mod softmax_xent;
pub mod threads;
pub mod winograd;

/// Number of chunks a batch of `n` items is split into (fixed for a given thread count).
pub(crate) fn chunk_count(n: usize) -> usize {
    rayon::current_num_threads().clamp(1, n.max(1))
}

/// Items per chunk when `n` items are split into `chunk_count(n)` chunks.
pub(crate) fn chunk_size(n: usize) -> usize {
    n.div_ceil(chunk_count(n)).max(1)
}
