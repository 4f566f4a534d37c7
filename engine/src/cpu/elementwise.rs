//! Element-wise ops: activations, dropout, u8 -> f32 input normalisation.

use rayon::prelude::*;

use crate::activation::Activation;
use crate::rng::DropoutMask;

const BLOCK: usize = 1 << 14;

fn relu_forward(x: &mut [f32]) {
    x.par_chunks_mut(BLOCK).for_each(relu_block);
}

vectorized! {
    fn relu_block(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// `dy *= (y > 0)`, in place.
fn relu_backward(y: &[f32], dy: &mut [f32]) {
    dy.par_chunks_mut(BLOCK).zip(y.par_chunks(BLOCK)).for_each(|(d, y)| relu_backward_block(y, d));
}

vectorized! {
    fn relu_backward_block(y: &[f32], dy: &mut [f32]) {
        for (d, y) in dy.iter_mut().zip(y) {
            *d = if *y > 0.0 { *d } else { 0.0 };
        }
    }
}

/// `x = f(x)` in place.
pub fn activation_in_place(f: Activation, x: &mut [f32]) {
    match f {
        Activation::Relu => relu_forward(x),
        f => x.par_chunks_mut(BLOCK).for_each(|c| c.iter_mut().for_each(|v| *v = f.apply(*v))),
    }
}

/// `y = f(x)`.
pub fn activation(f: Activation, x: &[f32], y: &mut [f32]) {
    y[..x.len()].par_chunks_mut(BLOCK).zip(x.par_chunks(BLOCK)).for_each(|(y, x)| {
        for (y, x) in y.iter_mut().zip(x) {
            *y = f.apply(*x);
        }
    });
}

/// `dy *= f'(at the output y)`, in place (every activation but GELU).
pub fn slope_at_output(f: Activation, y: &[f32], dy: &mut [f32]) {
    match f {
        Activation::Relu => relu_backward(y, dy),
        f => dy.par_chunks_mut(BLOCK).zip(y.par_chunks(BLOCK)).for_each(|(d, y)| {
            for (d, y) in d.iter_mut().zip(y) {
                *d *= f.slope_at_output(*y);
            }
        }),
    }
}

/// `dx = dy * f'(at the input x)`.
pub fn slope_at_input(f: Activation, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx[..x.len()].par_chunks_mut(BLOCK).zip(x.par_chunks(BLOCK).zip(dy.par_chunks(BLOCK))).for_each(|(dx, (x, dy))| {
        for ((dx, x), dy) in dx.iter_mut().zip(x).zip(dy) {
            *dx = dy * f.slope_at_input(*x);
        }
    });
}

/// Inverted dropout in place: kept elements are scaled by `1 / (1 - rate)`, the others zeroed.
/// The backward is the same operation applied to the gradient.
pub fn dropout(x: &mut [f32], mask: DropoutMask, rate: f32) {
    let scale = 1.0 / (1.0 - rate);
    x.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, c)| dropout_block(c, (bi * BLOCK) as u32, mask, scale));
}

vectorized! {
    fn dropout_block(x: &mut [f32], first: u32, mask: DropoutMask, scale: f32) {
        for (i, v) in x.iter_mut().enumerate() {
            *v = if mask.keep(first + i as u32) { *v * scale } else { 0.0 };
        }
    }
}

/// Pixels 0..=255 to 0.0..=1.0.
pub fn normalize_u8(src: &[u8], dst: &mut [f32]) {
    dst[..src.len()].par_chunks_mut(BLOCK).zip(src.par_chunks(BLOCK)).for_each(|(d, s)| {
        for (d, s) in d.iter_mut().zip(s) {
            *d = *s as f32 * (1.0 / 255.0);
        }
    });
}

vectorized! {
    /// `acc += x`, element-wise.
    pub(crate) fn add_assign(acc: &mut [f32], x: &[f32]) {
        for (a, v) in acc.iter_mut().zip(x) {
            *a += v;
        }
    }
}
