//! Dispatcher for shaders/batchnorm.wgsl: training forward (statistics, then normalisation),
//! inference forward, and the backward (parameter gradients, then the input gradient).

use super::buffers::BufRef;
use super::context::GpuContext;
use super::kernels::Kernel;
use super::params::{self, Norm, u};
use crate::backend::{Epilogue, GradMask, NormGeometry, NormParams};

/// Channels per workgroup of the per-channel reductions (`LANES` in the WGSL).
const LANES: usize = 16;

fn params(g: &NormGeometry, rows: usize, finish: &Epilogue) -> Norm {
    let (act, act_alpha) = finish.activation_code();
    let (dropout, drop_base, drop_threshold, drop_scale) = params::dropout_fields(finish);
    Norm {
        rows: u(rows),
        channels: u(g.channels),
        momentum: g.momentum,
        epsilon: g.epsilon,
        training: 0,
        act,
        act_alpha,
        dropout,
        drop_base,
        drop_threshold,
        drop_scale,
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_training(
    ctx: &GpuContext,
    g: &NormGeometry,
    rows: usize,
    x: BufRef,
    p: &NormParams,
    saved: BufRef,
    epilogue: &Epilogue,
    y: BufRef,
) {
    let norm = Norm { training: 1, ..params(g, rows, epilogue) };
    let (mean, var) = (p.running_mean.gpu(), p.running_var.gpu());
    ctx.dispatch(Kernel::NormStatistics, &norm, &[(1, x), (5, mean), (6, var), (7, saved)], g.channels.div_ceil(LANES));
    let bindings = [(1, x), (2, y), (3, p.gamma.gpu()), (4, p.beta.gpu()), (5, mean), (6, var), (7, saved)];
    ctx.dispatch(Kernel::Normalize, &norm, &bindings, (rows * g.channels).div_ceil(256));
}

pub(crate) fn forward_inference(
    ctx: &GpuContext,
    g: &NormGeometry,
    rows: usize,
    x: BufRef,
    p: &NormParams,
    epilogue: &Epilogue,
    y: BufRef,
) {
    let norm = params(g, rows, epilogue);
    let unused = BufRef::whole(&ctx.buffers.unused_output);
    let bindings =
        [(1, x), (2, y), (3, p.gamma.gpu()), (4, p.beta.gpu()), (5, p.running_mean.gpu()), (6, p.running_var.gpu()), (7, unused)];
    ctx.dispatch(Kernel::Normalize, &norm, &bindings, (rows * g.channels).div_ceil(256));
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    ctx: &GpuContext,
    g: &NormGeometry,
    rows: usize,
    x: BufRef,
    dy: BufRef,
    gamma: BufRef,
    saved: BufRef,
    (dgamma, dbeta): (BufRef, BufRef),
    mask: Option<&GradMask>,
    dx: Option<BufRef>,
) {
    let plain = params(g, rows, &Epilogue::default());
    ctx.dispatch(Kernel::NormBackwardParams, &plain, &[(1, x), (7, saved), (8, dy), (9, dgamma), (10, dbeta)], g.channels.div_ceil(LANES));
    let Some(dx) = dx else { return };
    let (norm, act_in) = match mask {
        Some(m) => (params(g, rows, &m.epilogue), if m.epilogue.activation.is_some() { m.activation.gpu() } else { x }),
        None => (plain, x),
    };
    let bindings = [(1, x), (2, dx), (3, gamma), (7, saved), (8, dy), (9, dgamma), (10, dbeta), (11, act_in)];
    ctx.dispatch(Kernel::NormBackwardInput, &norm, &bindings, (rows * g.channels).div_ceil(256));
}
