//! Adapter and device selection, and the state every GPU tensor and dispatch shares.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::buffers::BufferPool;
use super::counters::{Counters, GemmShape, GpuCounters};
use super::kernels::Kernels;
use super::recorder::Recorder;
use crate::error::{EngineError, Result};

/// Which adapters `--device` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterPolicy {
    /// Any adapter, software rasterisers (Mesa lavapipe) included: `--device gpu`.
    Any,
    /// Hardware GPUs only: `--device auto`.
    HardwareOnly,
}

pub(crate) struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: wgpu::AdapterInfo,
    pub(crate) limits: wgpu::Limits,
    pub(crate) kernels: Kernels,
    pub(crate) recorder: Mutex<Recorder>,
    pub(crate) buffers: BufferPool,
    /// Held for a whole run (upload, dispatches, readback) by callers sharing the device from
    /// several threads: the scratch buffers (split-K partials, staged inputs) are per device.
    pub(crate) run_lock: Mutex<()>,
    pub(crate) counters: Counters,
    /// On while an inference plan is being recorded (plan.rs).
    pub(crate) capture: Mutex<Option<super::plan::Capture>>,
}

static DEVICES_OPENED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A GPU (or software Vulkan) device. Cheap to clone: clones share the device.
#[derive(Clone)]
pub struct GpuDevice {
    pub(crate) ctx: Arc<GpuContext>,
}

impl fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GpuDevice({})", self.describe())
    }
}

fn rank(kind: wgpu::DeviceType) -> u8 {
    match kind {
        wgpu::DeviceType::DiscreteGpu => 4,
        wgpu::DeviceType::IntegratedGpu => 3,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 1,
        wgpu::DeviceType::Cpu => 0,
    }
}

/// Keeps the Vulkan loader quiet where there is no desktop session: without `XDG_RUNTIME_DIR`,
/// Mesa's device-select layer tries to reach a Wayland display and prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice. That layer only
/// orders adapters by the display's GPU, which a compute-only process without a session does not
/// need, so it is turned off (`NODEVICE_SELECT=1`) unless the user set that variable.
///
/// # Safety
/// Sets an environment variable: call it at the start of `main`, before any thread starts.
pub unsafe fn quiet_vulkan_loader() {
    let session = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).is_dir());
    if !session && std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}

impl GpuDevice {
    /// Opens the best adapter wgpu finds (discrete before integrated before software).
    /// `WGPU_BACKEND` and the other `wgpu` environment variables are honoured.
    pub fn open(policy: AdapterPolicy) -> Result<Self> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let found: Vec<String> = adapters.iter().map(|a| describe_info(&a.get_info())).collect();
        let adapter = adapters
            .into_iter()
            .filter(|a| policy == AdapterPolicy::Any || a.get_info().device_type != wgpu::DeviceType::Cpu)
            .max_by_key(|a| rank(a.get_info().device_type))
            .ok_or_else(|| {
                let seen = if found.is_empty() { "none".to_string() } else { found.join("; ") };
                EngineError::Device(match policy {
                    AdapterPolicy::Any => format!(
                        "no GPU adapter found (adapters seen: {seen}); install a Vulkan driver (a software one: apt-get install mesa-vulkan-drivers libvulkan1) or use --device cpu"
                    ),
                    AdapterPolicy::HardwareOnly => format!("no hardware GPU adapter found (adapters seen: {seen})"),
                })
            })?;
        let info = adapter.get_info();
        tracing::info!("GPU adapter: {} (of: {})", describe_info(&info), found.join("; "));
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("engine"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| EngineError::Device(format!("{}: cannot open the device: {e}", describe_info(&info))))?;
        DEVICES_OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::from_device(device, queue, info, limits)
    }

    /// A device that runs nothing (wgpu's no-op backend) with WebGPU's default limits: what it
    /// records is an inference plan any WebGPU implementation can replay (plan.rs).
    pub(crate) fn open_recorder() -> Result<Self> {
        let limits = wgpu::Limits::default();
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::NOOP;
        desc.backend_options.noop = wgpu::NoopBackendOptions { enable: true, limits: Some(limits.clone()), ..Default::default() };
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .map_err(|e| EngineError::Device(format!("the plan recorder's no-op adapter: {e}")))?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("plan recorder"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::MemoryUsage,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| EngineError::Device(format!("the plan recorder's no-op device: {e}")))?;
        Self::from_device(device, queue, info, limits)
    }

    fn from_device(device: wgpu::Device, queue: wgpu::Queue, info: wgpu::AdapterInfo, limits: wgpu::Limits) -> Result<Self> {
        device.on_uncaptured_error(Arc::new(|e| panic!("wgpu: {e}")));
        let kernels = Kernels::build(&device)?;
        let buffers = BufferPool::new(&device);
        let recorder = Mutex::new(Recorder::new(&device));
        let ctx = GpuContext {
            device,
            queue,
            info,
            limits,
            kernels,
            recorder,
            buffers,
            run_lock: Mutex::new(()),
            counters: Counters::default(),
            capture: Mutex::new(None),
        };
        Ok(Self { ctx: Arc::new(ctx) })
    }

    /// How many GPU devices this process has opened (each with its own pipelines and buffers).
    pub fn opened_count() -> usize {
        DEVICES_OPENED.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// One line for logs and result files, e.g. `gpu (NVIDIA H100, Vulkan, discrete)`.
    pub fn describe(&self) -> String {
        format!("gpu ({})", describe_info(&self.ctx.info))
    }

    pub fn is_software(&self) -> bool {
        self.ctx.info.device_type == wgpu::DeviceType::Cpu
    }

    /// The largest tensor one binding can hold.
    pub fn max_binding_bytes(&self) -> u64 {
        self.ctx.limits.max_storage_buffer_binding_size.min(self.ctx.limits.max_buffer_size)
    }

    /// What the backend has recorded on this device so far.
    pub fn counters(&self) -> GpuCounters {
        self.ctx.counters.snapshot()
    }

    /// Starts logging every tiled product recorded (its shape, tile, splits and FMA counts), or
    /// stops and returns the log.
    pub fn log_gemms(&self, on: bool) -> Vec<GemmShape> {
        self.ctx.counters.set_gemm_log(on)
    }

    /// Exclusive use of the device's scratch buffers for one run, against other threads.
    pub(crate) fn lock_run(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ctx.run_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets cached bind groups, which hold their buffers alive (called when a network that
    /// shares the device is dropped, so its buffers are freed).
    pub(crate) fn forget_bind_groups(&self) {
        self.ctx.recorder.lock().unwrap_or_else(|e| e.into_inner()).forget_bind_groups();
    }

    /// Submits everything recorded so far, without waiting for it.
    pub fn submit(&self) {
        self.ctx.flush();
    }

    /// Submits everything recorded so far and waits for the device to finish it.
    pub fn synchronize(&self) {
        self.ctx.flush();
        self.ctx.device.poll(wgpu::PollType::wait_indefinitely()).expect("device lost while waiting");
    }
}

fn describe_info(info: &wgpu::AdapterInfo) -> String {
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "software",
        wgpu::DeviceType::Other => "other",
    };
    format!("{}, {:?}, {kind}", info.name, info.backend)
}
