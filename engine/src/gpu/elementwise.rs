//! Dispatcher for shaders/elementwise.wgsl.

use super::buffers::{BufRef, Scratch};
use super::context::GpuContext;
use super::kernels::Kernel;
use super::params::{Elementwise, u};
use crate::rng::DropoutKey;

fn len_only(len: usize) -> Elementwise {
    Elementwise { len: u(len), ..Default::default() }
}

pub(crate) fn relu_forward(ctx: &GpuContext, len: usize, x: BufRef) {
    ctx.dispatch(Kernel::ReluForward, &len_only(len), &[(1, x)], len.div_ceil(256));
}

pub(crate) fn relu_backward(ctx: &GpuContext, len: usize, y: BufRef, dy: BufRef) {
    ctx.dispatch(Kernel::ReluBackward, &len_only(len), &[(1, dy), (2, y)], len.div_ceil(256));
}

pub(crate) fn dropout(ctx: &GpuContext, len: usize, key: DropoutKey, rate: f32, x: BufRef) {
    let mask = key.mask(rate);
    let params = Elementwise { len: u(len), mask_base: mask.base(), threshold: mask.threshold(), scale: 1.0 / (1.0 - rate) };
    ctx.dispatch(Kernel::Dropout, &params, &[(1, x)], len.div_ceil(256));
}

/// Stages the pixels (four per word) and scales them into `x` on the device.
pub(crate) fn normalize_u8(ctx: &GpuContext, pixels: &[u8], x: BufRef) {
    let staged = ctx.buffers.scratch(&ctx.device, Scratch::Pixels, pixels.len() as u64);
    let staged = BufRef::whole(&staged);
    ctx.write(staged, pixels);
    let words = pixels.len().div_ceil(4);
    ctx.dispatch(Kernel::NormalizeU8, &len_only(pixels.len()), &[(1, x), (3, staged)], words.div_ceil(256));
}
