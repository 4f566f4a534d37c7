//! Optimizers (SGD, momentum, Adam, AdamW) with their per-parameter state and gradients, and
//! learning-rate schedules.

use crate::backend::UpdateRule;
use crate::cpu::optim::AdamStep;
use crate::device::Device;
use crate::error::Result;
use crate::model::config::{DecayConfig, OptimizerConfig, ScheduleConfig};
use crate::model::network::check_named_tensors;
use crate::model::{Network, Param};
use crate::tensor::{HostTensor, Tensor};

pub struct Optimizer {
    config: OptimizerConfig,
    weight_decay: f32,
    /// The parameters' names, which name their state in a checkpoint.
    param_names: Vec<String>,
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
        let param_names = network.params().iter().map(|p| p.name.clone()).collect();
        Self { config: config.clone(), weight_decay, param_names, grads, state, arenas, steps: 0 }
    }

    /// Updates applied so far (Adam's bias correction depends on it).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Names of the per-parameter state tensors: momentum's velocity, Adam's two moments.
    fn slot_names(&self) -> &'static [&'static str] {
        match self.config {
            OptimizerConfig::Sgd => &[],
            OptimizerConfig::Momentum { .. } => &["velocity"],
            OptimizerConfig::Adam { .. } | OptimizerConfig::Adamw { .. } => &["m", "v"],
        }
    }

    /// The state a checkpoint saves to continue exactly: the update count and, per parameter,
    /// its state tensors named `<parameter>.<slot>` (e.g. `conv1.weight.m`).
    pub fn export_state(&self) -> OptimizerState {
        let mut tensors = Vec::new();
        for (name, slots) in self.param_names.iter().zip(&self.state) {
            for (slot, t) in self.slot_names().iter().zip(slots) {
                tensors.push((format!("{name}.{slot}"), t.shape().to_vec(), t.to_host()));
            }
        }
        OptimizerState { steps: self.steps, tensors }
    }

    /// Restores what [`Self::export_state`] saved, for the same parameters and optimizer kind;
    /// an error names the first tensor that differs.
    pub fn import_state(&mut self, state: OptimizerState) -> Result<()> {
        let mut expected = Vec::new();
        for (name, slots) in self.param_names.iter().zip(&self.state) {
            for (slot, t) in self.slot_names().iter().zip(slots) {
                expected.push((format!("{name}.{slot}"), t.shape().to_vec()));
            }
        }
        check_named_tensors("optimizer state", &expected, &state.tensors)?;
        let targets = self.state.iter_mut().flat_map(|slots| slots.iter_mut());
        for (t, (name, _, values)) in targets.zip(state.tensors) {
            t.write_host(&name, &values)?;
        }
        self.steps = state.steps;
        Ok(())
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

/// An optimizer's state in a checkpoint: updates applied and per-parameter tensors
/// `(name, shape, values)`.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState {
    pub steps: u64,
    pub tensors: Vec<HostTensor>,
}

/// Learning rate at each step of a run: a linear warm-up (if any), then the decay, which starts
/// when the warm-up ends (its epochs and its whole run counted from there).
#[derive(Clone, Debug)]
pub struct LrSchedule {
    base: f32,
    decay: DecayConfig,
    steps_per_epoch: usize,
    warmup_steps: usize,
    /// Steps after the warm-up (at least 1).
    decay_steps: usize,
}

impl LrSchedule {
    pub fn new(base: f32, config: &ScheduleConfig, steps_per_epoch: usize, epochs: usize) -> Self {
        let steps_per_epoch = steps_per_epoch.max(1);
        let total_steps = steps_per_epoch * epochs.max(1);
        let warmup_steps = match config.warmup_steps {
            0 => (config.warmup_epochs as f64 * steps_per_epoch as f64).round() as usize,
            steps => steps,
        }
        .min(total_steps);
        let decay_steps = (total_steps - warmup_steps).max(1);
        Self { base, decay: config.decay.clone(), steps_per_epoch, warmup_steps, decay_steps }
    }

    /// The rate for step `step` (from 0).
    pub fn at(&self, step: usize) -> f32 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f32 / self.warmup_steps as f32;
        }
        let step = step - self.warmup_steps;
        let epoch_progress = step as f32 / self.steps_per_epoch as f32;
        match self.decay {
            DecayConfig::Constant {} => self.base,
            DecayConfig::Exponential { decay_rate, decay_epochs } => self.base * decay_rate.powf(epoch_progress / decay_epochs),
            DecayConfig::Step { decay_rate, step_epochs } => {
                self.base * decay_rate.powi((step / self.steps_per_epoch / step_epochs) as i32)
            }
            DecayConfig::Cosine { min_learning_rate } => {
                let t = (step as f32 / self.decay_steps as f32).min(1.0);
                min_learning_rate + 0.5 * (self.base - min_learning_rate) * (1.0 + (std::f32::consts::PI * t).cos())
            }
            DecayConfig::Onecycle { pct_start, div_factor, final_div_factor } => {
                let initial = self.base / div_factor;
                let last = self.decay_steps as f32 - 1.0;
                let peak = (pct_start * self.decay_steps as f32 - 1.0).clamp(0.0, last);
                let step = step as f32;
                if step <= peak && peak > 0.0 {
                    cosine_anneal(initial, self.base, step / peak)
                } else {
                    let down = last - peak;
                    let t = if down > 0.0 { ((step - peak) / down).min(1.0) } else { 1.0 };
                    cosine_anneal(self.base, initial / final_div_factor, t)
                }
            }
        }
    }
}

/// From `start` (t = 0) to `end` (t = 1) along half a cosine.
fn cosine_anneal(start: f32, end: f32, t: f32) -> f32 {
    end + 0.5 * (start - end) * (1.0 + (std::f32::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(decay: DecayConfig, steps_per_epoch: usize, epochs: usize) -> LrSchedule {
        LrSchedule::new(0.1, &decay.into(), steps_per_epoch, epochs)
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1e-3)
    }

    #[test]
    fn schedules() {
        let c = schedule(DecayConfig::Constant {}, 10, 3);
        assert_eq!(c.at(25), 0.1);
        let s = schedule(DecayConfig::Step { decay_rate: 0.5, step_epochs: 1 }, 10, 3);
        assert_eq!((s.at(9), s.at(10), s.at(25)), (0.1, 0.05, 0.025));
        let e = schedule(DecayConfig::Exponential { decay_rate: 0.5, decay_epochs: 1.0 }, 10, 3);
        assert!((e.at(5) - 0.1 * 0.5f32.sqrt()).abs() < 1e-6);
        let cos = schedule(DecayConfig::Cosine { min_learning_rate: 0.0 }, 10, 2);
        assert!((cos.at(0) - 0.1).abs() < 1e-7 && (cos.at(10) - 0.05).abs() < 1e-6 && cos.at(20).abs() < 1e-7);
    }

    #[test]
    fn linear_warmup_then_the_decay_from_its_start() {
        let warm = |decay: DecayConfig, warmup_epochs: f32, warmup_steps: usize| {
            LrSchedule::new(0.1, &ScheduleConfig { decay, warmup_epochs, warmup_steps }, 10, 4)
        };
        let c = warm(DecayConfig::Constant {}, 1.0, 0);
        let ramp: Vec<f32> = (0..10).map(|s| c.at(s)).collect();
        assert!(ramp.windows(2).all(|w| w[0] < w[1]), "rises linearly: {ramp:?}");
        assert!(close(c.at(0), 0.01) && close(c.at(4), 0.05) && close(c.at(9), 0.1) && c.at(10) == 0.1 && c.at(39) == 0.1);
        // The same in steps, and half an epoch rounds to 5 steps.
        let by_steps = warm(DecayConfig::Constant {}, 0.0, 10);
        assert!((0..40).all(|s| by_steps.at(s) == c.at(s)));
        assert!(close(warm(DecayConfig::Constant {}, 0.5, 0).at(4), 0.1));
        // Cosine over the 30 steps after the warm-up: the peak at its start, half way at 15, min at the end.
        let cos = warm(DecayConfig::Cosine { min_learning_rate: 0.001 }, 1.0, 0);
        assert!(close(cos.at(10), 0.1) && close(cos.at(25), 0.0505) && close(cos.at(40), 0.001));
        // Step decay counts epochs from the end of the warm-up.
        let step = warm(DecayConfig::Step { decay_rate: 0.5, step_epochs: 1 }, 1.0, 0);
        assert_eq!((step.at(19), step.at(20), step.at(30)), (0.1, 0.05, 0.025));
        let exp = warm(DecayConfig::Exponential { decay_rate: 0.5, decay_epochs: 2.0 }, 0.0, 5);
        assert!(close(exp.at(25), 0.05));
        // A warm-up as long as the run is all warm-up.
        let all = LrSchedule::new(0.1, &ScheduleConfig { decay: DecayConfig::Constant {}, warmup_epochs: 0.0, warmup_steps: 1000 }, 10, 2);
        assert!(close(all.at(19), 0.1 * 20.0 / 20.0) && close(all.at(9), 0.05));
    }

    #[test]
    fn one_cycle_rises_to_the_peak_then_anneals_to_the_floor() {
        let one = schedule(DecayConfig::Onecycle { pct_start: 0.25, div_factor: 25.0, final_div_factor: 1e4 }, 10, 4);
        let lrs: Vec<f32> = (0..40).map(|s| one.at(s)).collect();
        // PyTorch's OneCycleLR: the peak at step pct_start * total - 1, the floor at the last step.
        assert!(close(lrs[0], 0.1 / 25.0), "{}", lrs[0]);
        assert!(close(lrs[9], 0.1), "{}", lrs[9]);
        assert!(close(lrs[39], 0.1 / 25.0 / 1e4), "{}", lrs[39]);
        assert!(lrs[..10].windows(2).all(|w| w[0] < w[1]) && lrs[9..].windows(2).all(|w| w[0] > w[1]), "{lrs:?}");
        assert!(lrs.iter().all(|&l| l.is_finite() && l > 0.0 && l <= 0.1));
        // Runs too short for the phases still give finite rates within the range.
        for (spe, epochs, pct) in [(1, 1, 0.3), (2, 1, 0.9), (1, 3, 0.01)] {
            let s = LrSchedule::new(
                0.1,
                &DecayConfig::Onecycle { pct_start: pct, div_factor: 10.0, final_div_factor: 10.0 }.into(),
                spe,
                epochs,
            );
            for step in 0..spe * epochs + 2 {
                let lr = s.at(step);
                assert!(lr.is_finite() && (0.0..=0.1).contains(&lr), "{spe}x{epochs} pct {pct}: step {step} lr {lr}");
            }
        }
    }
}
