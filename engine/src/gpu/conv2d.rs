//! Dispatcher for shaders/conv2d.wgsl: each pass is one implicit matrix product.

use super::buffers::BufRef;
use super::context::GpuContext;
use super::gemm::{Finish, Gemm, Operands};
use super::kernels::Kernel;
use crate::backend::{Conv2dGeometry, Epilogue, GradMask};

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(ctx: &GpuContext, g: &Conv2dGeometry, n: usize, x: BufRef, w: BufRef, b: BufRef, epilogue: &Epilogue, y: BufRef) {
    Gemm {
        kernel: Kernel::ConvForward,
        m: n * g.positions(),
        n: g.out_c,
        k: g.patch_len(),
        operands: Operands::Conv(g),
        a: x,
        b: w,
        bias: Some(b),
        out: y,
        ones_out: None,
        finish: Finish::Activation(epilogue),
    }
    .run(ctx);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_input(ctx: &GpuContext, g: &Conv2dGeometry, n: usize, dy: BufRef, w: BufRef, mask: Option<&GradMask>, dx: BufRef) {
    Gemm {
        kernel: Kernel::ConvBackwardInput,
        m: n * g.in_h * g.in_w,
        n: g.in_c,
        k: g.kernel_h * g.kernel_w * g.out_c,
        operands: Operands::Conv(g),
        a: dy,
        b: w,
        bias: None,
        out: dx,
        ones_out: None,
        finish: mask.map_or(Finish::Plain, Finish::Gradient),
    }
    .run(ctx);
}

/// Writes the weight gradient into `dw` and the bias gradient into `db`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_weight(ctx: &GpuContext, g: &Conv2dGeometry, n: usize, x: BufRef, dy: BufRef, dw: BufRef, db: BufRef) {
    Gemm {
        kernel: Kernel::ConvBackwardWeight,
        m: g.patch_len(),
        n: g.out_c,
        k: n * g.positions(),
        operands: Operands::Conv(g),
        a: x,
        b: dy,
        bias: None,
        out: dw,
        ones_out: Some(db),
        finish: Finish::Plain,
    }
    .run(ctx);
}
