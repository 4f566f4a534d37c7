//! Model description and execution: the TOML config, the resolved architecture with shape
//! inference, the layers' parameters, and the network's forward / backward / training step.

pub mod config;
pub mod fold;
pub mod network;
pub mod spec;
pub mod validate;
pub mod workspace;

pub use config::{AugmentConfig, Config, DecayConfig, OptimizerConfig, ScheduleConfig, TrainConfig};
pub use network::{Network, Param, StepStats};
pub use spec::{LayerKind, LayerSpec, ModelSpec, Shape};
pub use workspace::Workspace;
