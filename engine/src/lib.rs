//! The MNIST CNN tensor engine.
//!
//! - [`device`]: where tensors live and kernels run (`cpu` or `gpu`).
//! - [`tensor`]: device-owned tensors; nothing is read back to the host unless asked for.
//! - [`backend`]: the small set of ops the layers need, dispatched to the device's kernels.
//! - [`cpu`]: rayon + GEMM kernels, one file per op family; also the oracle for the GPU.
//! - [`gpu`]: the WGSL backend (shaders/ through wgpu), one dispatcher per shader file.
//! - [`model`]: config, shape inference, layers, the network and its training step.
//! - [`optim`]: optimizers and learning-rate schedules.
//! - [`data`]: the IDX reader and MNIST sets.
//! - [`export`]: the model files (`model.json` + `weights.safetensors`).
//! - [`metrics`]: confusion matrix, precision / recall / F1.
//! - [`fuzzing`]: the fuzz targets' bodies (IDX, config, model files).

pub mod activation;
pub mod backend;
pub mod cpu;
pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod fuzzing;
pub mod gpu;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod predictor;
pub mod rng;
pub mod tensor;

pub use device::{Device, DeviceKind};
pub use error::{EngineError, Result};
pub use tensor::{HostTensor, Tensor};
