//! Direct convolution for layers with few input channels (the first layer of an image model:
//! an im2col row of a 5x5 one-channel window is 25 values, too short for a GEMM to run well).
//! The image is copied once into a zero-padded scratch, then each group of output pixels
//! accumulates every tap in registers, one vector of output channels at a time.

use rayon::prelude::*;

use crate::backend::Conv2dGeometry;

/// Up to this many values in a kernel row (`kernel_w * in_c`) the direct kernel runs.
const MAX_ROW: usize = 16;
/// Output pixels of a row computed together (each weight vector loaded once for all of them;
/// 28- and 14-pixel rows split evenly).
const PIXELS: usize = 7;
/// Vectors of output channels computed together (each input value loaded once for all of them).
const VECTORS: usize = 2;
/// Output channels per vector (one AVX-512 register).
const LANES: usize = 16;

/// Whether `g` runs through the direct kernel rather than im2col + GEMM (output channels in
/// whole vectors).
pub fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel_w * g.in_c <= MAX_ROW && g.out_c.is_multiple_of(LANES) && !g.is_pointwise()
}

/// `(height, width)` of the padded image: every window of every output pixel, with the last
/// pixel group rounded up to `PIXELS`.
fn padded_size(g: &Conv2dGeometry) -> (usize, usize) {
    ((g.out_h - 1) * g.stride_h + g.kernel_h, (g.out_w.next_multiple_of(PIXELS) - 1) * g.stride_w + g.kernel_w)
}

/// Scratch floats one image needs.
pub fn scratch_len(g: &Conv2dGeometry) -> usize {
    let (h, w) = padded_size(g);
    h * w * g.in_c
}

/// `y = conv(x, w) + b` for one image, `padded` holding [`scratch_len`] floats; `alone` (no
/// other image to work on), its output rows are split across the threads.
pub fn forward_image(g: &Conv2dGeometry, x: &[f32], w: &[f32], b: &[f32], padded: &mut [f32], y: &mut [f32], alone: bool) {
    let (ph, pw) = padded_size(g);
    let c = g.in_c;
    let padded = &mut padded[..ph * pw * c];
    padded.fill(0.0);
    for iy in 0..g.in_h.min(ph.saturating_sub(g.pad_top)) {
        let cols = g.in_w.min(pw.saturating_sub(g.pad_left));
        let dst = ((iy + g.pad_top) * pw + g.pad_left) * c;
        padded[dst..dst + cols * c].copy_from_slice(&x[iy * g.in_w * c..][..cols * c]);
    }
    let padded = &*padded;
    let row_len = g.out_w * g.out_c;
    let threads = rayon::current_num_threads();
    if !alone || threads == 1 {
        return accumulate_taps(g, padded, pw, w, b, 0, &mut y[..g.out_h * row_len]);
    }
    let rows_per_task = g.out_h.div_ceil(threads);
    y[..g.out_h * row_len]
        .par_chunks_mut(rows_per_task * row_len)
        .enumerate()
        .for_each(|(t, y)| accumulate_taps(g, padded, pw, w, b, t * rows_per_task, y));
}

vectorized! {
    /// The output rows `y` holds, from `first_row`, from the zero-padded image `xp` (rows of `pw` pixels): bias,
    /// then each tap in `(ky, kx, ci)` order as a fused multiply-add (the same result on every
    /// CPU), `PIXELS` pixels by `VECTORS` (or one) vectors of `LANES` channels at a time.
    fn accumulate_taps(g: &Conv2dGeometry, xp: &[f32], pw: usize, w: &[f32], b: &[f32], first_row: usize, y: &mut [f32]) {
        let oc = g.out_c;
        for (r, y) in y.chunks_mut(g.out_w * oc).enumerate() {
            for ox0 in (0..g.out_w).step_by(PIXELS) {
                let mut c0 = 0;
                while oc - c0 >= VECTORS * LANES {
                    pixel_group::<VECTORS>(g, xp, pw, w, b, first_row + r, ox0, c0, y);
                    c0 += VECTORS * LANES;
                }
                if c0 < oc {
                    pixel_group::<1>(g, xp, pw, w, b, first_row + r, ox0, c0, y);
                }
            }
        }
    }
}

/// Pixels `ox0..ox0 + PIXELS` (those inside the row) of output row `oy`, channels
/// `c0..c0 + NV * LANES`, into `y` (that row).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pixel_group<const NV: usize>(
    g: &Conv2dGeometry,
    xp: &[f32],
    pw: usize,
    w: &[f32],
    b: &[f32],
    oy: usize,
    ox0: usize,
    c0: usize,
    y: &mut [f32],
) {
    let (c, oc) = (g.in_c, g.out_c);
    let pixel_step = g.stride_w * c;
    let mut bias = [[0.0f32; LANES]; NV];
    for j in 0..NV {
        bias[j].copy_from_slice(&b[c0 + j * LANES..][..LANES]);
    }
    let mut acc = [bias; PIXELS];
    for ky in 0..g.kernel_h {
        let row = ((oy * g.stride_h + ky) * pw + ox0 * g.stride_w) * c;
        for k in 0..g.kernel_w * c {
            let at = (ky * g.kernel_w * c + k) * oc + c0;
            let mut wv = [[0.0f32; LANES]; NV];
            for j in 0..NV {
                wv[j].copy_from_slice(&w[at + j * LANES..][..LANES]);
            }
            let taps = &xp[row + k..][..(PIXELS - 1) * pixel_step + 1];
            for p in 0..PIXELS {
                let x = taps[p * pixel_step];
                for j in 0..NV {
                    for l in 0..LANES {
                        acc[p][j][l] = x.mul_add(wv[j][l], acc[p][j][l]);
                    }
                }
            }
        }
    }
    for p in 0..PIXELS.min(g.out_w - ox0) {
        for j in 0..NV {
            y[(ox0 + p) * oc + c0 + j * LANES..][..LANES].copy_from_slice(&acc[p][j]);
        }
    }
}
