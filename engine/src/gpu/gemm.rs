//! Dispatch of the tiled matrix product (shaders/gemm_tile.wgsl) behind dense and conv2d:
//! tiling, the split-K decision and the reduction of split partial products.

use super::buffers::Scratch;
use super::context::GpuContext;
use super::counters::GemmShape;
use super::kernels::{Kernel, entry_point};
use crate::backend::Conv2dGeometry;

const TILE: usize = 64;
const TILE_K: usize = 16;
const NONE: u32 = u32::MAX;
/// Split the reduction when C has fewer tiles than this many workgroups would keep busy.
const TARGET_WORKGROUPS: usize = 264;
const MIN_SPLIT_LEN: usize = 256;

/// Where a strided operand's element (row, col) lives: `row * row_stride + col * col_stride`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MatrixLayout {
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl MatrixLayout {
    /// A row-major matrix with `cols` columns.
    pub(crate) fn row_major(cols: usize) -> Self {
        Self { row_stride: cols, col_stride: 1 }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub(crate) fn transposed(cols: usize) -> Self {
        Self { row_stride: 1, col_stride: cols }
    }
}

/// How the kernel reads its operands.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operands<'g> {
    Strided { a: MatrixLayout, b: MatrixLayout },
    Conv(&'g Conv2dGeometry),
}

/// One product `C[m, n] = A * B (+ bias)`; with `ones_out`, A gets an extra row of ones and
/// that row of C (the column sums of B: a bias gradient) is written to `ones_out`.
pub(crate) struct Gemm<'a> {
    pub(crate) kernel: Kernel,
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) operands: Operands<'a>,
    pub(crate) a: &'a wgpu::Buffer,
    pub(crate) b: &'a wgpu::Buffer,
    pub(crate) bias: Option<&'a wgpu::Buffer>,
    pub(crate) out: &'a wgpu::Buffer,
    pub(crate) ones_out: Option<&'a wgpu::Buffer>,
}

/// Number of reduction splits and the length of each.
fn split(tiles: usize, k: usize) -> (usize, usize) {
    if tiles * 2 >= TARGET_WORKGROUPS || k < 2 * MIN_SPLIT_LEN {
        return (1, k.max(1));
    }
    let splits = (TARGET_WORKGROUPS / tiles).min(k / MIN_SPLIT_LEN).max(1);
    let chunk = k.div_ceil(splits).next_multiple_of(TILE_K);
    (k.div_ceil(chunk), chunk)
}

/// Reduction steps the workgroups run over `k`, in slices of `chunk`, each rounded up to TILE_K.
fn issued_k(k: usize, chunk: usize) -> usize {
    (0..k).step_by(chunk.max(1)).map(|start| (k - start).min(chunk).next_multiple_of(TILE_K)).sum()
}

fn u(v: usize) -> u32 {
    u32::try_from(v).expect("GPU tensor dimensions fit in u32")
}

impl Gemm<'_> {
    pub(crate) fn run(&self, ctx: &GpuContext) {
        let rows = self.m + self.ones_out.is_some() as usize;
        if rows == 0 || self.n == 0 {
            return;
        }
        let tiles_n = self.n.div_ceil(TILE);
        let tiles = rows.div_ceil(TILE) * tiles_n;
        let (splits, chunk) = split(tiles, self.k);
        let reduce = splits > 1 || self.ones_out.is_some();

        let (strided, conv) = match self.operands {
            Operands::Strided { a, b } => ([a.row_stride, a.col_stride, b.row_stride, b.col_stride], Conv2dGeometry::default()),
            Operands::Conv(g) => ([0; 4], *g),
        };
        let mut params = [
            u(rows),
            u(self.n),
            u(self.k),
            u(chunk),
            u(splits),
            u(tiles_n),
            u(tiles),
            (self.bias.is_some() && !reduce) as u32,
            if self.ones_out.is_some() { u(self.m) } else { NONE },
            u(strided[0]),
            u(strided[1]),
            u(strided[2]),
            u(strided[3]),
            u(conv.in_h),
            u(conv.in_w),
            u(conv.in_c),
            u(conv.out_h),
            u(conv.out_w),
            u(conv.out_c),
            u(conv.kernel_h),
            u(conv.kernel_w),
            u(conv.stride_h),
            u(conv.stride_w),
            u(conv.pad_top),
            u(conv.pad_left),
        ];
        ctx.counters.log_gemm(|| GemmShape {
            kernel: entry_point(self.kernel as usize),
            m: self.m,
            n: self.n,
            k: self.k,
            tile: [TILE, TILE],
            splits,
            useful_fma: (rows * self.n * self.k) as u64,
            issued_fma: (rows.div_ceil(TILE) * TILE * tiles_n * TILE * issued_k(self.k, chunk)) as u64,
            reduce_pass: reduce,
        });
        let pool = &ctx.buffers;
        let bias = self.bias.unwrap_or(&pool.unused_input);
        if !reduce {
            ctx.dispatch(self.kernel, &params, &[(1, self.a), (2, self.b), (3, bias), (4, self.out)], tiles);
            return;
        }
        let partials = pool.scratch(&ctx.device, Scratch::SplitPartials, (splits * rows * self.n * 4) as u64);
        ctx.dispatch(self.kernel, &params, &[(1, self.a), (2, self.b), (3, &pool.unused_input), (4, &partials)], tiles * splits);
        params[7] = self.bias.is_some() as u32;
        let ones_out = self.ones_out.unwrap_or(&pool.unused_output);
        ctx.dispatch(
            Kernel::ReduceSplits,
            &params,
            &[(1, &partials), (3, bias), (4, self.out), (5, ones_out)],
            (rows * self.n).div_ceil(256),
        );
    }
}
