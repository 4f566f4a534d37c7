// The draw-a-digit page: the pad, the model picker, both answers, and the test API on
// `window.mnist`.

import { listModels, predictOnServer } from './api.js';
import { AnswerView } from './answer-view.js';
import { BrowserModel } from './browser-model.js';
import { openGpu } from './gpu.js';
import { Pad } from './pad.js';
import { ShaderCache, compilationReport } from './plan.js';
import { inkFromRgba, toMnist, SIDE } from './preprocess.js';

const $ = (id) => document.getElementById(id);
const views = { local: new AnswerView($('local')), server: new AnswerView($('server')) };
const picker = { model: $('model'), version: $('version') };
const PICTURE_SIDE = 280; // pictures are shrunk to this before their ink is found

const state = {
  models: [],
  model: null,
  version: null,
  gpu: null, // {device, adapter, shaders} once WebGPU works
  gpuProblem: 'WebGPU has not started yet',
  browserModel: null,
  localFailed: false,
};

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

/** Runs `task(arg)` one at a time; calls made meanwhile collapse into one run with the newest argument. */
function latestOnly(task) {
  let running = false;
  let pending = null;
  return async function run(arg) {
    if (running) {
      pending = { arg };
      return;
    }
    running = true;
    try {
      await task(arg);
    } finally {
      running = false;
      if (pending) {
        const next = pending;
        pending = null;
        run(next.arg);
      }
    }
  };
}

// --- WebGPU ---------------------------------------------------------------------------------

function gpuGone(message) {
  state.gpu = null;
  state.gpuProblem = message;
  state.localFailed = true;
  views.local.showError(`${message}. Predictions come from the server.`);
  $('webgpu').textContent = message;
}

async function startGpu() {
  try {
    const { device, adapter } = await openGpu({
      onLost: gpuGone,
      onError: (message) => views.local.setNote(message, true),
    });
    state.gpu = { device, adapter, shaders: new ShaderCache(device) };
    const name = [adapter.vendor, adapter.architecture, adapter.description].filter(Boolean).join(' ');
    $('webgpu').textContent = `WebGPU adapter: ${name || 'unnamed'}`;
  } catch (error) {
    state.gpuProblem = `WebGPU is unavailable: ${error.message}`;
    views.local.setNote(`${state.gpuProblem}. Predictions come from the server.`, true);
    $('webgpu').textContent = state.gpuProblem;
  }
}

// --- Models and versions ----------------------------------------------------------------------

function fillVersions() {
  const entry = state.models.find((m) => m.name === picker.model.value);
  picker.version.replaceChildren(...(entry?.versions ?? []).map((v) => new Option(String(v), String(v))));
  picker.version.disabled = !entry?.versions?.length;
}

async function loadModels() {
  state.models = await listModels();
  if (!state.models.length) throw new Error('the server serves no models');
  picker.model.replaceChildren(...state.models.map((m) => new Option(m.name, m.name)));
  picker.model.disabled = false;
  fillVersions();
}

/** Switches both answers to the picked model version; resolves once the browser's plan is ready (or failed, which the page shows). */
async function selectVersion() {
  const [model, version] = [picker.model.value, Number(picker.version.value)];
  if (!model || !Number.isInteger(version)) {
    throw new Error(`model ${model || '(none)'} has no available version`);
  }
  state.browserModel?.destroy();
  Object.assign(state, { model, version, browserModel: null, localFailed: !state.gpu });
  setStatus(`Model ${model}, version ${version}.`);
  if (state.gpu) {
    const browserModel = new BrowserModel(state.gpu.device, state.gpu.shaders, model, version);
    state.browserModel = browserModel;
    try {
      views.local.setNote('Loading the WebGPU plan…', false);
      await browserModel.replayer(1);
      views.local.setNote('', false);
    } catch (error) {
      state.localFailed = true;
      views.local.showError(`Could not run ${model} version ${version} here: ${error.message}`);
    }
  }
  drawingChanged(); // the same drawing, a new question
}

// --- Predictions ----------------------------------------------------------------------------

function requireReady() {
  if (!state.model) throw new Error('the page has no model yet (wait for window.mnist.ready)');
}

async function predictLocal(pixels) {
  requireReady();
  if (!state.gpu) throw new Error(state.gpuProblem);
  if (!state.browserModel) throw new Error('no model is running in this browser');
  return state.browserModel.predict(pixels);
}

async function predictServer(pixels) {
  requireReady();
  return predictOnServer(state.model, state.version, pixels);
}

const primarySource = () => (state.gpu && !state.localFailed ? 'local' : 'server');

/** Shows `source`'s class as the prediction if it is the primary source; null clears it. */
function showPrediction(source, cls) {
  if (source !== primarySource()) return;
  $('prediction').textContent = cls === null ? '–' : String(cls);
  $('prediction-source').textContent = cls === null ? '' : source === 'local' ? '(in this browser)' : '(from the server)';
}

/** Marks `source`'s panel as showing the answer for drawing number `drawing` (see `drawingChanged`). */
function answered(source, drawing) {
  $(source).dataset.answered = String(drawing);
}

/** The answers of `source` to drawings, one at a time; an empty drawing (`image` null) clears them. */
function answerWith(source, predict) {
  return latestOnly(async ({ image, drawing }) => {
    if (!image) {
      views[source].clear();
      showPrediction(source, null);
    } else {
      const started = performance.now();
      try {
        const { classes, probabilities } = await predict(image);
        views[source].show(classes[0], probabilities[0], performance.now() - started);
        showPrediction(source, classes[0]);
      } catch (error) {
        views[source].showError(error.message);
        if (source === 'local') state.localFailed = true;
      }
    }
    answered(source, drawing);
  });
}

const answerLocally = answerWith('local', predictLocal);
const answerOnServer = answerWith('server', predictServer);

function drawPreview(image) {
  const context = $('preview').getContext('2d');
  const picture = context.createImageData(SIDE, SIDE);
  image.forEach((v, i) => picture.data.set([v * 255, v * 255, v * 255, 255], i * 4));
  context.putImageData(picture, 0, 0);
}

// Every change of the drawing (or of the model) gets a number, `data-drawing` on the pad; each answer panel's
// `data-answered` says which drawing it shows the answer for (so a test can wait for the last).
let drawingNumber = 0;
let frameRequested = false;

function drawingChanged() {
  drawingNumber += 1;
  $('pad').dataset.drawing = String(drawingNumber);
  predictDrawing();
}

function predictDrawing() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(() => {
    frameRequested = false;
    const drawing = drawingNumber;
    const { data, width, height } = pad.pixels();
    const image = toMnist(inkFromRgba(data, width, height), width, height);
    drawPreview(image);
    if (!state.model) return;
    const question = { image: image.some((v) => v > 0) ? image : null, drawing };
    if (state.gpu && state.browserModel && !state.localFailed) answerLocally(question);
    else answered('local', drawing);
    answerOnServer(question);
  });
}

// --- Pictures -------------------------------------------------------------------------------

async function openPicture(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, PICTURE_SIDE / Math.max(bitmap.width, bitmap.height));
    const [width, height] = [Math.max(1, Math.round(bitmap.width * scale)), Math.max(1, Math.round(bitmap.height * scale))];
    const canvas = new OffscreenCanvas(width, height);
    const context = canvas.getContext('2d');
    context.fillStyle = 'white'; // transparent parts are paper
    context.fillRect(0, 0, width, height);
    context.drawImage(bitmap, 0, 0, width, height);
    pad.showInk(inkFromRgba(context.getImageData(0, 0, width, height).data, width, height), width, height);
    setStatus(`Showing ${file.name || 'the pasted picture'}.`);
  } catch (error) {
    setStatus(`Could not read that picture (${file.type || 'unknown type'}): ${error.message}`, true);
  }
}

const pad = new Pad($('pad'), drawingChanged);
$('clear').addEventListener('click', () => pad.clear());
$('picture').addEventListener('change', (e) => e.target.files[0] && openPicture(e.target.files[0]));
$('pad').addEventListener('dragover', (e) => {
  e.preventDefault();
  $('pad').classList.add('dropping');
});
$('pad').addEventListener('dragleave', () => $('pad').classList.remove('dropping'));
document.addEventListener('dragover', (e) => e.preventDefault());
document.addEventListener('drop', (e) => {
  e.preventDefault();
  $('pad').classList.remove('dropping');
  const file = [...(e.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/'));
  if (file) openPicture(file);
  else setStatus('Drop a picture file (PNG, JPEG, …).', true);
});
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.type.startsWith('image/'));
  if (item) openPicture(item.getAsFile());
});
picker.model.addEventListener('change', () => {
  fillVersions();
  selectVersion().catch((error) => setStatus(error.message, true));
});
picker.version.addEventListener('change', () => selectVersion().catch((error) => setStatus(error.message, true)));

// --- Start ----------------------------------------------------------------------------------

async function start() {
  const gpu = startGpu();
  try {
    await loadModels();
  } catch (error) {
    setStatus(`Cannot load the models: ${error.message}`, true);
    throw error;
  }
  await gpu;
  await selectVersion().catch((error) => {
    setStatus(error.message, true);
    throw error;
  });
}

const ready = start();
ready.catch(() => {}); // shown in the page; callers of window.mnist.ready still see the rejection

window.mnist = {
  ready,
  predictLocal,
  predictServer,
  /** Every WGSL source of the plans loaded so far, compiled: [{label, messages: [{type, message, lineNum, linePos}]}]. */
  async compileAll() {
    requireReady();
    if (!state.browserModel) throw new Error(state.gpuProblem);
    return state.browserModel.compilationReport();
  },
  /** The same report for other WGSL sources: [{label, code}]. */
  async compile(sources) {
    if (!state.gpu) throw new Error(state.gpuProblem);
    return compilationReport(state.gpu.shaders, sources);
  },
  get webgpu() {
    return { available: Boolean(state.gpu), problem: state.gpu ? null : state.gpuProblem, adapter: state.gpu?.adapter ?? null };
  },
  get selected() {
    return { model: state.model, version: state.version };
  },
};
