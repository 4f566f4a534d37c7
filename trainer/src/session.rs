//! The epochs of a run, from wherever it stands: training steps on batches prepared ahead,
//! the loss curve, an evaluation and a checkpoint after every epoch, and a checkpoint when the
//! run stops early (Ctrl-C, --stop_after_epochs, --stop_after_steps).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use engine::data::Dataset;
use engine::model::{Config, Network, Workspace};
use engine::optim::{LrSchedule, Optimizer};
use engine::predictor::{Evaluation, Inference};
use engine::rng::SplitMix64;

use crate::batches::BatchSource;
use crate::checkpoint::{Checkpoint, DataUsed, FORMAT, FORMAT_VERSION, Meta, Position, StateFile};
use crate::progress::RunProgress;
use crate::report::EpochRecord;
use crate::train::progress_bar;

/// Curve points recorded per epoch for the loss plot.
const CURVE_POINTS_PER_EPOCH: usize = 20;

/// Why a run stopped before its last epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    Asked,
}

pub enum Outcome {
    /// Every epoch trained; the last evaluation (none when the checkpoint resumed from had
    /// already trained them all).
    Finished(Option<Evaluation>),
    Stopped {
        reason: StopReason,
        checkpoint: Option<PathBuf>,
    },
}

/// Where and how many checkpoints a run writes, and what they record besides the training state.
pub struct CheckpointPlan {
    /// `<model_dir>/checkpoints/<run id>`.
    pub run_dir: PathBuf,
    pub run_id: String,
    pub keep: usize,
    pub data: DataUsed,
    pub device: String,
    pub resumed_from: Option<PathBuf>,
}

/// When to stop early, besides Ctrl-C.
#[derive(Clone, Copy, Debug, Default)]
pub struct StopAt {
    pub epochs: Option<usize>,
    pub step: Option<u64>,
}

/// The example order and its generator, as a run goes through its epochs.
pub struct Shuffle {
    pub order: Vec<u32>,
    pub rng: SplitMix64,
    /// The epoch `order` was shuffled for (0: none yet).
    pub shuffled_for: usize,
    /// Order and generator before that shuffle: what a checkpoint at the epoch's start holds.
    before: (Vec<u32>, SplitMix64),
}

impl Shuffle {
    /// At `position`, with the order and generator a checkpoint at that position holds.
    pub fn at(position: Position, order: Vec<u32>, rng: SplitMix64) -> Self {
        let shuffled_for = position.epochs_done + (position.step_in_epoch > 0) as usize;
        Self { before: (order.clone(), rng.clone()), order, rng, shuffled_for }
    }

    fn shuffle_for(&mut self, epoch: usize) {
        if self.shuffled_for < epoch {
            self.before = (self.order.clone(), self.rng.clone());
            self.rng.shuffle(&mut self.order);
            self.shuffled_for = epoch;
        }
    }

    /// The order and generator state a checkpoint at `position` holds.
    fn state_at(&self, position: Position) -> (&[u32], u64) {
        if position.step_in_epoch == 0 && self.shuffled_for > position.epochs_done {
            (&self.before.0, self.before.1.state())
        } else {
            (&self.order, self.rng.state())
        }
    }
}

pub struct Session<'a> {
    pub config: &'a Config,
    pub network: Network,
    pub optimizer: Optimizer,
    pub ws: Workspace,
    pub inference: Inference,
    pub schedule: LrSchedule,
    pub batches: BatchSource,
    pub train: Arc<Dataset>,
    pub test: &'a Dataset,
    pub shuffle: Shuffle,
    pub position: Position,
    pub progress: RunProgress,
    pub checkpoints: CheckpointPlan,
    pub stop_at: StopAt,
    pub interrupted: Arc<AtomicBool>,
    pub bookkeeping: Bookkeeping,
}

/// What a session keeps track of for itself.
pub struct Bookkeeping {
    /// The epoch whose batches have been asked of the batch source.
    started_for: usize,
    last_checkpoint: Option<(Position, PathBuf)>,
    started: Instant,
}

impl Default for Bookkeeping {
    fn default() -> Self {
        Self { started_for: 0, last_checkpoint: None, started: Instant::now() }
    }
}

impl Session<'_> {
    fn steps_per_epoch(&self) -> usize {
        self.train.len().div_ceil(self.config.train.batch_size)
    }

    /// Seconds of training and evaluation in this run and the runs it continues.
    pub fn total_seconds(&self) -> f64 {
        self.progress.seconds_before + self.bookkeeping.started.elapsed().as_secs_f64()
    }

    /// Trains the remaining epochs.
    pub fn run(&mut self) -> anyhow::Result<Outcome> {
        let epochs = self.config.train.epochs;
        let mut last_eval = None;
        for epoch in self.position.epochs_done + 1..=epochs {
            if let Some(stopped) = self.train_epoch(epoch)? {
                return Ok(stopped);
            }
            if epoch < epochs {
                // The next epoch's batches are prepared while this one is evaluated.
                self.start_epoch(epoch + 1);
            }
            last_eval = Some(self.evaluate_epoch(epoch)?);
            let checkpoint = self.write_checkpoint()?;
            if self.stop_at.epochs == Some(epoch) && epoch < epochs {
                return Ok(Outcome::Stopped { reason: StopReason::Asked, checkpoint });
            }
        }
        if self.interrupted.load(Ordering::SeqCst) {
            // Ctrl-C during the last evaluation: stop there too, exporting nothing.
            return self.stop(StopReason::Interrupted);
        }
        Ok(Outcome::Finished(last_eval))
    }

    fn start_epoch(&mut self, epoch: usize) {
        if self.bookkeeping.started_for == epoch {
            return;
        }
        self.shuffle.shuffle_for(epoch);
        let first_step = if self.position.epochs_done + 1 == epoch { self.position.step_in_epoch } else { 0 };
        self.batches.start_epoch(epoch, Arc::from(self.shuffle.order.as_slice()), first_step);
        self.bookkeeping.started_for = epoch;
    }

    /// The steps of `epoch` from the current position; `Some` if the run stopped in it.
    fn train_epoch(&mut self, epoch: usize) -> anyhow::Result<Option<Outcome>> {
        self.start_epoch(epoch);
        let (tc, steps_per_epoch, images) = (&self.config.train, self.steps_per_epoch(), self.train.len());
        let log_every = (steps_per_epoch / CURVE_POINTS_PER_EPOCH).max(1);
        let bar = progress_bar(images as u64, &format!("epoch {epoch}/{}", tc.epochs));
        bar.set_position(self.progress.current.seen as u64);
        let start = Instant::now();
        let seen_before = self.progress.current.seen;
        for bi in self.position.step_in_epoch..steps_per_epoch {
            if let Some(reason) = self.stop_reason() {
                bar.abandon();
                self.progress.current.seconds_before += start.elapsed().as_secs_f64();
                return self.stop(reason).map(Some);
            }
            let (batch, waited) = self.batches.next()?;
            self.progress.current.input_wait_seconds += waited.as_secs_f64();
            let step = self.position.step(steps_per_epoch);
            let lr = self.schedule.at(step as usize);
            let (n, len) = (batch.len, self.train.image_len());
            self.network.train_step(&mut self.ws, &mut self.optimizer, &batch.pixels[..n * len], &batch.labels[..n], lr, step as u32);
            self.batches.recycle(batch);
            self.position.step_in_epoch = bi + 1;
            bar.inc(n as u64);
            // The steps' loss and accuracy stay on the device until a report needs them.
            if (bi + 1) % log_every == 0 || bi + 1 == steps_per_epoch {
                let tally = &mut self.progress.current;
                tally.add(&self.ws.take_stats());
                if !tally.window_loss.is_finite() {
                    bar.abandon();
                    bail!(
                        "training diverged: the loss is {} at epoch {epoch}, step {}; lower train.learning_rate",
                        tally.window_loss,
                        step + 1
                    );
                }
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {:.0} img/s",
                    tally.window_loss / tally.window_seen as f64,
                    100.0 * tally.window_correct as f64 / tally.window_seen as f64,
                    (tally.seen - seen_before) as f64 / start.elapsed().as_secs_f64().max(1e-9)
                ));
                let point = tally.close_window(epoch, step + 1, images);
                self.progress.loss_curve.push(point);
            }
        }
        self.progress.current.seconds_before += start.elapsed().as_secs_f64();
        bar.finish_and_clear();
        self.position = Position { epochs_done: epoch, step_in_epoch: 0 };
        Ok(None)
    }

    fn stop_reason(&self) -> Option<StopReason> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Some(StopReason::Interrupted);
        }
        (self.stop_at.step == Some(self.position.step(self.steps_per_epoch()))).then_some(StopReason::Asked)
    }

    /// Evaluates after `epoch` and records it.
    fn evaluate_epoch(&mut self, epoch: usize) -> anyhow::Result<Evaluation> {
        let eval_start = Instant::now();
        let epochs = self.config.train.epochs;
        let eval_bar = progress_bar(self.test.len() as u64, &format!("evaluate {epoch}/{epochs}"));
        let ev = self.inference.evaluate(&self.network, self.test, |done| eval_bar.set_position(done as u64))?;
        eval_bar.finish_and_clear();
        let tally = std::mem::take(&mut self.progress.current);
        let steps = self.position.step(self.steps_per_epoch());
        let record = EpochRecord {
            epoch,
            train_loss: tally.loss_sum / tally.seen as f64,
            train_accuracy: tally.correct as f64 / tally.seen as f64,
            test_loss: ev.loss,
            test_accuracy: ev.accuracy,
            seconds: tally.seconds_before,
            images_per_second: tally.seen as f64 / tally.seconds_before,
            input_wait_seconds: tally.input_wait_seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            learning_rate: self.schedule.at(steps.saturating_sub(1) as usize) as f64,
        };
        tracing::info!(
            "epoch {epoch}/{epochs}: train loss {:.4} acc {:.2}% | test loss {:.4} acc {:.2}% | {:.1} s, {:.0} images/s",
            record.train_loss,
            100.0 * record.train_accuracy,
            record.test_loss,
            100.0 * record.test_accuracy,
            record.seconds,
            record.images_per_second
        );
        self.progress.epochs.push(record);
        Ok(ev)
    }

    /// Stops at the current position with a checkpoint (unless one is there already).
    fn stop(&mut self, reason: StopReason) -> anyhow::Result<Outcome> {
        self.progress.current.add(&self.ws.take_stats());
        let checkpoint = match &self.bookkeeping.last_checkpoint {
            Some((at, dir)) if *at == self.position => Some(dir.clone()),
            _ => self.write_checkpoint()?,
        };
        Ok(Outcome::Stopped { reason, checkpoint })
    }

    /// Writes a checkpoint at the current position (none if the run keeps none) and prunes old ones.
    fn write_checkpoint(&mut self) -> anyhow::Result<Option<PathBuf>> {
        if self.checkpoints.keep == 0 {
            return Ok(None);
        }
        let (order, rng_state) = self.shuffle.state_at(self.position);
        let plan = &self.checkpoints;
        let meta = Meta {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            run_id: plan.run_id.clone(),
            position: self.position,
            steps_per_epoch: self.steps_per_epoch(),
            config: self.config.clone(),
            shuffle_rng_state: rng_state,
            optimizer_steps: self.optimizer.steps(),
            data: plan.data.clone(),
            progress: RunProgress {
                seconds_before: self.progress.seconds_before + self.bookkeeping.started.elapsed().as_secs_f64(),
                ..self.progress.clone()
            },
            device: plan.device.clone(),
            threads: rayon::current_num_threads(),
            resumed_from: plan.resumed_from.clone(),
            network_tensors: Vec::new(),
            optimizer_tensors: Vec::new(),
            state_file: StateFile { name: String::new(), sha256: String::new(), size_bytes: 0 },
        };
        let mut checkpoint = Checkpoint {
            meta,
            network: self.network.export_state(),
            optimizer: self.optimizer.export_state(),
            order: order.to_vec(),
            dir: None,
        };
        let dir = checkpoint.write(&plan.run_dir)?;
        crate::checkpoint::prune(&plan.run_dir, plan.keep)?;
        tracing::info!("checkpoint written to {}", dir.display());
        self.bookkeeping.last_checkpoint = Some((self.position, dir.clone()));
        Ok(Some(dir))
    }
}
