//! Any PNG / JPEG / BMP to the model's input: grayscale, 28x28, a light digit on a dark
//! background (inverted when the image is dark on light, as photos and scans are), in [0, 1].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use image::imageops::FilterType;

pub const SIDE: u32 = 28;

/// The input floats (784 per image) for one image file.
pub fn load(path: &Path) -> anyhow::Result<Vec<f32>> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read image {}", path.display()))?
        .decode()
        .with_context(|| format!("cannot decode image {} (PNG, JPEG and BMP are supported)", path.display()))?;
    let gray = img.to_luma8();
    let gray = if gray.dimensions() == (SIDE, SIDE) { gray } else { image::imageops::resize(&gray, SIDE, SIDE, FilterType::Triangle) };
    let mut pixels: Vec<f32> = gray.pixels().map(|p| p.0[0] as f32 / 255.0).collect();
    // The border is background: a light border means a dark digit on light paper.
    let border: Vec<f32> = (0..SIDE as usize)
        .flat_map(|i| [i, (SIDE as usize - 1) * SIDE as usize + i, i * SIDE as usize, i * SIDE as usize + SIDE as usize - 1])
        .map(|i| pixels[i])
        .collect();
    if border.iter().sum::<f32>() / border.len() as f32 > 0.5 {
        pixels.iter_mut().for_each(|p| *p = 1.0 - *p);
    }
    Ok(pixels)
}

/// The files `--image` names: files as given, directories expanded to their image files (sorted).
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| ["png", "jpg", "jpeg", "bmp"].contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            if found.is_empty() {
                bail!("{} holds no .png, .jpg or .bmp files", path.display());
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}
