//! The pipeline cache: every WGSL entry point compiled once, when the device opens; the tiled
//! products once per tile variant.

use super::gemm::Tile;
use crate::error::{EngineError, Result};

const HASH: &str = include_str!("../../../shaders/hash.wgsl");
const ACTIVATION: &str = include_str!("../../../shaders/activation.wgsl");
const BATCHNORM: &str = include_str!("../../../shaders/batchnorm.wgsl");
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
    AvgPoolForward,
    AvgPoolBackward,
    NormStatistics,
    Normalize,
    NormBackwardParams,
    NormBackwardInput,
    ActivationInPlace,
    ActivationInto,
    SlopeAtOutput,
    SlopeAtInput,
    Dropout,
    NormalizeU8,
    Xent,
    Predict,
    Sgd,
    Momentum,
    Adam,
}

/// A compiled entry point: a kernel, and for a tiled product its tile variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pipeline {
    pub(crate) kernel: Kernel,
    pub(crate) tile: Option<Tile>,
}

impl From<Kernel> for Pipeline {
    fn from(kernel: Kernel) -> Self {
        Self { kernel, tile: None }
    }
}

impl Pipeline {
    fn index(self) -> usize {
        self.kernel as usize * (Tile::ALL.len() + 1) + self.tile.map_or(0, |t| t as usize + 1)
    }
}

/// Shader files, as compiled: the tiled product (after one variant's tile constants), the
/// dropout hash and the activation functions are prepended to their users.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Module {
    Dense(Tile),
    Conv2d(Tile),
    Pool,
    BatchNorm,
    Elementwise,
    SoftmaxXent,
    Optim,
}

impl Module {
    /// Every module the device compiles.
    pub(crate) fn all() -> Vec<Module> {
        let tiled = Tile::ALL.iter().flat_map(|&t| [Module::Dense(t), Module::Conv2d(t)]);
        tiled.chain([Module::Pool, Module::BatchNorm, Module::Elementwise, Module::SoftmaxXent, Module::Optim]).collect()
    }

    pub(crate) fn file(self) -> &'static str {
        match self {
            Module::Dense(_) => "dense.wgsl",
            Module::Conv2d(_) => "conv2d.wgsl",
            Module::Pool => "pool.wgsl",
            Module::BatchNorm => "batchnorm.wgsl",
            Module::Elementwise => "elementwise.wgsl",
            Module::SoftmaxXent => "softmax_xent.wgsl",
            Module::Optim => "optim.wgsl",
        }
    }

    pub(crate) fn tile(self) -> Option<Tile> {
        match self {
            Module::Dense(t) | Module::Conv2d(t) => Some(t),
            _ => None,
        }
    }

    /// The file, and the tile variant where there is one (`dense.wgsl [128x64]`).
    pub(crate) fn describe(self) -> String {
        match self.tile() {
            Some(t) => format!("{} [{}]", self.file(), t.name()),
            None => self.file().to_string(),
        }
    }

    pub(crate) fn source(self) -> String {
        match self {
            Module::Dense(t) => format!("{}\n{HASH}\n{ACTIVATION}\n{GEMM_TILE}\n{DENSE}", t.wgsl_constants()),
            Module::Conv2d(t) => format!("{}\n{HASH}\n{ACTIVATION}\n{GEMM_TILE}\n{CONV2D}", t.wgsl_constants()),
            Module::Pool => format!("{HASH}\n{ACTIVATION}\n{POOL}"),
            Module::BatchNorm => format!("{HASH}\n{ACTIVATION}\n{BATCHNORM}"),
            Module::Elementwise => format!("{HASH}\n{ACTIVATION}\n{ELEMENTWISE}"),
            Module::SoftmaxXent => SOFTMAX_XENT.to_string(),
            Module::Optim => OPTIM.to_string(),
        }
    }
}

pub(crate) const KERNEL_COUNT: usize = 24;

/// Which file family each kernel lives in.
#[derive(Clone, Copy)]
enum Family {
    /// The tiled products: one pipeline per tile variant.
    Dense,
    Conv2d,
    /// The split-K reduction, in dense.wgsl (any variant: it does not use the tile).
    Reduce,
    Single(Module),
}

const KERNELS: [(Kernel, Family, &str); KERNEL_COUNT] = [
    (Kernel::Matmul, Family::Dense, "matmul"),
    (Kernel::ReduceSplits, Family::Reduce, "reduce_splits"),
    (Kernel::ConvForward, Family::Conv2d, "forward"),
    (Kernel::ConvBackwardInput, Family::Conv2d, "backward_input"),
    (Kernel::ConvBackwardWeight, Family::Conv2d, "backward_weight"),
    (Kernel::MaxPoolForward, Family::Single(Module::Pool), "max_forward"),
    (Kernel::MaxPoolBackward, Family::Single(Module::Pool), "max_backward"),
    (Kernel::AvgPoolForward, Family::Single(Module::Pool), "avg_forward"),
    (Kernel::AvgPoolBackward, Family::Single(Module::Pool), "avg_backward"),
    (Kernel::NormStatistics, Family::Single(Module::BatchNorm), "statistics"),
    (Kernel::Normalize, Family::Single(Module::BatchNorm), "normalize"),
    (Kernel::NormBackwardParams, Family::Single(Module::BatchNorm), "backward_params"),
    (Kernel::NormBackwardInput, Family::Single(Module::BatchNorm), "backward_input"),
    (Kernel::ActivationInPlace, Family::Single(Module::Elementwise), "activation_in_place"),
    (Kernel::ActivationInto, Family::Single(Module::Elementwise), "activation_into"),
    (Kernel::SlopeAtOutput, Family::Single(Module::Elementwise), "slope_at_output_in_place"),
    (Kernel::SlopeAtInput, Family::Single(Module::Elementwise), "slope_at_input"),
    (Kernel::Dropout, Family::Single(Module::Elementwise), "dropout"),
    (Kernel::NormalizeU8, Family::Single(Module::Elementwise), "normalize_u8"),
    (Kernel::Xent, Family::Single(Module::SoftmaxXent), "xent"),
    (Kernel::Predict, Family::Single(Module::SoftmaxXent), "predict"),
    (Kernel::Sgd, Family::Single(Module::Optim), "sgd"),
    (Kernel::Momentum, Family::Single(Module::Optim), "momentum"),
    (Kernel::Adam, Family::Single(Module::Optim), "adam"),
];

/// The entry point name of kernel number `index`.
pub(crate) fn entry_point(index: usize) -> &'static str {
    KERNELS[index].2
}

/// Every pipeline the device builds, with its module and entry point.
fn pipelines() -> Vec<(Pipeline, Module, &'static str)> {
    let mut out = Vec::new();
    for &(kernel, family, entry) in &KERNELS {
        match family {
            Family::Dense => out.extend(Tile::ALL.map(|t| (Pipeline { kernel, tile: Some(t) }, Module::Dense(t), entry))),
            Family::Conv2d => out.extend(Tile::ALL.map(|t| (Pipeline { kernel, tile: Some(t) }, Module::Conv2d(t), entry))),
            Family::Reduce => out.push((kernel.into(), Module::Dense(Tile::ALL[0]), entry)),
            Family::Single(module) => out.push((kernel.into(), module, entry)),
        }
    }
    out
}

/// The module and entry point a pipeline is compiled from.
pub(crate) fn pipeline_source(pipeline: Pipeline) -> (Module, &'static str) {
    let (_, module, entry) = pipelines().into_iter().find(|(p, _, _)| *p == pipeline).expect("every pipeline is built");
    (module, entry)
}

/// Every shader module as the device compiles it: (module, WGSL source).
pub(crate) fn shader_modules() -> Vec<(Module, String)> {
    Module::all().into_iter().map(|m| (m, m.source())).collect()
}

pub(crate) struct Kernels {
    /// By [`Pipeline::index`].
    pipelines: Vec<Option<wgpu::ComputePipeline>>,
}

impl Kernels {
    /// Compiles every shader file and entry point; a WGSL error names the file.
    pub(crate) fn build(device: &wgpu::Device) -> Result<Self> {
        let all = Module::all();
        let mut modules = Vec::with_capacity(all.len());
        for &module in &all {
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let descriptor =
                wgpu::ShaderModuleDescriptor { label: Some(module.file()), source: wgpu::ShaderSource::Wgsl(module.source().into()) };
            // SAFETY: the dispatchers keep every access in bounds (each workgroup checks its rows
            // and columns against the shape; tests/gpu_guards.rs checks that guard regions after
            // every output stay untouched) and every loop ends (its bounds are uniform values).
            let shader = unsafe { device.create_shader_module_trusted(descriptor, wgpu::ShaderRuntimeChecks::unchecked()) };
            if let Some(err) = pollster::block_on(scope.pop()) {
                return Err(EngineError::Device(format!("shaders/{}: {err}", module.describe())));
            }
            modules.push(shader);
        }
        let mut pipelines = vec![None; KERNEL_COUNT * (Tile::ALL.len() + 1)];
        for (pipeline, module, entry) in self::pipelines() {
            let shader = &modules[all.iter().position(|&m| m == module).expect("every module is compiled")];
            let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let compiled = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: shader,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
            if let Some(err) = pollster::block_on(scope.pop()) {
                return Err(EngineError::Device(format!("shaders/{} entry point {entry}: {err}", module.describe())));
            }
            pipelines[pipeline.index()] = Some(compiled);
        }
        Ok(Self { pipelines })
    }

    pub(crate) fn get(&self, pipeline: Pipeline) -> &wgpu::ComputePipeline {
        self.pipelines[pipeline.index()].as_ref().unwrap_or_else(|| panic!("no pipeline {pipeline:?}"))
    }
}
