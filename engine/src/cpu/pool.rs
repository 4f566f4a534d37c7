//! Max pooling, NHWC. The forward records, per output, the index (within the image) of the
//! winning input; the backward scatters gradients there.

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
