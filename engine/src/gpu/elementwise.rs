//! Dispatcher for shaders/elementwise.wgsl.

use super::buffers::Scratch;
use super::context::GpuContext;
use super::kernels::Kernel;
use crate::rng::DropoutKey;

fn len_param(len: usize) -> u32 {
    u32::try_from(len).expect("element counts fit in u32")
}

pub(crate) fn relu_forward(ctx: &GpuContext, len: usize, x: &wgpu::Buffer) {
    ctx.dispatch(Kernel::ReluForward, &[len_param(len), 0, 0, 0], &[(1, x)], len.div_ceil(256));
}

pub(crate) fn relu_backward(ctx: &GpuContext, len: usize, y: &wgpu::Buffer, dy: &wgpu::Buffer) {
    ctx.dispatch(Kernel::ReluBackward, &[len_param(len), 0, 0, 0], &[(1, dy), (2, y)], len.div_ceil(256));
}

pub(crate) fn dropout(ctx: &GpuContext, len: usize, key: DropoutKey, rate: f32, x: &wgpu::Buffer) {
    let mask = key.mask(rate);
    let params = [len_param(len), mask.base(), mask.threshold(), (1.0 / (1.0 - rate)).to_bits()];
    ctx.dispatch(Kernel::Dropout, &params, &[(1, x)], len.div_ceil(256));
}

/// Stages the pixels (four per word) and scales them into `x` on the device.
pub(crate) fn normalize_u8(ctx: &GpuContext, pixels: &[u8], x: &wgpu::Buffer) {
    let staged = ctx.buffers.scratch(&ctx.device, Scratch::Pixels, pixels.len() as u64);
    ctx.write(&staged, pixels);
    let words = pixels.len().div_ceil(4);
    ctx.dispatch(Kernel::NormalizeU8, &[len_param(pixels.len()), 0, 0, 0], &[(1, x), (3, &staged)], words.div_ceil(256));
}
