//! Dispatcher for shaders/softmax_xent.wgsl.

use super::buffers::BufRef;
use super::context::GpuContext;
use super::kernels::Kernel;
use super::params::{Rows, u};

/// Writes `dlogits` and `[loss sum, correct count]` into pair `slot` of `stats`, against targets
/// smoothed by `label_smoothing`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_backward(
    ctx: &GpuContext,
    n: usize,
    classes: usize,
    label_smoothing: f32,
    logits: BufRef,
    labels: BufRef,
    dlogits: BufRef,
    stats: BufRef,
    slot: usize,
) {
    let p = Rows { n: u(n), classes: u(classes), stats_slot: u(slot), label_smoothing };
    ctx.dispatch(Kernel::Xent, &p, &[(1, logits), (2, labels), (3, dlogits), (4, stats)], 1);
}

/// Probabilities, then classes, into `outputs`.
pub(crate) fn predict(ctx: &GpuContext, n: usize, classes: usize, logits: BufRef, outputs: BufRef) {
    let p = Rows { n: u(n), classes: u(classes), stats_slot: 0, label_smoothing: 0.0 };
    ctx.dispatch(Kernel::Predict, &p, &[(1, logits), (5, outputs)], n.div_ceil(64));
}
