//! Element-wise ops: ReLU, dropout, u8 -> f32 input normalisation.

use rayon::prelude::*;

use crate::rng::DropoutMask;

const BLOCK: usize = 1 << 14;

pub fn relu_forward(x: &mut [f32]) {
    x.par_chunks_mut(BLOCK).for_each(relu_block);
}

vectorized! {
    fn relu_block(x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = v.max(0.0));
    }
}

/// `dy *= (y > 0)`, in place.
pub fn relu_backward(y: &[f32], dy: &mut [f32]) {
    dy.par_chunks_mut(BLOCK).zip(y.par_chunks(BLOCK)).for_each(|(d, y)| relu_backward_block(y, d));
}

vectorized! {
    fn relu_backward_block(y: &[f32], dy: &mut [f32]) {
        for (d, y) in dy.iter_mut().zip(y) {
            *d = if *y > 0.0 { *d } else { 0.0 };
        }
    }
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
