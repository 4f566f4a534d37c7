//! MNIST: 28x28 u8 images and u8 labels 0..=9, from the four IDX files in one directory.

use std::path::Path;

use super::idx;
use crate::error::{EngineError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn files(self) -> (&'static str, &'static str) {
        match self {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        }
    }
}

/// Images as rows of `rows * cols` pixels, and one label per image.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
    /// The images file, for errors.
    pub images_path: std::path::PathBuf,
}

impl Dataset {
    /// Loads one split from `dir`, checking that images and labels agree.
    pub fn load(dir: &Path, split: Split, classes: usize) -> Result<Self> {
        let (images_name, labels_name) = split.files();
        let (images_path, labels_path) = (dir.join(images_name), dir.join(labels_name));
        for p in [&images_path, &labels_path] {
            if !p.exists() {
                return Err(EngineError::MissingData { path: p.clone() });
            }
        }
        let images = idx::read(&images_path, 3)?;
        let labels = idx::read(&labels_path, 1)?;
        if images.dims[0] != labels.dims[0] {
            return Err(EngineError::Idx {
                path: labels_path,
                message: format!("holds {} labels but {} holds {} images", labels.dims[0], images_path.display(), images.dims[0]),
            });
        }
        if let Some(i) = labels.data.iter().position(|&l| l as usize >= classes) {
            return Err(EngineError::Idx {
                path: labels_path,
                message: format!("label {} at index {i} is not a class 0..{}", labels.data[i], classes - 1),
            });
        }
        Ok(Self { images: images.data, labels: labels.data, rows: images.dims[1], cols: images.dims[2], images_path })
    }

    /// Checks that these (one-channel) images are what a model with `input_shape`
    /// (`[height, width, channels]`) takes; the error names the file and both shapes.
    pub fn check_input_shape(&self, input_shape: [usize; 3]) -> Result<()> {
        if input_shape == [self.rows, self.cols, 1] {
            return Ok(());
        }
        let [h, w, c] = input_shape;
        Err(EngineError::Idx {
            path: self.images_path.clone(),
            message: format!("images are {}x{}x1 but the model takes {h}x{w}x{c}", self.rows, self.cols),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.image_len()..(i + 1) * self.image_len()]
    }

    /// The first `n` examples (all of them if `n` is larger).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * self.image_len());
        self.labels.truncate(n);
        self
    }
}
