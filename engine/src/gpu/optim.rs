//! Dispatcher for shaders/optim.wgsl.

use super::buffers::BufRef;
use super::context::GpuContext;
use super::kernels::Kernel;
use super::params::{Update, u};
use crate::backend::UpdateRule;

/// Applies `rule` to `param` with `grad` and the rule's state buffers (none, velocity, or m and v).
pub(crate) fn update(ctx: &GpuContext, rule: UpdateRule, len: usize, param: BufRef, grad: BufRef, state: &[BufRef]) {
    let groups = len.div_ceil(256);
    let base = Update { len: u(len), ..Default::default() };
    match (rule, state) {
        (UpdateRule::Sgd { lr, weight_decay }, []) => {
            ctx.dispatch(Kernel::Sgd, &Update { lr, weight_decay, ..base }, &[(1, param), (2, grad)], groups);
        }
        (UpdateRule::Momentum { lr, momentum, nesterov, weight_decay }, [v]) => {
            let params = Update { variant: nesterov as u32, lr, weight_decay, beta1: momentum, ..base };
            ctx.dispatch(Kernel::Momentum, &params, &[(1, param), (2, grad), (3, *v)], groups);
        }
        (UpdateRule::Adam(s), [m, v]) => {
            let params = Update {
                variant: s.decoupled as u32,
                lr: s.lr,
                weight_decay: s.weight_decay,
                beta1: s.beta1,
                beta2: s.beta2,
                epsilon: s.epsilon,
                bias1: s.bias1,
                bias2: s.bias2,
                ..base
            };
            ctx.dispatch(Kernel::Adam, &params, &[(1, param), (2, grad), (3, *m), (4, *v)], groups);
        }
        (rule, state) => panic!("optimizer state of {} tensors does not fit {rule:?}", state.len()),
    }
}
