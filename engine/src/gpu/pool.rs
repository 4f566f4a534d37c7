//! Dispatcher for shaders/pool.wgsl.

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

/// `dx` from `dy`, finished by the gradient masks of the layers between the pool and its input.
#[allow(clippy::too_many_arguments)]
pub(crate) fn max_backward(ctx: &GpuContext, g: &PoolGeometry, n: usize, dy: BufRef, argmax: BufRef, mask: Option<&GradMask>, dx: BufRef) {
    let count = n * g.in_len();
    let mut p = params(g, count);
    let mut x = BufRef::whole(&ctx.buffers.unused_input);
    if let Some(mask) = mask {
        if mask.epilogue.relu {
            p.relu_mask = 1;
            x = mask.activation.gpu();
        }
        (p.dropout, p.drop_base, p.drop_threshold, p.drop_scale) = params::dropout_fields(&mask.epilogue);
    }
    ctx.dispatch(Kernel::MaxPoolBackward, &p, &[(1, x), (4, dy), (5, argmax), (6, dx)], count.div_ceil(256));
}
