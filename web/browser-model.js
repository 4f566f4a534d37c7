// One model version run in this browser: its plans (one per batch size, fetched when first
// needed), their shared weights, and predictions of any number of images through them.

import { Replayer, compilationReport } from './plan.js';
import { fetchPlan, fetchWeights } from './api.js';

/** The largest plan asked for: more images run in several batches. */
const LARGEST_BATCH = 256;

export class BrowserModel {
  constructor(device, shaders, model, version) {
    Object.assign(this, { device, shaders, model, version });
    this.replayers = new Map();
    this.weights = new Map();
  }

  /** The replayer for a plan of `batch` images (the server may answer with another batch size). */
  replayer(batch) {
    let replayer = this.replayers.get(batch);
    if (!replayer) {
      replayer = (async () => {
        const plan = await fetchPlan(this.model, this.version, batch);
        return Replayer.create(this.device, this.shaders, plan, await this.weightsOf(plan));
      })();
      replayer.catch(() => this.replayers.delete(batch));
      this.replayers.set(batch, replayer);
    }
    return replayer;
  }

  weightsOf(plan) {
    let weights = this.weights.get(plan.weights.url);
    if (!weights) {
      weights = fetchWeights(plan.weights);
      weights.catch(() => this.weights.delete(plan.weights.url));
      this.weights.set(plan.weights.url, weights);
    }
    return weights;
  }

  /** {classes, probabilities} of the images in `pixels`, run in batches of the plan's size (the last one padded). */
  async predict(pixels) {
    const first = await this.replayer(1);
    const perImage = first.inputLength / first.batch;
    const count = pixels.length / perImage;
    if (!Number.isInteger(count) || count < 1) throw new Error(`${pixels.length} values are not whole images of ${perImage}`);
    const replayer = count === 1 ? first : await this.replayer(Math.min(count, LARGEST_BATCH));
    const result = { classes: [], probabilities: [] };
    for (let start = 0; start < count; start += replayer.batch) {
      const input = new Float32Array(replayer.inputLength);
      input.set(pixels.subarray(start * perImage, Math.min(count, start + replayer.batch) * perImage));
      const { classes, probabilities } = replayer.parse(await replayer.run(input));
      const keep = Math.min(replayer.batch, count - start);
      result.classes.push(...classes.slice(0, keep));
      result.probabilities.push(...probabilities.slice(0, keep));
    }
    return result;
  }

  /** The compiler's messages for every shader of the plans fetched so far: [{label, messages}]. */
  async compilationReport() {
    const shaders = new Map();
    for (const replayer of this.replayers.values()) {
      for (const shader of (await replayer).plan.shaders) shaders.set(shader.code, shader);
    }
    return compilationReport(this.shaders, [...shaders.values()]);
  }

  async destroy() {
    for (const replayer of this.replayers.values()) {
      replayer.then((r) => r.destroy(), () => {});
    }
    this.replayers.clear();
  }
}
