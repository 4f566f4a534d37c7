// Reads MNIST's IDX files (as scripts/fetch-mnist writes them) for the tests.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

function idx(path, magic) {
  const bytes = readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== magic) throw new Error(`${path}: not an IDX file of the expected kind`);
  return { view, bytes };
}

/** The first `count` test images as one Float32Array of count * 784 values in [0, 1]. */
export function testImages(dir, count) {
  const path = join(dir, 't10k-images-idx3-ubyte');
  const { view, bytes } = idx(path, 0x00000803);
  const [n, rows, cols] = [view.getUint32(4), view.getUint32(8), view.getUint32(12)];
  if (rows !== 28 || cols !== 28 || n < count) throw new Error(`${path}: ${n} images of ${rows}x${cols}`);
  return Float32Array.from(bytes.subarray(16, 16 + count * 784), (v) => v / 255);
}

/** The first `count` test labels. */
export function testLabels(dir, count) {
  const path = join(dir, 't10k-labels-idx1-ubyte');
  const { view, bytes } = idx(path, 0x00000801);
  if (view.getUint32(4) < count) throw new Error(`${path}: fewer than ${count} labels`);
  return Array.from(bytes.subarray(8, 8 + count));
}
