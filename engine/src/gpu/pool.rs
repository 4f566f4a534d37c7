//! Dispatcher for shaders/pool.wgsl: max and average pooling.

use super::buffers::BufRef;
use super::context::GpuContext;
use super::kernels::Kernel;
use super::params::{self, u};
use crate::backend::{GradMask, PoolGeometry};

fn params(g: &PoolGeometry, count: usize) -> params::Pool {
    params::Pool {
        count: u(count),
        in_h: u(g.in_h),
        in_w: u(g.in_w),
        channels: u(g.channels),
        out_h: u(g.out_h),
        out_w: u(g.out_w),
        size_h: u(g.size_h),
        size_w: u(g.size_w),
        stride_h: u(g.stride_h),
        stride_w: u(g.stride_w),
        ..Default::default()
    }
}

pub(crate) fn max_forward(ctx: &GpuContext, g: &PoolGeometry, n: usize, x: BufRef, y: BufRef, argmax: BufRef) {
    let count = n * g.out_len();
    ctx.dispatch(Kernel::MaxPoolForward, &params(g, count), &[(1, x), (2, y), (3, argmax)], count.div_ceil(256));
}

pub(crate) fn avg_forward(ctx: &GpuContext, g: &PoolGeometry, n: usize, x: BufRef, y: BufRef) {
    let count = n * g.out_len();
    ctx.dispatch(Kernel::AvgPoolForward, &params(g, count), &[(1, x), (2, y)], count.div_ceil(256));
}

/// A backward's parameters and the activation its mask reads (binding 1).
fn backward_params<'a>(ctx: &'a GpuContext, g: &PoolGeometry, n: usize, mask: Option<&'a GradMask>) -> (params::Pool, BufRef<'a>) {
    let mut p = params(g, n * g.in_len());
    let mut x = BufRef::whole(&ctx.buffers.unused_input);
    if let Some(mask) = mask {
        if mask.epilogue.activation.is_some() {
            (p.act, p.act_alpha) = mask.epilogue.activation_code();
            x = mask.activation.gpu();
        }
        (p.dropout, p.drop_base, p.drop_threshold, p.drop_scale) = params::dropout_fields(&mask.epilogue);
    }
    (p, x)
}

/// `dx` from `dy`, finished by the gradient masks of the layers between the pool and its input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn max_backward(ctx: &GpuContext, g: &PoolGeometry, n: usize, dy: BufRef, argmax: BufRef, mask: Option<&GradMask>, dx: BufRef) {
    let (p, x) = backward_params(ctx, g, n, mask);
    ctx.dispatch(Kernel::MaxPoolBackward, &p, &[(1, x), (4, dy), (5, argmax), (6, dx)], (n * g.in_len()).div_ceil(256));
}

pub(crate) fn avg_backward(ctx: &GpuContext, g: &PoolGeometry, n: usize, dy: BufRef, mask: Option<&GradMask>, dx: BufRef) {
    let (p, x) = backward_params(ctx, g, n, mask);
    ctx.dispatch(Kernel::AvgPoolBackward, &p, &[(1, x), (4, dy), (6, dx)], (n * g.in_len()).div_ceil(256));
}
