//! The WGSL backend: a wgpu device, the pipelines of `shaders/` built once at start-up, a buffer
//! pool, and one dispatcher per shader file. Ops record into one pending command encoder, in one
//! compute pass; it is submitted when something is read back (or written from the host), so a
//! training step is one submission. [`GpuCounters`] say what was recorded.

mod buffers;
mod context;
mod counters;
pub mod inspect;
mod kernels;
mod params;
pub mod plan;
mod recorder;
pub mod report;

pub(crate) mod batchnorm;
pub(crate) mod conv2d;
pub(crate) mod dense;
pub(crate) mod elementwise;
pub(crate) mod gemm;
pub(crate) mod optim;
pub(crate) mod pool;
pub(crate) mod softmax_xent;

pub(crate) use buffers::BufRef;
pub use buffers::GpuBuffer;
pub use context::{AdapterPolicy, GpuDevice, quiet_vulkan_loader};
pub use counters::{GemmShape, GpuCounters};
