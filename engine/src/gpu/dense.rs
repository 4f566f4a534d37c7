//! Dispatcher for shaders/dense.wgsl: dense layers (`W: [inputs, outputs]`) and plain products,
//! all one strided matrix product.

use super::buffers::BufRef;
use super::context::GpuContext;
use super::gemm::{Finish, Gemm, MatrixLayout, Operands};
use super::kernels::Kernel;
use crate::backend::{Epilogue, GradMask};

fn strided<'a>(m: usize, n: usize, k: usize, a: (BufRef<'a>, MatrixLayout), b: (BufRef<'a>, MatrixLayout)) -> Gemm<'a> {
    Gemm {
        kernel: Kernel::Matmul,
        m,
        n,
        k,
        operands: Operands::Strided { a: a.1, b: b.1 },
        a: a.0,
        b: b.0,
        bias: None,
        out: a.0,
        ones_out: None,
        finish: Finish::Plain,
        taps: None,
    }
}

/// `C[m, n] = A[m, k] * B[k, n]`, all row-major.
pub(crate) fn matmul(ctx: &GpuContext, m: usize, n: usize, k: usize, a: BufRef, b: BufRef, c: BufRef) {
    Gemm { out: c, ..strided(m, n, k, (a, MatrixLayout::row_major(k)), (b, MatrixLayout::row_major(n))) }.run(ctx);
}

/// `y = epilogue(x W + b)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    ctx: &GpuContext,
    n: usize,
    inputs: usize,
    outputs: usize,
    x: BufRef,
    w: BufRef,
    b: BufRef,
    epilogue: &Epilogue,
    y: BufRef,
) {
    let product = strided(n, outputs, inputs, (x, MatrixLayout::row_major(inputs)), (w, MatrixLayout::row_major(outputs)));
    Gemm { bias: Some(b), out: y, finish: Finish::Activation(epilogue), ..product }.run(ctx);
}

/// `dx = mask(dy W^T)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_input(
    ctx: &GpuContext,
    n: usize,
    inputs: usize,
    outputs: usize,
    dy: BufRef,
    w: BufRef,
    mask: Option<&GradMask>,
    dx: BufRef,
) {
    let product = strided(n, inputs, outputs, (dy, MatrixLayout::row_major(outputs)), (w, MatrixLayout::transposed(outputs)));
    let finish = mask.map_or(Finish::Plain, Finish::Gradient);
    Gemm { out: dx, finish, ..product }.run(ctx);
}

/// `dW = x^T dy` and `db = 1^T dy`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_weight(ctx: &GpuContext, n: usize, inputs: usize, outputs: usize, x: BufRef, dy: BufRef, dw: BufRef, db: BufRef) {
    let product = strided(inputs, outputs, n, (x, MatrixLayout::transposed(inputs)), (dy, MatrixLayout::row_major(outputs)));
    Gemm { out: dw, ones_out: Some(db), ..product }.run(ctx);
}
