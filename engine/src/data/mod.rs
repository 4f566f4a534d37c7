//! Training data: the IDX file format and the MNIST sets built on it.

pub mod idx;
pub mod mnist;

pub use mnist::{Dataset, Split};
