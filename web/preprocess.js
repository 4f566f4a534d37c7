// A drawing or picture to a 28x28 image made as MNIST's were: the digit's bounding box scaled
// (area-averaged, keeping its aspect ratio) so that its longer side is 20 pixels, then placed in
// a 28x28 field so that its centre of mass lies at the field's centre. White digit on black,
// values in [0, 1], row-major. Pure functions of arrays: they run in a page and in Node alike.

export const SIDE = 28;
export const BOX = 20;
/** Where MNIST's centres of mass lie: on pixel 14 (from 0), 14.5 pixels from the edge. */
export const CENTRE = 14.5;

/** Ink below this (after stretching to [0, 1]) is paper: noise in photos, JPEG artefacts. */
const PAPER = 0.1;

/**
 * The ink of an RGBA picture (as `ImageData.data`): 1 where the digit is, 0 on the paper.
 * The paper is whatever the border mostly is, light or dark, so a dark digit on white paper and a
 * white digit on black both work; values are stretched so the paper is 0 and the strongest ink 1.
 * Transparent pixels count as black (the drawing pad is opaque).
 */
export function inkFromRgba(rgba, width, height) {
  const lightness = new Float32Array(width * height);
  for (let i = 0; i < lightness.length; i++) {
    const [r, g, b, a] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2], rgba[4 * i + 3]];
    lightness[i] = ((0.299 * r + 0.587 * g + 0.114 * b) / 255) * (a / 255);
  }
  const paperIsLight = borderMean(lightness, width, height) > 0.5;
  const ink = paperIsLight ? lightness.map((v) => 1 - v) : lightness;
  const paper = borderMean(ink, width, height);
  const strongest = ink.reduce((m, v) => Math.max(m, v), 0);
  const range = strongest - paper;
  if (range <= 0) return new Float32Array(width * height);
  return ink.map((v) => {
    const stretched = (v - paper) / range;
    return stretched < PAPER ? 0 : Math.min(1, stretched);
  });
}

function borderMean(values, width, height) {
  let sum = 0;
  let count = 0;
  for (let x = 0; x < width; x++) {
    sum += values[x] + values[(height - 1) * width + x];
    count += 2;
  }
  for (let y = 1; y < height - 1; y++) {
    sum += values[y * width] + values[y * width + width - 1];
    count += 2;
  }
  return count ? sum / count : 0;
}

/** The smallest rectangle holding every nonzero value, or null when there is none. */
export function boundingBox(values, width, height) {
  let [left, top, right, bottom] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (values[y * width + x] > 0) {
        left = Math.min(left, x);
        right = Math.max(right, x);
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
      }
    }
  }
  return right < 0 ? null : { x: left, y: top, width: right - left + 1, height: bottom - top + 1 };
}

/**
 * The taps that resample `length` samples from `start` to `count` samples, each the average of
 * the source interval it covers (edge samples weighted by the fraction covered): [[index, weight]].
 */
function areaWeights(start, length, count) {
  const step = length / count;
  const weights = [];
  for (let i = 0; i < count; i++) {
    const [from, to] = [start + i * step, start + (i + 1) * step];
    const taps = [];
    for (let s = Math.floor(from); s < Math.ceil(to); s++) {
      const cover = Math.min(to, s + 1) - Math.max(from, s);
      if (cover > 0) taps.push([s, cover / step]);
    }
    weights.push(taps);
  }
  return weights;
}

/** The `box` region of `values` (width `width`) resampled by area averaging to `outWidth` x `outHeight`. */
export function resampleArea(values, width, box, outWidth, outHeight) {
  const columns = areaWeights(box.x, box.width, outWidth);
  const rows = areaWeights(box.y, box.height, outHeight);
  const across = new Float32Array(box.height * outWidth);
  for (let y = 0; y < box.height; y++) {
    const row = (box.y + y) * width;
    for (let x = 0; x < outWidth; x++) {
      let sum = 0;
      for (const [s, w] of columns[x]) sum += values[row + s] * w;
      across[y * outWidth + x] = sum;
    }
  }
  const out = new Float32Array(outWidth * outHeight);
  for (let y = 0; y < outHeight; y++) {
    for (const [s, w] of rows[y]) {
      const from = (s - box.y) * outWidth;
      for (let x = 0; x < outWidth; x++) out[y * outWidth + x] += across[from + x] * w;
    }
  }
  return out;
}

/** The centre of mass of `values` (pixel centres at x + 0.5), or null for an empty image. */
export function centreOfMass(values, width, height) {
  let [mass, sumX, sumY] = [0, 0, 0];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = values[y * width + x];
      mass += v;
      sumX += v * (x + 0.5);
      sumY += v * (y + 0.5);
    }
  }
  return mass > 0 ? { x: sumX / mass, y: sumY / mass } : null;
}

/**
 * The 28x28 MNIST-style image (a Float32Array of 784 values in [0, 1]) of `ink` (width x height,
 * 1 = ink), or all zeros when there is no ink.
 */
export function toMnist(ink, width, height) {
  const out = new Float32Array(SIDE * SIDE);
  const box = boundingBox(ink, width, height);
  if (!box) return out;
  const scale = BOX / Math.max(box.width, box.height);
  const fitWidth = Math.max(1, Math.round(box.width * scale));
  const fitHeight = Math.max(1, Math.round(box.height * scale));
  const fitted = resampleArea(ink, width, box, fitWidth, fitHeight);
  const centre = centreOfMass(fitted, fitWidth, fitHeight);
  if (!centre) return out;
  const left = Math.round(CENTRE - centre.x);
  const top = Math.round(CENTRE - centre.y);
  for (let y = 0; y < fitHeight; y++) {
    for (let x = 0; x < fitWidth; x++) {
      const [tx, ty] = [left + x, top + y];
      if (tx >= 0 && tx < SIDE && ty >= 0 && ty < SIDE) out[ty * SIDE + tx] = Math.min(1, fitted[y * fitWidth + x]);
    }
  }
  return out;
}
