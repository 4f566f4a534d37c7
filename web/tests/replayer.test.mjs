// The plan replayer (web/plan.js, web/browser-model.js) on a hand-made plan, in headless
// Chromium's WebGPU, against a tiny server of its own: `node web/tests/replayer.test.mjs`.
// The plan is a two-kernel "model" (an affine layer, then softmax and a class table) that uses
// every part of the format: two shaders, uniform slots, weights at offsets in the blob, inline
// u32 words, bindings at offsets, an output at an offset, and a batch smaller than asked for.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join, extname } from 'node:path';
import { launch, watchErrors } from './chromium.mjs';

const WEB = fileURLToPath(new URL('..', import.meta.url));
const [INPUTS, OUTPUTS, MAX_BATCH] = [4, 3, 4];
const W = [0.5, -1, 2, 0.25, -0.75, 1.5, 0, 1, 1, 1, -2, 0.5]; // OUTPUTS x INPUTS
const B = [0.1, -0.2, 0.3];
const CLASS_IDS = [7, 3, 5]; // what each output row is called
const WEIGHTS_LEAD = 16; // junk before the parameters, so offsets into the blob matter

const AFFINE = `
struct Affine { images: u32, inputs: u32, outputs: u32 }
@group(0) @binding(0) var<uniform> p: Affine;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn affine(@builtin(global_invocation_id) id: vec3<u32>) {
  let i = id.x;
  if i >= p.images * p.outputs { return; }
  let n = i / p.outputs;
  let o = i % p.outputs;
  var s = b[o];
  for (var k = 0u; k < p.inputs; k++) { s += w[o * p.inputs + k] * x[n * p.inputs + k]; }
  y[i] = s;
}`;

const HEAD = `
struct Head { images: u32, classes: u32 }
@group(0) @binding(0) var<uniform> p: Head;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> class_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn head(@builtin(global_invocation_id) id: vec3<u32>) {
  let n = id.x;
  if n >= p.images { return; }
  let row = n * p.classes;
  var top = logits[row];
  var best = 0u;
  for (var c = 1u; c < p.classes; c++) {
    if logits[row + c] > top { top = logits[row + c]; best = c; }
  }
  var total = 0.0;
  for (var c = 0u; c < p.classes; c++) { total += exp(logits[row + c] - top); }
  for (var c = 0u; c < p.classes; c++) { out[row + c] = exp(logits[row + c] - top) / total; }
  out[p.images * p.classes + n] = f32(class_ids[best]);
}`;

function weightsBlob() {
  const floats = new Float32Array(WEIGHTS_LEAD / 4 + W.length + B.length).fill(99);
  floats.set(W, WEIGHTS_LEAD / 4);
  floats.set(B, WEIGHTS_LEAD / 4 + W.length);
  return Buffer.from(floats.buffer);
}

function plan(batch) {
  const groups = (n) => [Math.ceil(n / 64), 1, 1];
  const outputBytes = batch * (OUTPUTS + 1) * 4;
  return {
    format: 'mnist-rs-webgpu-plan',
    format_version: 1,
    model: 'fixture',
    version: 1,
    batch,
    weights: { url: '/v1/models/fixture/versions/1/webgpu_weights', bytes: weightsBlob().length },
    shaders: [
      { label: 'affine.wgsl', code: AFFINE },
      { label: 'head.wgsl', code: HEAD },
    ],
    pipelines: [
      { shader: 0, entry_point: 'affine' },
      { shader: 1, entry_point: 'head' },
    ],
    buffers: [
      { label: 'input', size: batch * INPUTS * 4 },
      { label: 'parameters', size: 256 + B.length * 4 },
      { label: 'logits', size: batch * OUTPUTS * 4 },
      { label: 'class ids', size: CLASS_IDS.length * 4 },
      { label: 'output', size: 256 + outputBytes },
    ],
    uniforms: { slot_bytes: 256, slots: 2 },
    initial: [
      { buffer: 1, offset: 0, bytes: W.length * 4, weights_offset: WEIGHTS_LEAD, name: 'affine.weight' },
      { buffer: 1, offset: 256, bytes: B.length * 4, weights_offset: WEIGHTS_LEAD + W.length * 4, name: 'affine.bias' },
      { buffer: 3, offset: 0, u32: CLASS_IDS },
    ],
    input: { buffer: 0, offset: 0, dtype: 'float32', shape: [batch, INPUTS] },
    output: { buffer: 4, offset: 256, dtype: 'float32', classes_offset: batch * OUTPUTS, shape: [batch, OUTPUTS + 1] },
    dispatches: [
      {
        pipeline: 0,
        uniform_slot: 0,
        uniform: [batch, INPUTS, OUTPUTS],
        bindings: [
          { binding: 1, buffer: 0, offset: 0, size: batch * INPUTS * 4 },
          { binding: 2, buffer: 1, offset: 0, size: W.length * 4 },
          { binding: 3, buffer: 1, offset: 256, size: B.length * 4 },
          { binding: 4, buffer: 2, offset: 0, size: batch * OUTPUTS * 4 },
        ],
        workgroups: groups(batch * OUTPUTS),
      },
      {
        pipeline: 1,
        uniform_slot: 1,
        uniform: [batch, OUTPUTS],
        bindings: [
          { binding: 1, buffer: 2, offset: 0, size: batch * OUTPUTS * 4 },
          { binding: 2, buffer: 3, offset: 0, size: CLASS_IDS.length * 4 },
          { binding: 3, buffer: 4, offset: 256, size: outputBytes },
        ],
        workgroups: groups(batch),
      },
    ],
  };
}

/** What the fixture model computes, in doubles: {classes, probabilities}. */
function expected(inputs) {
  const classes = [];
  const probabilities = [];
  for (let n = 0; n < inputs.length / INPUTS; n++) {
    const logits = B.map((b, o) => b + W.slice(o * INPUTS, (o + 1) * INPUTS).reduce((s, w, k) => s + w * inputs[n * INPUTS + k], 0));
    const top = Math.max(...logits);
    const exps = logits.map((l) => Math.exp(l - top));
    const total = exps.reduce((a, b) => a + b);
    probabilities.push(exps.map((e) => e / total));
    classes.push(CLASS_IDS[logits.indexOf(top)]);
  }
  return { classes, probabilities };
}

const CONTENT_TYPES = { '.js': 'text/javascript', '.css': 'text/css', '.html': 'text/html' };
const requests = [];

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://fixture');
  requests.push(url.pathname + url.search);
  const send = (status, type, body) => res.writeHead(status, { 'Content-Type': type }).end(body);
  if (url.pathname === '/') return send(200, 'text/html', '<!doctype html><link rel="icon" href="data:,"><title>replayer fixture</title>');
  if (url.pathname.startsWith('/web/') && !url.pathname.includes('..')) {
    try {
      return send(200, CONTENT_TYPES[extname(url.pathname)] ?? 'application/octet-stream', await readFile(join(WEB, url.pathname.slice(5))));
    } catch {
      return send(404, 'text/plain', 'not found');
    }
  }
  if (url.pathname === '/v1/models/fixture/versions/1/webgpu_plan') {
    const batch = Math.min(MAX_BATCH, Number(url.searchParams.get('batch')));
    return send(200, 'application/json', JSON.stringify(plan(batch)));
  }
  if (url.pathname === '/v1/models/fixture/versions/1/webgpu_weights') return send(200, 'application/octet-stream', weightsBlob());
  send(404, 'application/json', JSON.stringify({ error: `no ${url.pathname}` }));
});

let browser;
let page;
const errors = [];

before(async () => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  browser = await launch();
  page = await browser.newPage();
  watchErrors(page, errors);
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  await page.evaluate(async () => {
    const { openGpu } = await import('/web/gpu.js');
    const { ShaderCache } = await import('/web/plan.js');
    const { BrowserModel } = await import('/web/browser-model.js');
    const { device } = await openGpu({ onLost: () => {}, onError: (m) => console.error(m) });
    window.fixture = new BrowserModel(device, new ShaderCache(device), 'fixture', 1);
  });
});

after(async () => {
  await browser?.close();
  server.close();
});

const largestDifference = (a, b) => a.flat().reduce((m, v, i) => Math.max(m, Math.abs(v - b.flat()[i])), 0);

test('a hand-made plan replays to what its kernels compute, in batches of the plan\'s size', async () => {
  // 7 images: the server answers with a plan for 4, so the replayer runs 4, then 3 padded to 4.
  const inputs = Array.from({ length: 7 * INPUTS }, (_, i) => Math.sin(i * 1.7) * 2);
  const got = await page.evaluate((values) => window.fixture.predict(new Float32Array(values)), inputs);
  const want = expected(inputs);
  assert.deepEqual(got.classes, want.classes);
  assert.ok(new Set(got.classes).size > 1, 'the inputs reach more than one class');
  const difference = largestDifference(got.probabilities, want.probabilities);
  assert.ok(difference < 1e-5, `largest probability difference ${difference}`);
  assert.ok(requests.includes('/v1/models/fixture/versions/1/webgpu_plan?batch=7'), requests.join(', '));
  assert.equal(requests.filter((r) => r.endsWith('webgpu_weights')).length, 1, 'weights fetched once for both plans');
});

test('one image runs through the batch-1 plan; runs in a row give the same answer', async () => {
  const inputs = [0.3, -0.6, 1.2, 2];
  const [first, second] = await page.evaluate(async (values) => {
    const pixels = new Float32Array(values);
    return Promise.all([window.fixture.predict(pixels), window.fixture.predict(pixels)]);
  }, inputs);
  assert.deepEqual(first, second);
  assert.deepEqual(first.classes, expected(inputs).classes);
});

test('the compilation report lists every shader of the loaded plans, and a broken shader\'s error', async () => {
  const report = await page.evaluate(() => window.fixture.compilationReport());
  assert.deepEqual(report.map((r) => r.label).sort(), ['affine.wgsl', 'head.wgsl']);
  assert.deepEqual(report.flatMap((r) => r.messages), []);
  const broken = await page.evaluate(async () => {
    const { compilationReport } = await import('/web/plan.js');
    return compilationReport(window.fixture.shaders, [{ label: 'broken.wgsl', code: 'fn f() -> u32 { return 1.5; }' }]);
  });
  assert.equal(broken[0].label, 'broken.wgsl');
  assert.ok(broken[0].messages.some((m) => m.type === 'error' && m.lineNum === 1), JSON.stringify(broken));
});

test('a plan with a bad index or a shader that does not compile is refused with a message naming the part', async () => {
  const messages = await page.evaluate(async ({ good }) => {
    const { Replayer, ShaderCache } = await import('/web/plan.js');
    const { device } = window.fixture;
    const weights = new ArrayBuffer(good.weights.bytes);
    const attempt = async (change) => {
      const plan = structuredClone(good);
      change(plan);
      try {
        await Replayer.create(device, new ShaderCache(device), plan, weights);
        return 'accepted';
      } catch (error) {
        return `${error.name}: ${error.message}`;
      }
    };
    return [
      await attempt((p) => (p.dispatches[1].bindings[0].buffer = 9)),
      await attempt((p) => (p.initial[1].weights_offset = 10_000)),
      await attempt((p) => (p.format_version = 2)),
      await attempt((p) => (p.shaders[1].code = p.shaders[1].code.replace('total += ', 'total += undefined_name + '))),
      await attempt(() => {}),
    ];
  }, { good: plan(2) });
  assert.match(messages[0], /PlanError: dispatch 1: binding 1: buffer refers to 9, but the plan has 5/);
  assert.match(messages[1], /PlanError: initial write 1 \(affine.bias\) reads weights/);
  assert.match(messages[2], /PlanError: plan format version 2/);
  assert.match(messages[3], /PlanError: head.wgsl does not compile:\nerror at line 18:\d+: .*undefined_name/);
  assert.equal(messages[4], 'accepted');
});

test('no console errors in the fixture page', () => {
  assert.deepEqual(errors, []);
});
