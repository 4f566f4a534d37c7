//! Buffers for one (network, batch capacity): activations, their gradients, pooling argmax,
//! labels and the few values a step reports. Allocated once, reused every step.

use super::network::StepStats;
use crate::tensor::Tensor;

/// Training steps whose `[loss sum, correct count]` wait on the device before a readback is forced.
pub(crate) const STATS_SLOTS: usize = 1024;

pub struct Workspace {
    pub(crate) capacity: usize,
    /// A first convolution's input as u8 pixels, four to a word (GPU only, see
    /// `Network::upload_u8`); `input_u8` says whether it, not slot 0, holds the current batch.
    pub(crate) pixels: Option<Tensor<u32>>,
    pub(crate) input_u8: bool,
    /// Activation slots; slot 0 is the input. In-place layers share their input's slot.
    pub(crate) acts: Vec<Tensor>,
    /// Gradient per activation slot (training only; none for the input).
    pub(crate) act_grads: Vec<Option<Tensor>>,
    /// Per layer, a training batch normalisation's batch statistics (`[mean; 1 / sqrt(var +
    /// eps)]` per channel), for its backward.
    pub(crate) norm_saved: Vec<Option<Tensor>>,
    /// Per layer, the max-pool argmax (pooling layers only).
    pub(crate) argmax: Vec<Option<Tensor<u32>>>,
    pub(crate) labels: Tensor<u32>,
    /// `[loss sum, correct count]` per training step not yet read back, in step order.
    pub(crate) stats: Tensor,
    /// Examples of each step in `stats`.
    pub(crate) pending: Vec<usize>,
    /// Steps read back early (when `stats` was full) and not yet taken.
    pub(crate) collected: Vec<StepStats>,
    /// Inference outputs: `n * classes` probabilities, then `n` classes (as floats).
    pub(crate) outputs: Tensor,
    /// Host staging for labels, so a step allocates nothing.
    pub(crate) host_labels: Vec<u32>,
}

impl Workspace {
    /// Largest batch this workspace holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_training(&self) -> bool {
        self.act_grads.iter().any(Option::is_some)
    }

    /// The loss sum, correct count and size of every training step since the last call, in
    /// order: one readback for all of them.
    pub fn take_stats(&mut self) -> Vec<StepStats> {
        self.collect_stats();
        std::mem::take(&mut self.collected)
    }

    /// Reads the pending steps' values back into `collected`.
    pub(crate) fn collect_stats(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut values = vec![0.0f32; 2 * self.pending.len()];
        self.stats.read_host_into(&mut values);
        let steps = self.pending.drain(..).zip(values.chunks_exact(2));
        self.collected.extend(steps.map(|(examples, v)| StepStats { loss_sum: v[0], correct: v[1] as u32, examples }));
    }
}

/// `(&v[a], &mut v[b])` for `a != b`.
pub(crate) fn pair<T>(v: &mut [T], a: usize, b: usize) -> (&T, &mut T) {
    assert_ne!(a, b, "a layer reads and writes the same slot");
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&hi[0], &mut lo[b])
    }
}

/// `(&mut v[a], &mut v[b])` for `a != b`.
pub(crate) fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&mut T, &mut T) {
    assert_ne!(a, b);
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}
