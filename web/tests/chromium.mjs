// Debian's Chromium under playwright-core, with WebGPU on SwiftShader (no GPU needed).
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const QUIET = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
const WEBGPU = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-webgpu-adapter=swiftshader', '--use-angle=swiftshader'];

/** A headless Chromium; with `webgpu: false` it has no WebGPU flags. A missing browser throws. */
export async function launch({ webgpu = true } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (scripts/test does)`);
  return chromium.launch({ executablePath: CHROMIUM, args: webgpu ? [...QUIET, ...WEBGPU] : QUIET });
}

/** Collects the page's console errors and uncaught exceptions into `errors`. */
export function watchErrors(page, errors = []) {
  page.on('console', (m) => m.type() === 'error' && errors.push(`console: ${m.text()} (${m.location().url})`));
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  return errors;
}
