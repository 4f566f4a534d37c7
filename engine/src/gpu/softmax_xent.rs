//! Dispatcher for shaders/softmax_xent.wgsl.

use super::buffers::Scratch;
use super::context::GpuContext;
use super::kernels::Kernel;

fn params(n: usize, classes: usize) -> [u32; 2] {
    [n, classes].map(|v| u32::try_from(v).expect("row counts fit in u32"))
}

/// Writes `dlogits` and `stats = [loss sum, correct count]`.
pub(crate) fn forward_backward(
    ctx: &GpuContext,
    n: usize,
    classes: usize,
    logits: &wgpu::Buffer,
    labels: &wgpu::Buffer,
    dlogits: &wgpu::Buffer,
    stats: &wgpu::Buffer,
) {
    let rows = ctx.buffers.scratch(&ctx.device, Scratch::RowStats, (n * 2 * 4) as u64);
    let p = params(n, classes);
    ctx.dispatch(Kernel::XentForwardBackward, &p, &[(1, logits), (2, labels), (3, dlogits), (4, &rows)], n.div_ceil(64));
    ctx.dispatch(Kernel::XentReduce, &p, &[(5, &rows), (6, stats)], 1);
}

pub(crate) fn softmax(ctx: &GpuContext, n: usize, classes: usize, logits: &wgpu::Buffer, probs: &wgpu::Buffer) {
    ctx.dispatch(Kernel::Softmax, &params(n, classes), &[(1, logits), (7, probs)], n.div_ceil(64));
}

pub(crate) fn argmax(ctx: &GpuContext, n: usize, classes: usize, logits: &wgpu::Buffer, out: &wgpu::Buffer) {
    ctx.dispatch(Kernel::Argmax, &params(n, classes), &[(1, logits), (8, out)], n.div_ceil(64));
}
