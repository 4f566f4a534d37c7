//! Dispatcher for shaders/elementwise.wgsl.

use super::buffers::{BufRef, Scratch};
use super::context::GpuContext;
use super::kernels::Kernel;
use super::params::{Elementwise, u};
use crate::activation::Activation;
use crate::rng::DropoutKey;

fn len_only(len: usize) -> Elementwise {
    Elementwise { len: u(len), ..Default::default() }
}

fn with_activation(len: usize, f: Activation) -> Elementwise {
    let (act, act_alpha) = f.code();
    Elementwise { len: u(len), act, act_alpha, ..Default::default() }
}

pub(crate) fn activation_in_place(ctx: &GpuContext, f: Activation, len: usize, x: BufRef) {
    ctx.dispatch(Kernel::ActivationInPlace, &with_activation(len, f), &[(1, x)], len.div_ceil(256));
}

pub(crate) fn activation(ctx: &GpuContext, f: Activation, len: usize, x: BufRef, y: BufRef) {
    ctx.dispatch(Kernel::ActivationInto, &with_activation(len, f), &[(1, y), (2, x)], len.div_ceil(256));
}

pub(crate) fn slope_at_output(ctx: &GpuContext, f: Activation, len: usize, y: BufRef, dy: BufRef) {
    ctx.dispatch(Kernel::SlopeAtOutput, &with_activation(len, f), &[(1, dy), (2, y)], len.div_ceil(256));
}

pub(crate) fn slope_at_input(ctx: &GpuContext, f: Activation, len: usize, x: BufRef, dy: BufRef, dx: BufRef) {
    ctx.dispatch(Kernel::SlopeAtInput, &with_activation(len, f), &[(1, dx), (2, x), (4, dy)], len.div_ceil(256));
}

pub(crate) fn dropout(ctx: &GpuContext, len: usize, key: DropoutKey, rate: f32, x: BufRef) {
    let mask = key.mask(rate);
    let params =
        Elementwise { len: u(len), mask_base: mask.base(), threshold: mask.threshold(), scale: 1.0 / (1.0 - rate), ..Default::default() };
    ctx.dispatch(Kernel::Dropout, &params, &[(1, x)], len.div_ceil(256));
}

/// Stages the pixels (four per word) and scales them into `x` on the device.
pub(crate) fn normalize_u8(ctx: &GpuContext, pixels: &[u8], x: BufRef) {
    let staged = ctx.buffers.scratch(&ctx.device, Scratch::Pixels, pixels.len() as u64);
    let staged = BufRef::whole(&staged);
    ctx.write("pixels", staged, pixels);
    let words = pixels.len().div_ceil(4);
    ctx.dispatch(Kernel::NormalizeU8, &len_only(pixels.len()), &[(1, x), (3, staged)], words.div_ceil(256));
}
