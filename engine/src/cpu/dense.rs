//! Fully connected layer: `y[n, out] = x[n, in] * w[in, out] + b`.

use rayon::prelude::*;

use super::elementwise::add_assign;
use super::gemm::{MatRef, Threads, matmul};
use crate::device::CpuDevice;

pub fn forward(n: usize, inputs: usize, outputs: usize, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    for row in y[..n * outputs].chunks_mut(outputs) {
        row.copy_from_slice(b);
    }
    let (x, w) = (MatRef::row_major(x, n, inputs), MatRef::row_major(w, inputs, outputs));
    matmul(y, x, w, true, Threads::Pool);
}

/// Batches from this size on transpose `w` first: `gemm` packs a right-hand side whose rows are
/// strided (a transposed view) at well under half speed, and the copy costs less than that.
const TRANSPOSE_FROM_BATCH: usize = 16;

pub fn backward_input(dev: &CpuDevice, n: usize, inputs: usize, outputs: usize, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let dy = MatRef::row_major(dy, n, outputs);
    if n < TRANSPOSE_FROM_BATCH {
        matmul(dx, dy, MatRef::row_major(w, inputs, outputs).t(), false, Threads::Pool);
        return;
    }
    dev.with_scratch(1, inputs * outputs, |scratch| {
        let wt = &mut scratch[0][..inputs * outputs];
        transpose(w, inputs, outputs, wt);
        matmul(dx, dy, MatRef::row_major(wt, outputs, inputs), false, Threads::Pool);
    });
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

/// `dst[cols, rows] = src[rows, cols]^T`, in tiles, in parallel over bands of `dst` rows.
pub fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    dst[..rows * cols].par_chunks_mut(TILE * rows).enumerate().for_each(|(bi, band)| transpose_band(src, rows, cols, bi * TILE, band));
}

vectorized! {
    /// Rows `c0 .. c0 + band.len() / rows` of the transposed matrix.
    fn transpose_band(src: &[f32], rows: usize, cols: usize, c0: usize, band: &mut [f32]) {
        let width = band.len() / rows;
        for r0 in (0..rows).step_by(TILE) {
            let height = TILE.min(rows - r0);
            for c in 0..width {
                let dst = &mut band[c * rows + r0..c * rows + r0 + height];
                for (r, d) in dst.iter_mut().enumerate() {
                    *d = src[(r0 + r) * cols + c0 + c];
                }
            }
        }
    }
}
