//! Dispatcher for shaders/pool.wgsl.

use super::context::GpuContext;
use super::kernels::Kernel;
use crate::backend::PoolGeometry;

fn params(g: &PoolGeometry, count: usize) -> [u32; 10] {
    [count, g.in_h, g.in_w, g.channels, g.out_h, g.out_w, g.size_h, g.size_w, g.stride_h, g.stride_w]
        .map(|v| u32::try_from(v).expect("pooling dimensions fit in u32"))
}

pub(crate) fn max_forward(ctx: &GpuContext, g: &PoolGeometry, n: usize, x: &wgpu::Buffer, y: &wgpu::Buffer, argmax: &wgpu::Buffer) {
    let count = n * g.out_len();
    ctx.dispatch(Kernel::MaxPoolForward, &params(g, count), &[(1, x), (2, y), (3, argmax)], count.div_ceil(256));
}

pub(crate) fn max_backward(ctx: &GpuContext, g: &PoolGeometry, n: usize, dy: &wgpu::Buffer, argmax: &wgpu::Buffer, dx: &wgpu::Buffer) {
    let count = n * g.in_len();
    ctx.dispatch(Kernel::MaxPoolBackward, &params(g, count), &[(4, dy), (5, argmax), (6, dx)], count.div_ceil(256));
}
