// Replays an mnist-rs WebGPU inference plan (format "mnist-rs-webgpu-plan", version 1): the
// shaders, buffers, initial contents and ordered dispatches that the engine's recorder wrote for
// one model version and batch size. Nothing here knows about layers or models: any plan runs.

export const PLAN_FORMAT = 'mnist-rs-webgpu-plan';
export const PLAN_FORMAT_VERSION = 1;

/** A plan that cannot be replayed: the message says which part of it is wrong. */
export class PlanError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PlanError';
  }
}

const STORAGE_USAGE = () => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;

function fail(message) {
  throw new PlanError(message);
}

function checkIndex(what, index, length) {
  if (!Number.isInteger(index) || index < 0 || index >= length) {
    fail(`${what} refers to ${index}, but the plan has ${length}`);
  }
}

function checkRange(what, plan, buffer, offset, bytes) {
  checkIndex(`${what}: buffer`, buffer, plan.buffers.length);
  const size = plan.buffers[buffer].size;
  if (!Number.isInteger(offset) || !Number.isInteger(bytes) || offset < 0 || bytes < 0 || offset + bytes > size) {
    fail(`${what}: bytes ${offset}..${offset + bytes} lie outside buffer ${buffer} (${size} bytes)`);
  }
}

const product = (shape) => shape.reduce((a, b) => a * b, 1);

/** Checks that `plan` is a plan this replayer reads and that every index in it is in range. */
export function checkPlan(plan, weightsBytes) {
  if (plan?.format !== PLAN_FORMAT) fail(`not an inference plan (format ${JSON.stringify(plan?.format)})`);
  if (plan.format_version !== PLAN_FORMAT_VERSION) {
    fail(`plan format version ${plan.format_version}; this page reads version ${PLAN_FORMAT_VERSION}`);
  }
  for (const key of ['shaders', 'pipelines', 'buffers', 'initial', 'dispatches']) {
    if (!Array.isArray(plan[key])) fail(`the plan has no "${key}" list`);
  }
  if (!Number.isInteger(plan.batch) || plan.batch < 1) fail(`batch ${plan.batch} is not a positive integer`);
  plan.pipelines.forEach((p, i) => checkIndex(`pipeline ${i}: shader`, p.shader, plan.shaders.length));
  const { slot_bytes: slotBytes, slots } = plan.uniforms ?? {};
  if (!Number.isInteger(slotBytes) || !Number.isInteger(slots) || slotBytes % 4 !== 0) {
    fail('the plan\'s "uniforms" needs whole "slot_bytes" (a multiple of 4) and "slots"');
  }
  plan.initial.forEach((w, i) => {
    const bytes = w.u32 ? w.u32.length * 4 : w.bytes;
    checkRange(`initial write ${i}${w.name ? ` (${w.name})` : ''}`, plan, w.buffer, w.offset, bytes);
    if (!w.u32 && (!Number.isInteger(w.weights_offset) || w.weights_offset + w.bytes > weightsBytes)) {
      fail(`initial write ${i} (${w.name}) reads weights ${w.weights_offset}..${w.weights_offset + w.bytes} of ${weightsBytes}`);
    }
  });
  for (const [what, io] of [['input', plan.input], ['output', plan.output]]) {
    if (io?.dtype !== 'float32' || !Array.isArray(io.shape)) fail(`the plan's ${what} must be float32 with a shape`);
    checkRange(what, plan, io.buffer, io.offset, product(io.shape) * 4);
  }
  if (!Number.isInteger(plan.output.classes_offset) || plan.output.classes_offset + plan.batch > product(plan.output.shape)) {
    fail(`output classes_offset ${plan.output.classes_offset} does not leave room for ${plan.batch} classes`);
  }
  plan.dispatches.forEach((d, i) => {
    checkIndex(`dispatch ${i}: pipeline`, d.pipeline, plan.pipelines.length);
    if (d.uniform_slot !== undefined) {
      checkIndex(`dispatch ${i}: uniform slot`, d.uniform_slot, slots);
      if ((d.uniform?.length ?? 0) * 4 > slotBytes) fail(`dispatch ${i}: ${d.uniform.length} uniform words overflow a ${slotBytes}-byte slot`);
    }
    for (const b of d.bindings) {
      const offset = b.offset ?? 0;
      checkRange(`dispatch ${i}: binding ${b.binding}`, plan, b.buffer, offset, b.size ?? (plan.buffers[b.buffer]?.size ?? 0) - offset);
    }
    if (!Array.isArray(d.workgroups) || d.workgroups.length < 1 || d.workgroups.some((n) => !Number.isInteger(n) || n < 0)) {
      fail(`dispatch ${i}: workgroups ${JSON.stringify(d.workgroups)}`);
    }
  });
}

/** Shader modules and pipelines compiled once per device, shared by the plans of every batch size. */
export class ShaderCache {
  constructor(device) {
    this.device = device;
    this.modules = new Map();
    this.compilations = new Map();
    this.pipelines = new Map();
  }

  /** The module's compilation messages. Asked once per module: in Chromium 156 a second getCompilationInfo() never resolves. */
  compilationInfo(shader) {
    const module = this.module(shader);
    let info = this.compilations.get(module);
    if (!info) {
      info = module.getCompilationInfo();
      this.compilations.set(module, info);
    }
    return info;
  }

  module({ code, label }) {
    let module = this.modules.get(code);
    if (!module) {
      module = this.device.createShaderModule({ code, label });
      this.modules.set(code, module);
    }
    return module;
  }

  pipeline(shader, entryPoint) {
    const key = `${entryPoint}\u0000${shader.code}`;
    let pipeline = this.pipelines.get(key);
    if (!pipeline) {
      const module = this.module(shader);
      pipeline = this.device
        .createComputePipelineAsync({ label: `${shader.label} ${entryPoint}`, layout: 'auto', compute: { module, entryPoint } })
        .catch(async (error) => {
          this.pipelines.delete(key);
          throw new PlanError(`${shader.label}, entry point ${entryPoint}: ${error.message}${await this.compilerErrors(shader)}`);
        });
      this.pipelines.set(key, pipeline);
    }
    return pipeline;
  }

  async compilerErrors(shader) {
    const { messages } = await this.compilationInfo(shader);
    const errors = messages.filter((m) => m.type === 'error').map(formatMessage);
    return errors.length ? `\n${errors.join('\n')}` : '';
  }
}

const formatMessage = (m) => `${m.type} at line ${m.lineNum}:${m.linePos}: ${m.message}`;

/** How `shaders` (a list of {label, code}) compile on the cache's device: [{label, messages: [{type, message, lineNum, linePos}]}]. */
export async function compilationReport(cache, shaders) {
  // The messages tell of errors; the device need not report them a second time.
  cache.device.pushErrorScope('validation');
  const infos = shaders.map((shader) => cache.compilationInfo(shader));
  await cache.device.popErrorScope();
  return Promise.all(
    infos.map(async (info, i) => {
      const { messages } = await info;
      return {
        label: shaders[i].label,
        messages: messages.map(({ type, message, lineNum, linePos }) => ({ type, message, lineNum, linePos })),
      };
    }),
  );
}

/** Throws a PlanError naming the first shader of `plan` that does not compile, with the compiler's errors. */
async function checkShadersCompile(cache, plan) {
  for (const { label, messages } of await compilationReport(cache, plan.shaders)) {
    const errors = messages.filter((m) => m.type === 'error');
    if (errors.length) fail(`${label} does not compile:\n${errors.map(formatMessage).join('\n')}`);
  }
}

/** Runs `body`; a WebGPU validation or out-of-memory error it caused becomes a thrown PlanError. */
async function withErrorScopes(device, what, body) {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result;
  let failure;
  try {
    result = await body();
  } catch (error) {
    failure = error;
  }
  const validation = await device.popErrorScope();
  const memory = await device.popErrorScope();
  if (failure) throw failure;
  const error = validation ?? memory;
  if (error) throw new PlanError(`${what}: ${error.message}`);
  return result;
}

/** A plan made ready on a device: buffers written, pipelines and bind groups built. */
export class Replayer {
  /** `weights` is the plan's weights blob (an ArrayBuffer); `shaders` a ShaderCache for `device`. */
  static async create(device, shaders, plan, weights) {
    checkPlan(plan, weights.byteLength);
    await checkShadersCompile(shaders, plan);
    return withErrorScopes(device, `setting up the plan for batch ${plan.batch}`, async () => {
      const pipelines = await Promise.all(plan.pipelines.map((p) => shaders.pipeline(plan.shaders[p.shader], p.entry_point)));
      return new Replayer(device, plan, weights, pipelines);
    });
  }

  constructor(device, plan, weights, pipelines) {
    this.device = device;
    this.plan = plan;
    this.batch = plan.batch;
    this.inputLength = product(plan.input.shape);
    this.outputBytes = product(plan.output.shape) * 4;
    const roundUp4 = (n) => Math.max(4, Math.ceil(n / 4) * 4);
    this.buffers = plan.buffers.map((b, i) =>
      device.createBuffer({ label: `${b.label ?? 'buffer'} #${i}`, size: roundUp4(b.size), usage: STORAGE_USAGE() }),
    );
    const { slot_bytes: slotBytes, slots } = plan.uniforms;
    this.uniforms = device.createBuffer({
      label: 'uniforms',
      size: Math.max(slotBytes, slotBytes * slots),
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.readback = device.createBuffer({ label: 'output readback', size: this.outputBytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

    const weightBytes = new Uint8Array(weights);
    for (const w of plan.initial) {
      const data = w.u32 ? new Uint32Array(w.u32) : weightBytes.subarray(w.weights_offset, w.weights_offset + w.bytes);
      device.queue.writeBuffer(this.buffers[w.buffer], w.offset, data);
    }
    const words = new Uint32Array((slotBytes * slots) / 4);
    for (const d of plan.dispatches) {
      if (d.uniform_slot !== undefined && d.uniform) words.set(d.uniform, (d.uniform_slot * slotBytes) / 4);
    }
    if (words.length) device.queue.writeBuffer(this.uniforms, 0, words);

    this.steps = plan.dispatches.map((d, i) => {
      const pipeline = pipelines[d.pipeline];
      const entries = d.bindings.map((b) => ({
        binding: b.binding,
        resource: { buffer: this.buffers[b.buffer], offset: b.offset ?? 0, size: b.size ?? plan.buffers[b.buffer].size - (b.offset ?? 0) },
      }));
      if (d.uniform_slot !== undefined) {
        entries.unshift({ binding: 0, resource: { buffer: this.uniforms, offset: d.uniform_slot * slotBytes, size: slotBytes } });
      }
      const bindGroup = device.createBindGroup({ label: `dispatch ${i}`, layout: pipeline.getBindGroupLayout(0), entries });
      const [x, y = 1, z = 1] = d.workgroups;
      return { pipeline, bindGroup, workgroups: [x, y, z] };
    });
    this.queue = Promise.resolve();
  }

  /** Runs the plan on `input` (product(input.shape) floats); resolves to the output's floats. */
  run(input) {
    if (input.length !== this.inputLength) {
      return Promise.reject(new PlanError(`the plan takes ${this.inputLength} input values, not ${input.length}`));
    }
    // One readback buffer: runs wait for each other.
    const result = this.queue.then(() => withErrorScopes(this.device, 'running the plan', () => this.runNow(input)));
    this.queue = result.catch(() => {});
    return result;
  }

  async runNow(input) {
    const { device, plan } = this;
    device.queue.writeBuffer(this.buffers[plan.input.buffer], plan.input.offset, input);
    const encoder = device.createCommandEncoder({ label: 'plan' });
    const pass = encoder.beginComputePass({ label: 'plan' });
    for (const { pipeline, bindGroup, workgroups } of this.steps) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(...workgroups);
    }
    pass.end();
    encoder.copyBufferToBuffer(this.buffers[plan.output.buffer], plan.output.offset, this.readback, 0, this.outputBytes);
    device.queue.submit([encoder.finish()]);
    await this.readback.mapAsync(GPUMapMode.READ);
    const output = new Float32Array(this.readback.getMappedRange().slice(0));
    this.readback.unmap();
    return output;
  }

  /** Splits an output into `{classes, probabilities}` per image: probabilities first, then classes as floats. */
  parse(output) {
    const { batch } = this;
    const classesOffset = this.plan.output.classes_offset;
    const perImage = classesOffset / batch;
    const probabilities = [];
    const classes = [];
    for (let i = 0; i < batch; i++) {
      probabilities.push(Array.from(output.subarray(i * perImage, (i + 1) * perImage)));
      classes.push(Math.round(output[classesOffset + i]));
    }
    return { classes, probabilities };
  }

  destroy() {
    for (const b of this.buffers) b.destroy();
    this.uniforms.destroy();
    this.readback.destroy();
  }
}
