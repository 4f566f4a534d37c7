//! Deterministic random numbers.
//!
//! [`SplitMix64`] drives initialisation and shuffling on the host. Dropout uses a counter-based
//! hash of (seed, layer, step, element) built from 32-bit operations only, so that forward and
//! backward (and a WGSL kernel) derive the same mask without storing it.

/// SplitMix64: small, fast, well-mixed 64-bit generator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The generator's whole state: `SplitMix64::new(g.state())` continues where `g` is.
    pub fn state(&self) -> u64 {
        self.state
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform integer in [0, bound) (bound > 0), by Lemire's multiply-shift.
    pub fn below(&mut self, bound: usize) -> usize {
        (((self.next_u64() >> 32) * bound as u64) >> 32) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// PCG-style 32-bit hash (one round of the PCG RXS-M-XS permutation).
#[inline]
pub fn pcg_hash(input: u32) -> u32 {
    let state = input.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// Key of one dropout mask: the same key gives the same mask in forward and backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u32,
    pub layer: u32,
    pub step: u32,
}

impl DropoutKey {
    #[inline]
    fn base(self) -> u32 {
        pcg_hash(self.seed ^ pcg_hash(self.layer.wrapping_add(pcg_hash(self.step))))
    }

    /// Whether element `index` is kept, for drop probability `rate`.
    #[inline]
    pub fn keep(self, index: u32, rate: f32) -> bool {
        keep_with_base(self.base(), index, rate)
    }

    /// Precomputes the per-mask part of the hash for a run of elements.
    pub fn mask(self, rate: f32) -> DropoutMask {
        DropoutMask { base: self.base(), threshold: drop_threshold(rate) }
    }
}

/// A mask ready to be queried element by element.
#[derive(Clone, Copy, Debug)]
pub struct DropoutMask {
    base: u32,
    threshold: u32,
}

impl DropoutMask {
    #[inline]
    pub fn keep(self, index: u32) -> bool {
        pcg_hash(self.base ^ pcg_hash(index)) >= self.threshold
    }

    /// The per-key part of the hash (what a GPU kernel needs, with the threshold).
    pub(crate) fn base(self) -> u32 {
        self.base
    }

    /// Elements whose hash is below this are dropped.
    pub(crate) fn threshold(self) -> u32 {
        self.threshold
    }
}

#[inline]
fn drop_threshold(rate: f32) -> u32 {
    (rate.clamp(0.0, 1.0) as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32
}

#[inline]
fn keep_with_base(base: u32, index: u32, rate: f32) -> bool {
    pcg_hash(base ^ pcg_hash(index)) >= drop_threshold(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_mask_keeps_about_one_minus_rate() {
        let mask = DropoutKey { seed: 7, layer: 3, step: 11 }.mask(0.4);
        let kept = (0..100_000u32).filter(|&i| mask.keep(i)).count();
        assert!((kept as f64 / 100_000.0 - 0.6).abs() < 0.01, "kept {kept}");
    }

    #[test]
    fn dropout_masks_differ_by_step_and_agree_by_key() {
        let a = DropoutKey { seed: 1, layer: 0, step: 0 };
        let b = DropoutKey { seed: 1, layer: 0, step: 1 };
        let same = (0..1000u32).filter(|&i| a.keep(i, 0.5) == a.mask(0.5).keep(i)).count();
        assert_eq!(same, 1000);
        let agree = (0..1000u32).filter(|&i| a.keep(i, 0.5) == b.keep(i, 0.5)).count();
        assert!(agree < 600, "masks of different steps agree on {agree}/1000");
    }

    #[test]
    fn a_generator_continues_from_its_state() {
        let mut a = SplitMix64::new(77);
        a.next_u64();
        let mut b = SplitMix64::new(a.state());
        assert_eq!((0..10).map(|_| a.next_u64()).collect::<Vec<_>>(), (0..10).map(|_| b.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<usize> = (0..100).collect();
        let mut b = a.clone();
        SplitMix64::new(5).shuffle(&mut a);
        SplitMix64::new(5).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        a.sort();
        assert_eq!(a, (0..100).collect::<Vec<_>>());
    }
}
