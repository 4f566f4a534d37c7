//! What the GPU backend does for a model, counted as it records: per training step and per
//! inference batch, the dispatches (per kernel), compute passes, submissions, blocking maps and
//! bytes moved; per tiled product of a training step, its shape, tile, split-K and useful/issued
//! FMA ratio; the tiled product's register blocking; and, from naga's IR of the compiled shaders,
//! the integer divisions and modulos inside each kernel's loops. Printed by the `gpu_report`
//! example and held at their targets by the tests. Counts, not timings: any adapter will do.

use serde::Serialize;

use super::gemm::Tile;
use super::inspect::{self, LoopArithmetic};
use super::kernels::Module;
use super::{GemmShape, GpuCounters};
use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::model::{Config, Network};
use crate::optim::Optimizer;
use crate::predictor::Inference;

/// One tile variant of the tiled product, read from the constants it is compiled with.
#[derive(Clone, Debug, Serialize)]
pub struct RegisterBlocking {
    pub tile: String,
    /// Rows x columns of C per workgroup.
    pub workgroup_outputs: [u32; 2],
    /// Outputs each thread accumulates, rows x columns.
    pub outputs_per_thread: [u32; 2],
    pub threads: u32,
    /// FMAs per vec4 read from workgroup memory in the inner loop (rows / 4 + columns / 4 reads
    /// per rows x columns FMAs).
    pub fma_per_shared_load: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct GpuReport {
    pub device: String,
    pub train_batch: usize,
    /// One steady training step.
    pub training_step: GpuCounters,
    /// Reading back the loss and accuracy of `steps_per_report` steps at once.
    pub steps_per_report: usize,
    pub report_readback: GpuCounters,
    pub inference_batch_1: GpuCounters,
    pub inference_batch_256: GpuCounters,
    pub training_step_gemms: Vec<GemmShape>,
    pub register_blocking: Vec<RegisterBlocking>,
    pub loop_integer_div_mod: Vec<LoopArithmetic>,
}

/// Measures `config`'s model on `device` (a GPU) with training batches of `train_batch`.
pub fn measure(device: &Device, config: &Config, train_batch: usize) -> Result<GpuReport> {
    let Device::Gpu(gpu) = device else { return Err(EngineError::Device("the GPU report needs a GPU device".into())) };
    let mut net = Network::new(config.model_spec()?, device.clone(), 1)?;
    let mut opt = Optimizer::new(&net, &config.train.optimizer, 0.0);
    let mut ws = net.workspace(train_batch, true);
    let len = net.input_len();
    let pixels: Vec<u8> = (0..train_batch * len).map(|i| (i * 37 % 256) as u8).collect();
    let labels: Vec<u8> = (0..train_batch).map(|i| (i % net.num_classes()) as u8).collect();
    // What a step records does not depend on what ran before it (scratch buffers growing is
    // not counted), so the first step is measured.
    let before = gpu.counters();
    gpu.log_gemms(true);
    net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, 0);
    let training_step_gemms = gpu.log_gemms(false);
    let training_step = gpu.counters().since(&before);
    let steps_per_report = 2;
    for step in 1..steps_per_report as u32 {
        net.train_step(&mut ws, &mut opt, &pixels, &labels, 1e-3, step);
    }
    let before = gpu.counters();
    let stats = ws.take_stats();
    let report_readback = gpu.counters().since(&before);
    if stats.len() != steps_per_report {
        return Err(EngineError::Device(format!("{} steps reported, {steps_per_report} run", stats.len())));
    }

    let inference = |n: usize| -> Result<GpuCounters> {
        let mut inference = Inference::new(&net, n);
        let images = vec![0.5f32; n * len];
        let before = gpu.counters();
        inference.predict(&net, &images)?;
        Ok(gpu.counters().since(&before))
    };
    Ok(GpuReport {
        device: gpu.describe(),
        train_batch,
        training_step,
        steps_per_report,
        report_readback,
        inference_batch_1: inference(1)?,
        inference_batch_256: inference(256)?,
        training_step_gemms,
        register_blocking: Tile::ALL.iter().map(|&t| register_blocking(t)).collect(),
        loop_integer_div_mod: inspect::loop_arithmetic(),
    })
}

fn register_blocking(tile: Tile) -> RegisterBlocking {
    let constant = |name| inspect::module_constant(Module::Dense(tile), name).unwrap_or(0);
    let (bm, bn, tm, tn) = (constant("BM"), constant("BN"), constant("TM"), constant("TN"));
    RegisterBlocking {
        tile: tile.name(),
        workgroup_outputs: [bm, bn],
        outputs_per_thread: [tm, tn],
        threads: (bm / tm.max(1)) * (bn / tn.max(1)),
        fma_per_shared_load: f64::from(tm * tn) / f64::from((tm / 4 + tn / 4).max(1)),
    }
}
