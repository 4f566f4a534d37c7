//! Dispatcher for shaders/optim.wgsl.

use super::context::GpuContext;
use super::kernels::Kernel;
use crate::backend::UpdateRule;

/// Applies `rule` to `param` with `grad` and the rule's state buffers (none, velocity, or m and v).
pub(crate) fn update(ctx: &GpuContext, rule: UpdateRule, len: usize, param: &wgpu::Buffer, grad: &wgpu::Buffer, state: &[&wgpu::Buffer]) {
    let len32 = u32::try_from(len).expect("parameter counts fit in u32");
    let f = f32::to_bits;
    let groups = len.div_ceil(256);
    match (rule, state) {
        (UpdateRule::Sgd { lr, weight_decay }, []) => {
            let params = [len32, 0, f(lr), f(weight_decay), 0, 0, 0, 0, 0];
            ctx.dispatch(Kernel::Sgd, &params, &[(1, param), (2, grad)], groups);
        }
        (UpdateRule::Momentum { lr, momentum, nesterov, weight_decay }, [v]) => {
            let params = [len32, nesterov as u32, f(lr), f(weight_decay), f(momentum), 0, 0, 0, 0];
            ctx.dispatch(Kernel::Momentum, &params, &[(1, param), (2, grad), (3, v)], groups);
        }
        (UpdateRule::Adam(s), [m, v]) => {
            let params =
                [len32, s.decoupled as u32, f(s.lr), f(s.weight_decay), f(s.beta1), f(s.beta2), f(s.epsilon), f(s.bias1), f(s.bias2)];
            ctx.dispatch(Kernel::Adam, &params, &[(1, param), (2, grad), (3, m), (4, v)], groups);
        }
        (rule, state) => panic!("optimizer state of {} tensors does not fit {rule:?}", state.len()),
    }
}
