//! Device-owned tensors. Data stays where the device put it; [`Tensor::to_host`] and
//! [`Tensor::read_host_into`] are the only ways back to the host, so every readback is visible
//! at the call site.

use crate::device::Device;
use crate::error::{EngineError, Result};
use crate::gpu::{BufRef, GpuBuffer};

/// A named tensor's copy on the host: `(name, shape, values)`.
pub type HostTensor = (String, Vec<usize>, Vec<f32>);

/// Element types a tensor can hold.
pub trait Element: bytemuck::Pod + Default + Send + Sync + 'static {}
impl Element for f32 {}
impl Element for u32 {}

/// Where a tensor's data lives.
#[derive(Debug)]
pub enum Storage<T: Element> {
    Cpu(Vec<T>),
    Gpu(GpuBuffer),
}

#[derive(Debug)]
pub struct Tensor<T: Element = f32> {
    shape: Vec<usize>,
    storage: Storage<T>,
}

impl<T: Element> Tensor<T> {
    /// A zero-filled tensor on `device`.
    pub fn zeros(device: &Device, shape: &[usize]) -> Self {
        let len: usize = shape.iter().product();
        let storage = match device {
            Device::Cpu(_) => Storage::Cpu(vec![T::default(); len]),
            Device::Gpu(g) => Storage::Gpu(GpuBuffer::zeroed(g, (len * size_of::<T>()) as u64)),
        };
        Self { shape: shape.to_vec(), storage }
    }

    /// Zero-filled tensors of `shapes`; on a GPU they are ranges of one buffer, and the second
    /// value is a tensor over all of it (gaps between ranges included, which stay zero), so one
    /// dispatch can update them all.
    pub fn zeros_packed(device: &Device, shapes: &[Vec<usize>]) -> (Vec<Self>, Option<Self>) {
        match device {
            Device::Cpu(_) => (shapes.iter().map(|s| Self::zeros(device, s)).collect(), None),
            Device::Gpu(g) => {
                let bytes: Vec<u64> = shapes.iter().map(|s| (s.iter().product::<usize>() * size_of::<T>()) as u64).collect();
                let (parts, whole) = GpuBuffer::packed(g, &bytes);
                let tensors = parts.into_iter().zip(shapes).map(|(b, s)| Self { shape: s.clone(), storage: Storage::Gpu(b) }).collect();
                let whole_len = (whole.size as usize) / size_of::<T>();
                (tensors, Some(Self { shape: vec![whole_len], storage: Storage::Gpu(whole) }))
            }
        }
    }

    /// Copies host data onto `device`; `name` labels the error if the length does not fit.
    pub fn from_host(device: &Device, name: &str, shape: &[usize], data: &[T]) -> Result<Self> {
        let mut t = Self::zeros(device, shape);
        t.write_host(name, data)?;
        Ok(t)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the whole tensor back to the host.
    pub fn to_host(&self) -> Vec<T> {
        match &self.storage {
            Storage::Cpu(v) => v.clone(),
            Storage::Gpu(_) => {
                let mut out = vec![T::default(); self.len()];
                self.read_host_into(&mut out);
                out
            }
        }
    }

    /// Reads the first `out.len()` elements back into `out` (no allocation on the host).
    pub fn read_host_into(&self, out: &mut [T]) {
        match &self.storage {
            Storage::Cpu(v) => out.copy_from_slice(&v[..out.len()]),
            Storage::Gpu(g) => {
                assert!(out.len() <= self.len(), "reading {} elements of a {}-element tensor", out.len(), self.len());
                g.device.ctx.read(g.view(), bytemuck::cast_slice_mut(out));
            }
        }
    }

    /// Overwrites the start of the tensor with host data.
    pub fn write_host(&mut self, name: &str, data: &[T]) -> Result<()> {
        if data.len() > self.len() {
            return Err(EngineError::Tensor {
                name: name.to_string(),
                message: format!("{} values do not fit shape {:?} ({} elements)", data.len(), self.shape, self.len()),
            });
        }
        match &mut self.storage {
            Storage::Cpu(v) => v[..data.len()].copy_from_slice(data),
            Storage::Gpu(g) => g.device.ctx.write(name, g.view(), bytemuck::cast_slice(data)),
        }
        Ok(())
    }

    pub(crate) fn cpu(&self) -> &[T] {
        match &self.storage {
            Storage::Cpu(v) => v,
            Storage::Gpu(_) => panic!("a GPU tensor was handed to a CPU kernel"),
        }
    }

    pub(crate) fn cpu_mut(&mut self) -> &mut [T] {
        match &mut self.storage {
            Storage::Cpu(v) => v,
            Storage::Gpu(_) => panic!("a GPU tensor was handed to a CPU kernel"),
        }
    }

    pub(crate) fn gpu(&self) -> BufRef<'_> {
        match &self.storage {
            Storage::Gpu(g) => g.view(),
            Storage::Cpu(_) => panic!("a CPU tensor was handed to a GPU kernel"),
        }
    }
}
