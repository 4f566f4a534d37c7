//! Fully connected layer: `y[n, out] = x[n, in] * w[in, out] + b`.

use rayon::prelude::*;

use super::elementwise::add_assign;
use super::gemm::{MatRef, Threads, matmul, matmul_into_block};
use crate::device::CpuDevice;

pub fn forward(n: usize, inputs: usize, outputs: usize, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    for row in y[..n * outputs].chunks_mut(outputs) {
        row.copy_from_slice(b);
    }
    if n == 1 {
        return forward_one(inputs, outputs, x, w, &mut y[..outputs]);
    }
    let (x, w) = (MatRef::row_major(x, n, inputs), MatRef::row_major(w, inputs, outputs));
    matmul(y, x, w, true, Threads::Pool);
}

/// Columns of `w` one task of [`forward_one`] covers (4 KiB of each row).
const STREAM_COLUMNS: usize = 1024;

/// One example: `y += sum over i of x[i] * w[i, :]`, the columns split across threads. A single
/// row of input is bound by reading `w`, which this streams once with no packing (a GEMM would
/// first copy all of `w` into its own layout), and only the rows of nonzero inputs (after a
/// ReLU, most of them are zero).
fn forward_one(inputs: usize, outputs: usize, x: &[f32], w: &[f32], y: &mut [f32]) {
    let per_task = outputs.div_ceil(rayon::current_num_threads()).clamp(64, STREAM_COLUMNS).next_multiple_of(16);
    y.par_chunks_mut(per_task).enumerate().for_each(|(t, block)| {
        let (c0, end) = (t * per_task, t * per_task + block.len());
        let mut rows = [(0usize, 0.0f32); LISTED_ROWS];
        let mut next = 0;
        while next < inputs {
            let mut listed = 0;
            while next < inputs && listed < LISTED_ROWS {
                if x[next] != 0.0 {
                    rows[listed] = (next, x[next]);
                    listed += 1;
                }
                next += 1;
            }
            let rows = &rows[..listed];
            let mut done = 0;
            while block.len() - done >= REGISTER_COLUMNS {
                accumulate_rows(&mut block[done..done + REGISTER_COLUMNS], rows, w, outputs, c0 + done);
                done += REGISTER_COLUMNS;
            }
            for &(i, xi) in rows {
                axpy(&mut block[done..], xi, &w[i * outputs + c0 + done..i * outputs + end]);
            }
        }
    });
}

/// Nonzero inputs [`forward_one`] lists (on the stack) before streaming their rows.
const LISTED_ROWS: usize = 512;

/// Columns of `y` held in registers while [`forward_one`]'s rows stream past (16 AVX-512
/// registers).
const REGISTER_COLUMNS: usize = 256;

vectorized! {
    /// `y += sum over (i, a) in rows of a * w[i * stride + c0..][..REGISTER_COLUMNS]`, `y` held in
    /// registers, each term a fused multiply-add in row order.
    fn accumulate_rows(y: &mut [f32], rows: &[(usize, f32)], w: &[f32], stride: usize, c0: usize) {
        let mut acc = [0.0f32; REGISTER_COLUMNS];
        acc.copy_from_slice(&y[..REGISTER_COLUMNS]);
        for (k, &(i, a)) in rows.iter().enumerate() {
            if let Some(&(ahead, _)) = rows.get(k + PREFETCH_ROWS_AHEAD) {
                prefetch(&w[ahead * stride + c0..][..REGISTER_COLUMNS]);
            }
            let row = &w[i * stride + c0..][..REGISTER_COLUMNS];
            for (acc, &v) in acc.iter_mut().zip(row) {
                *acc = a.mul_add(v, *acc);
            }
        }
        y[..REGISTER_COLUMNS].copy_from_slice(&acc);
    }
}

/// Rows [`accumulate_rows`] asks the caches for ahead of their turn. Each row segment starts
/// a new page (rows are 4 KiB apart, and zero inputs' rows are skipped), where the hardware
/// prefetchers stop.
const PREFETCH_ROWS_AHEAD: usize = 4;

/// Asks for `values` to be brought into the caches, without waiting for them.
#[inline(always)]
fn prefetch(values: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in values.chunks(16) {
        // SAFETY: a prefetch is a hint: it reads nothing into the program and never faults.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = values;
}

vectorized! {
    /// `y += a * x`.
    fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        for (y, x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }
}

/// Batches from this size on transpose `w` first: `gemm` packs a right-hand side whose rows are
/// strided (a transposed view) at well under half speed, and a transpose costs less than that.
const TRANSPOSE_FROM_BATCH: usize = 16;
/// Rows of `w` transposed at a time: the transposed band (`BAND * outputs` floats) stays in L2
/// while its GEMM reads it, so `w` is read from memory once.
const BAND: usize = 128;

pub fn backward_input(dev: &CpuDevice, n: usize, inputs: usize, outputs: usize, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let dy = MatRef::row_major(dy, n, outputs);
    if n < TRANSPOSE_FROM_BATCH {
        matmul(dx, dy, MatRef::row_major(w, inputs, outputs).t(), false, Threads::Pool);
        return;
    }
    assert!(dx.len() >= n * inputs && w.len() >= inputs * outputs);
    let bands = inputs.div_ceil(BAND);
    let workers = rayon::current_num_threads().min(bands);
    let dx = SharedColumns(dx.as_mut_ptr());
    dev.with_scratch(workers, BAND * outputs, |scratch| {
        scratch.par_iter_mut().enumerate().for_each(|(worker, buf)| {
            for band in (worker..bands).step_by(workers) {
                let (i0, i1) = (band * BAND, ((band + 1) * BAND).min(inputs));
                let wt = &mut buf[..(i1 - i0) * outputs];
                transpose(&w[i0 * outputs..i1 * outputs], i1 - i0, outputs, wt);
                // SAFETY: `dx` holds n * inputs values (asserted above); this band writes only
                // columns i0..i1 of its n rows, and every band belongs to exactly one worker.
                unsafe { matmul_into_block(dx.column(i0), inputs, dy, MatRef::row_major(wt, outputs, i1 - i0)) };
            }
        });
    });
}

/// The base of a matrix whose column blocks are written by different threads.
#[derive(Clone, Copy)]
struct SharedColumns(*mut f32);
// SAFETY: only handed to `matmul_into_block` for disjoint column blocks.
unsafe impl Send for SharedColumns {}
unsafe impl Sync for SharedColumns {}

impl SharedColumns {
    /// Pointer to column `c` of row 0.
    ///
    /// # Safety
    /// `c` must lie within the matrix.
    unsafe fn column(self, c: usize) -> *mut f32 {
        // SAFETY: the caller keeps c in bounds.
        unsafe { self.0.add(c) }
    }
}

pub fn backward_weight(n: usize, inputs: usize, outputs: usize, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    let (xt, dym) = (MatRef::row_major(x, n, inputs).t(), MatRef::row_major(dy, n, outputs));
    matmul(dw, xt, dym, false, Threads::Pool);
    db.fill(0.0);
    for row in dy[..n * outputs].chunks(outputs) {
        add_assign(db, row);
    }
}

const TILE: usize = 16;

/// `dst[cols, rows] = src[rows, cols]^T`, in 16x16 tiles of 4x4 register transposes, on the
/// calling thread.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols, "transpose of {rows}x{cols}");
    for r0 in (0..rows).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows);
        for c0 in (0..cols).step_by(TILE) {
            let c1 = (c0 + TILE).min(cols);
            let (full_r, full_c) = (r0 + (r1 - r0) / 4 * 4, c0 + (c1 - c0) / 4 * 4);
            for r in (r0..full_r).step_by(4) {
                for c in (c0..full_c).step_by(4) {
                    transpose4x4(src, cols, r, c, dst, rows);
                }
            }
            for r in r0..r1 {
                let tail_c = if r < full_r { full_c } else { c0 };
                for c in tail_c..c1 {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
}

/// The 4x4 block at row `r`, column `c` of `src` (row stride `cols`) into `dst` (row stride `rows`).
#[inline(always)]
fn transpose4x4(src: &[f32], cols: usize, r: usize, c: usize, dst: &mut [f32], rows: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        assert!((r + 3) * cols + c + 4 <= src.len() && (c + 3) * rows + r + 4 <= dst.len());
        // SAFETY: SSE is part of x86-64; the assert keeps the four 4-float loads and stores in bounds.
        unsafe {
            let s = src.as_ptr().add(r * cols + c);
            let (a, b) = (_mm_loadu_ps(s), _mm_loadu_ps(s.add(cols)));
            let (x, y) = (_mm_loadu_ps(s.add(2 * cols)), _mm_loadu_ps(s.add(3 * cols)));
            let (ab_lo, xy_lo, ab_hi, xy_hi) = (_mm_unpacklo_ps(a, b), _mm_unpacklo_ps(x, y), _mm_unpackhi_ps(a, b), _mm_unpackhi_ps(x, y));
            let d = dst.as_mut_ptr().add(c * rows + r);
            _mm_storeu_ps(d, _mm_movelh_ps(ab_lo, xy_lo));
            _mm_storeu_ps(d.add(rows), _mm_movehl_ps(xy_lo, ab_lo));
            _mm_storeu_ps(d.add(2 * rows), _mm_movelh_ps(ab_hi, xy_hi));
            _mm_storeu_ps(d.add(3 * rows), _mm_movehl_ps(xy_hi, ab_hi));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for i in 0..4 {
        for j in 0..4 {
            dst[(c + j) * rows + r + i] = src[(r + i) * cols + c + j];
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn transpose_odd_shapes() {
        for (rows, cols) in [(1, 1), (3, 5), (17, 33), (128, 20), (5, 4)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            let mut dst = vec![0.0; rows * cols];
            super::transpose(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(dst[c * rows + r], src[r * cols + c], "{rows}x{cols} at {r},{c}");
                }
            }
        }
    }
}
