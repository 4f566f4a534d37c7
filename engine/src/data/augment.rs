//! Data augmentation of one-channel u8 images (row-major): a random affine map (shift, rotation
//! and zoom about the image centre) and optionally an elastic distortion (Simard, Steinkraus and
//! Platt, 2003), resampled bilinearly, black outside the source image.
//!
//! Each image's distortion comes from its own generator, keyed by (seed, epoch, example index),
//! so the result depends on nothing else: not the batch, the order or the number of threads.

use crate::model::AugmentConfig;
use crate::rng::SplitMix64;

/// An affine map from source to output pixels about the image centre:
/// `out = R(rotation) * scale * (src - centre) + centre + shift`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Radians; positive turns clockwise as displayed (rows grow downwards).
    pub rotation: f32,
    pub scale: f32,
    /// `[columns, rows]`: positive moves right and down.
    pub shift: [f32; 2],
}

impl Affine {
    pub const IDENTITY: Affine = Affine { rotation: 0.0, scale: 1.0, shift: [0.0, 0.0] };
}

/// A per-output-pixel displacement (`dx`, `dy` in pixels) added before the affine map.
#[derive(Clone, Copy, Debug)]
pub struct Displacement<'a> {
    pub dx: &'a [f32],
    pub dy: &'a [f32],
}

/// Resamples `src` (`rows x cols`) into `dst` through `affine` (and `displacement`): each output
/// pixel reads the source where the inverse map sends it, bilinearly, with zero outside.
pub fn warp(src: &[u8], dst: &mut [u8], rows: usize, cols: usize, affine: &Affine, displacement: Option<Displacement>) {
    assert!(src.len() == rows * cols && dst.len() == rows * cols, "images of {rows}x{cols} pixels");
    let (centre_x, centre_y) = ((cols as f32 - 1.0) / 2.0, (rows as f32 - 1.0) / 2.0);
    let (sin, cos) = affine.rotation.sin_cos();
    let pixel = |r: isize, c: isize| {
        if r >= 0 && c >= 0 && (r as usize) < rows && (c as usize) < cols { src[r as usize * cols + c as usize] as f32 } else { 0.0 }
    };
    for (i, out) in dst.iter_mut().enumerate() {
        let (mut x, mut y) = ((i % cols) as f32, (i / cols) as f32);
        if let Some(d) = displacement {
            x += d.dx[i];
            y += d.dy[i];
        }
        let (ox, oy) = (x - centre_x - affine.shift[0], y - centre_y - affine.shift[1]);
        let sx = (cos * ox + sin * oy) / affine.scale + centre_x;
        let sy = (cos * oy - sin * ox) / affine.scale + centre_y;
        // Also false for NaN: such a pixel reads nothing.
        if !(sx > -1.0 && sx < cols as f32 && sy > -1.0 && sy < rows as f32) {
            *out = 0;
            continue;
        }
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (c, r) = (x0 as isize, y0 as isize);
        let top = pixel(r, c) * (1.0 - fx) + pixel(r, c + 1) * fx;
        let bottom = pixel(r + 1, c) * (1.0 - fx) + pixel(r + 1, c + 1) * fx;
        *out = (top * (1.0 - fy) + bottom * fy + 0.5).clamp(0.0, 255.0) as u8;
    }
}

/// Working buffers for one thread's elastic distortions.
pub struct Scratch {
    dx: Vec<f32>,
    dy: Vec<f32>,
    smoothing: Vec<f32>,
}

/// Draws and applies each example's distortion from `[train.augment]`.
#[derive(Clone, Debug)]
pub struct Augmenter {
    config: AugmentConfig,
    seed: u64,
    rows: usize,
    cols: usize,
    /// The normalised Gaussian of the elastic field's smoothing, from -radius to radius.
    kernel: Vec<f32>,
}

/// Separates augmentation's generators from the other uses of the run's seed.
const AUGMENT_STREAM: u64 = 0x4155_474D_454E_5421;

impl Augmenter {
    /// An augmenter for `rows x cols` images; `config` must have passed validation.
    pub fn new(config: &AugmentConfig, seed: u64, rows: usize, cols: usize) -> Self {
        let sigma = config.elastic_sigma.max(1e-3);
        let radius = (3.0 * sigma).ceil() as isize;
        let mut kernel: Vec<f32> = (-radius..=radius).map(|k| (-((k * k) as f32) / (2.0 * sigma * sigma)).exp()).collect();
        let sum: f32 = kernel.iter().sum();
        kernel.iter_mut().for_each(|w| *w /= sum);
        Self { config: config.clone(), seed, rows, cols, kernel }
    }

    pub fn scratch(&self) -> Scratch {
        let len = self.rows * self.cols;
        Scratch { dx: vec![0.0; len], dy: vec![0.0; len], smoothing: vec![0.0; len] }
    }

    /// The generator of one example's distortion in one epoch.
    fn generator(&self, epoch: u64, index: u64) -> SplitMix64 {
        let run = SplitMix64::new(self.seed ^ AUGMENT_STREAM).next_u64();
        let epoch = SplitMix64::new(run ^ epoch).next_u64();
        SplitMix64::new(SplitMix64::new(epoch ^ index).next_u64())
    }

    /// Example `index`'s affine map in `epoch`.
    pub fn affine(&self, epoch: u64, index: u64) -> Affine {
        Self::draw_affine(&self.config, &mut self.generator(epoch, index))
    }

    fn draw_affine(c: &AugmentConfig, rng: &mut SplitMix64) -> Affine {
        let mut symmetric = |range: f32| (2.0 * rng.next_f32() - 1.0) * range;
        let rotation = symmetric(c.rotation).to_radians();
        let scale = 1.0 + symmetric(c.scale);
        let shift = [symmetric(c.translation), symmetric(c.translation)];
        Affine { rotation, scale, shift }
    }

    /// Writes example `index`'s distorted image for `epoch` into `dst`.
    pub fn apply(&self, epoch: u64, index: u64, src: &[u8], dst: &mut [u8], scratch: &mut Scratch) {
        let mut rng = self.generator(epoch, index);
        let affine = Self::draw_affine(&self.config, &mut rng);
        if self.config.elastic_alpha == 0.0 {
            return warp(src, dst, self.rows, self.cols, &affine, None);
        }
        let Scratch { dx, dy, smoothing } = scratch;
        for field in [&mut *dx, &mut *dy] {
            field.iter_mut().for_each(|v| *v = 2.0 * rng.next_f32() - 1.0);
            self.smooth(field, smoothing);
            field.iter_mut().for_each(|v| *v *= self.config.elastic_alpha);
        }
        warp(src, dst, self.rows, self.cols, &affine, Some(Displacement { dx, dy }));
    }

    /// Convolves `field` with the Gaussian along rows, then along columns (zero outside).
    fn smooth(&self, field: &mut [f32], tmp: &mut [f32]) {
        let (rows, cols) = (self.rows as isize, self.cols as isize);
        let radius = (self.kernel.len() / 2) as isize;
        let taps = |at: isize, len: isize| (-radius.min(at)..=radius.min(len - 1 - at)).map(move |k| (k, (k + radius) as usize));
        for r in 0..rows {
            for c in 0..cols {
                tmp[(r * cols + c) as usize] = taps(c, cols).map(|(k, w)| self.kernel[w] * field[(r * cols + c + k) as usize]).sum();
            }
        }
        for r in 0..rows {
            for c in 0..cols {
                field[(r * cols + c) as usize] = taps(r, rows).map(|(k, w)| self.kernel[w] * tmp[((r + k) * cols + c) as usize]).sum();
            }
        }
    }
}
