//! The point products of Winograd tile groups, with `U` or `D` (`k x co`, row-major, `co` a
//! multiple of 16) read where it lies (no packing): a panel of output rows times up to four
//! 16-lane vectors of output channels accumulates in registers, each product one fused
//! multiply-add in `k` order, so every output row depends only on its own row of `V`.
//!
//! - forward (and the input gradient): `M (tiles x co) = V (tiles x ci) U (ci x co)`;
//! - weight gradient: `M (ci x co) += V^T D`, `V` being `tiles x ci`, `D` `tiles x co`.

/// Output channels per vector (one AVX-512 register).
const LANES: usize = 16;

/// Whether `co` output channels fit the kernels (whole vectors).
pub fn applies(co: usize) -> bool {
    co > 0 && co.is_multiple_of(LANES)
}

/// Where a row-major `rows x k` left operand's element `[r][k]` lies: `r * row + k * step`.
#[derive(Clone, Copy)]
struct Lhs<'a> {
    data: &'a [f32],
    row: usize,
    step: usize,
}

/// A `k x co` right operand, a row every `stride` floats.
#[derive(Clone, Copy)]
struct Rhs<'a> {
    data: &'a [f32],
    stride: usize,
}

vectorized! {
    /// `m (rows x co) = v (rows x k) * u (k x co)`, a row of `u` every `u_stride` floats.
    pub fn multiply(v: &[f32], u: &[f32], u_stride: usize, m: &mut [f32], rows: usize, k: usize, co: usize) {
        debug_assert!(applies(co) && u_stride >= co);
        if k == 0 {
            return m[..rows * co].fill(0.0);
        }
        let lhs = Lhs { data: &v[..rows * k], row: k, step: 1 };
        let rhs = Rhs { data: &u[..(k - 1) * u_stride + co], stride: u_stride };
        panels(lhs, rhs, &mut m[..rows * co], rows, k, co, false);
    }
}

vectorized! {
    /// `m (rows x co) += v^T * d`, `v` being `k x rows` and `d` `k x co`.
    pub fn accumulate_transposed(v: &[f32], d: &[f32], m: &mut [f32], rows: usize, k: usize, co: usize) {
        debug_assert!(applies(co));
        let lhs = Lhs { data: &v[..k * rows], row: 1, step: rows };
        panels(lhs, Rhs { data: &d[..k * co], stride: co }, &mut m[..rows * co], rows, k, co, true);
    }
}

/// Every row of `m`, in column blocks of 4, 2 then 1 vectors, each in panels of as many rows
/// as the registers hold, then smaller ones for what is left.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panels(a: Lhs<'_>, b: Rhs<'_>, m: &mut [f32], rows: usize, k: usize, co: usize, accumulate: bool) {
    let mut c0 = 0;
    while co - c0 >= 4 * LANES {
        let r0 = run::<6, 4>(a, b, m, 0, rows, c0, k, co, accumulate);
        run::<1, 4>(a, b, m, r0, rows, c0, k, co, accumulate);
        c0 += 4 * LANES;
    }
    if co - c0 >= 2 * LANES {
        let r0 = run::<12, 2>(a, b, m, 0, rows, c0, k, co, accumulate);
        let r0 = run::<4, 2>(a, b, m, r0, rows, c0, k, co, accumulate);
        run::<1, 2>(a, b, m, r0, rows, c0, k, co, accumulate);
        c0 += 2 * LANES;
    }
    if co - c0 >= LANES {
        let r0 = run::<12, 1>(a, b, m, 0, rows, c0, k, co, accumulate);
        let r0 = run::<4, 1>(a, b, m, r0, rows, c0, k, co, accumulate);
        run::<1, 1>(a, b, m, r0, rows, c0, k, co, accumulate);
    }
}

/// Panels of `R` rows from `r0` while whole ones fit; returns the first row left.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn run<const R: usize, const NV: usize>(
    a: Lhs<'_>,
    b: Rhs<'_>,
    m: &mut [f32],
    mut r0: usize,
    rows: usize,
    c0: usize,
    k: usize,
    co: usize,
    accumulate: bool,
) -> usize {
    while r0 + R <= rows {
        panel::<R, NV>(a, b, m, r0, c0, k, co, accumulate);
        r0 += R;
    }
    r0
}

/// Rows `r0..r0 + R`, channels `c0..c0 + NV * LANES` of `m`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panel<const R: usize, const NV: usize>(
    a: Lhs<'_>,
    b: Rhs<'_>,
    m: &mut [f32],
    r0: usize,
    c0: usize,
    k: usize,
    co: usize,
    accumulate: bool,
) {
    let mut acc = [[[0.0f32; LANES]; NV]; R];
    if accumulate {
        for r in 0..R {
            for j in 0..NV {
                acc[r][j].copy_from_slice(&m[(r0 + r) * co + c0 + j * LANES..][..LANES]);
            }
        }
    }
    for kk in 0..k {
        let bk = &b.data[kk * b.stride + c0..][..NV * LANES];
        let mut bv = [[0.0f32; LANES]; NV];
        for j in 0..NV {
            bv[j].copy_from_slice(&bk[j * LANES..(j + 1) * LANES]);
        }
        for r in 0..R {
            let x = a.data[(r0 + r) * a.row + kk * a.step];
            for j in 0..NV {
                for l in 0..LANES {
                    acc[r][j][l] = x.mul_add(bv[j][l], acc[r][j][l]);
                }
            }
        }
    }
    for r in 0..R {
        for j in 0..NV {
            m[(r0 + r) * co + c0 + j * LANES..][..LANES].copy_from_slice(&acc[r][j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, a: usize, b: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * a) % b) as f32 * 0.07 - 0.5).collect()
    }

    /// Row counts that leave every smaller panel something to do, and every column block.
    #[test]
    fn match_f64_sums_for_every_panel_shape() {
        for co in [16, 32, 48, 64, 80, 112] {
            for rows in [1, 5, 7, 17, 24, 29] {
                let k = 19;
                let (v, u) = (values(rows * k, 37, 23), values(k * co, 13, 17));
                let mut m = vec![f32::NAN; rows * co];
                multiply(&v, &u, co, &mut m, rows, k, co);
                let (vt, start) = (values(k * rows, 29, 31), values(rows * co, 11, 7));
                let mut acc = start.clone();
                accumulate_transposed(&vt, &u, &mut acc, rows, k, co);
                for r in 0..rows {
                    for c in 0..co {
                        let want: f64 = (0..k).map(|i| v[r * k + i] as f64 * u[i * co + c] as f64).sum();
                        assert!((m[r * co + c] as f64 - want).abs() < 1e-4, "co {co} rows {rows} [{r}][{c}]: {} vs {want}", m[r * co + c]);
                        let want: f64 =
                            start[r * co + c] as f64 + (0..k).map(|i| vt[i * rows + r] as f64 * u[i * co + c] as f64).sum::<f64>();
                        assert!((acc[r * co + c] as f64 - want).abs() < 1e-4, "transposed, co {co} rows {rows} [{r}][{c}]");
                    }
                }
            }
        }
    }
}
