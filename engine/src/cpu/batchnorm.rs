//! Batch normalisation over a `[rows, channels]` activation (the formulas are in
//! shaders/batchnorm.wgsl). Per-channel sums run over fixed row chunks whose partials are added
//! in chunk order, so results depend only on the thread count.

use rayon::prelude::*;

use super::{chunk_count, chunk_size};
use crate::device::CpuDevice;

/// Per-channel sums over all rows into `out` (`channels` long): `add(row, acc)` adds one row into `acc`.
fn channel_sums(d: &CpuDevice, rows: usize, channels: usize, out: &mut [f32], add: impl Fn(usize, &mut [f32]) + Sync) {
    let chunks = chunk_count(rows);
    let per = chunk_size(rows);
    d.with_scratch(chunks, channels, |partials| {
        partials.par_iter_mut().enumerate().for_each(|(ci, acc)| {
            let acc = &mut acc[..channels];
            acc.fill(0.0);
            for r in ci * per..((ci + 1) * per).min(rows) {
                add(r, acc);
            }
        });
        out[..channels].fill(0.0);
        for acc in partials.iter() {
            for (o, a) in out[..channels].iter_mut().zip(acc) {
                *o += a;
            }
        }
    });
}

/// The batch's mean and `1 / sqrt(var + eps)` per channel into `saved` (`[mean; inv_std]`), and
/// the running averages moved towards them.
#[allow(clippy::too_many_arguments)]
pub fn statistics(
    d: &CpuDevice,
    rows: usize,
    channels: usize,
    x: &[f32],
    momentum: f32,
    epsilon: f32,
    saved: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
) {
    let (mean, inv_std) = saved[..2 * channels].split_at_mut(channels);
    channel_sums(d, rows, channels, mean, |r, acc| {
        for (a, v) in acc.iter_mut().zip(&x[r * channels..(r + 1) * channels]) {
            *a += v;
        }
    });
    mean.iter_mut().for_each(|m| *m /= rows as f32);
    let means: &[f32] = mean;
    channel_sums(d, rows, channels, inv_std, |r, acc| {
        for ((a, v), m) in acc.iter_mut().zip(&x[r * channels..(r + 1) * channels]).zip(means) {
            let dev = v - m;
            *a += dev * dev;
        }
    });
    for c in 0..channels {
        let variance = inv_std[c] / rows as f32;
        inv_std[c] = 1.0 / (variance + epsilon).sqrt();
        running_mean[c] = momentum * running_mean[c] + (1.0 - momentum) * mean[c];
        running_var[c] = momentum * running_var[c] + (1.0 - momentum) * variance;
    }
}

/// `y = (x - mean) * inv_std * gamma + beta`, per channel.
#[allow(clippy::too_many_arguments)]
pub fn normalize(rows: usize, channels: usize, x: &[f32], gamma: &[f32], beta: &[f32], mean: &[f32], inv_std: &[f32], y: &mut [f32]) {
    y[..rows * channels].par_chunks_mut(channels).zip(x[..rows * channels].par_chunks(channels)).for_each(|(yr, xr)| {
        for c in 0..channels {
            yr[c] = (xr[c] - mean[c]) * inv_std[c] * gamma[c] + beta[c];
        }
    });
}

/// [`normalize`] with the running averages (inference).
#[allow(clippy::too_many_arguments)]
pub fn normalize_running(
    d: &CpuDevice,
    rows: usize,
    channels: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    epsilon: f32,
    y: &mut [f32],
) {
    d.with_scratch(1, channels, |inv| {
        let inv_std = &mut inv[0][..channels];
        for (i, v) in inv_std.iter_mut().zip(running_var) {
            *i = 1.0 / (v + epsilon).sqrt();
        }
        normalize(rows, channels, x, gamma, beta, running_mean, inv_std, y);
    });
}

/// `dgamma = sum dy * xhat`, `dbeta = sum dy`, per channel.
#[allow(clippy::too_many_arguments)]
pub fn backward_params(
    d: &CpuDevice,
    rows: usize,
    channels: usize,
    x: &[f32],
    dy: &[f32],
    saved: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let (mean, inv_std) = saved[..2 * channels].split_at(channels);
    channel_sums(d, rows, channels, dgamma, |r, acc| {
        let (xr, dr) = (&x[r * channels..(r + 1) * channels], &dy[r * channels..(r + 1) * channels]);
        for c in 0..channels {
            acc[c] += dr[c] * ((xr[c] - mean[c]) * inv_std[c]);
        }
    });
    channel_sums(d, rows, channels, dbeta, |r, acc| {
        for (a, g) in acc.iter_mut().zip(&dy[r * channels..(r + 1) * channels]) {
            *a += g;
        }
    });
}

/// `dx = gamma * inv_std * (dy - dbeta / rows - xhat * dgamma / rows)`.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    rows: usize,
    channels: usize,
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    saved: &[f32],
    dgamma: &[f32],
    dbeta: &[f32],
    dx: &mut [f32],
) {
    let (mean, inv_std) = saved[..2 * channels].split_at(channels);
    let n = rows as f32;
    let len = rows * channels;
    dx[..len].par_chunks_mut(channels).zip(x[..len].par_chunks(channels).zip(dy[..len].par_chunks(channels))).for_each(
        |(dxr, (xr, dr))| {
            for c in 0..channels {
                let xhat = (xr[c] - mean[c]) * inv_std[c];
                dxr[c] = gamma[c] * inv_std[c] * (dr[c] - dbeta[c] / n - xhat * dgamma[c] / n);
            }
        },
    );
}
