//! 2-D convolution, NHWC activations, weights `[kh, kw, c_in, c_out]` (a `[patch, c_out]` matrix).
//! im2col per image into a per-chunk scratch buffer that stays in cache, then one GEMM (5x5
//! layers with 8+ input channels through Winograd, few input channels through a direct kernel).

use rayon::prelude::*;

use super::elementwise::{activation_in_place, add_assign};
use super::gemm::{MatRef, Threads, matmul};
use super::winograd::{self, Filters, Output};
use super::{chunk_count, chunk_size};
use super::{conv_direct, pool};
use crate::activation::Activation;
use crate::backend::{Conv2dGeometry, PoolGeometry};
use crate::device::CpuDevice;

/// Unfolds one image into `[positions, patch]` rows (zeros where the window leaves the image).
pub fn im2col(g: &Conv2dGeometry, x: &[f32], col: &mut [f32]) {
    im2col_rows(g, x, 0..g.positions(), col);
}

/// The rows of [`im2col`] for output positions `rows` (row-major over the output), from `col[0]`.
fn im2col_rows(g: &Conv2dGeometry, x: &[f32], rows: std::ops::Range<usize>, col: &mut [f32]) {
    let patch = g.patch_len();
    let row_len = g.kernel_w * g.in_c;
    for (position, row) in rows.zip(col.chunks_mut(patch)) {
        let (oy, ox) = (position / g.out_w, position % g.out_w);
        let (kx_lo, kx_hi, ix0) = kx_range(g, ox);
        for ky in 0..g.kernel_h {
            let dst = &mut row[ky * row_len..][..row_len];
            let iy = (oy * g.stride_h + ky) as isize - g.pad_top as isize;
            if iy < 0 || iy >= g.in_h as isize || kx_lo >= kx_hi {
                dst.fill(0.0);
                continue;
            }
            dst[..kx_lo * g.in_c].fill(0.0);
            dst[kx_hi * g.in_c..].fill(0.0);
            let src = (iy as usize * g.in_w + (ix0 + kx_lo as isize) as usize) * g.in_c;
            dst[kx_lo * g.in_c..kx_hi * g.in_c].copy_from_slice(&x[src..src + (kx_hi - kx_lo) * g.in_c]);
        }
    }
}

/// Folds `[positions, patch]` rows back onto one image, adding overlapping windows.
pub fn col2im_add(g: &Conv2dGeometry, col: &[f32], dx: &mut [f32]) {
    let patch = g.patch_len();
    let row_len = g.kernel_w * g.in_c;
    for oy in 0..g.out_h {
        for ox in 0..g.out_w {
            let row = &col[(oy * g.out_w + ox) * patch..][..patch];
            let (kx_lo, kx_hi, ix0) = kx_range(g, ox);
            if kx_lo >= kx_hi {
                continue;
            }
            for ky in 0..g.kernel_h {
                let iy = (oy * g.stride_h + ky) as isize - g.pad_top as isize;
                if iy < 0 || iy >= g.in_h as isize {
                    continue;
                }
                let src = &row[ky * row_len + kx_lo * g.in_c..ky * row_len + kx_hi * g.in_c];
                let start = (iy as usize * g.in_w + (ix0 + kx_lo as isize) as usize) * g.in_c;
                add_assign(&mut dx[start..start + src.len()], src);
            }
        }
    }
}

/// The kernel columns `kx_lo..kx_hi` whose input column lies inside the image, and the input
/// column of `kx = 0`.
fn kx_range(g: &Conv2dGeometry, ox: usize) -> (usize, usize, isize) {
    let ix0 = (ox * g.stride_w) as isize - g.pad_left as isize;
    let lo = (-ix0).clamp(0, g.kernel_w as isize) as usize;
    let hi = (g.in_w as isize - ix0).clamp(0, g.kernel_w as isize) as usize;
    (lo, hi, ix0)
}

/// `y = conv(x, w) + b` for `n` images.
pub fn forward(dev: &CpuDevice, g: &Conv2dGeometry, n: usize, x: &[f32], w: &[f32], b: &[f32], y: &mut [f32]) {
    if winograd::worthwhile(g, n) {
        return winograd::forward(dev, g, n, x, Filters::Direct(w), Some(b), Output::Full, y);
    }
    per_image(dev, g, n, x, g.out_len(), 0, y, |xi, col, _, yi, alone| conv_image(g, xi, w, b, col, yi, alone));
}

/// Inference: `y = f(maxpool(conv(x, w) + b))` for `n` images, each image's convolution kept
/// in its worker's cache and pooled there (inside Winograd's output transform for a 2x2,
/// stride-2 pool) instead of being written out and read back. `f` must commute with max
/// ([`Activation::commutes_with_max`]): the values are those of the three layers in turn.
/// `transformed`: `w` through [`winograd::transformed_filters`], which makes Winograd pay at
/// every batch size.
#[allow(clippy::too_many_arguments)]
pub fn forward_max_pooled(
    dev: &CpuDevice,
    g: &Conv2dGeometry,
    pool: &PoolGeometry,
    n: usize,
    x: &[f32],
    w: &[f32],
    transformed: Option<&[f32]>,
    b: &[f32],
    f: Option<Activation>,
    y: &mut [f32],
) {
    debug_assert!((pool.in_h, pool.in_w, pool.channels) == (g.out_h, g.out_w, g.out_c), "{pool:?} does not pool {g:?}");
    debug_assert!(f.is_none_or(Activation::commutes_with_max));
    let pooled_len = pool.out_len();
    let tile_pool = (pool.size_h, pool.size_w, pool.stride_h, pool.stride_w) == (2, 2, 2, 2);
    let filters = transformed.map_or(Filters::Direct(w), Filters::Transformed);
    let winograd = winograd::applies(g) && (transformed.is_some() || winograd::worthwhile(g, n));
    if winograd && tile_pool {
        winograd::forward(dev, g, n, x, filters, Some(b), Output::MaxPool2x2, y);
    } else if winograd {
        // Other pools after Winograd (rare): the full output, then the pool, as the layers would.
        dev.with_scratch(1, n * g.out_len(), |full| {
            let full = &mut full[0][..n * g.out_len()];
            winograd::forward(dev, g, n, x, filters, Some(b), Output::Full, full);
            y[..n * pooled_len]
                .par_chunks_mut(pooled_len)
                .zip(full.par_chunks(g.out_len()))
                .for_each(|(yi, full)| pool::max_forward_image_values(pool, full, yi));
        });
    } else {
        per_image(dev, g, n, x, pooled_len, g.out_len(), y, |xi, col, full, yi, alone| {
            conv_image(g, xi, w, b, col, full, alone);
            pool::max_forward_image_values(pool, full, yi);
        });
    }
    if let Some(f) = f {
        activation_in_place(f, &mut y[..n * pooled_len]);
    }
}

/// Runs `image(x_i, im2col scratch, extra scratch of extra_len, y_i, alone)` over `n` images, a
/// chunk of images per thread; `y_len` values of `y` per image; `alone`: fewer images than
/// threads, so threads are left for the image's own work.
#[allow(clippy::too_many_arguments)]
fn per_image(
    dev: &CpuDevice,
    g: &Conv2dGeometry,
    n: usize,
    x: &[f32],
    y_len: usize,
    extra_len: usize,
    y: &mut [f32],
    image: impl Fn(&[f32], &mut [f32], &mut [f32], &mut [f32], bool) + Sync,
) {
    let in_len = g.in_len();
    let chunk = chunk_size(n);
    let alone = n < rayon::current_num_threads();
    let col_len = if conv_direct::applies(g) {
        conv_direct::scratch_len(g)
    } else if g.is_pointwise() {
        0
    } else {
        g.positions() * g.patch_len()
    };
    dev.with_scratch(n.div_ceil(chunk), col_len + extra_len, |scratch| {
        y[..n * y_len].par_chunks_mut(chunk * y_len).zip(x[..n * in_len].par_chunks(chunk * in_len)).zip(scratch.par_iter_mut()).for_each(
            |((yc, xc), buf)| {
                let (col, extra) = buf.split_at_mut(col_len);
                for (yi, xi) in yc.chunks_mut(y_len).zip(xc.chunks(in_len)) {
                    image(xi, col, &mut extra[..extra_len], yi, alone);
                }
            },
        );
    });
}

/// Output rows (positions) below which one image's convolution runs on one thread.
const SPLIT_IMAGE_FROM_POSITIONS: usize = 64;

/// One image: `y = im2col(x) w + b`, or the direct kernel for few input channels. `alone` (a
/// batch smaller than the thread count), it splits its output positions across the threads.
fn conv_image(g: &Conv2dGeometry, xi: &[f32], w: &[f32], b: &[f32], col: &mut [f32], yi: &mut [f32], alone: bool) {
    if conv_direct::applies(g) {
        return conv_direct::forward_image(g, xi, w, b, col, yi, alone);
    }
    let (patch, positions) = (g.patch_len(), g.positions());
    let threads = rayon::current_num_threads();
    let rows = |first: usize, col: &mut [f32], y: &mut [f32]| {
        let count = y.len() / g.out_c;
        for row in y.chunks_mut(g.out_c) {
            row.copy_from_slice(b);
        }
        let cols = if g.is_pointwise() {
            &xi[first * patch..(first + count) * patch]
        } else {
            im2col_rows(g, xi, first..first + count, col);
            &col[..count * patch]
        };
        matmul(y, MatRef::row_major(cols, count, patch), MatRef::row_major(w, patch, g.out_c), true, Threads::Single);
    };
    if !alone || threads == 1 || positions < SPLIT_IMAGE_FROM_POSITIONS {
        return rows(0, col, &mut yi[..positions * g.out_c]);
    }
    let per_task = positions.div_ceil(threads);
    yi[..positions * g.out_c]
        .par_chunks_mut(per_task * g.out_c)
        .zip(col.par_chunks_mut(per_task * patch.max(1)))
        .enumerate()
        .for_each(|(t, (y, col))| rows(t * per_task, col, y));
}

/// `dx = conv^T(dy, w)` for `n` images.
pub fn backward_input(dev: &CpuDevice, g: &Conv2dGeometry, n: usize, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    if winograd::worthwhile(g, n) {
        let transposed = winograd::backward_input_geometry(g);
        if winograd::worthwhile(&transposed, n) {
            return winograd::forward(dev, &transposed, n, dy, Filters::Flipped(w), None, Output::Full, dx);
        }
    }
    let (in_len, out_len, patch, positions) = (g.in_len(), g.out_len(), g.patch_len(), g.positions());
    let chunk = chunk_size(n);
    let scratch_len = if g.is_pointwise() { 0 } else { positions * patch };
    let wt = MatRef::row_major(w, patch, g.out_c).t();
    dev.with_scratch(n.div_ceil(chunk), scratch_len, |scratch| {
        dx[..n * in_len]
            .par_chunks_mut(chunk * in_len)
            .zip(dy[..n * out_len].par_chunks(chunk * out_len))
            .zip(scratch.par_iter_mut())
            .for_each(|((dxc, dyc), dcol)| {
                for (dxi, dyi) in dxc.chunks_mut(in_len).zip(dyc.chunks(out_len)) {
                    let lhs = MatRef::row_major(dyi, positions, g.out_c);
                    if g.is_pointwise() {
                        matmul(dxi, lhs, wt, false, Threads::Single);
                    } else {
                        matmul(dcol, lhs, wt, false, Threads::Single);
                        dxi.fill(0.0);
                        col2im_add(g, &dcol[..positions * patch], dxi);
                    }
                }
            });
    });
}

/// `dw = sum_n im2col(x)^T dy`, `db = sum_n sum_positions dy` for `n` images.
pub fn backward_weight(dev: &CpuDevice, g: &Conv2dGeometry, n: usize, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    if winograd::worthwhile(g, n) {
        return winograd::backward_weight(dev, g, n, x, dy, dw, db);
    }
    let (in_len, out_len, patch, positions) = (g.in_len(), g.out_len(), g.patch_len(), g.positions());
    let chunk = chunk_size(n);
    let chunks = n.div_ceil(chunk);
    debug_assert!(chunks <= chunk_count(n));
    let weight_len = patch * g.out_c;
    let partial_len = weight_len + g.out_c;
    let col_len = if g.is_pointwise() { 0 } else { positions * patch };
    dev.with_scratch(chunks, partial_len + col_len, |scratch| {
        scratch.par_iter_mut().zip(x[..n * in_len].par_chunks(chunk * in_len)).zip(dy[..n * out_len].par_chunks(chunk * out_len)).for_each(
            |((buf, xc), dyc)| {
                let (partial, col) = buf.split_at_mut(partial_len);
                partial.fill(0.0);
                let (pw, pb) = partial.split_at_mut(weight_len);
                for (xi, dyi) in xc.chunks(in_len).zip(dyc.chunks(out_len)) {
                    let cols = if g.is_pointwise() {
                        xi
                    } else {
                        im2col(g, xi, col);
                        &col[..positions * patch]
                    };
                    let lhs = MatRef::row_major(cols, positions, patch).t();
                    matmul(pw, lhs, MatRef::row_major(dyi, positions, g.out_c), true, Threads::Single);
                    for row in dyi.chunks(g.out_c) {
                        add_assign(pb, row);
                    }
                }
            },
        );
        sum_partials(&scratch[..chunks], 0, dw);
        sum_partials(&scratch[..chunks], weight_len, db);
    });
}

/// `out[i] = sum over chunks c (in order) of partials[c][offset + i]`.
pub(crate) fn sum_partials(partials: &[Vec<f32>], offset: usize, out: &mut [f32]) {
    const BLOCK: usize = 4096;
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(bi, block)| {
        let start = offset + bi * BLOCK;
        block.copy_from_slice(&partials[0][start..start + block.len()]);
        for p in &partials[1..] {
            let len = block.len();
            add_assign(block, &p[start..start + len]);
        }
    });
}
