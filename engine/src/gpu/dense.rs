//! Dispatcher for shaders/dense.wgsl: dense layers (`W: [inputs, outputs]`) and plain products,
//! all one strided matrix product.

use super::context::GpuContext;
use super::gemm::{Gemm, MatrixLayout, Operands};
use super::kernels::Kernel;

fn strided<'a>(m: usize, n: usize, k: usize, a: (&'a wgpu::Buffer, MatrixLayout), b: (&'a wgpu::Buffer, MatrixLayout)) -> Gemm<'a> {
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
    }
}

/// `C[m, n] = A[m, k] * B[k, n]`, all row-major.
pub(crate) fn matmul(ctx: &GpuContext, m: usize, n: usize, k: usize, a: &wgpu::Buffer, b: &wgpu::Buffer, c: &wgpu::Buffer) {
    Gemm { out: c, ..strided(m, n, k, (a, MatrixLayout::row_major(k)), (b, MatrixLayout::row_major(n))) }.run(ctx);
}

/// `y = x W + b`.
pub(crate) fn forward(
    ctx: &GpuContext,
    n: usize,
    inputs: usize,
    outputs: usize,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    b: &wgpu::Buffer,
    y: &wgpu::Buffer,
) {
    let product = strided(n, outputs, inputs, (x, MatrixLayout::row_major(inputs)), (w, MatrixLayout::row_major(outputs)));
    Gemm { bias: Some(b), out: y, ..product }.run(ctx);
}

/// `dx = dy W^T`.
pub(crate) fn backward_input(
    ctx: &GpuContext,
    n: usize,
    inputs: usize,
    outputs: usize,
    dy: &wgpu::Buffer,
    w: &wgpu::Buffer,
    dx: &wgpu::Buffer,
) {
    let product = strided(n, inputs, outputs, (dy, MatrixLayout::row_major(outputs)), (w, MatrixLayout::transposed(outputs)));
    Gemm { out: dx, ..product }.run(ctx);
}

/// `dW = x^T dy` and `db = 1^T dy`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_weight(
    ctx: &GpuContext,
    n: usize,
    inputs: usize,
    outputs: usize,
    x: &wgpu::Buffer,
    dy: &wgpu::Buffer,
    dw: &wgpu::Buffer,
    db: &wgpu::Buffer,
) {
    let product = strided(inputs, outputs, n, (x, MatrixLayout::transposed(inputs)), (dy, MatrixLayout::row_major(outputs)));
    Gemm { out: dw, ones_out: Some(db), ..product }.run(ctx);
}
