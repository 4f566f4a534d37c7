//! Winograd F(4x4, 5x5) convolution (Lavin & Gray), for 5x5 stride-1 kernels with enough input
//! channels: each 4x4 output tile comes from an 8x8 input tile with 64 multiplies per channel
//! pair instead of 400. Interpolation points 0, +-1, +-2, +-1/2 and infinity.
//!
//! Per group of 24 tiles: the input tiles are transformed (`V = B^T d B`), 64 products multiply
//! them by the transformed filters (`U = G g G^T`, made once per call), and the output
//! transform (`Y = A^T M A`) adds the bias. A group's `V` and `M` stay in L2 while `U` streams
//! through it. Each thread owns whole images and each tile's result depends on that tile
//! alone, so results do not depend on timing or on the thread count.
#![allow(clippy::needless_range_loop)] // tile arithmetic reads clearest with explicit indices

mod product;

use rayon::prelude::*;

use super::elementwise::add_assign;
use super::gemm::{MatRef, Threads, matmul};
use super::{chunk_count, chunk_size};
use crate::backend::Conv2dGeometry;
use crate::device::CpuDevice;

const G: [[f32; 5]; 8] = [
    [-1.0, 0.0, 0.0, 0.0, 0.0],
    [-2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0, -2.0 / 9.0],
    [-2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0, 2.0 / 9.0, -2.0 / 9.0],
    [1.0 / 90.0, 1.0 / 45.0, 2.0 / 45.0, 4.0 / 45.0, 8.0 / 45.0],
    [1.0 / 90.0, -1.0 / 45.0, 2.0 / 45.0, -4.0 / 45.0, 8.0 / 45.0],
    [32.0 / 45.0, 16.0 / 45.0, 8.0 / 45.0, 4.0 / 45.0, 2.0 / 45.0],
    [32.0 / 45.0, -16.0 / 45.0, 8.0 / 45.0, -4.0 / 45.0, 2.0 / 45.0],
    [0.0, 0.0, 0.0, 0.0, 1.0],
];

const K: usize = 5;
const TILE_IN: usize = 8;
const TILE_OUT: usize = 4;
const TILE_PIXELS: usize = TILE_OUT * TILE_OUT;
const POINTS: usize = TILE_IN * TILE_IN;
/// Below this many input channels the GEMMs' inner dimension is too short to pay off.
const MIN_IN_CHANNELS: usize = 8;

/// Below this batch the per-call filter transform outweighs the saved multiplies (filters
/// transformed in advance pay at every batch size).
const MIN_BATCH: usize = 4;

/// Whether `n` images of `g` are better done with Winograd than with im2col + GEMM.
pub fn worthwhile(g: &Conv2dGeometry, n: usize) -> bool {
    n >= MIN_BATCH && applies(g)
}

/// Whether `g` can run through Winograd (5x5, stride 1, 8+ input channels, padding of at most 4).
pub fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel_h == K && g.kernel_w == K && g.stride_h == 1 && g.stride_w == 1 && g.in_c >= MIN_IN_CHANNELS && g.pad_top < K && g.pad_left < K
}

/// The convolution computing `dx` from `dy` for a stride-1 `g`: the filters flipped and
/// transposed, padding `k - 1 - pad`.
pub fn backward_input_geometry(g: &Conv2dGeometry) -> Conv2dGeometry {
    Conv2dGeometry {
        in_h: g.out_h,
        in_w: g.out_w,
        in_c: g.out_c,
        out_h: g.in_h,
        out_w: g.in_w,
        out_c: g.in_c,
        kernel_h: g.kernel_h,
        kernel_w: g.kernel_w,
        stride_h: 1,
        stride_w: 1,
        pad_top: g.kernel_h - 1 - g.pad_top,
        pad_left: g.kernel_w - 1 - g.pad_left,
    }
}

/// Where the filters come from.
#[derive(Clone, Copy)]
pub enum Filters<'a> {
    /// `[kh][kw][in_c][out_c]` for the geometry itself.
    Direct(&'a [f32]),
    /// The filters of the forward convolution whose [`backward_input_geometry`] this is: read
    /// rotated by 180 degrees with the channel axes swapped.
    Flipped(&'a [f32]),
    /// Already transformed, by [`transformed_filters`].
    Transformed(&'a [f32]),
}

/// The filters `w` (`[kh][kw][in_c][out_c]`) of a geometry for which [`applies`] holds,
/// transformed once for every later [`forward`] with [`Filters::Transformed`].
pub fn transformed_filters(g: &Conv2dGeometry, w: &[f32]) -> Vec<f32> {
    let mut u = vec![0.0; transformed_len(g)];
    transform_filters_into(g, w, &mut u);
    u
}

/// Floats in [`transformed_filters`]' result.
pub fn transformed_len(g: &Conv2dGeometry) -> usize {
    POINTS * g.in_c * g.out_c
}

/// [`transformed_filters`] into `u` ([`transformed_len`] floats).
pub fn transform_filters_into(g: &Conv2dGeometry, w: &[f32], u: &mut [f32]) {
    transform_filters(g, Filters::Direct(w), &mut u[..transformed_len(g)]);
}

/// Scratch floats one forward worker needs, and the shared filter transform's size.
fn sizes(g: &Conv2dGeometry) -> (usize, usize) {
    let worker = POINTS * GROUP * (g.in_c + g.out_c) + padded_len(g) + TILE_PIXELS * g.out_c;
    (worker, POINTS * g.in_c * g.out_c)
}

fn tiles_per_image(g: &Conv2dGeometry) -> usize {
    g.out_h.div_ceil(TILE_OUT) * g.out_w.div_ceil(TILE_OUT)
}

/// What the output transform writes per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Every output pixel.
    Full,
    /// The maximum of each 2x2 block of output pixels (inside a tile): the convolution followed
    /// by a 2x2, stride-2 max pool (`floor(out / 2)` pooled rows and columns), the full output
    /// never written.
    MaxPool2x2,
}

impl Output {
    fn len(self, g: &Conv2dGeometry) -> usize {
        match self {
            Output::Full => g.out_len(),
            Output::MaxPool2x2 => (g.out_h / 2) * (g.out_w / 2) * g.out_c,
        }
    }
}

/// `y = conv(x, w) + b` for `n` images of a geometry for which [`applies`] holds, written as
/// `out` says.
#[allow(clippy::too_many_arguments)]
pub fn forward(dev: &CpuDevice, g: &Conv2dGeometry, n: usize, x: &[f32], w: Filters<'_>, b: Option<&[f32]>, out: Output, y: &mut [f32]) {
    debug_assert!(applies(g));
    let (in_len, out_len) = (g.in_len(), out.len(g));
    let chunk = chunk_size(n);
    let workers = n.div_ceil(chunk);
    debug_assert!(workers <= chunk_count(n));
    let (worker_len, u_len) = sizes(g);
    let threads = rayon::current_num_threads();
    dev.with_scratch(threads.max(workers) + 1, worker_len.max(u_len), |scratch| {
        let (u, workers_scratch) = scratch.split_first_mut().expect("one buffer for the filters");
        let u = match w {
            Filters::Transformed(u) => &u[..u_len],
            _ => {
                transform_filters(g, w, &mut u[..u_len]);
                &u[..u_len]
            }
        };
        if n == 1 && threads > 1 {
            return forward_alone(g, x, u, b, out, y, workers_scratch);
        }
        y[..n * out_len]
            .par_chunks_mut(chunk * out_len)
            .zip(x[..n * in_len].par_chunks(chunk * in_len))
            .zip(workers_scratch.par_iter_mut())
            .for_each(|((yc, xc), buf)| tile_range(g, xc, u, b, out, yc, 0, 0..tiles_per_image(g) * (xc.len() / in_len), buf));
    });
}

/// One image with its tile rows split across the threads (each tile's result is the same
/// whichever thread computes it).
#[allow(clippy::too_many_arguments)]
fn forward_alone(g: &Conv2dGeometry, x: &[f32], u: &[f32], b: Option<&[f32]>, out: Output, y: &mut [f32], scratch: &mut [Vec<f32>]) {
    let (tile_rows, tiles_w) = (g.out_h.div_ceil(TILE_OUT), g.out_w.div_ceil(TILE_OUT));
    let rows_per_task = tile_rows.div_ceil(scratch.len());
    // The output rows one tile row writes.
    let (y_rows, y_row_len) = match out {
        Output::Full => (TILE_OUT, g.out_w * g.out_c),
        Output::MaxPool2x2 => (TILE_OUT / 2, (g.out_w / 2) * g.out_c),
    };
    y[..out.len(g)].par_chunks_mut((rows_per_task * y_rows * y_row_len).max(1)).zip(scratch.par_iter_mut()).enumerate().for_each(
        |(task, (yc, buf))| {
            let row0 = task * rows_per_task;
            let end = (row0 + rows_per_task).min(tile_rows) * tiles_w;
            tile_range(g, x, u, b, out, yc, row0, row0 * tiles_w..end, buf);
        },
    );
}

/// The tiles `tiles` of the images in `x` (numbered image by image, row by row), a group at a
/// time, into `y`, which starts at the output of tile row `row0` (of image 0).
#[allow(clippy::too_many_arguments)]
fn tile_range(
    g: &Conv2dGeometry,
    x: &[f32],
    u: &[f32],
    b: Option<&[f32]>,
    out: Output,
    y: &mut [f32],
    row0: usize,
    tiles: std::ops::Range<usize>,
    buf: &mut [f32],
) {
    let (padded, buf) = buf.split_at_mut(padded_len(g));
    let mut padded = PaddedImage::new(g, padded);
    for first in tiles.clone().step_by(GROUP) {
        group(g, x, &mut padded, u, b, out, y, row0, first, GROUP.min(tiles.end - first), buf);
    }
}

/// Tiles transformed, multiplied and transformed back together: their `V` and `M` (64 points
/// each) stay in L2 while the filters stream through it.
const GROUP: usize = 24;

/// `count` tiles from tile `first` of the images in `x` (numbered image by image, row by row):
/// input transform (through `padded`), the 64 point products, output transform into `y`,
/// which starts at the output of tile row `row0` (of image 0).
#[allow(clippy::too_many_arguments)]
fn group(
    g: &Conv2dGeometry,
    x: &[f32],
    padded: &mut PaddedImage<'_>,
    u: &[f32],
    bias: Option<&[f32]>,
    out: Output,
    y: &mut [f32],
    row0: usize,
    first: usize,
    count: usize,
    buf: &mut [f32],
) {
    let (ci, co) = (g.in_c, g.out_c);
    let (per_image, tiles_w) = (tiles_per_image(g), g.out_w.div_ceil(TILE_OUT));
    let (v, rest) = buf.split_at_mut(POINTS * GROUP * ci);
    let (m, rest) = rest.split_at_mut(POINTS * GROUP * co);
    let pixels = &mut rest[..TILE_PIXELS * co];
    let locate = |tile: usize| (tile / per_image, (tile % per_image) / tiles_w, tile % tiles_w);
    for t in 0..count {
        let (img, ty, tx) = locate(first + t);
        input_tile(g, padded.of(g, x, img), ty, tx, v, GROUP, t);
    }
    for p in 0..POINTS {
        let (vp, up, mp) = (&v[p * GROUP * ci..][..count * ci], &u[p * co..], &mut m[p * GROUP * co..][..count * co]);
        if product::applies(co) {
            product::multiply(vp, up, POINTS * co, mp, count, ci, co);
        } else {
            matmul(mp, MatRef::row_major(vp, count, ci), MatRef::with_row_stride(up, ci, co, POINTS * co), false, Threads::Single);
        }
    }
    let out_len = out.len(g);
    let (pooled_h, pooled_w) = (g.out_h / 2, g.out_w / 2);
    for t in 0..count {
        let (img, ty, tx) = locate(first + t);
        let yi = &mut y[img * out_len..];
        match out {
            Output::Full => {
                transform_tile_output(m, t, GROUP, co, pixels);
                write_tile(g, ty, tx, bias, yi, row0 * TILE_OUT, pixels);
            }
            Output::MaxPool2x2 => {
                let (py, px) = (ty * TILE_OUT / 2, tx * TILE_OUT / 2);
                let rows = (pooled_h.saturating_sub(py)).min(TILE_OUT / 2);
                let cols = (pooled_w.saturating_sub(px)).min(TILE_OUT / 2);
                if rows > 0 && cols > 0 {
                    let first = ((py - row0 * TILE_OUT / 2) * pooled_w + px) * co;
                    transform_tile_output_max(m, t, GROUP, co, bias, &mut yi[first..], pooled_w * co, rows, cols);
                }
            }
        }
    }
}

/// `U[ci][p][co] = (G g G^T)[p]` for every channel pair (a row of point `p`'s `ci x co` matrix
/// every `POINTS * co` floats). On the calling thread: a parallel loop's hand-offs cost more
/// than this takes.
fn transform_filters(g: &Conv2dGeometry, w: Filters<'_>, u: &mut [f32]) {
    let (ci_n, co_n) = (g.in_c, g.out_c);
    for (ci, u) in u[..ci_n * POINTS * co_n].chunks_mut(POINTS * co_n).enumerate() {
        for co0 in (0..co_n).step_by(LANES) {
            let width = LANES.min(co_n - co0);
            let mut taps = [[ZERO; K]; K];
            for a in 0..K {
                for b in 0..K {
                    taps[a][b] = match w {
                        Filters::Direct(w) => load(w, ((a * K + b) * ci_n + ci) * co_n + co0, width),
                        Filters::Transformed(_) => unreachable!("transformed filters are not transformed again"),
                        Filters::Flipped(w) => {
                            let mut v = ZERO;
                            for (l, v) in v.iter_mut().enumerate().take(width) {
                                *v = w[(((K - 1 - a) * K + (K - 1 - b)) * co_n + co0 + l) * ci_n + ci];
                            }
                            v
                        }
                    };
                }
            }
            transform_filter_lanes(&taps, u, co_n, co0, width);
        }
    }
}

/// `G g` along one axis, lane-wise: the rows of `G` written out with their shared sums.
#[inline(always)]
fn gt(g: [Lanes; K]) -> [Lanes; TILE_IN] {
    let [g0, g1, g2, g3, g4] = g;
    let even = lanes(|l| g0[l] + g2[l] + g4[l]);
    let odd = lanes(|l| g1[l] + g3[l]);
    let even_half = lanes(|l| (1.0f32 / 90.0).mul_add(g0[l], (2.0f32 / 45.0).mul_add(g2[l], (8.0f32 / 45.0) * g4[l])));
    let odd_half = lanes(|l| (1.0f32 / 45.0).mul_add(g1[l], (4.0f32 / 45.0) * g3[l]));
    let even_two = lanes(|l| (32.0f32 / 45.0).mul_add(g0[l], (8.0f32 / 45.0).mul_add(g2[l], (2.0f32 / 45.0) * g4[l])));
    let odd_two = lanes(|l| (16.0f32 / 45.0).mul_add(g1[l], (4.0f32 / 45.0) * g3[l]));
    [
        lanes(|l| -g0[l]),
        lanes(|l| (-2.0f32 / 9.0) * (even[l] + odd[l])),
        lanes(|l| (-2.0f32 / 9.0) * (even[l] - odd[l])),
        lanes(|l| even_half[l] + odd_half[l]),
        lanes(|l| even_half[l] - odd_half[l]),
        lanes(|l| even_two[l] + odd_two[l]),
        lanes(|l| even_two[l] - odd_two[l]),
        g4,
    ]
}

vectorized! {
    /// `G g G^T` for one input channel (`u`: its `[p][co]` block) and `LANES` output channels.
    fn transform_filter_lanes(taps: &[[Lanes; K]; K], u: &mut [f32], co_n: usize, co0: usize, width: usize) {
        let mut columns = [[ZERO; TILE_IN]; K];
        for b in 0..K {
            let mut column = [ZERO; K];
            for a in 0..K {
                column[a] = taps[a][b];
            }
            columns[b] = gt(column);
        }
        for i in 0..TILE_IN {
            let mut row = [ZERO; K];
            for b in 0..K {
                row[b] = columns[b][i];
            }
            for (j, out) in gt(row).iter().enumerate() {
                store(u, (i * TILE_IN + j) * co_n + co0, out, width);
            }
        }
    }
}

/// `V[p][tile]` for the tile at tile row `ty`, column `tx` of a [`PaddedImage`].
fn input_tile(g: &Conv2dGeometry, padded: &[f32], ty: usize, tx: usize, v: &mut [f32], cap: usize, tile: usize) {
    let (c, row) = (g.in_c, padded_size(g).1 * g.in_c);
    transform_tile_input(&padded[ty * TILE_OUT * row + tx * TILE_OUT * c..], row, c, v, cap, tile);
}

/// `(height, width)` of a [`PaddedImage`]: every tile's 8x8 window inside it.
fn padded_size(g: &Conv2dGeometry) -> (usize, usize) {
    (TILE_OUT * g.out_h.div_ceil(TILE_OUT) + K - 1, TILE_OUT * g.out_w.div_ceil(TILE_OUT) + K - 1)
}

fn padded_len(g: &Conv2dGeometry) -> usize {
    let (h, w) = padded_size(g);
    h * w * g.in_c
}

/// One image at a time, copied into a zero border wide enough for every tile, so that each
/// tile's input transform reads its window in place.
struct PaddedImage<'a> {
    buf: &'a mut [f32],
    image: Option<usize>,
}

impl<'a> PaddedImage<'a> {
    fn new(g: &Conv2dGeometry, buf: &'a mut [f32]) -> Self {
        Self { buf: &mut buf[..padded_len(g)], image: None }
    }

    /// Image `img` of the images in `x`, padded (copied only when another image was held).
    fn of(&mut self, g: &Conv2dGeometry, x: &[f32], img: usize) -> &[f32] {
        if self.image != Some(img) {
            let (c, (ph, pw)) = (g.in_c, padded_size(g));
            let image = &x[img * g.in_len()..(img + 1) * g.in_len()];
            let cols = g.in_w.min(pw - g.pad_left);
            for (py, row) in self.buf.chunks_mut(pw * c).enumerate().take(ph) {
                match py.checked_sub(g.pad_top).filter(|&iy| iy < g.in_h) {
                    Some(iy) => {
                        let (left, rest) = row.split_at_mut(g.pad_left * c);
                        let (inside, right) = rest.split_at_mut(cols * c);
                        left.fill(0.0);
                        inside.copy_from_slice(&image[iy * g.in_w * c..][..cols * c]);
                        right.fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
            self.image = Some(img);
        }
        self.buf
    }
}

/// Channels transformed together (one AVX-512 register).
const LANES: usize = 16;

/// `LANES` channels' values, aligned as one register: as a plain array, the compiler's
/// vectorizer regroups a tile's values across channels and points (shuffles, part-width
/// spills that stall when read back whole).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lanes([f32; LANES]);

const ZERO: Lanes = Lanes([0.0; LANES]);

impl std::ops::Deref for Lanes {
    type Target = [f32; LANES];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Lanes {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `B^T d` along one axis, lane-wise: the rows of `B_T` written out with their shared sums,
/// 28 operations (18 of them fused multiply-adds) instead of 48.
#[inline(always)]
fn bt(d: [Lanes; TILE_IN]) -> [Lanes; TILE_IN] {
    let [d0, d1, d2, d3, d4, d5, d6, d7] = d;
    let even_one = lanes(|l| (-4.25f32).mul_add(d4[l], d2[l] + d6[l]));
    let odd_one = lanes(|l| (-4.25f32).mul_add(d3[l], d1[l] + d5[l]));
    let even_half = lanes(|l| 0.25f32.mul_add(d2[l], (-1.25f32).mul_add(d4[l], d6[l])));
    let odd_half = lanes(|l| 0.5f32.mul_add(d1[l], (-2.5f32).mul_add(d3[l], 2.0 * d5[l])));
    let even_two = lanes(|l| 4.0f32.mul_add(d2[l], (-5.0f32).mul_add(d4[l], d6[l])));
    let odd_two = lanes(|l| 2.0f32.mul_add(d1[l], (-2.5f32).mul_add(d3[l], 0.5 * d5[l])));
    [
        lanes(|l| 5.25f32.mul_add(d2[l] - d4[l], d6[l] - d0[l])),
        lanes(|l| even_one[l] + odd_one[l]),
        lanes(|l| even_one[l] - odd_one[l]),
        lanes(|l| even_half[l] + odd_half[l]),
        lanes(|l| even_half[l] - odd_half[l]),
        lanes(|l| even_two[l] + odd_two[l]),
        lanes(|l| even_two[l] - odd_two[l]),
        lanes(|l| 5.25f32.mul_add(d3[l] - d5[l], d7[l] - d1[l])),
    ]
}

/// `A^T m` along one axis, lane-wise.
#[inline(always)]
fn at(m: [Lanes; TILE_IN]) -> [Lanes; TILE_OUT] {
    let [m0, m1, m2, m3, m4, m5, m6, m7] = m;
    let (sum12, sum34, sum56) = (lanes(|l| m1[l] + m2[l]), lanes(|l| m3[l] + m4[l]), lanes(|l| m5[l] + m6[l]));
    let (diff12, diff34, diff56) = (lanes(|l| m1[l] - m2[l]), lanes(|l| m3[l] - m4[l]), lanes(|l| m5[l] - m6[l]));
    [
        lanes(|l| m0[l] + sum12[l] + sum34[l] + sum56[l]),
        lanes(|l| 2.0f32.mul_add(diff34[l], 0.5f32.mul_add(diff56[l], diff12[l]))),
        lanes(|l| 4.0f32.mul_add(sum34[l], 0.25f32.mul_add(sum56[l], sum12[l]))),
        lanes(|l| 8.0f32.mul_add(diff34[l], 0.125f32.mul_add(diff56[l], diff12[l])) + m7[l]),
    ]
}

/// A vector built lane by lane.
#[inline(always)]
fn lanes(f: impl Fn(usize) -> f32) -> Lanes {
    let mut v = ZERO;
    for l in 0..LANES {
        v[l] = f(l);
    }
    v
}

/// `[e(0), .., e(7)]` for an expression `e` of `i`, written out in place: no zeroed array to
/// fill, no loop to unroll, and no closure (which would not share the caller's target features
/// if it stayed a call).
#[rustfmt::skip]
macro_rules! eight {
    ($i:ident => $e:expr) => {
        [
            { let $i = 0; $e }, { let $i = 1; $e }, { let $i = 2; $e }, { let $i = 3; $e },
            { let $i = 4; $e }, { let $i = 5; $e }, { let $i = 6; $e }, { let $i = 7; $e },
        ]
    };
}

/// `[e(0), .., e(3)]`, as [`eight!`].
#[rustfmt::skip]
macro_rules! four {
    ($i:ident => $e:expr) => {
        [{ let $i = 0; $e }, { let $i = 1; $e }, { let $i = 2; $e }, { let $i = 3; $e }]
    };
}

#[inline(always)]
fn load(src: &[f32], at: usize, width: usize) -> Lanes {
    if width == LANES {
        return Lanes(src[at..at + LANES].try_into().expect("LANES values"));
    }
    let mut v = ZERO;
    v[..width].copy_from_slice(&src[at..at + width]);
    v
}

/// [`load`] with the width known to be `LANES` when `FULL` (no branch in a transform's body).
#[inline(always)]
fn load_lanes<const FULL: bool>(src: &[f32], at: usize, width: usize) -> Lanes {
    if FULL { Lanes(src[at..at + LANES].try_into().expect("LANES values")) } else { load(src, at, width) }
}

/// [`store`] with the width known to be `LANES` when `FULL`.
#[inline(always)]
fn store_lanes<const FULL: bool>(dst: &mut [f32], at: usize, v: &Lanes, width: usize) {
    if FULL { dst[at..at + LANES].copy_from_slice(&v.0) } else { store(dst, at, v, width) }
}

#[inline(always)]
fn store(dst: &mut [f32], at: usize, v: &Lanes, width: usize) {
    if width == LANES {
        dst[at..at + LANES].copy_from_slice(&v.0);
    } else {
        dst[at..at + width].copy_from_slice(&v[..width]);
    }
}

vectorized! {
    /// `V[p][tile] = (B^T d B)[p]` for one tile, `d[a][b][ch]` at `d[a * row_stride + b * c + ch]`,
    /// `LANES` channels at a time.
    fn transform_tile_input(d: &[f32], row_stride: usize, c: usize, v: &mut [f32], cap: usize, tile: usize) {
        for c0 in (0..c).step_by(LANES) {
            match LANES.min(c - c0) {
                LANES => tile_input_lanes::<true>(d, row_stride, c, v, cap, tile, c0, LANES),
                width => tile_input_lanes::<false>(d, row_stride, c, v, cap, tile, c0, width),
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_input_lanes<const FULL: bool>(
    d: &[f32],
    row_stride: usize,
    c: usize,
    v: &mut [f32],
    cap: usize,
    tile: usize,
    c0: usize,
    width: usize,
) {
    let columns = eight!(b => bt(eight!(a => load_lanes::<FULL>(d, a * row_stride + b * c + c0, width))));
    for i in 0..TILE_IN {
        for (j, out) in bt(eight!(b => columns[b][i])).iter().enumerate() {
            store_lanes::<FULL>(v, ((i * TILE_IN + j) * cap + tile) * c + c0, out, width);
        }
    }
}

/// The pixels of the output tile at tile row `ty`, column `tx` that lie in the image, from
/// `pixels` (`A^T M A`) plus the bias, into `y` (which starts at output row `first_row`).
fn write_tile(g: &Conv2dGeometry, ty: usize, tx: usize, bias: Option<&[f32]>, y: &mut [f32], first_row: usize, pixels: &[f32]) {
    let c = g.out_c;
    for r in 0..TILE_OUT {
        let oy = ty * TILE_OUT + r;
        for s in 0..TILE_OUT {
            let ox = tx * TILE_OUT + s;
            if oy < g.out_h && ox < g.out_w {
                write_with_bias(&mut y[((oy - first_row) * g.out_w + ox) * c..][..c], &pixels[(r * TILE_OUT + s) * c..][..c], bias);
            }
        }
    }
}

vectorized! {
    /// `dst = src + bias` (or `src`).
    fn write_with_bias(dst: &mut [f32], src: &[f32], bias: Option<&[f32]>) {
        match bias {
            Some(b) => {
                for ((d, s), b) in dst.iter_mut().zip(src).zip(b) {
                    *d = s + b;
                }
            }
            None => dst.copy_from_slice(src),
        }
    }
}

vectorized! {
    /// `pixels[r][s][co] = (A^T M A)[r][s]` for one tile, `LANES` channels at a time.
    fn transform_tile_output(m: &[f32], tile: usize, cap: usize, c: usize, pixels: &mut [f32]) {
        for c0 in (0..c).step_by(LANES) {
            let (y, width) = match LANES.min(c - c0) {
                LANES => (tile_output_lanes::<true>(m, tile, cap, c, c0, LANES), LANES),
                width => (tile_output_lanes::<false>(m, tile, cap, c, c0, width), width),
            };
            for r in 0..TILE_OUT {
                for s in 0..TILE_OUT {
                    store(pixels, (r * TILE_OUT + s) * c + c0, &y[r][s], width);
                }
            }
        }
    }
}

/// `(A^T M A)[r][s]` for channels `c0..c0 + width` of one tile.
#[inline(always)]
fn tile_output_lanes<const FULL: bool>(
    m: &[f32],
    tile: usize,
    cap: usize,
    c: usize,
    c0: usize,
    width: usize,
) -> [[Lanes; TILE_OUT]; TILE_OUT] {
    let rows = eight!(i => at(eight!(j => load_lanes::<FULL>(m, ((i * TILE_IN + j) * cap + tile) * c + c0, width))));
    let columns = four!(s => at(eight!(i => rows[i][s])));
    four!(r => four!(s => columns[s][r]))
}

vectorized! {
    /// The 2x2 blocks `rows x cols` (each at most 2) of one tile, each block's maximum over its 4
    /// pixels (in row order) of `(A^T M A)[r][s] + bias`: the full output's maximum (adding a
    /// constant preserves order, rounding included), into `dst` (a pooled row every `row`
    /// floats), `LANES` channels at a time.
    #[allow(clippy::too_many_arguments)]
    fn transform_tile_output_max(
        m: &[f32],
        tile: usize,
        cap: usize,
        c: usize,
        bias: Option<&[f32]>,
        dst: &mut [f32],
        row: usize,
        rows: usize,
        cols: usize,
    ) {
        for c0 in (0..c).step_by(LANES) {
            let (y, width) = match LANES.min(c - c0) {
                LANES => (tile_output_lanes::<true>(m, tile, cap, c, c0, LANES), LANES),
                width => (tile_output_lanes::<false>(m, tile, cap, c, c0, width), width),
            };
            let b = bias.map(|b| load(b, c0, width));
            // Every block, at fixed places in `y` (which then stays in registers); the blocks
            // past the pooled edge are not stored.
            let blocks = four!(k => {
                let (r, s) = (2 * (k / 2), 2 * (k % 2));
                let mut top = y[r][s];
                for pixel in [y[r][s + 1], y[r + 1][s], y[r + 1][s + 1]] {
                    for l in 0..LANES {
                        top[l] = if pixel[l] > top[l] { pixel[l] } else { top[l] };
                    }
                }
                match b {
                    Some(b) => lanes(|l| top[l] + b[l]),
                    None => top,
                }
            });
            for (k, block) in blocks.iter().enumerate() {
                let (pr, pc) = (k / 2, k % 2);
                if pr < rows && pc < cols {
                    store(dst, pr * row + pc * c + c0, block, width);
                }
            }
        }
    }
}

/// `dw = sum over images of the correlation of x with dy` and `db = sum of dy`, the gradients
/// of a geometry for which [`applies`] holds, through the transposed transforms: the forward
/// is `y = A^T [(G w G^T) . (B^T d B)] A` per tile, so `dw = G^T [sum over tiles of
/// (B^T d B) . (A dy A^T)] G`. Each thread sums its images' tiles, a group at a time (64
/// products with the tiles as the inner dimension, in tile order); the 8x8 -> 5x5 transform
/// runs once, after the per-thread sums are added in thread order.
#[allow(clippy::too_many_arguments)]
pub fn backward_weight(dev: &CpuDevice, g: &Conv2dGeometry, n: usize, x: &[f32], dy: &[f32], dw: &mut [f32], db: &mut [f32]) {
    debug_assert!(applies(g));
    let (in_len, out_len, ci, co) = (g.in_len(), g.out_len(), g.in_c, g.out_c);
    let chunk = chunk_size(n);
    let chunks = n.div_ceil(chunk);
    let (per_image, tiles_w) = (tiles_per_image(g), g.out_w.div_ceil(TILE_OUT));
    let sums_len = POINTS * ci * co + co;
    let worker_len = sums_len + POINTS * GROUP * (ci + co) + padded_len(g);
    dev.with_scratch(chunks, worker_len, |scratch| {
        scratch.par_iter_mut().zip(x[..n * in_len].par_chunks(chunk * in_len)).zip(dy[..n * out_len].par_chunks(chunk * out_len)).for_each(
            |((buf, xc), dyc)| {
                let (sums, rest) = buf.split_at_mut(sums_len);
                let (v, rest) = rest.split_at_mut(POINTS * GROUP * ci);
                let (d, rest) = rest.split_at_mut(POINTS * GROUP * co);
                let mut padded = PaddedImage::new(g, &mut rest[..padded_len(g)]);
                sums.fill(0.0);
                let (m, bias) = sums.split_at_mut(POINTS * ci * co);
                for row in dyc.chunks(co) {
                    add_assign(bias, row);
                }
                let tiles = per_image * (xc.len() / in_len);
                for first in (0..tiles).step_by(GROUP) {
                    let count = GROUP.min(tiles - first);
                    for t in 0..count {
                        let tile = first + t;
                        let (img, ty, tx) = (tile / per_image, (tile % per_image) / tiles_w, tile % tiles_w);
                        input_tile(g, padded.of(g, xc, img), ty, tx, v, GROUP, t);
                        gradient_tile(g, &dyc[img * out_len..(img + 1) * out_len], ty, tx, d, GROUP, t);
                    }
                    for p in 0..POINTS {
                        let (vp, dp, mp) =
                            (&v[p * GROUP * ci..][..count * ci], &d[p * GROUP * co..][..count * co], &mut m[p * ci * co..][..ci * co]);
                        if product::applies(co) {
                            product::accumulate_transposed(vp, dp, mp, ci, count, co);
                        } else {
                            matmul(mp, MatRef::row_major(vp, count, ci).t(), MatRef::row_major(dp, count, co), true, Threads::Single);
                        }
                    }
                }
            },
        );
        let (total, others) = scratch.split_first_mut().expect("at least one chunk");
        for other in others.iter() {
            add_assign(&mut total[..sums_len], &other[..sums_len]);
        }
        let (m, bias) = total[..sums_len].split_at(POINTS * ci * co);
        db[..co].copy_from_slice(bias);
        untransform_weight_gradient(m, ci * co, &mut dw[..K * K * ci * co]);
    });
}

/// `D[p][tile] = (A dy A^T)[p]` for the 4x4 gradient tile at tile row `ty`, column `tx` of one
/// image's `dy` (zeros past its edge).
fn gradient_tile(g: &Conv2dGeometry, dy: &[f32], ty: usize, tx: usize, d: &mut [f32], cap: usize, tile: usize) {
    let pixel = |r: usize, s: usize| {
        let (oy, ox) = (ty * TILE_OUT + r, tx * TILE_OUT + s);
        (oy < g.out_h && ox < g.out_w).then(|| (oy * g.out_w + ox) * g.out_c)
    };
    let at = four!(r => four!(s => pixel(r, s)));
    transform_tile_gradient(dy, &at, g.out_c, d, cap, tile);
}

/// `A m` along one axis (`A` is 8x4, the transpose of [`at`]'s), lane-wise.
#[inline(always)]
fn a_expand(m: [Lanes; TILE_OUT]) -> [Lanes; TILE_IN] {
    let [m0, m1, m2, m3] = m;
    let (even_one, odd_one) = (lanes(|l| m0[l] + m2[l]), lanes(|l| m1[l] + m3[l]));
    let (even_two, odd_two) = (lanes(|l| 4.0f32.mul_add(m2[l], m0[l])), lanes(|l| 2.0f32.mul_add(m1[l], 8.0 * m3[l])));
    let (even_half, odd_half) = (lanes(|l| 0.25f32.mul_add(m2[l], m0[l])), lanes(|l| 0.5f32.mul_add(m1[l], 0.125 * m3[l])));
    [
        m0,
        lanes(|l| even_one[l] + odd_one[l]),
        lanes(|l| even_one[l] - odd_one[l]),
        lanes(|l| even_two[l] + odd_two[l]),
        lanes(|l| even_two[l] - odd_two[l]),
        lanes(|l| even_half[l] + odd_half[l]),
        lanes(|l| even_half[l] - odd_half[l]),
        m3,
    ]
}

vectorized! {
    /// `D[p][tile] = (A dy A^T)[p]` for one 4x4 tile whose pixels start at `at` (`None`: past
    /// the edge, zero), `LANES` channels at a time.
    fn transform_tile_gradient(dy: &[f32], at: &[[Option<usize>; TILE_OUT]; TILE_OUT], co: usize, d: &mut [f32], cap: usize, tile: usize) {
        for c0 in (0..co).step_by(LANES) {
            match LANES.min(co - c0) {
                LANES => tile_gradient_lanes::<true>(dy, at, co, d, cap, tile, c0, LANES),
                width => tile_gradient_lanes::<false>(dy, at, co, d, cap, tile, c0, width),
            }
        }
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile_gradient_lanes<const FULL: bool>(
    dy: &[f32],
    at: &[[Option<usize>; TILE_OUT]; TILE_OUT],
    co: usize,
    d: &mut [f32],
    cap: usize,
    tile: usize,
    c0: usize,
    width: usize,
) {
    let value = |p: Option<usize>| p.map_or(ZERO, |p| load_lanes::<FULL>(dy, p + c0, width));
    let rows = four!(r => a_expand(four!(s => value(at[r][s]))));
    for j in 0..TILE_IN {
        for (i, out) in a_expand(four!(r => rows[r][j])).iter().enumerate() {
            store_lanes::<FULL>(d, ((i * TILE_IN + j) * cap + tile) * co + c0, out, width);
        }
    }
}

vectorized! {
    /// `dw[ky][kx] = sum over (i, j) of G[i][ky] G[j][kx] m[i][j]`, each `m[p]` and `dw[tap]` a
    /// block of `block` values (`[ci][co]`).
    fn untransform_weight_gradient(m: &[f32], block: usize, dw: &mut [f32]) {
        for ky in 0..K {
            for kx in 0..K {
                let out = &mut dw[(ky * K + kx) * block..][..block];
                out.fill(0.0);
                for i in 0..TILE_IN {
                    for j in 0..TILE_IN {
                        let coef = G[i][ky] * G[j][kx];
                        if coef != 0.0 {
                            for (o, v) in out.iter_mut().zip(&m[(i * TILE_IN + j) * block..][..block]) {
                                *o += coef * v;
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The transforms as matrices (Toom-Cook with points 0, 1, -1, 2, -2, 1/2, -1/2, infinity).
    const B_T: [[f32; 8]; 8] = [
        [-1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0, 0.0],
        [0.0, 1.0, 1.0, -4.25, -4.25, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 4.25, -4.25, -1.0, 1.0, 0.0],
        [0.0, 0.5, 0.25, -2.5, -1.25, 2.0, 1.0, 0.0],
        [0.0, -0.5, 0.25, 2.5, -1.25, -2.0, 1.0, 0.0],
        [0.0, 2.0, 4.0, -2.5, -5.0, 0.5, 1.0, 0.0],
        [0.0, -2.0, 4.0, 2.5, -5.0, -0.5, 1.0, 0.0],
        [0.0, -1.0, 0.0, 5.25, 0.0, -5.25, 0.0, 1.0],
    ];
    const A_T: [[f32; 8]; 4] = [
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 0.0],
        [0.0, 1.0, 1.0, 4.0, 4.0, 0.25, 0.25, 0.0],
        [0.0, 1.0, -1.0, 8.0, -8.0, 0.125, -0.125, 1.0],
    ];

    #[test]
    fn written_out_transforms_match_the_matrices() {
        let d: [Lanes; TILE_IN] = std::array::from_fn(|a| Lanes(std::array::from_fn(|l| (a * 7 + l * 3) as f32 * 0.37 - 2.0)));
        let (fast_b, fast_a) = (bt(d), at(d));
        let fast_g = gt([d[0], d[1], d[2], d[3], d[4]]);
        let expanded = a_expand([d[0], d[1], d[2], d[3]]);
        for l in 0..LANES {
            for i in 0..TILE_IN {
                let want: f32 = (0..K).map(|a| G[i][a] * d[a][l]).sum();
                assert!((fast_g[i][l] - want).abs() < 1e-4, "G row {i}");
                let want: f32 = (0..TILE_OUT).map(|r| A_T[r][i] * d[r][l]).sum();
                assert!((expanded[i][l] - want).abs() < 1e-4, "A row {i}");
            }
            for i in 0..TILE_IN {
                let want: f32 = (0..TILE_IN).map(|a| B_T[i][a] * d[a][l]).sum();
                assert!((fast_b[i][l] - want).abs() < 1e-4, "B^T row {i}");
            }
            for r in 0..TILE_OUT {
                let want: f32 = (0..TILE_IN).map(|a| A_T[r][a] * d[a][l]).sum();
                assert!((fast_a[r][l] - want).abs() < 1e-4, "A^T row {r}");
            }
        }
    }

    /// One 8x8 tile through the three transforms equals the direct 5x5 correlation.
    #[test]
    fn one_tile_matches_direct_correlation() {
        let d: [[f32; 8]; 8] = std::array::from_fn(|a| std::array::from_fn(|b| ((a * 8 + b) % 11) as f32 * 0.1 - 0.4));
        let g: [[f32; 5]; 5] = std::array::from_fn(|a| std::array::from_fn(|b| ((a * 5 + b) % 7) as f32 * 0.2 - 0.5));
        let mul = |x: &[Vec<f32>], y: &[Vec<f32>]| -> Vec<Vec<f32>> {
            (0..x.len()).map(|i| (0..y[0].len()).map(|j| (0..y.len()).map(|k| x[i][k] * y[k][j]).sum()).collect()).collect()
        };
        let t = |x: &[Vec<f32>]| -> Vec<Vec<f32>> { (0..x[0].len()).map(|j| x.iter().map(|r| r[j]).collect()).collect() };
        let as_vec = |x: &[[f32; 8]]| -> Vec<Vec<f32>> { x.iter().map(|r| r.to_vec()).collect() };
        let (bt_m, at_m) = (as_vec(&B_T), as_vec(&A_T));
        let g_m: Vec<Vec<f32>> = G.iter().map(|r| r.to_vec()).collect();
        let u = mul(&mul(&g_m, &g.iter().map(|r| r.to_vec()).collect::<Vec<_>>()), &t(&g_m));
        let v = mul(&mul(&bt_m, &as_vec(&d)), &t(&bt_m));
        let m: Vec<Vec<f32>> = (0..8).map(|i| (0..8).map(|j| u[i][j] * v[i][j]).collect()).collect();
        let y = mul(&mul(&at_m, &m), &t(&at_m));
        for r in 0..4 {
            for s in 0..4 {
                let want: f32 = (0..5).flat_map(|a| (0..5).map(move |b| (a, b))).map(|(a, b)| d[r + a][s + b] * g[a][b]).sum();
                assert!((y[r][s] - want).abs() < 1e-4, "[{r}][{s}] {} vs {want}", y[r][s]);
            }
        }
    }
}
