//! Fully connected layer: `y[n, out] = x[n, in] * w[in, out] + b`.

use super::elementwise::add_assign;
use super::gemm::{MatRef, Threads, matmul};

pub fn forward(
    n: usize,
    inputs: usize,
    outputs: usize,
    x: &[f32],
    w: &[f32],
    b: &[f32],
    y: &mut [f32],
) {
    for row in y[..n * outputs].chunks_mut(outputs) {
        row.copy_from_slice(b);
    }
    let (x, w) = (
        MatRef::row_major(x, n, inputs),
        MatRef::row_major(w, inputs, outputs),
    );
    matmul(y, x, w, true, Threads::Pool);
}

pub fn backward_input(
    n: usize,
    inputs: usize,
    outputs: usize,
    dy: &[f32],
    w: &[f32],
    dx: &mut [f32],
) {
    let (dy, wt) = (
        MatRef::row_major(dy, n, outputs),
        MatRef::row_major(w, inputs, outputs).t(),
    );
    matmul(dx, dy, wt, false, Threads::Pool);
}

pub fn backward_weight(
    n: usize,
    inputs: usize,
    outputs: usize,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
) {
    let (xt, dym) = (
        MatRef::row_major(x, n, inputs).t(),
        MatRef::row_major(dy, n, outputs),
    );
    matmul(dw, xt, dym, false, Threads::Pool);
    db.fill(0.0);
    for row in dy[..n * outputs].chunks(outputs) {
        add_assign(db, row);
    }
}
