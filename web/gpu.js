// Opens a WebGPU device, or says why there is none.

/** No WebGPU here: the message says why (no API, no adapter, device refused). */
export class GpuUnavailable extends Error {
  constructor(message) {
    super(message);
    this.name = 'GpuUnavailable';
  }
}

/**
 * Resolves to {device, adapter: {vendor, architecture, description}}. `onLost(message)` and
 * `onError(message)` hear of a lost device and of WebGPU errors no operation caught.
 */
export async function openGpu({ onLost, onError }) {
  if (!navigator.gpu) throw new GpuUnavailable('this browser has no WebGPU (navigator.gpu is missing)');
  let adapter;
  try {
    adapter = await navigator.gpu.requestAdapter();
  } catch (error) {
    throw new GpuUnavailable(`no WebGPU adapter: ${error.message}`);
  }
  if (!adapter) throw new GpuUnavailable('WebGPU found no adapter (no usable GPU)');
  // The default limits: the engine records its plans within them.
  let device;
  try {
    device = await adapter.requestDevice();
  } catch (error) {
    throw new GpuUnavailable(`the WebGPU adapter refused a device: ${error.message}`);
  }
  device.lost.then((info) => {
    if (info.reason !== 'destroyed') onLost(`the WebGPU device was lost: ${info.message || info.reason}`);
  });
  device.addEventListener('uncapturederror', (event) => onError(`WebGPU error: ${event.error.message}`));
  const info = adapter.info ?? {};
  return { device, adapter: { vendor: info.vendor ?? '', architecture: info.architecture ?? '', description: info.description ?? '' } };
}
