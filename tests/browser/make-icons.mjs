// Draws the app icons in www/icons/ from the SVGs with headless Chromium (run once when the logo
// changes, then commit the PNGs): node tests/browser/make-icons.mjs
//   icon-192.png, icon-512.png   favicon.svg as it is (rounded corners, transparent outside)
//   maskable-192.png, maskable-512.png, apple-touch-icon.png (180)
//                                icons/maskable.svg: full-bleed colour, the letter inside the safe
//                                zone (the launcher or iOS cuts its own shape)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const www = path.resolve(here, '../../www');
const jobs = [
  ['favicon.svg', 'icons/icon-192.png', 192],
  ['favicon.svg', 'icons/icon-512.png', 512],
  ['icons/maskable.svg', 'icons/maskable-192.png', 192],
  ['icons/maskable.svg', 'icons/maskable-512.png', 512],
  ['icons/maskable.svg', 'icons/apple-touch-icon.png', 180],
];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--headless', '--no-sandbox'] });
try {
  for (const [src, out, size] of jobs) {
    const page = await browser.newPage({ viewport: { width: size, height: size } });
    const svg = fs.readFileSync(path.join(www, src), 'utf8');
    await page.setContent('<body style="margin:0">' + svg.replace('<svg ', `<svg width="${size}" height="${size}" `) + '</body>');
    await page.screenshot({ path: path.join(www, out), omitBackground: true });
    await page.close();
    console.log(out, fs.statSync(path.join(www, out)).size, 'bytes');
  }
} finally {
  await browser.close();
}
