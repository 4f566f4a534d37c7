//! Inference plans (engine::gpu::plan): recorded without a GPU, they hold everything a WebGPU
//! implementation needs. This test replays a plan with bare wgpu on the test's adapter (no
//! engine code involved: only the plan's data) and gets the engine's own predictions.

mod common;

use common::{EVERY_LAYER_CNN, SMALL_CNN, random};
use engine::Device;
use engine::gpu::plan::{self, Initial, Plan};
use engine::model::{Config, Network};
use wgpu::util::DeviceExt;

fn export(config: &str, dir: &std::path::Path) -> Network {
    let spec = Config::parse(config).unwrap().model_spec().unwrap();
    let net = Network::new(spec, Device::cpu(), 3).unwrap();
    engine::export::write(dir, "1", &net, serde_json::json!({}), 0).unwrap();
    net
}

/// Runs `plan` on `images` with wgpu alone and returns the output values.
fn replay(plan: &Plan, weights: &[u8], images: &[f32]) -> Vec<f32> {
    let _ = common::gpu();
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default())).expect("an adapter");
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default())).expect("a device");
    let modules: Vec<wgpu::ShaderModule> = plan
        .shaders
        .iter()
        .map(|s| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&s.label),
                source: wgpu::ShaderSource::Wgsl(s.code.as_str().into()),
            })
        })
        .collect();
    let pipelines: Vec<wgpu::ComputePipeline> = plan
        .pipelines
        .iter()
        .map(|p| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(p.entry_point),
                layout: None,
                module: &modules[p.shader],
                entry_point: Some(p.entry_point),
                compilation_options: Default::default(),
                cache: None,
            })
        })
        .collect();
    let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let buffers: Vec<wgpu::Buffer> = plan
        .buffers
        .iter()
        .map(|b| device.create_buffer(&wgpu::BufferDescriptor { label: None, size: b.size, usage, mapped_at_creation: false }))
        .collect();
    for Initial { buffer, offset, bytes, weights_offset, u32, .. } in &plan.initial {
        match (bytes, weights_offset, u32) {
            (Some(n), Some(at), None) => queue.write_buffer(&buffers[*buffer], *offset, &weights[*at as usize..(*at + *n) as usize]),
            (None, None, Some(words)) => queue.write_buffer(&buffers[*buffer], *offset, bytemuck::cast_slice(words)),
            other => panic!("an initial entry is either weights or words: {other:?}"),
        }
    }
    let mut uniform_bytes = vec![0u8; (plan.uniforms.slot_bytes as usize) * plan.uniforms.slots];
    for d in &plan.dispatches {
        let at = d.uniform_slot * plan.uniforms.slot_bytes as usize;
        uniform_bytes[at..at + 4 * d.uniform.len()].copy_from_slice(bytemuck::cast_slice(&d.uniform));
    }
    let uniforms = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: &uniform_bytes,
        usage: wgpu::BufferUsages::UNIFORM,
    });
    queue.write_buffer(&buffers[plan.input.buffer], plan.input.offset, bytemuck::cast_slice(images));
    let out_bytes = (plan.output.shape[0] * plan.output.shape[1] * 4) as u64;
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: out_bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut encoder = device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for d in &plan.dispatches {
            let pipeline = &pipelines[d.pipeline];
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniforms,
                    offset: d.uniform_slot as u64 * plan.uniforms.slot_bytes,
                    size: wgpu::BufferSize::new(plan.uniforms.slot_bytes),
                }),
            }];
            entries.extend(d.bindings.iter().map(|b| wgpu::BindGroupEntry {
                binding: b.binding,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &buffers[b.buffer],
                    offset: b.offset,
                    size: wgpu::BufferSize::new(b.size),
                }),
            }));
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
        }
    }
    encoder.copy_buffer_to_buffer(&buffers[plan.output.buffer], plan.output.offset, &staging, 0, out_bytes);
    queue.submit([encoder.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec()
}

#[test]
fn a_replayed_plan_predicts_what_the_engine_does() {
    for (config, batch) in [(SMALL_CNN, 5), (EVERY_LAYER_CNN, 3), (include_str!("../../trainer/HyperParams.config"), 2)] {
        let dir = tempfile::tempdir().unwrap();
        let net = export(config, dir.path());
        // As a server loads it: from the export, batch normalisations folded.
        let (_, loaded) = engine::export::load(&dir.path().join("1"), Device::cpu()).unwrap();
        let recorded = plan::record(&loaded, batch).unwrap();
        let p = &recorded.plan;
        assert_eq!((p.format, p.batch, p.weights.bytes), (plan::PLAN_FORMAT, batch, recorded.weights.len()));
        assert!(p.dispatches.len() >= 4 && !p.shaders.is_empty(), "{} dispatches", p.dispatches.len());
        let images: Vec<f32> = random(batch * 784, 7).iter().map(|v| v.abs()).collect();
        let want = engine::predictor::Inference::new(&net, batch).predict(&net, &images).unwrap();
        let got = replay(p, &recorded.weights, &images);
        let classes_at = p.output.classes_offset.unwrap();
        let classes: Vec<i64> = got[classes_at..classes_at + batch].iter().map(|&c| c as i64).collect();
        assert_eq!(classes, want.classes);
        for (g, w) in got[..classes_at].iter().zip(&want.probabilities) {
            assert!((g - w).abs() < 1e-5, "probability {g} vs the engine's {w}");
        }
    }
}

#[test]
fn plans_need_a_sensible_batch() {
    let dir = tempfile::tempdir().unwrap();
    let net = export(SMALL_CNN, dir.path());
    for batch in [0, plan::MAX_PLAN_BATCH + 1] {
        let e = plan::record(&net, batch).err().expect("refused").to_string();
        assert!(e.contains("batch"), "{e}");
    }
}
