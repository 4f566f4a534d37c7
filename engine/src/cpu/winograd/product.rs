//! The point products of a Winograd tile group, `M = V U` (`V`: rows x ci, `U`: ci x co, both
//! row-major, `co` a multiple of 16): a panel of rows times up to four 16-lane vectors of output
//! channels accumulates in registers, each product as one fused multiply-add in `k` order. `U`
//! is read where it lies (no packing); every output row depends only on its own `V` row.

/// Output channels per vector (one AVX-512 register).
const LANES: usize = 16;

/// Every panel height divides this: `rows` must be a multiple of it.
pub const ROW_MULTIPLE: usize = 12;

/// Whether `co` output channels fit the kernel (whole vectors).
pub fn applies(co: usize) -> bool {
    co > 0 && co.is_multiple_of(LANES)
}

vectorized! {
    /// `m (rows x co) = v (rows x ci) * u (ci x co)`.
    pub fn multiply(v: &[f32], u: &[f32], m: &mut [f32], rows: usize, ci: usize, co: usize) {
        debug_assert!(rows.is_multiple_of(ROW_MULTIPLE) && applies(co));
        let (v, u, m) = (&v[..rows * ci], &u[..ci * co], &mut m[..rows * co]);
        let mut c0 = 0;
        while co - c0 >= 4 * LANES {
            for r0 in (0..rows).step_by(6) {
                panel::<6, 4>(v, u, m, r0, c0, ci, co);
            }
            c0 += 4 * LANES;
        }
        if co - c0 >= 2 * LANES {
            for r0 in (0..rows).step_by(12) {
                panel::<12, 2>(v, u, m, r0, c0, ci, co);
            }
            c0 += 2 * LANES;
        }
        if co - c0 >= LANES {
            for r0 in (0..rows).step_by(12) {
                panel::<12, 1>(v, u, m, r0, c0, ci, co);
            }
        }
    }
}

/// Rows `r0..r0 + R`, channels `c0..c0 + NV * LANES` of `m`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn panel<const R: usize, const NV: usize>(v: &[f32], u: &[f32], m: &mut [f32], r0: usize, c0: usize, ci: usize, co: usize) {
    let mut acc = [[[0.0f32; LANES]; NV]; R];
    let v = &v[r0 * ci..(r0 + R) * ci];
    for k in 0..ci {
        let uk = &u[k * co + c0..][..NV * LANES];
        let mut ub = [[0.0f32; LANES]; NV];
        for j in 0..NV {
            ub[j].copy_from_slice(&uk[j * LANES..(j + 1) * LANES]);
        }
        for r in 0..R {
            let a = v[r * ci + k];
            for j in 0..NV {
                for l in 0..LANES {
                    acc[r][j][l] = a.mul_add(ub[j][l], acc[r][j][l]);
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

    #[test]
    fn matches_f64_sums_for_every_panel_width() {
        for co in [16, 32, 48, 64, 80, 112, 128] {
            let (rows, ci) = (24, 19);
            let v: Vec<f32> = (0..rows * ci).map(|i| ((i * 37) % 23) as f32 * 0.11 - 1.2).collect();
            let u: Vec<f32> = (0..ci * co).map(|i| ((i * 13) % 17) as f32 * 0.07 - 0.5).collect();
            let mut m = vec![f32::NAN; rows * co];
            multiply(&v, &u, &mut m, rows, ci, co);
            for r in 0..rows {
                for c in 0..co {
                    let want: f64 = (0..ci).map(|k| v[r * ci + k] as f64 * u[k * co + c] as f64).sum();
                    assert!((m[r * co + c] as f64 - want).abs() < 1e-4, "co {co}, [{r}][{c}]: {} vs {want}", m[r * co + c]);
                }
            }
        }
    }
}
