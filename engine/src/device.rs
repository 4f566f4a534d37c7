//! Devices: where tensors live and kernels run.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use crate::error::Result;
use crate::gpu::{AdapterPolicy, GpuDevice};

/// What the user asked for (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Gpu,
    Auto,
}

impl FromStr for DeviceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "gpu" => Ok(DeviceKind::Gpu),
            "auto" => Ok(DeviceKind::Auto),
            other => Err(format!("unknown device '{other}': expected cpu, gpu or auto")),
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
            DeviceKind::Auto => "auto",
        })
    }
}

/// A device owning tensors. Enum dispatch keeps layers plain structs. Cheap to clone: clones
/// share the device (one GPU device, its pipelines and buffer pool; or the CPU's scratch), so a
/// process can open it once and hand it to every network it loads.
#[derive(Clone, Debug)]
pub enum Device {
    Cpu(CpuDevice),
    Gpu(GpuDevice),
}

impl Device {
    pub fn cpu() -> Self {
        Device::Cpu(CpuDevice::default())
    }

    /// Any GPU adapter wgpu finds, software ones (Mesa lavapipe) included.
    pub fn gpu() -> Result<Self> {
        Ok(Device::Gpu(GpuDevice::open(AdapterPolicy::Any)?))
    }

    /// Resolves `--device`. `auto` takes a hardware GPU when wgpu finds one, else the CPU, and
    /// logs which; `gpu` takes any adapter and is an error when there is none.
    pub fn open(kind: DeviceKind) -> Result<Self> {
        match kind {
            DeviceKind::Cpu => Ok(Self::cpu()),
            DeviceKind::Gpu => Self::gpu(),
            DeviceKind::Auto => match GpuDevice::open(AdapterPolicy::HardwareOnly) {
                Ok(gpu) => {
                    let device = Device::Gpu(gpu);
                    tracing::info!("device auto: using {}", device.describe());
                    Ok(device)
                }
                Err(e) => {
                    let device = Self::cpu();
                    tracing::info!("device auto: {}; using {}", e.to_string().trim_start_matches("device: "), device.describe());
                    Ok(device)
                }
            },
        }
    }

    /// One line for logs and result files, e.g. `cpu (2 threads)`.
    pub fn describe(&self) -> String {
        match self {
            Device::Cpu(_) => format!("cpu ({} threads)", rayon::current_num_threads()),
            Device::Gpu(g) => g.describe(),
        }
    }

    pub fn kind(&self) -> DeviceKind {
        match self {
            Device::Cpu(_) => DeviceKind::Cpu,
            Device::Gpu(_) => DeviceKind::Gpu,
        }
    }

    /// The largest tensor this device can hand to one kernel, if it has a limit.
    pub fn max_tensor_bytes(&self) -> Option<u64> {
        match self {
            Device::Cpu(_) => None,
            Device::Gpu(g) => Some(g.max_binding_bytes()),
        }
    }

    /// Exclusive use of the device for one run (upload to readback) by one of several threads
    /// sharing it: a GPU's scratch buffers are per device. On the CPU, nothing to hold.
    pub fn lock_run(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        match self {
            Device::Cpu(_) => None,
            Device::Gpu(g) => Some(g.lock_run()),
        }
    }

    /// Runs `work`, which calls this device's kernels: on the CPU as one job of the kernels'
    /// thread pool (see [`crate::cpu::threads::in_pool`]): one hand-off to the pool per call
    /// instead of one per kernel. On a GPU, on this thread.
    pub fn run<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match self {
            Device::Cpu(_) => crate::cpu::threads::in_pool(work),
            Device::Gpu(_) => work(),
        }
    }

    /// Starts the recorded operations without waiting for them (a no-op on the CPU).
    pub fn submit(&self) {
        if let Device::Gpu(g) = self {
            g.submit();
        }
    }

    /// Waits until every recorded operation has finished (a no-op on the CPU).
    pub fn synchronize(&self) {
        if let Device::Gpu(g) = self {
            g.synchronize();
        }
    }
}

/// The CPU device: rayon's pool, plus per-chunk scratch buffers that grow once and are reused.
#[derive(Clone, Debug, Default)]
pub struct CpuDevice {
    /// Idle scratch sets. A kernel takes one for its call and puts it back; the lock is held
    /// only to take or return one, never while a kernel runs: a pool thread waiting inside a
    /// kernel may run another request's kernel, which then takes a set of its own.
    scratch: Arc<Mutex<Vec<Vec<Vec<f32>>>>>,
}

impl CpuDevice {
    /// Runs `f` with `chunks` scratch buffers of at least `len` floats each.
    pub(crate) fn with_scratch<R>(&self, chunks: usize, len: usize, f: impl FnOnce(&mut [Vec<f32>]) -> R) -> R {
        let idle = || self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let mut set = idle().pop().unwrap_or_default();
        if set.len() < chunks {
            set.resize_with(chunks, Vec::new);
        }
        for buf in set.iter_mut().take(chunks) {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
        }
        let result = f(&mut set[..chunks]);
        idle().push(set);
        result
    }
}
