//! What a run has measured so far: its completed epochs, the loss curve, and the sums of the
//! epoch in progress. A checkpoint carries all of it, so a resumed run reports the whole run.

use engine::model::StepStats;
use serde::{Deserialize, Serialize};

use crate::report::{CurvePoint, EpochRecord};

/// Sums over the current epoch's steps, and over the loss curve's current window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochTally {
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: usize,
    pub window_loss: f64,
    pub window_correct: u64,
    pub window_seen: usize,
    /// Training time of this epoch spent by the runs before a resume.
    pub seconds_before: f64,
    pub input_wait_seconds: f64,
}

impl EpochTally {
    /// Adds steps' stats, in step order.
    pub fn add(&mut self, stats: &[StepStats]) {
        for s in stats {
            self.loss_sum += s.loss_sum as f64;
            self.correct += s.correct as u64;
            self.seen += s.examples;
            self.window_loss += s.loss_sum as f64;
            self.window_correct += s.correct as u64;
            self.window_seen += s.examples;
        }
    }

    /// Closes the window into a curve point (`epoch` from 1; `train_images` per epoch).
    pub fn close_window(&mut self, epoch: usize, step: u64, train_images: usize) -> CurvePoint {
        let point = CurvePoint {
            epoch: epoch as f64 - 1.0 + self.seen as f64 / train_images as f64,
            step,
            loss: self.window_loss / self.window_seen.max(1) as f64,
            accuracy: self.window_correct as f64 / self.window_seen.max(1) as f64,
        };
        (self.window_loss, self.window_correct, self.window_seen) = (0.0, 0, 0);
        point
    }
}

/// The results of a run so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct RunProgress {
    pub epochs: Vec<EpochRecord>,
    pub loss_curve: Vec<CurvePoint>,
    /// The epoch in progress.
    pub current: EpochTally,
    /// Training and evaluation time of the runs before this one (when resumed).
    pub seconds_before: f64,
}
