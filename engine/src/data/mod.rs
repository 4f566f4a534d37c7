//! Training data: the IDX file format, the MNIST sets built on it, and augmentation.

pub mod augment;
pub mod idx;
pub mod mnist;

pub use mnist::{Dataset, Split};
