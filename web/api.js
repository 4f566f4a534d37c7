// The server's HTTP API as the page uses it: the model list, REST predictions, inference plans
// and their weights. Every failure is an Error whose message a person can act on.

/** A failed request: `status` is the HTTP status, or 0 when the server could not be reached. */
export class ServerError extends Error {
  constructor(message, status) {
    super(message);
    this.name = 'ServerError';
    this.status = status;
  }
}

async function request(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    throw new ServerError(`the server is unreachable (${options.method ?? 'GET'} ${path}: ${error.message})`, 0);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).error ?? detail;
    } catch {
      // Not JSON: keep the status text.
    }
    throw new ServerError(`${options.method ?? 'GET'} ${path} failed: HTTP ${response.status}: ${detail}`, response.status);
  }
  return response;
}

const versionPath = (model, version) => `/v1/models/${encodeURIComponent(model)}/versions/${version}`;

/** [{name, versions: [newest first]}] */
export async function listModels() {
  const { models } = await (await request('/page/models')).json();
  if (!Array.isArray(models)) throw new ServerError('GET /page/models: the answer has no "models" list', 200);
  return models;
}

/** The server's REST prediction of `pixels` (N * 784 values): {classes, probabilities}. */
export async function predictOnServer(model, version, pixels) {
  const count = pixels.length / 784;
  const images = Array.from({ length: count }, (_, i) => Array.from(pixels.subarray(i * 784, (i + 1) * 784)));
  const response = await request(`${versionPath(model, version)}:predict`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ inputs: { images } }),
  });
  const { outputs } = await response.json();
  if (!outputs?.classes || !outputs?.probabilities) throw new ServerError('the prediction has no classes or probabilities', 200);
  return { classes: outputs.classes.map(Number), probabilities: outputs.probabilities };
}

/** The WebGPU inference plan of a model version for `batch` images. */
export async function fetchPlan(model, version, batch) {
  return (await request(`${versionPath(model, version)}/webgpu_plan?batch=${batch}`)).json();
}

/** The weights blob a plan names, as an ArrayBuffer of the size the plan says. */
export async function fetchWeights(weights) {
  const bytes = await (await request(weights.url)).arrayBuffer();
  if (bytes.byteLength !== weights.bytes) {
    throw new ServerError(`GET ${weights.url}: ${bytes.byteLength} bytes, but the plan says ${weights.bytes}`, 200);
  }
  return bytes;
}
