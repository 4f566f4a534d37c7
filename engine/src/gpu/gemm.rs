//! Dispatch of the tiled matrix product (shaders/gemm_tile.wgsl) behind dense and conv2d: the
//! tile variant for a shape, how each operand is read (along its stride-1 dimension, as vec4
//! where aligned), the split-K decision and the reduction of split partial products.

use super::buffers::{BufRef, Scratch};
use super::context::GpuContext;
use super::counters::GemmShape;
use super::kernels::{Kernel, Pipeline, entry_point};
use super::params::{self, u};
use crate::backend::{Conv2dGeometry, Epilogue, GradMask};

/// Reduction indices per K tile (`BK` in gemm_tile.wgsl).
const BK: usize = 8;
const NONE: u32 = u32::MAX;
/// Split the reduction when C has fewer tiles than this many workgroups would keep busy.
const TARGET_WORKGROUPS: usize = 264;
const MIN_SPLIT_LEN: usize = 256;
/// At most this many slices, so that the reduction pass stays short.
pub(crate) const MAX_SPLITS: usize = 32;
/// Elements of C per workgroup of the reduction pass (`reduce` in gemm_tile.wgsl).
const REDUCE_ELEMENTS: usize = 64;

/// `Gemm::a_order` / `b_order`: groups of four read along k, or along m (A) / n (B).
const ALONG_K: u32 = 0;
const ALONG_MN: u32 = 1;

/// A tile variant of the product: rows x columns of C per workgroup, rows x columns per thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Tile {
    T128x128,
    T128x64,
    T128x32,
    T128x16,
    T32x32,
}

impl Tile {
    pub(crate) const ALL: [Tile; 5] = [Tile::T128x128, Tile::T128x64, Tile::T128x32, Tile::T128x16, Tile::T32x32];

    /// (rows, columns) of C per workgroup and (rows, columns) per thread.
    pub(crate) fn shape(self) -> ([usize; 2], [usize; 2]) {
        match self {
            Tile::T128x128 => ([128, 128], [8, 8]),
            Tile::T128x64 => ([128, 64], [8, 8]),
            Tile::T128x32 => ([128, 32], [8, 4]),
            Tile::T128x16 => ([128, 16], [8, 4]),
            Tile::T32x32 => ([32, 32], [8, 4]),
        }
    }

    pub(crate) fn name(self) -> String {
        let ([rows, cols], _) = self.shape();
        format!("{rows}x{cols}")
    }

    /// The constants gemm_tile.wgsl is compiled with for this variant.
    pub(crate) fn wgsl_constants(self) -> String {
        let ([bm, bn], [tm, tn]) = self.shape();
        format!("const BM: u32 = {bm}u;\nconst BN: u32 = {bn}u;\nconst TM: u32 = {tm}u;\nconst TN: u32 = {tn}u;\n")
    }

    /// The narrowest tile that covers `n` columns (and, for 32 columns, few rows).
    fn for_shape(rows: usize, n: usize) -> Tile {
        match n {
            0..=16 => Tile::T128x16,
            17..=32 if rows <= 32 => Tile::T32x32,
            17..=32 => Tile::T128x32,
            33..=64 => Tile::T128x64,
            _ => Tile::T128x128,
        }
    }
}

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

    /// How a `rows x cols` operand is read in groups of four: along its columns (`along_cols`)
    /// when those have stride 1, else along its rows; and whether every group is one aligned
    /// vec4 (the other stride and the extent it runs along are multiples of 4).
    fn read_order(self, rows: usize, cols: usize) -> (bool, bool) {
        if self.col_stride == 1 {
            (true, self.row_stride.is_multiple_of(4) && cols.is_multiple_of(4))
        } else if self.row_stride == 1 {
            (false, self.col_stride.is_multiple_of(4) && rows.is_multiple_of(4))
        } else {
            (true, false)
        }
    }
}

/// How the kernel reads its operands.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operands<'g> {
    Strided {
        a: MatrixLayout,
        b: MatrixLayout,
    },
    /// A convolution pass; `input_u8`: its input holds u8 pixels (see conv2d.wgsl).
    Conv {
        geometry: &'g Conv2dGeometry,
        input_u8: bool,
    },
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
    /// Convolutions: the tap table (binding 7).
    pub(crate) taps: Option<BufRef<'a>>,
}

/// Number of reduction splits and the length of each.
fn split(tiles: usize, k: usize) -> (usize, usize) {
    if tiles * 2 >= TARGET_WORKGROUPS || k < 2 * MIN_SPLIT_LEN {
        return (1, k.max(1));
    }
    let splits = (TARGET_WORKGROUPS / tiles).min(k / MIN_SPLIT_LEN).clamp(1, MAX_SPLITS);
    let chunk = k.div_ceil(splits).next_multiple_of(BK);
    (k.div_ceil(chunk), chunk)
}

/// Reduction steps the workgroups run over `k`, in slices of `chunk`, each rounded up to BK.
fn issued_k(k: usize, chunk: usize) -> usize {
    (0..k).step_by(chunk.max(1)).map(|start| (k - start).min(chunk).next_multiple_of(BK)).sum()
}

fn order(along_k: bool) -> u32 {
    if along_k { ALONG_K } else { ALONG_MN }
}

impl Gemm<'_> {
    /// Fills the operand fields of `params`: layouts or geometry, read orders and alignment.
    fn operand_params(&self, params: &mut params::Gemm) {
        match self.operands {
            Operands::Strided { a, b } => {
                (params.a_rs, params.a_cs, params.b_rs, params.b_cs) = (u(a.row_stride), u(a.col_stride), u(b.row_stride), u(b.col_stride));
                let (a_along_k, a_vec4) = a.read_order(self.m, self.k);
                let (b_along_n, b_vec4) = b.read_order(self.k, self.n);
                (params.a_order, params.a_vec4) = (order(a_along_k), a_vec4 as u32);
                (params.b_order, params.b_vec4) = (order(!b_along_n), b_vec4 as u32);
            }
            Operands::Conv { geometry: g, input_u8 } => {
                (params.in_h, params.in_w, params.in_c) = (u(g.in_h), u(g.in_w), u(g.in_c));
                (params.out_h, params.out_w, params.out_c) = (u(g.out_h), u(g.out_w), u(g.out_c));
                (params.kernel_h, params.kernel_w, params.stride_h, params.stride_w) =
                    (u(g.kernel_h), u(g.kernel_w), u(g.stride_h), u(g.stride_w));
                (params.pad_top, params.pad_left) = (u(g.pad_top), u(g.pad_left));
                params.input_u8 = input_u8 as u32;
                // A group of four is four channels of one pixel: of the input (forward along k,
                // backward weight along its rows) or of the output gradient (backward input).
                let (in4, out4) = (g.in_c.is_multiple_of(4) as u32, g.out_c.is_multiple_of(4) as u32);
                (params.a_order, params.a_vec4, params.b_order, params.b_vec4) = match self.kernel {
                    Kernel::ConvForward => (ALONG_K, in4, ALONG_MN, out4),
                    Kernel::ConvBackwardInput => (ALONG_K, out4, ALONG_K, out4),
                    _ => (ALONG_MN, in4, ALONG_MN, out4),
                };
            }
        }
    }

    pub(crate) fn run(&self, ctx: &GpuContext) {
        let rows = self.m + self.ones_out.is_some() as usize;
        if rows == 0 || self.n == 0 {
            return;
        }
        let tile = Tile::for_shape(rows, self.n);
        let ([bm, bn], per_thread) = tile.shape();
        let tiles_n = self.n.div_ceil(bn);
        let tiles = rows.div_ceil(bm) * tiles_n;
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
        self.operand_params(&mut params);
        let pool = &ctx.buffers;
        let unused = BufRef::whole(&pool.unused_input);
        let mut act = unused;
        let epilogue = match self.finish {
            Finish::Plain => Epilogue::default(),
            Finish::Activation(e) => *e,
            Finish::Gradient(mask) => {
                if mask.epilogue.activation.is_some() {
                    params.act_slope = 1;
                    act = mask.activation.gpu();
                }
                mask.epilogue
            }
        };
        (params.act, params.act_alpha) = epilogue.activation_code();
        (params.dropout, params.drop_base, params.drop_threshold, params.drop_scale) = params::dropout_fields(&epilogue);

        ctx.counters.log_gemm(|| GemmShape {
            kernel: entry_point(self.kernel as usize),
            m: self.m,
            n: self.n,
            k: self.k,
            tile: [bm, bn],
            per_thread,
            vec4_loads: [params.a_vec4 != 0, params.b_vec4 != 0],
            splits,
            useful_fma: (rows * self.n * self.k) as u64,
            issued_fma: (rows.div_ceil(bm) * bm * tiles_n * bn * issued_k(self.k, chunk)) as u64,
            reduce_pass: splits > 1,
        });
        let pipeline = Pipeline { kernel: self.kernel, tile: Some(tile) };
        let bias = self.bias.unwrap_or(unused);
        let ones_out = self.ones_out.unwrap_or(BufRef::whole(&pool.unused_output));
        let finished = [(3, bias), (5, ones_out), (6, act)];
        let taps = self.taps.map(|t| (7, t));
        if splits == 1 {
            let bindings = [(1, self.a), (2, self.b), (4, self.out), finished[0], finished[1], finished[2]];
            ctx.dispatch(pipeline, &params, &[&bindings[..], taps.as_slice()].concat(), tiles);
            return;
        }
        let partials = pool.scratch(&ctx.device, Scratch::SplitPartials, (splits * rows * self.n * 4) as u64);
        let partials = BufRef::whole(&partials);
        let bindings = [(1, self.a), (2, self.b), (4, partials), finished[0], finished[1], finished[2]];
        ctx.dispatch(pipeline, &params, &[&bindings[..], taps.as_slice()].concat(), tiles * splits);
        ctx.dispatch(
            Kernel::ReduceSplits,
            &params,
            &[(1, partials), (4, self.out), finished[0], finished[1], finished[2]],
            (rows * self.n).div_ceil(REDUCE_ELEMENTS),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_bounded_and_cover_the_reduction() {
        for (tiles, k) in [(1, 78_400), (1, 100), (7, 19_600), (2, 1_000_000), (200, 100), (1, 513)] {
            let (splits, chunk) = split(tiles, k);
            assert!((1..=MAX_SPLITS).contains(&splits), "tiles {tiles}, k {k}: {splits} splits");
            assert!(splits * chunk >= k && (splits - 1) * chunk < k, "tiles {tiles}, k {k}: {splits} x {chunk}");
            assert!(splits == 1 || chunk % BK == 0, "a split's slice is whole K tiles");
        }
    }

    #[test]
    fn narrow_products_get_narrow_tiles() {
        assert_eq!(Tile::for_shape(100, 10), Tile::T128x16);
        assert_eq!(Tile::for_shape(26, 32), Tile::T32x32);
        assert_eq!(Tile::for_shape(78_400, 32), Tile::T128x32);
        assert_eq!(Tile::for_shape(19_600, 64), Tile::T128x64);
        assert_eq!(Tile::for_shape(100, 1024), Tile::T128x128);
    }
}
