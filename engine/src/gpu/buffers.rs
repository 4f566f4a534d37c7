//! GPU memory: tensor buffers (allocated once by their owners), and a pool of grow-only scratch
//! buffers (split-K partial products, staged pixels, readback staging)
//! shared by every dispatch of a device.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::context::GpuDevice;
use super::kernels::Kernel;
use crate::backend::Conv2dGeometry;

/// A tensor's storage on the GPU: a whole buffer, or one range of a buffer packed with others
/// (so that one dispatch can update every parameter).
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    pub(crate) device: GpuDevice,
}

/// A range of a buffer, as a kernel binds it or a copy reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BufRef<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

impl<'a> BufRef<'a> {
    pub(crate) fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Self { buffer, offset: 0, size: buffer.size() }
    }

    pub(crate) fn binding(self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.offset,
            size: wgpu::BufferSize::new(self.size),
        })
    }
}

/// Buffers and bindings are whole vec4s, so kernels may read any operand as `array<vec4<f32>>`.
pub(crate) const BINDING_GRAIN: u64 = 16;

fn binding_size(bytes: u64) -> u64 {
    bytes.max(BINDING_GRAIN).next_multiple_of(BINDING_GRAIN)
}

fn tensor_buffer(device: &GpuDevice, bytes: u64) -> wgpu::Buffer {
    device.ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("tensor"),
        size: binding_size(bytes),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

impl GpuBuffer {
    /// A zero-filled buffer of at least `bytes` bytes (wgpu zero-initialises new buffers).
    pub(crate) fn zeroed(device: &GpuDevice, bytes: u64) -> Self {
        let buffer = tensor_buffer(device, bytes);
        Self { offset: 0, size: buffer.size(), buffer, device: device.clone() }
    }

    /// Zero-filled ranges of one buffer, one per entry of `bytes`, each at an offset a binding
    /// may start at; and the whole buffer (the gaps stay zero).
    pub(crate) fn packed(device: &GpuDevice, bytes: &[u64]) -> (Vec<Self>, Self) {
        let align = u64::from(device.ctx.limits.min_storage_buffer_offset_alignment).max(4);
        let mut offsets = Vec::with_capacity(bytes.len());
        let mut end = 0u64;
        for &len in bytes {
            offsets.push(end);
            end = (end + binding_size(len)).next_multiple_of(align);
        }
        let whole = Self::zeroed(device, end);
        let parts = offsets
            .into_iter()
            .zip(bytes)
            .map(|(offset, &len)| Self { buffer: whole.buffer.clone(), offset, size: binding_size(len), device: device.clone() })
            .collect();
        (parts, whole)
    }

    pub(crate) fn view(&self) -> BufRef<'_> {
        BufRef { buffer: &self.buffer, offset: self.offset, size: self.size }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes at {})", self.size, self.offset)
    }
}

/// What a scratch buffer holds; each kind has its own buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scratch {
    SplitPartials,
    Pixels,
}

/// A convolution's tap table and the words it holds.
pub(crate) type TapTable = (wgpu::Buffer, Vec<u32>);

pub(crate) struct BufferPool {
    scratch: Mutex<[Option<wgpu::Buffer>; 2]>,
    /// Per (convolution pass, geometry): the tap table (see conv2d.rs) and its words.
    pub(crate) tap_tables: Mutex<HashMap<(Kernel, Conv2dGeometry), TapTable>>,
    readback: Mutex<Option<wgpu::Buffer>>,
    /// Bound where a kernel's optional input or output is unused.
    pub(crate) unused_input: wgpu::Buffer,
    pub(crate) unused_output: wgpu::Buffer,
}

impl BufferPool {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let small = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        Self {
            scratch: Mutex::new([None, None]),
            tap_tables: Mutex::new(HashMap::new()),
            readback: Mutex::new(None),
            unused_input: small("unused input"),
            unused_output: small("unused output"),
        }
    }

    /// The scratch buffer of `kind`, at least `bytes` long. Commands already recorded keep the
    /// buffer they bound alive if it is replaced by a larger one.
    pub(crate) fn scratch(&self, device: &wgpu::Device, kind: Scratch, bytes: u64) -> wgpu::Buffer {
        let mut slots = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut slots[kind as usize];
        let bytes = binding_size(bytes);
        match slot {
            Some(buffer) if buffer.size() >= bytes => buffer.clone(),
            _ => {
                let buffer = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("scratch"),
                    size: bytes,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                *slot = Some(buffer.clone());
                buffer
            }
        }
    }

    /// Every tap table made so far, with its words (for inference plans).
    pub(crate) fn tap_table_contents(&self) -> Vec<(wgpu::Buffer, Vec<u32>)> {
        self.tap_tables.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// The readback staging buffer (mappable), at least `bytes` long, held while in use.
    pub(crate) fn readback(&self, device: &wgpu::Device, bytes: u64) -> MutexGuard<'_, Option<wgpu::Buffer>> {
        let mut guard = self.readback.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_none_or(|b| b.size() < bytes) {
            *guard = Some(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes.next_multiple_of(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        guard
    }
}
