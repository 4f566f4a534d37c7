//! Pooling, NHWC: max (the forward records, per output, the index within the image of the
//! winning input; the backward scatters gradients there) and average (a global average pool is
//! one whose window is the whole image).

use rayon::prelude::*;

use crate::backend::PoolGeometry;

pub fn max_forward(g: &PoolGeometry, n: usize, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    y[..n * out_len]
        .par_chunks_mut(out_len)
        .zip(argmax[..n * out_len].par_chunks_mut(out_len))
        .zip(x[..n * in_len].par_chunks(in_len))
        .for_each(|((yi, ai), xi)| max_forward_image(g, xi, yi, ai));
}

vectorized! {
    fn max_forward_image(g: &PoolGeometry, xi: &[f32], yi: &mut [f32], ai: &mut [u32]) {
        let c = g.channels;
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    let o = (oy * g.out_w + ox) * c;
                    let (best, arg) = (&mut yi[o..o + c], &mut ai[o..o + c]);
                    let first = ((oy * g.stride_h) * g.in_w + ox * g.stride_w) * c;
                    best.copy_from_slice(&xi[first..first + c]);
                    for (ch, a) in arg.iter_mut().enumerate() {
                        *a = (first + ch) as u32;
                    }
                    for ky in 0..g.size_h {
                        for kx in 0..g.size_w {
                            let base = ((oy * g.stride_h + ky) * g.in_w + ox * g.stride_w + kx) * c;
                            let window = &xi[base..base + c];
                            for (ch, ((b, a), &v)) in best.iter_mut().zip(arg.iter_mut()).zip(window).enumerate() {
                                let better = v > *b;
                                *b = if better { v } else { *b };
                                *a = if better { (base + ch) as u32 } else { *a };
                            }
                        }
                    }
                }
            }
    }
}

vectorized! {
    /// Max pooling of one image without recording the winners (inference): the same maxima,
    /// taken in the same window order, as [`max_forward_image`].
    pub fn max_forward_image_values(g: &PoolGeometry, xi: &[f32], yi: &mut [f32]) {
        let c = g.channels;
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let best = &mut yi[(oy * g.out_w + ox) * c..][..c];
                best.copy_from_slice(&xi[((oy * g.stride_h) * g.in_w + ox * g.stride_w) * c..][..c]);
                for ky in 0..g.size_h {
                    for kx in 0..g.size_w {
                        let window = &xi[((oy * g.stride_h + ky) * g.in_w + ox * g.stride_w + kx) * c..][..c];
                        for (b, &v) in best.iter_mut().zip(window) {
                            *b = if v > *b { v } else { *b };
                        }
                    }
                }
            }
        }
    }
}

pub fn max_backward(g: &PoolGeometry, n: usize, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    dx[..n * in_len]
        .par_chunks_mut(in_len)
        .zip(dy[..n * out_len].par_chunks(out_len))
        .zip(argmax[..n * out_len].par_chunks(out_len))
        .for_each(|((dxi, dyi), ai)| {
            dxi.fill(0.0);
            for (d, &a) in dyi.iter().zip(ai) {
                dxi[a as usize] += d;
            }
        });
}

/// Average pooling: each output is the mean of its window, summed in window order.
pub fn avg_forward(g: &PoolGeometry, n: usize, x: &[f32], y: &mut [f32]) {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let area = (g.size_h * g.size_w) as f32;
    let c = g.channels;
    y[..n * out_len].par_chunks_mut(out_len).zip(x[..n * in_len].par_chunks(in_len)).for_each(|(yi, xi)| {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                let o = (oy * g.out_w + ox) * c;
                let first = ((oy * g.stride_h) * g.in_w + ox * g.stride_w) * c;
                for ch in 0..c {
                    let mut sum = 0.0f32;
                    for ky in 0..g.size_h {
                        for kx in 0..g.size_w {
                            sum += xi[first + (ky * g.in_w + kx) * c + ch];
                        }
                    }
                    yi[o + ch] = sum / area;
                }
            }
        }
    });
}

/// The windows `(first, last)` along one axis that hold input position `i`.
fn covering(i: usize, size: usize, stride: usize, out: usize) -> (usize, usize) {
    let first = if i + 1 > size { (i + 1 - size).div_ceil(stride) } else { 0 };
    (first, (i / stride).min(out - 1))
}

/// Average pooling's backward: each input gathers the gradients of the windows that hold it,
/// in output order, divided by the window's area.
pub fn avg_backward(g: &PoolGeometry, n: usize, dy: &[f32], dx: &mut [f32]) {
    let (in_len, out_len) = (g.in_len(), g.out_len());
    let area = (g.size_h * g.size_w) as f32;
    let c = g.channels;
    dx[..n * in_len].par_chunks_mut(in_len).zip(dy[..n * out_len].par_chunks(out_len)).for_each(|(dxi, dyi)| {
        for iy in 0..g.in_h {
            let (oy0, oy1) = covering(iy, g.size_h, g.stride_h, g.out_h);
            for ix in 0..g.in_w {
                let (ox0, ox1) = covering(ix, g.size_w, g.stride_w, g.out_w);
                for ch in 0..c {
                    let mut sum = 0.0f32;
                    for oy in oy0..=oy1 {
                        for ox in ox0..=ox1 {
                            sum += dyi[(oy * g.out_w + ox) * c + ch];
                        }
                    }
                    dxi[(iy * g.in_w + ix) * c + ch] = sum / area;
                }
            }
        }
    });
}
