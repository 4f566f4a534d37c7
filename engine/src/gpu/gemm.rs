//! Dispatch of the tiled matrix product (shaders/gemm_tile.wgsl) behind dense and conv2d:
//! tiling, the split-K decision and the reduction of split partial products.

use super::buffers::{BufRef, Scratch};
use super::context::GpuContext;
use super::counters::GemmShape;
use super::kernels::{Kernel, entry_point};
use super::params::{self, ACT_NONE, ACT_RELU, ACT_RELU_MASK, u};
use crate::backend::{Conv2dGeometry, Epilogue, GradMask};

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

/// What the product's epilogue does after the sum (see gemm_tile.wgsl): on an activation, a
/// fused ReLU and dropout; on a gradient, their masks.
#[derive(Clone, Copy, Default)]
pub(crate) enum Finish<'a> {
    #[default]
    Plain,
    Activation(&'a Epilogue),
    Gradient(&'a GradMask<'a>),
}

/// One product `C[m, n] = A * B (+ bias)`, finished by `finish`; with `ones_out`, A gets an
/// extra row of ones and that row of C (the column sums of B: a bias gradient) is written to
/// `ones_out`.
pub(crate) struct Gemm<'a> {
    pub(crate) kernel: Kernel,
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) operands: Operands<'a>,
    pub(crate) a: BufRef<'a>,
    pub(crate) b: BufRef<'a>,
    pub(crate) bias: Option<BufRef<'a>>,
    pub(crate) out: BufRef<'a>,
    pub(crate) ones_out: Option<BufRef<'a>>,
    pub(crate) finish: Finish<'a>,
    /// Convolutions: the reduction index -> tap table (binding 7).
    pub(crate) taps: Option<BufRef<'a>>,
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

impl Gemm<'_> {
    pub(crate) fn run(&self, ctx: &GpuContext) {
        let rows = self.m + self.ones_out.is_some() as usize;
        if rows == 0 || self.n == 0 {
            return;
        }
        let tiles_n = self.n.div_ceil(TILE);
        let tiles = rows.div_ceil(TILE) * tiles_n;
        let (splits, chunk) = split(tiles, self.k);

        let mut params = params::Gemm {
            m: u(rows),
            n: u(self.n),
            k: u(self.k),
            k_chunk: u(chunk),
            splits: u(splits),
            tiles_n: u(tiles_n),
            tiles: u(tiles),
            has_bias: self.bias.is_some() as u32,
            ones_row: if self.ones_out.is_some() { u(self.m) } else { NONE },
            ..Default::default()
        };
        match self.operands {
            Operands::Strided { a, b } => {
                (params.a_rs, params.a_cs, params.b_rs, params.b_cs) = (u(a.row_stride), u(a.col_stride), u(b.row_stride), u(b.col_stride));
            }
            Operands::Conv(g) => {
                (params.in_h, params.in_w, params.in_c) = (u(g.in_h), u(g.in_w), u(g.in_c));
                (params.out_h, params.out_w, params.out_c) = (u(g.out_h), u(g.out_w), u(g.out_c));
                (params.kernel_h, params.kernel_w, params.stride_h, params.stride_w) =
                    (u(g.kernel_h), u(g.kernel_w), u(g.stride_h), u(g.stride_w));
                (params.pad_top, params.pad_left) = (u(g.pad_top), u(g.pad_left));
            }
        }
        let pool = &ctx.buffers;
        let unused = BufRef::whole(&pool.unused_input);
        let mut act = unused;
        let epilogue = match self.finish {
            Finish::Plain => Epilogue::default(),
            Finish::Activation(e) => {
                params.activation = if e.relu { ACT_RELU } else { ACT_NONE };
                *e
            }
            Finish::Gradient(mask) => {
                if mask.epilogue.relu {
                    params.activation = ACT_RELU_MASK;
                    act = mask.activation.gpu();
                }
                mask.epilogue
            }
        };
        (params.dropout, params.drop_base, params.drop_threshold, params.drop_scale) = params::dropout_fields(&epilogue);

        ctx.counters.log_gemm(|| GemmShape {
            kernel: entry_point(self.kernel as usize),
            m: self.m,
            n: self.n,
            k: self.k,
            tile: [TILE, TILE],
            splits,
            useful_fma: (rows * self.n * self.k) as u64,
            issued_fma: (rows.div_ceil(TILE) * TILE * tiles_n * TILE * issued_k(self.k, chunk)) as u64,
            reduce_pass: splits > 1,
        });
        let bias = self.bias.unwrap_or(unused);
        let ones_out = self.ones_out.unwrap_or(BufRef::whole(&pool.unused_output));
        let finished = [(3, bias), (5, ones_out), (6, act)];
        let taps = self.taps.map(|t| (7, t));
        if splits == 1 {
            let bindings = [(1, self.a), (2, self.b), (4, self.out), finished[0], finished[1], finished[2]];
            ctx.dispatch(self.kernel, &params, &[&bindings[..], taps.as_slice()].concat(), tiles);
            return;
        }
        let partials = pool.scratch(&ctx.device, Scratch::SplitPartials, (splits * rows * self.n * 4) as u64);
        let partials = BufRef::whole(&partials);
        let bindings = [(1, self.a), (2, self.b), (4, partials), finished[0], finished[1], finished[2]];
        ctx.dispatch(self.kernel, &params, &[&bindings[..], taps.as_slice()].concat(), tiles * splits);
        ctx.dispatch(
            Kernel::ReduceSplits,
            &params,
            &[(1, partials), (4, self.out), finished[0], finished[1], finished[2]],
            (rows * self.n).div_ceil(256),
        );
    }
}
