//! Optimizer updates, element-wise over one parameter tensor.

use rayon::prelude::*;

const BLOCK: usize = 1 << 14;

/// Plain SGD with L2 weight decay folded into the gradient.
pub fn sgd(param: &mut [f32], grad: &[f32], lr: f32, weight_decay: f32) {
    param.par_chunks_mut(BLOCK).zip(grad.par_chunks(BLOCK)).for_each(|(p, g)| sgd_block(p, g, lr, weight_decay));
}

vectorized! {
    fn sgd_block(param: &mut [f32], grad: &[f32], lr: f32, weight_decay: f32) {
        for (p, g) in param.iter_mut().zip(grad) {
            *p -= lr * (g + weight_decay * *p);
        }
    }
}

/// SGD with (optionally Nesterov) momentum, PyTorch's formulation: `v = mu v + g`.
pub fn momentum(param: &mut [f32], grad: &[f32], velocity: &mut [f32], lr: f32, mu: f32, nesterov: bool, weight_decay: f32) {
    param
        .par_chunks_mut(BLOCK)
        .zip(grad.par_chunks(BLOCK))
        .zip(velocity.par_chunks_mut(BLOCK))
        .for_each(|((p, g), v)| momentum_block(p, g, v, lr, mu, nesterov, weight_decay));
}

vectorized! {
    fn momentum_block(param: &mut [f32], grad: &[f32], velocity: &mut [f32], lr: f32, mu: f32, nesterov: bool, weight_decay: f32) {
        for ((p, g), v) in param.iter_mut().zip(grad).zip(velocity.iter_mut()) {
            let g = g + weight_decay * *p;
            *v = mu * *v + g;
            *p -= lr * if nesterov { g + mu * *v } else { *v };
        }
    }
}

/// One Adam step's scalars; `decoupled` selects AdamW's weight decay.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub epsilon: f32,
    pub weight_decay: f32,
    pub decoupled: bool,
    /// `1 - beta1^t` and `1 - beta2^t` for step `t` (from 1).
    pub bias1: f32,
    pub bias2: f32,
}

pub fn adam(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    param
        .par_chunks_mut(BLOCK)
        .zip(grad.par_chunks(BLOCK))
        .zip(m.par_chunks_mut(BLOCK))
        .zip(v.par_chunks_mut(BLOCK))
        .for_each(|(((p, g), m), v)| adam_block(p, g, m, v, s));
}

vectorized! {
    fn adam_block(param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
        let step = s.lr / s.bias1;
        let inv_sqrt_bias2 = 1.0 / s.bias2.sqrt();
        let decay = if s.decoupled { 1.0 - s.lr * s.weight_decay } else { 1.0 };
        let l2 = if s.decoupled { 0.0 } else { s.weight_decay };
        for (((p, g), m), v) in param.iter_mut().zip(grad).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g + l2 * *p;
            *p *= decay;
            *m = s.beta1 * *m + (1.0 - s.beta1) * g;
            *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
            *p -= step * *m / (v.sqrt() * inv_sqrt_bias2 + s.epsilon);
        }
    }
}
