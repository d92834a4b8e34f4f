// Single sign-on in real headless Chromium, for tests/oidc.rs: the login page's button, the
// provider's page (a click there, as a person signs in), the callback, and then the page the
// sign-in was for, signed in. An HTTP client cannot prove that last step: the session cookie is
// SameSite=Strict, and only a browser leaves such a cookie out of a navigation that a cross-site
// page started.
//
//   node tests/oidc/browser.mjs https://localhost:PORT "Button label" [screenshot.png]
// Prints one JSON line: {"final": URL, "me": status of GET /api/me, "buttons": [labels]}.
// Uses playwright-core from tests/browser (installed by tests/install-peers.sh) and Debian's Chromium.

import { createRequire } from 'node:module';

const require = createRequire(new URL('../browser/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [origin, label, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 760 } });
  const page = await ctx.newPage();
  await page.goto(`${origin}/login?next=%2Fview`);
  await page.waitForSelector('#sso a', { timeout: 10000 });
  const buttons = await page.$$eval('#sso a', (links) => links.map((a) => a.textContent));
  if (screenshot) await page.screenshot({ path: screenshot });
  await page.click(`#sso a:text-is("${label}")`);
  // The provider's own page: what follows is a navigation a cross-site page started.
  await page.click('#continue', { timeout: 20000 });
  // The callback page moves on by itself to `next`.
  await page.waitForURL((u) => u.origin === origin && u.pathname === '/view', { timeout: 20000 })
    .catch(() => {});
  const me = await page.evaluate(() => fetch('/api/me').then((r) => r.status));
  console.log(JSON.stringify({ final: page.url(), me, buttons }));
} finally {
  await browser.close();
}
