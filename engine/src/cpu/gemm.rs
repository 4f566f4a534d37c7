//! Single-precision matrix multiply through the `gemm` crate (AVX-512 kernels picked at run time
//! where the CPU has them).

/// A strided, read-only matrix view (row-major, optionally transposed).
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a> MatRef<'a> {
    /// `rows x cols`, row-major, contiguous.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix {rows}x{cols} needs {} values, got {}", rows * cols, data.len());
        Self { data, rows, cols, row_stride: cols as isize, col_stride: 1 }
    }

    /// `rows x cols`, row-major, a row every `row_stride` values.
    pub fn with_row_stride(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        let needed = if rows == 0 { 0 } else { (rows - 1) * row_stride + cols };
        assert!(
            cols <= row_stride && data.len() >= needed,
            "matrix {rows}x{cols} (row stride {row_stride}) needs {needed} values, got {}",
            data.len()
        );
        Self { data, rows, cols, row_stride: row_stride as isize, col_stride: 1 }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride }
    }
}

/// Whether the multiply may use rayon threads itself (false inside an already-parallel loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    Single,
    Pool,
}

/// `dst (m x n, row-major) = [dst +] lhs (m x k) * rhs (k x n)`.
pub fn matmul(dst: &mut [f32], lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool, threads: Threads) {
    let (m, n) = (lhs.rows, rhs.cols);
    assert!(dst.len() >= m * n, "matmul: destination holds {} values, needs {}", dst.len(), m * n);
    if nothing_to_multiply(dst, lhs, rhs, accumulate) {
        return;
    }
    let parallelism = match threads {
        Threads::Single => gemm::Parallelism::None,
        Threads::Pool => match rayon::current_num_threads() {
            1 => gemm::Parallelism::None,
            t => gemm::Parallelism::Rayon(t),
        },
    };
    // SAFETY: dst holds m * n values with row stride n (asserted above).
    unsafe { gemm_raw(dst.as_mut_ptr(), n, accumulate, lhs, rhs, parallelism) }
}

/// `dst[r * dst_row_stride + c] = lhs (m x k) * rhs (k x n)` for `r < m`, `c < n`: a
/// column block of a wider row-major matrix, on the calling thread.
///
/// # Safety
/// `dst` must be valid for writes at every such index, and no other thread may access those
/// elements during the call.
pub unsafe fn matmul_into_block(dst: *mut f32, dst_row_stride: usize, lhs: MatRef<'_>, rhs: MatRef<'_>) {
    assert!(rhs.cols <= dst_row_stride, "block of {} columns in rows of {dst_row_stride}", rhs.cols);
    if lhs.cols == 0 || lhs.rows == 0 || rhs.cols == 0 {
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { gemm_raw(dst, dst_row_stride, false, lhs, rhs, gemm::Parallelism::None) }
}

/// Handles `k == 0` (nothing to multiply: zero the destination unless accumulating).
fn nothing_to_multiply(dst: &mut [f32], lhs: MatRef<'_>, rhs: MatRef<'_>, accumulate: bool) -> bool {
    let (m, n) = (lhs.rows, rhs.cols);
    if m == 0 || n == 0 {
        return true;
    }
    if lhs.cols == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return true;
    }
    false
}

/// # Safety
/// `dst` must be valid for writes at `r * dst_row_stride + c` for `r < lhs.rows`, `c < rhs.cols`.
unsafe fn gemm_raw(
    dst: *mut f32,
    dst_row_stride: usize,
    accumulate: bool,
    lhs: MatRef<'_>,
    rhs: MatRef<'_>,
    parallelism: gemm::Parallelism,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(rhs.rows, k, "matmul: inner dimensions differ ({m}x{k} * {}x{n})", rhs.rows);
    // SAFETY: `MatRef::row_major` checked that each view's slice holds rows * cols values with
    // its strides; the caller vouches for dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.data.as_ptr(),
            rhs.col_stride,
            rhs.row_stride,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_with_transposes_and_accumulation() {
        let (m, k, n) = (17, 9, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let want = naive(&a, &b, m, k, n);
        for threads in [Threads::Single, Threads::Pool] {
            let mut c = vec![0.0; m * n];
            matmul(&mut c, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), false, threads);
            assert_eq!(c, want);
            matmul(&mut c, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), true, threads);
            assert_eq!(c, want.iter().map(|x| 2.0 * x).collect::<Vec<_>>());
        }
        // (a^T)^T b through transposed storage
        let mut at = vec![0.0; k * m];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        let mut c = vec![0.0; m * n];
        matmul(&mut c, MatRef::row_major(&at, k, m).t(), MatRef::row_major(&b, k, n), false, Threads::Single);
        assert_eq!(c, want);
    }
}
