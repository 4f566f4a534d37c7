//! Optimizer updates, element-wise over one parameter tensor.

use rayon::prelude::*;

const BLOCK: usize = 1 << 14;

/// Plain SGD with L2 weight decay folded into the gradient.
pub fn sgd(param: &mut [f32], grad: &[f32], lr: f32, weight_decay: f32) {
    param.par_chunks_mut(BLOCK).zip(grad.par_chunks(BLOCK)).for_each(|(p, g)| {
        for (p, g) in p.iter_mut().zip(g) {
            *p -= lr * (g + weight_decay * *p);
        }
    });
}

/// SGD with (optionally Nesterov) momentum, PyTorch's formulation: `v = mu v + g`.
pub fn momentum(param: &mut [f32], grad: &[f32], velocity: &mut [f32], lr: f32, mu: f32, nesterov: bool, weight_decay: f32) {
    param.par_chunks_mut(BLOCK).zip(grad.par_chunks(BLOCK)).zip(velocity.par_chunks_mut(BLOCK)).for_each(|((p, g), v)| {
        for ((p, g), v) in p.iter_mut().zip(g).zip(v.iter_mut()) {
            let g = g + weight_decay * *p;
            *v = mu * *v + g;
            *p -= lr * if nesterov { g + mu * *v } else { *v };
        }
    });
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
    let step = s.lr / s.bias1;
    let inv_sqrt_bias2 = 1.0 / s.bias2.sqrt();
    param
        .par_chunks_mut(BLOCK)
        .zip(grad.par_chunks(BLOCK))
        .zip(m.par_chunks_mut(BLOCK))
        .zip(v.par_chunks_mut(BLOCK))
        .for_each(|(((p, g), m), v)| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = if s.decoupled {
                    *p -= s.lr * s.weight_decay * *p;
                    *g
                } else {
                    g + s.weight_decay * *p
                };
                *m = s.beta1 * *m + (1.0 - s.beta1) * g;
                *v = s.beta2 * *v + (1.0 - s.beta2) * g * g;
                *p -= step * *m / (v.sqrt() * inv_sqrt_bias2 + s.epsilon);
            }
        });
}
