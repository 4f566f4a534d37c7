//! Buffers for one (network, batch capacity): activations, their gradients, pooling argmax,
//! labels and the few values a step reports. Allocated once, reused every step.

use crate::tensor::Tensor;

pub struct Workspace {
    pub(crate) capacity: usize,
    /// Activation slots; slot 0 is the input. In-place layers share their input's slot.
    pub(crate) acts: Vec<Tensor>,
    /// Gradient per activation slot (training only; none for the input).
    pub(crate) act_grads: Vec<Option<Tensor>>,
    /// Per layer, the max-pool argmax (pooling layers only).
    pub(crate) argmax: Vec<Option<Tensor<u32>>>,
    pub(crate) labels: Tensor<u32>,
    /// `[loss sum, correct count]` of the last training step.
    pub(crate) stats: Tensor,
    pub(crate) probs: Tensor,
    pub(crate) classes: Tensor<u32>,
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
