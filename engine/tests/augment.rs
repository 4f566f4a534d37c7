//! Data augmentation: the warp itself (identity, shifts, rotations, zoom), the per-example
//! draws (deterministic by seed, epoch and index), bounds, and the config's validation.

use engine::data::augment::{Affine, Augmenter, warp};
use engine::model::{AugmentConfig, Config};
use engine::rng::SplitMix64;

const ROWS: usize = 28;
const COLS: usize = 28;

/// A bright disc of radius `r` centred at (x, y), grey levels falling off at its rim.
fn disc(x: f32, y: f32, r: f32) -> Vec<u8> {
    (0..ROWS * COLS)
        .map(|i| {
            let (dx, dy) = ((i % COLS) as f32 - x, (i / COLS) as f32 - y);
            (255.0 * (r + 0.5 - (dx * dx + dy * dy).sqrt()).clamp(0.0, 1.0)) as u8
        })
        .collect()
}

/// Centre of mass `(x, y)` of an image's intensity.
fn centre_of_mass(img: &[u8]) -> (f32, f32) {
    let (mut m, mut mx, mut my) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in img.iter().enumerate() {
        m += v as f64;
        mx += v as f64 * (i % COLS) as f64;
        my += v as f64 * (i / COLS) as f64;
    }
    ((mx / m) as f32, (my / m) as f32)
}

fn warped(src: &[u8], affine: Affine) -> Vec<u8> {
    let mut dst = vec![0; ROWS * COLS];
    warp(src, &mut dst, ROWS, COLS, &affine, None);
    dst
}

fn noise(seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    (0..ROWS * COLS).map(|_| rng.below(256) as u8).collect()
}

#[test]
fn identity_gives_the_input_back() {
    let img = noise(1);
    assert_eq!(warped(&img, Affine::IDENTITY), img);
    // A rotation by 0, a zoom by 1 and a shift by 0, however they are spelt.
    assert_eq!(warped(&img, Affine { rotation: -0.0, scale: 1.0, shift: [-0.0, 0.0] }), img);
    // An augmenter whose ranges are all 0 leaves every image as it is.
    let none = Augmenter::new(&AugmentConfig::default(), 7, ROWS, COLS);
    let mut scratch = none.scratch();
    let mut out = vec![0; ROWS * COLS];
    for index in 0..5 {
        none.apply(3, index, &img, &mut out, &mut scratch);
        assert_eq!(out, img, "example {index}");
    }
}

#[test]
fn whole_pixel_shifts_move_the_image_exactly() {
    let img = noise(2);
    let moved = warped(&img, Affine { shift: [3.0, -2.0], ..Affine::IDENTITY });
    for r in 0..ROWS {
        for c in 0..COLS {
            let want = if c >= 3 && r + 2 < ROWS { img[(r + 2) * COLS + c - 3] } else { 0 };
            assert_eq!(moved[r * COLS + c], want, "pixel ({r}, {c})");
        }
    }
}

#[test]
fn a_translation_moves_the_centre_of_mass_by_its_amount() {
    let img = disc(13.5, 13.5, 5.0);
    let (x0, y0) = centre_of_mass(&img);
    for shift in [[2.5, 0.0], [-1.25, 3.75], [0.3, -4.6]] {
        let (x, y) = centre_of_mass(&warped(&img, Affine { shift, ..Affine::IDENTITY }));
        assert!((x - x0 - shift[0]).abs() < 0.05 && (y - y0 - shift[1]).abs() < 0.05, "{shift:?}: moved by ({}, {})", x - x0, y - y0);
    }
}

#[test]
fn rotations_turn_about_the_centre() {
    // A disc right of the centre (13.5, 13.5): a quarter turn clockwise (as displayed) puts it
    // below, half a turn on the left; a full turn brings it back.
    let img = disc(20.0, 13.5, 3.0);
    let at = |degrees: f32| centre_of_mass(&warped(&img, Affine { rotation: degrees.to_radians(), ..Affine::IDENTITY }));
    let near = |(x, y): (f32, f32), (wx, wy): (f32, f32)| (x - wx).abs() < 0.1 && (y - wy).abs() < 0.1;
    let (x0, y0) = centre_of_mass(&img);
    assert!(near(at(90.0), (13.5, 13.5 + (x0 - 13.5))), "{:?}", at(90.0));
    assert!(near(at(180.0), (13.5 - (x0 - 13.5), y0)), "{:?}", at(180.0));
    assert!(near(at(-90.0), (13.5, 13.5 - (x0 - 13.5))), "{:?}", at(-90.0));
    assert!(near(at(360.0), (x0, y0)), "{:?}", at(360.0));
}

#[test]
fn zoom_scales_distances_from_the_centre() {
    let img = disc(18.0, 10.0, 2.0);
    let (x0, y0) = centre_of_mass(&img);
    for scale in [0.5, 1.3] {
        let (x, y) = centre_of_mass(&warped(&img, Affine { scale, ..Affine::IDENTITY }));
        let (wx, wy) = (13.5 + scale * (x0 - 13.5), 13.5 + scale * (y0 - 13.5));
        assert!((x - wx).abs() < 0.1 && (y - wy).abs() < 0.1, "zoom {scale}: ({x}, {y}) vs ({wx}, {wy})");
    }
}

fn augment_all(config: &AugmentConfig, seed: u64, epoch: u64, images: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let aug = Augmenter::new(config, seed, ROWS, COLS);
    let mut scratch = aug.scratch();
    images
        .iter()
        .enumerate()
        .map(|(i, img)| {
            let mut out = vec![0; ROWS * COLS];
            aug.apply(epoch, i as u64, img, &mut out, &mut scratch);
            out
        })
        .collect()
}

fn everything() -> AugmentConfig {
    AugmentConfig { translation: 2.0, rotation: 15.0, scale: 0.1, elastic_alpha: 34.0, elastic_sigma: 4.0 }
}

#[test]
fn draws_are_deterministic_by_seed_epoch_and_example() {
    let images: Vec<Vec<u8>> = (0..8).map(|i| disc(10.0 + i as f32, 14.0, 4.0)).collect();
    let config = everything();
    let a = augment_all(&config, 5, 1, &images);
    assert_eq!(a, augment_all(&config, 5, 1, &images), "same seed and epoch: the same images");
    assert_ne!(a, augment_all(&config, 6, 1, &images), "another seed");
    let next_epoch = augment_all(&config, 5, 2, &images);
    assert!(a.iter().zip(&next_epoch).all(|(x, y)| x != y), "every image differs in the next epoch");
    assert!(a.iter().zip(&images).all(|(x, y)| x != y), "every image is distorted");
    // An example's draw depends on its index alone, not on the examples before it.
    let aug = Augmenter::new(&config, 5, ROWS, COLS);
    let mut out = vec![0; ROWS * COLS];
    aug.apply(1, 6, &images[6], &mut out, &mut aug.scratch());
    assert_eq!(out, a[6]);
    // Draws stay within their ranges.
    for i in 0..500 {
        let t = aug.affine(3, i);
        assert!(t.rotation.abs() <= 15f32.to_radians() && (t.scale - 1.0).abs() <= 0.1, "{t:?}");
        assert!(t.shift.iter().all(|s| s.abs() <= 2.0), "{t:?}");
    }
}

#[test]
fn elastic_distortion_moves_pixels_by_about_alpha_over_sigma_scale() {
    // Simard's alpha = 34, sigma = 4: displacements of a pixel or two, the digit's mass stays put.
    let img = disc(13.5, 13.5, 6.0);
    let config = AugmentConfig { elastic_alpha: 34.0, ..AugmentConfig::default() };
    let out = augment_all(&config, 1, 1, std::slice::from_ref(&img)).remove(0);
    let changed = out.iter().zip(&img).filter(|(a, b)| a != b).count();
    assert!(changed > 20, "{changed} pixels changed");
    let ((x0, y0), (x, y)) = (centre_of_mass(&img), centre_of_mass(&out));
    assert!((x - x0).abs() < 1.5 && (y - y0).abs() < 1.5, "centre of mass moved from ({x0}, {y0}) to ({x}, {y})");
}

#[test]
fn no_panic_at_the_edges_of_the_accepted_ranges() {
    let img = noise(3);
    let side = ROWS.min(COLS) as f32;
    let extremes = [
        AugmentConfig { translation: side - 0.001, rotation: 180.0, scale: 0.999, elastic_alpha: 1000.0, elastic_sigma: 16.0 },
        AugmentConfig { translation: 0.0, rotation: 0.0, scale: 0.0, elastic_alpha: 1000.0, elastic_sigma: 1e-6 },
        AugmentConfig { translation: 27.0, rotation: 180.0, scale: 0.0, elastic_alpha: 0.0, elastic_sigma: 0.01 },
    ];
    for config in extremes {
        config.validate(Some([ROWS, COLS])).unwrap_or_else(|e| panic!("{config:?} should be accepted: {e}"));
        augment_all(&config, 9, 1, &vec![img.clone(); 20]);
    }
    // The warp itself takes any map without panicking: NaN, infinities, zoom 0.
    for affine in [
        Affine { rotation: f32::NAN, scale: 1.0, shift: [0.0, 0.0] },
        Affine { rotation: 0.0, scale: 0.0, shift: [0.0, 0.0] },
        Affine { rotation: 1.0, scale: f32::INFINITY, shift: [f32::MAX, f32::MIN] },
        Affine { rotation: 0.0, scale: 1e-30, shift: [1e30, -1e30] },
    ] {
        warped(&img, affine);
    }
    // Images of one row or column, and non-square ones.
    for (rows, cols) in [(1, 1), (1, 9), (9, 1), (5, 12)] {
        let aug = Augmenter::new(&everything(), 1, rows, cols);
        let src: Vec<u8> = (0..rows * cols).map(|i| (i * 37) as u8).collect();
        let mut out = vec![0; rows * cols];
        aug.apply(1, 0, &src, &mut out, &mut aug.scratch());
    }
}

fn reference_with(augment: &str) -> String {
    format!("{}\n[train.augment]\n{augment}\n", include_str!("../../trainer/HyperParams.config"))
}

#[test]
fn config_validation_names_the_key() {
    let c = Config::parse(&reference_with("translation = 2\nrotation = 10\nscale = 0.1\nelastic_alpha = 34")).unwrap();
    assert_eq!(
        c.train.augment,
        Some(AugmentConfig { translation: 2.0, rotation: 10.0, scale: 0.1, elastic_alpha: 34.0, elastic_sigma: 4.0 })
    );
    assert_eq!(Config::parse(include_str!("../../trainer/HyperParams.config")).unwrap().train.augment, None, "off unless asked for");
    for (augment, key) in [
        ("rotation = 181", "train.augment.rotation"),
        ("rotation = -1", "train.augment.rotation"),
        ("rotation = nan", "train.augment.rotation"),
        ("translation = -0.5", "train.augment.translation"),
        ("translation = 28", "train.augment.translation"),
        ("translation = inf", "train.augment.translation"),
        ("scale = 1.0", "train.augment.scale"),
        ("scale = -0.1", "train.augment.scale"),
        ("elastic_alpha = -1", "train.augment.elastic_alpha"),
        ("elastic_alpha = 1e6", "train.augment.elastic_alpha"),
        ("elastic_sigma = 0", "train.augment.elastic_sigma"),
        ("elastic_sigma = 17", "train.augment.elastic_sigma"),
        ("rotate = 10", "rotate"),
    ] {
        let e = Config::parse(&reference_with(augment)).expect_err(augment).to_string();
        assert!(e.contains(key), "{augment}: {e}");
    }
}
