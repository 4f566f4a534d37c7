//! The pipeline cache: every WGSL entry point compiled once, when the device opens.

use crate::error::{EngineError, Result};

const HASH: &str = include_str!("../../../shaders/hash.wgsl");
const GEMM_TILE: &str = include_str!("../../../shaders/gemm_tile.wgsl");
const DENSE: &str = include_str!("../../../shaders/dense.wgsl");
const CONV2D: &str = include_str!("../../../shaders/conv2d.wgsl");
const POOL: &str = include_str!("../../../shaders/pool.wgsl");
const ELEMENTWISE: &str = include_str!("../../../shaders/elementwise.wgsl");
const SOFTMAX_XENT: &str = include_str!("../../../shaders/softmax_xent.wgsl");
const OPTIM: &str = include_str!("../../../shaders/optim.wgsl");

/// One compute entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kernel {
    Matmul,
    ReduceSplits,
    ConvForward,
    ConvBackwardInput,
    ConvBackwardWeight,
    MaxPoolForward,
    MaxPoolBackward,
    ReluForward,
    ReluBackward,
    Dropout,
    NormalizeU8,
    Xent,
    Predict,
    Sgd,
    Momentum,
    Adam,
}

/// Shader files, as compiled: the tiled product and the dropout hash are prepended to their users.
#[derive(Clone, Copy)]
enum Module {
    Dense,
    Conv2d,
    Pool,
    Elementwise,
    SoftmaxXent,
    Optim,
}

impl Module {
    const ALL: [Module; 6] = [Module::Dense, Module::Conv2d, Module::Pool, Module::Elementwise, Module::SoftmaxXent, Module::Optim];

    fn file(self) -> &'static str {
        match self {
            Module::Dense => "dense.wgsl",
            Module::Conv2d => "conv2d.wgsl",
            Module::Pool => "pool.wgsl",
            Module::Elementwise => "elementwise.wgsl",
            Module::SoftmaxXent => "softmax_xent.wgsl",
            Module::Optim => "optim.wgsl",
        }
    }

    fn source(self) -> String {
        match self {
            Module::Dense => format!("{HASH}\n{GEMM_TILE}\n{DENSE}"),
            Module::Conv2d => format!("{HASH}\n{GEMM_TILE}\n{CONV2D}"),
            Module::Pool => format!("{HASH}\n{POOL}"),
            Module::Elementwise => format!("{HASH}\n{ELEMENTWISE}"),
            Module::SoftmaxXent => SOFTMAX_XENT.to_string(),
            Module::Optim => OPTIM.to_string(),
        }
    }
}

pub(crate) const KERNEL_COUNT: usize = 16;

const KERNELS: [(Kernel, Module, &str); KERNEL_COUNT] = [
    (Kernel::Matmul, Module::Dense, "matmul"),
    (Kernel::ReduceSplits, Module::Dense, "reduce_splits"),
    (Kernel::ConvForward, Module::Conv2d, "forward"),
    (Kernel::ConvBackwardInput, Module::Conv2d, "backward_input"),
    (Kernel::ConvBackwardWeight, Module::Conv2d, "backward_weight"),
    (Kernel::MaxPoolForward, Module::Pool, "max_forward"),
    (Kernel::MaxPoolBackward, Module::Pool, "max_backward"),
    (Kernel::ReluForward, Module::Elementwise, "relu_forward"),
    (Kernel::ReluBackward, Module::Elementwise, "relu_backward"),
    (Kernel::Dropout, Module::Elementwise, "dropout"),
    (Kernel::NormalizeU8, Module::Elementwise, "normalize_u8"),
    (Kernel::Xent, Module::SoftmaxXent, "xent"),
    (Kernel::Predict, Module::SoftmaxXent, "predict"),
    (Kernel::Sgd, Module::Optim, "sgd"),
    (Kernel::Momentum, Module::Optim, "momentum"),
    (Kernel::Adam, Module::Optim, "adam"),
];

/// The entry point name of kernel number `index`.
pub(crate) fn entry_point(index: usize) -> &'static str {
    KERNELS[index].2
}

/// Every shader module as the device compiles it: (file name, WGSL source).
pub(crate) fn shader_modules() -> Vec<(&'static str, String)> {
    Module::ALL.iter().map(|m| (m.file(), m.source())).collect()
}

pub(crate) struct Kernels {
    pipelines: Vec<wgpu::ComputePipeline>,
}

impl Kernels {
    /// Compiles every shader file and entry point; a WGSL error names the file.
    pub(crate) fn build(device: &wgpu::Device) -> Result<Self> {
        let mut modules = Vec::with_capacity(Module::ALL.len());
        for module in Module::ALL {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let shader = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(module.file()),
                source: wgpu::ShaderSource::Wgsl(module.source().into()),
            });
            if let Some(err) = pollster::block_on(scope.pop()) {
                return Err(EngineError::Device(format!("shaders/{}: {err}", module.file())));
            }
            modules.push(shader);
        }
        let mut pipelines = Vec::with_capacity(KERNELS.len());
        for (i, &(kernel, module, entry)) in KERNELS.iter().enumerate() {
            debug_assert_eq!(kernel as usize, i, "KERNELS is in Kernel order");
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: &modules[module as usize],
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            if let Some(err) = pollster::block_on(scope.pop()) {
                return Err(EngineError::Device(format!("shaders/{} entry point {entry}: {err}", module.file())));
            }
            pipelines.push(pipeline);
        }
        Ok(Self { pipelines })
    }

    pub(crate) fn get(&self, kernel: Kernel) -> &wgpu::ComputePipeline {
        &self.pipelines[kernel as usize]
    }
}
