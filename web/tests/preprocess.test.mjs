// Unit tests of web/preprocess.js in Node: `node web/tests/preprocess.test.mjs <mnist dir>`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { testImages } from './mnist.mjs';
import { inkFromRgba, toMnist, boundingBox, centreOfMass, BOX, SIDE } from '../preprocess.js';

const mnistDir = process.argv[2];
if (!mnistDir) {
  console.error('usage: node web/tests/preprocess.test.mjs <mnist dir>');
  process.exit(2);
}

/** `image` (28x28) blown up `k` times (each pixel a k x k block) into a width x height field at (left, top). */
function enlarge(image, k, width, height, left, top) {
  const big = new Float32Array(width * height);
  for (let y = 0; y < 28 * k; y++) {
    for (let x = 0; x < 28 * k; x++) big[(top + y) * width + left + x] = image[Math.floor(y / k) * 28 + Math.floor(x / k)];
  }
  return big;
}

const largestDifference = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

test('an MNIST digit drawn large anywhere on the pad comes back as MNIST made it', () => {
  const count = 300;
  const images = testImages(mnistDir, count);
  let worst = 0;
  for (let i = 0; i < count; i++) {
    const image = images.subarray(i * 784, (i + 1) * 784);
    const [k, left, top] = [[10, 7, 9][i % 3], (i * 37) % 40, (i * 53) % 30];
    const out = toMnist(enlarge(image, k, 28 * k + 40, 28 * k + 30, left, top), 28 * k + 40, 28 * k + 30);
    worst = Math.max(worst, largestDifference(out, image));
  }
  assert.ok(worst < 1e-5, `largest pixel difference ${worst}`);
});

test('the bounding box is scaled to 20 pixels keeping its aspect ratio', () => {
  const [width, height] = [300, 200];
  const ink = new Float32Array(width * height);
  for (let y = 50; y < 70; y++) for (let x = 20; x < 220; x++) ink[y * width + x] = 1;
  const out = toMnist(ink, width, height);
  const box = boundingBox(out, SIDE, SIDE);
  assert.deepEqual([box.width, box.height], [BOX, 2]);
  const centre = centreOfMass(out, SIDE, SIDE);
  // Whole-pixel shifts: the centre of mass is within half a pixel of MNIST's.
  assert.ok(Math.abs(centre.x - 14.5) <= 0.5 && Math.abs(centre.y - 14.5) <= 0.5, JSON.stringify(centre));
  assert.ok(out.every((v) => v >= 0 && v <= 1));
});

test('a small digit is enlarged to the 20-pixel box', () => {
  const ink = new Float32Array(10 * 10);
  for (let y = 2; y < 7; y++) ink[y * 10 + 4] = 1;
  const box = boundingBox(toMnist(ink, 10, 10), SIDE, SIDE);
  assert.deepEqual([box.width, box.height], [4, BOX]);
});

test('no ink gives a black image', () => {
  assert.ok(toMnist(new Float32Array(50 * 40), 50, 40).every((v) => v === 0));
});

test('a dark digit on light paper becomes a white digit on black; paper and noise become 0', () => {
  const [width, height] = [40, 30];
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const digit = i % width >= 10 && i % width < 14 && Math.floor(i / width) > 5;
    const grey = digit ? 20 : 200 + (i % 7); // grey paper with a little noise
    rgba.set([grey, grey, grey, 255], i * 4);
  }
  const ink = inkFromRgba(rgba, width, height);
  assert.equal(ink[8 * width + 12], 1);
  assert.equal(ink[8 * width + 2], 0);
  assert.deepEqual(boundingBox(ink, width, height), { x: 10, y: 6, width: 4, height: 24 });

  const inverted = new Uint8ClampedArray(rgba.map((v, i) => (i % 4 === 3 ? v : 255 - v)));
  assert.deepEqual(inkFromRgba(inverted, width, height), ink);
});
