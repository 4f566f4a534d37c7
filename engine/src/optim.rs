//! Optimizers (SGD, momentum, Adam, AdamW) with their per-parameter state and gradients, and
//! learning-rate schedules.

use crate::backend::UpdateRule;
use crate::cpu::optim::AdamStep;
use crate::device::Device;
use crate::model::config::{OptimizerConfig, ScheduleConfig};
use crate::model::{Network, Param};
use crate::tensor::Tensor;

pub struct Optimizer {
    config: OptimizerConfig,
    weight_decay: f32,
    grads: Vec<Tensor>,
    state: Vec<Vec<Tensor>>,
    /// On a GPU: gradients and each state laid out as the parameters' arena, so one dispatch
    /// updates everything.
    arenas: Option<(Tensor, Vec<Tensor>)>,
    steps: u64,
}

impl Optimizer {
    /// Gradients and state for every parameter of `network`, allocated once.
    pub fn new(network: &Network, config: &OptimizerConfig, weight_decay: f32) -> Self {
        let d = network.device();
        let slots = match config {
            OptimizerConfig::Sgd => 0,
            OptimizerConfig::Momentum { .. } => 1,
            OptimizerConfig::Adam { .. } | OptimizerConfig::Adamw { .. } => 2,
        };
        let shapes: Vec<Vec<usize>> = network.params().iter().map(|p| p.value.shape().to_vec()).collect();
        let (grads, grad_arena) = Tensor::zeros_packed(d, &shapes);
        let mut state: Vec<Vec<Tensor>> = shapes.iter().map(|_| Vec::with_capacity(slots)).collect();
        let mut state_arenas = Vec::with_capacity(slots);
        for _ in 0..slots {
            let (tensors, arena) = Tensor::zeros_packed(d, &shapes);
            state.iter_mut().zip(tensors).for_each(|(s, t)| s.push(t));
            state_arenas.extend(arena);
        }
        let arenas = grad_arena.map(|g| (g, state_arenas));
        Self { config: config.clone(), weight_decay, grads, state, arenas, steps: 0 }
    }

    pub fn grads_mut(&mut self) -> &mut [Tensor] {
        &mut self.grads
    }

    pub fn grads(&self) -> &[Tensor] {
        &self.grads
    }

    /// Applies the current gradients to `params` with learning rate `lr`: one update over the
    /// whole arena where the parameters have one (`param_arena`, laid out as the gradients').
    pub fn apply(&mut self, device: &Device, params: &mut [Param], param_arena: Option<&mut Tensor>, lr: f32) {
        self.steps += 1;
        let wd = self.weight_decay;
        let t = self.steps as i32;
        let rule = match self.config {
            OptimizerConfig::Sgd => UpdateRule::Sgd { lr, weight_decay: wd },
            OptimizerConfig::Momentum { momentum, nesterov } => UpdateRule::Momentum { lr, momentum, nesterov, weight_decay: wd },
            OptimizerConfig::Adam { beta1, beta2, epsilon } | OptimizerConfig::Adamw { beta1, beta2, epsilon } => {
                UpdateRule::Adam(AdamStep {
                    lr,
                    beta1,
                    beta2,
                    epsilon,
                    weight_decay: wd,
                    decoupled: matches!(self.config, OptimizerConfig::Adamw { .. }),
                    bias1: 1.0 - beta1.powi(t),
                    bias2: 1.0 - beta2.powi(t),
                })
            }
        };
        if let (Some(param_arena), Some((grad_arena, state_arenas))) = (param_arena, &mut self.arenas) {
            assert_eq!(param_arena.len(), grad_arena.len(), "the parameter and gradient arenas have one layout");
            device.optimizer_update(rule, param_arena, grad_arena, state_arenas);
            return;
        }
        for ((p, g), s) in params.iter_mut().zip(&self.grads).zip(&mut self.state) {
            device.optimizer_update(rule, &mut p.value, g, s);
        }
    }
}

/// Learning rate at each step of a run.
#[derive(Clone, Debug)]
pub struct LrSchedule {
    base: f32,
    config: ScheduleConfig,
    steps_per_epoch: usize,
    total_steps: usize,
}

impl LrSchedule {
    pub fn new(base: f32, config: &ScheduleConfig, steps_per_epoch: usize, epochs: usize) -> Self {
        let steps_per_epoch = steps_per_epoch.max(1);
        Self { base, config: config.clone(), steps_per_epoch, total_steps: steps_per_epoch * epochs.max(1) }
    }

    /// The rate for step `step` (from 0).
    pub fn at(&self, step: usize) -> f32 {
        let epoch_progress = step as f32 / self.steps_per_epoch as f32;
        match self.config {
            ScheduleConfig::Constant => self.base,
            ScheduleConfig::Exponential { decay_rate, decay_epochs } => self.base * decay_rate.powf(epoch_progress / decay_epochs),
            ScheduleConfig::Step { decay_rate, step_epochs } => {
                self.base * decay_rate.powi((step / self.steps_per_epoch / step_epochs) as i32)
            }
            ScheduleConfig::Cosine { min_learning_rate } => {
                let t = (step as f32 / self.total_steps as f32).min(1.0);
                min_learning_rate + 0.5 * (self.base - min_learning_rate) * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let c = LrSchedule::new(0.1, &ScheduleConfig::Constant, 10, 3);
        assert_eq!(c.at(25), 0.1);
        let s = LrSchedule::new(0.1, &ScheduleConfig::Step { decay_rate: 0.5, step_epochs: 1 }, 10, 3);
        assert_eq!((s.at(9), s.at(10), s.at(25)), (0.1, 0.05, 0.025));
        let e = LrSchedule::new(0.1, &ScheduleConfig::Exponential { decay_rate: 0.5, decay_epochs: 1.0 }, 10, 3);
        assert!((e.at(5) - 0.1 * 0.5f32.sqrt()).abs() < 1e-6);
        let cos = LrSchedule::new(0.1, &ScheduleConfig::Cosine { min_learning_rate: 0.0 }, 10, 2);
        assert!((cos.at(0) - 0.1).abs() < 1e-7 && (cos.at(10) - 0.05).abs() < 1e-6 && cos.at(20).abs() < 1e-7);
    }
}
