// The draw-a-digit page, served by the real server, in headless Chromium with WebGPU on
// SwiftShader: `node web/tests/page.test.mjs <base url> <mnist dir> <cors base url>`, where the
// second server was started with `--rest_api_cors_origin <base url>`. server/tests/browser.rs
// starts both servers (models "mnist", trained, and "every_layer") and runs this.
// MNIST_SCREENSHOT=<png> also saves a screenshot of the page with a drawn digit there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { launch, watchErrors } from './chromium.mjs';
import { testImages, testLabels } from './mnist.mjs';

const [base, mnistDir, corsBase] = process.argv.slice(2);
if (!base || !mnistDir || !corsBase) {
  console.error('usage: node web/tests/page.test.mjs <base url> <mnist dir> <cors base url>');
  process.exit(2);
}

const SHADERS = fileURLToPath(new URL('../../shaders/', import.meta.url));
const AGREEMENT = 1e-4;
const IMAGES = 200;
const DIGIT = /^[0-9]$/;

let browser;
let page; // the page with WebGPU, shared by the tests that follow its story
const errors = [];

before(async () => {
  browser = await launch();
});

after(async () => {
  await browser?.close();
});

async function openPage(context, url = base) {
  const p = await context.newPage();
  await p.goto(`${url}/`);
  return p;
}

/** Draws a 7 on the pad with the mouse (a bar, then a slanted stroke down). */
async function drawSeven(p) {
  const box = await p.locator('#pad').boundingBox();
  const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
  await p.mouse.move(...at(0.25, 0.22));
  await p.mouse.down();
  await p.mouse.move(...at(0.75, 0.22), { steps: 12 });
  await p.mouse.move(...at(0.45, 0.82), { steps: 16 });
  await p.mouse.up();
}

const text = (p, selector) => p.locator(selector).textContent();
const answerDigit = (p, panel) => text(p, `#${panel} .digit`);

/** Waits until the panels show their answers for the drawing as it is now. */
async function waitForAnswers(p, panels) {
  await p.waitForFunction(
    (ids) => ids.every((id) => document.getElementById(id).dataset.answered === document.getElementById('pad').dataset.drawing),
    panels,
    { timeout: 30_000 },
  );
  for (const panel of panels) assert.match(await answerDigit(p, panel), DIGIT, `${panel}: ${await text(p, `#${panel} .note`)}`);
}

test('the page loads and gets ready with WebGPU on SwiftShader, without console errors', async () => {
  page = await openPage(await browser.newContext());
  watchErrors(page, errors);
  await page.evaluate(() => window.mnist.ready);
  const webgpu = await page.evaluate(() => window.mnist.webgpu);
  assert.equal(webgpu.available, true, `no WebGPU: ${webgpu.problem}`);
  assert.equal(webgpu.adapter.architecture, 'swiftshader');
  assert.deepEqual(await page.evaluate(() => window.mnist.selected), { model: 'mnist', version: 1 });
  const models = await page.locator('#model option').allTextContents();
  assert.deepEqual(models.sort(), ['every_layer', 'mnist']);
  assert.deepEqual(errors, []);
});

test('a digit drawn on the pad is predicted, in the browser and on the server alike', async () => {
  await drawSeven(page);
  await waitForAnswers(page, ['local', 'server']);
  if (process.env.MNIST_SCREENSHOT) await page.screenshot({ path: process.env.MNIST_SCREENSHOT });
  const prediction = await text(page, '#prediction');
  assert.match(prediction, DIGIT);
  assert.equal(prediction, await answerDigit(page, 'local'));
  assert.equal(await answerDigit(page, 'server'), prediction);
  assert.equal(prediction, '7', 'the drawn 7 is read as a 7');
  for (const panel of ['local', 'server']) assert.match(await text(page, `#${panel} .latency`), /^\d+\.\d ms$/);
  const preview = await page.evaluate(() => {
    const { data } = document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28);
    return data.filter((_, i) => i % 4 === 0 && data[i] > 0).length;
  });
  assert.ok(preview > 20, `the 28x28 preview shows the digit (${preview} lit pixels)`);

  await page.locator('#clear').click();
  await page.waitForFunction(() => document.getElementById('prediction').textContent === '–');
  assert.deepEqual(errors, []);
});

/** Waits for the pad's next change (by `change`), then for the panels' answers to it. */
async function answersAfter(p, panels, change) {
  const before = await p.evaluate(() => document.getElementById('pad').dataset.drawing);
  await change();
  await p.waitForFunction((n) => document.getElementById('pad').dataset.drawing !== n, before, { timeout: 30_000 });
  await waitForAnswers(p, panels);
}

/** Puts MNIST test image `values` on the page as a PNG picture (dark digit on light paper, 10x), by `how`: drop or paste. */
function putPicture(p, values, how) {
  return p.evaluate(
    async ({ values, how }) => {
      const small = new ImageData(28, 28);
      values.forEach((v, i) => small.data.set([255 - v * 255, 255 - v * 255, 255 - v * 255, 255], i * 4));
      const canvas = new OffscreenCanvas(280, 280);
      const context = canvas.getContext('2d');
      context.imageSmoothingEnabled = false;
      context.drawImage(await createImageBitmap(small), 0, 0, 280, 280);
      const file = new File([await canvas.convertToBlob({ type: 'image/png' })], 'digit.png', { type: 'image/png' });
      const transfer = new DataTransfer();
      transfer.items.add(file);
      if (how === 'drop') {
        document.getElementById('pad').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
      } else {
        document.dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true }));
      }
    },
    { values, how },
  );
}

const previewPixels = (p) =>
  p.evaluate(() => {
    const { data } = document.getElementById('preview').getContext('2d').getImageData(0, 0, 28, 28);
    return Array.from({ length: 784 }, (_, i) => data[i * 4] / 255);
  });

test('a finger draws too (touch); a dropped or pasted picture of a dark digit on paper is seen as MNIST would', async () => {
  const context = await browser.newContext({ hasTouch: true });
  const p = await openPage(context);
  const pageErrors = watchErrors(p);
  await p.evaluate(() => window.mnist.ready);
  const cdp = await context.newCDPSession(p);
  const box = await p.locator('#pad').boundingBox();
  const point = (x, y) => ({ x: box.x + x * box.width, y: box.y + y * box.height });
  await answersAfter(p, ['local', 'server'], async () => {
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point(0.5, 0.15)] });
    for (let i = 1; i <= 12; i++) await cdp.send('Input.dispatchTouchEvent', { type: 'touchMove', touchPoints: [point(0.5, 0.15 + i * 0.06)] });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  });
  assert.equal(await text(p, '#prediction'), '1', 'a vertical stroke drawn by touch is a 1');

  const images = testImages(mnistDir, 2);
  const labels = testLabels(mnistDir, 2);
  for (const [index, how] of [[0, 'drop'], [1, 'paste']]) {
    const image = Array.from(images.subarray(index * 784, (index + 1) * 784));
    await answersAfter(p, ['local', 'server'], () => putPicture(p, image, how));
    const seen = await previewPixels(p);
    const differences = seen.map((v, i) => Math.abs(v - image[i]));
    const [largest, mean] = [Math.max(...differences), differences.reduce((a, b) => a + b) / 784];
    // Up to 0.1 where the faintest grey is taken for paper (preprocess.js), little elsewhere.
    assert.ok(largest <= 0.11 && mean < 0.01, `${how}: the preview differs from the MNIST image by up to ${largest}, ${mean} on average`);
    assert.equal(await text(p, '#prediction'), String(labels[index]), how);
    assert.equal(await answerDigit(p, 'server'), String(labels[index]), how);
  }
  assert.deepEqual(pageErrors, []);
  await context.close();
});

test(`predictLocal on ${IMAGES} MNIST test images matches the server within ${AGREEMENT}`, async () => {
  const images = testImages(mnistDir, IMAGES);
  const labels = testLabels(mnistDir, IMAGES);
  const [local, server] = await page.evaluate(async (values) => {
    const pixels = new Float32Array(values);
    return [await window.mnist.predictLocal(pixels), await window.mnist.predictServer(pixels)];
  }, Array.from(images));
  assert.equal(local.classes.length, IMAGES);
  assert.equal(server.classes.length, IMAGES);
  assert.deepEqual(local.classes, server.classes);
  let largest = 0;
  local.probabilities.forEach((row, i) => {
    assert.equal(row.length, 10);
    row.forEach((p, k) => (largest = Math.max(largest, Math.abs(p - server.probabilities[i][k]))));
  });
  const correct = local.classes.filter((c, i) => c === labels[i]).length;
  console.log(`# browser vs server over ${IMAGES} MNIST test images: largest |difference| ${largest.toExponential(2)}; ${correct}/${IMAGES} correct`);
  assert.ok(largest <= AGREEMENT, `largest probability difference ${largest}`);
  assert.ok(correct >= 0.9 * IMAGES, `${correct}/${IMAGES} correct: the images did not reach the model intact`);
});

test('every WGSL source of both models\' plans, and every file of shaders/, compiles in Chromium with no error or warning', async () => {
  const mnist = await page.evaluate(() => window.mnist.compileAll());
  assert.ok(mnist.length >= 2, `the plan has ${mnist.length} shaders`);
  await page.locator('#model').selectOption('every_layer');
  await page.waitForFunction(() => window.mnist.selected.model === 'every_layer');
  const images = Array.from(testImages(mnistDir, 3));
  const [local, server] = await page.evaluate(async (values) => {
    const pixels = new Float32Array(values);
    return [await window.mnist.predictLocal(pixels), await window.mnist.predictServer(pixels)];
  }, images);
  assert.deepEqual(local.classes, server.classes);
  const largest = Math.max(...local.probabilities.flat().map((p, i) => Math.abs(p - server.probabilities.flat()[i])));
  assert.ok(largest <= AGREEMENT, `every_layer: largest probability difference ${largest}`);
  const everyLayer = await page.evaluate(() => window.mnist.compileAll());
  const planned = [...mnist, ...everyLayer];
  const labels = new Set(planned.map((r) => r.label));
  console.log(`# compiled in Chromium from the plans: ${[...labels].sort().join(', ')}`);
  for (const file of ['conv2d.wgsl', 'pool.wgsl', 'dense.wgsl', 'elementwise.wgsl', 'softmax_xent.wgsl']) {
    assert.ok([...labels].some((l) => l.startsWith(file)), `${file} is in a plan`);
  }
  // Every file of shaders/ is in a plan's source (the engine prepends the shared ones), or is
  // compiled on its own, as the engine compiles it (optim.wgsl: training only, in no plan).
  const plans = [['mnist', 1], ['mnist', IMAGES], ['every_layer', 1], ['every_layer', 3]];
  const fetchPlan = async ([model, batch]) => (await fetch(`${base}/v1/models/${model}/webgpu_plan?batch=${batch}`)).json();
  const sources = (await Promise.all(plans.map(fetchPlan))).flatMap((plan) => plan.shaders.map((shader) => shader.code));
  assert.deepEqual([...new Set(sources)].length, labels.size, 'the page compiled every source of the plans it ran');
  const alone = readdirSync(SHADERS)
    .filter((f) => f.endsWith('.wgsl'))
    .map((f) => ({ label: f, code: readFileSync(SHADERS + f, 'utf8') }))
    .filter(({ code }) => !sources.some((source) => source.includes(code.trim())));
  const standalone = await page.evaluate((list) => window.mnist.compile(list), alone);
  console.log(`# compiled on their own: ${alone.map((s) => s.label).join(', ')}`);
  const report = [...planned, ...standalone];
  const messages = report.flatMap((r) => r.messages.map((m) => `${r.label}:${m.lineNum}:${m.linePos} ${m.type}: ${m.message}`));
  assert.deepEqual(messages, []);
  await page.locator('#model').selectOption('mnist');
  await page.waitForFunction(() => window.mnist.selected.model === 'mnist');
  assert.deepEqual(errors, []);
});

test('without WebGPU the page says so and predicts on the server', async () => {
  for (const [why, script, says] of [
    ['no navigator.gpu', () => delete Navigator.prototype.gpu, /WebGPU is unavailable: this browser has no WebGPU/],
    ['no adapter', () => (GPU.prototype.requestAdapter = async () => null), /WebGPU is unavailable: WebGPU found no adapter/],
  ]) {
    const context = await browser.newContext();
    await context.addInitScript(script);
    const p = await openPage(context);
    const pageErrors = watchErrors(p);
    await p.evaluate(() => window.mnist.ready);
    assert.match(await text(p, '#local .note'), says, why);
    assert.equal((await p.evaluate(() => window.mnist.webgpu)).available, false, why);
    await drawSeven(p);
    await waitForAnswers(p, ['server']);
    assert.equal(await text(p, '#prediction'), await answerDigit(p, 'server'), why);
    assert.match(await text(p, '#prediction-source'), /server/, why);
    const local = await p.evaluate(() => window.mnist.predictLocal(new Float32Array(784)).then(() => 'answered', (e) => e.message));
    assert.match(local, /WebGPU is unavailable/, why);
    const server = await p.evaluate(() => window.mnist.predictServer(new Float32Array(784 * 2)));
    assert.equal(server.classes.length, 2, why);
    assert.deepEqual(pageErrors, [], why);
    await context.close();
  }
});

test('errors are shown in the page: server unreachable, plan missing', async () => {
  const context = await browser.newContext();
  const unreachable = await context.newPage();
  await unreachable.route('**/page/models', (route) => route.abort('connectionrefused'));
  await unreachable.goto(`${base}/`);
  const ready = await unreachable.evaluate(() => window.mnist.ready.then(() => 'ready', (e) => e.message));
  assert.match(ready, /unreachable/);
  assert.match(await text(unreachable, '#status'), /Cannot load the models: the server is unreachable/);
  assert.ok(await unreachable.locator('#status.error').isVisible());

  const noPlan = await context.newPage();
  await noPlan.route('**/webgpu_plan*', (route) =>
    route.fulfill({ status: 404, contentType: 'application/json', body: JSON.stringify({ error: 'Servable not found' }) }),
  );
  await noPlan.goto(`${base}/`);
  await noPlan.evaluate(() => window.mnist.ready);
  assert.match(await text(noPlan, '#local .note'), /Could not run mnist version 1 here: .*HTTP 404: Servable not found/);
  await drawSeven(noPlan);
  await waitForAnswers(noPlan, ['server']);
  assert.equal(await text(noPlan, '#prediction'), await answerDigit(noPlan, 'server'));
  await context.close();
});

test('CORS: off by default; --rest_api_cors_origin lets that origin call the REST API', async () => {
  const images = { inputs: { images: [Array(784).fill(0)] } };
  const crossOrigin = (p, url) =>
    p.evaluate(
      async ({ url, images }) => {
        const attempt = async (path, options) => {
          try {
            const response = await fetch(url + path, options);
            return `${response.status} ${JSON.stringify(await response.json()).slice(0, 40)}`;
          } catch (error) {
            return `refused: ${error.message}`;
          }
        };
        return [
          await attempt('/v1/models/mnist'),
          await attempt('/v1/models/mnist:predict', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(images) }),
        ];
      },
      { url, images },
    );
  // The page's origin is allowed by the second server...
  const [status, predict] = await crossOrigin(page, corsBase);
  assert.match(status, /^200 .*model_version_status/);
  assert.match(predict, /^200 .*outputs/);
  // ...but nobody is allowed by the first: from the second server's page, calls to it are refused.
  const other = await openPage(page.context(), corsBase);
  const refused = await crossOrigin(other, base);
  assert.deepEqual(refused.map((r) => r.split(':')[0]), ['refused', 'refused'], refused.join('; '));
  await other.close();
  // The headers themselves, as a client other than a browser sees them.
  const origin = new URL(base).origin;
  const allowed = await fetch(`${corsBase}/v1/models/mnist`, { headers: { Origin: origin } });
  assert.equal(allowed.headers.get('access-control-allow-origin'), origin);
  const stranger = await fetch(`${corsBase}/v1/models/mnist`, { headers: { Origin: 'http://elsewhere.example' } });
  assert.notEqual(stranger.headers.get('access-control-allow-origin'), 'http://elsewhere.example');
  const byDefault = await fetch(`${base}/v1/models/mnist`, { headers: { Origin: origin } });
  assert.equal(byDefault.headers.get('access-control-allow-origin'), null);
});

test('no console errors on the WebGPU page from start to end', () => {
  assert.deepEqual(errors, []);
});
