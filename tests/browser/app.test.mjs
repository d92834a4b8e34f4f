// Browser tests of issue 26 (part 1) against the real binary: the page as an installable app (manifest,
// icons, service worker and what it keeps), rendering (maths, task lists, tables, /media/ images,
// <svg>), the viewer and missing media files, sign-in and the outage banner, and the phone layout
// (a menu per conversation, 44 px tap targets, a delete confirm that works by touch).
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test app.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startFakeUpstream } from './fake-upstream.mjs';
import { repo, CHROMIUM, LAUNCH_ARGS, sleep, request, until, startEdge, newContext, login } from './harness.mjs';

const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(shots, { recursive: true });
const ADMIN = 'admin';
const ADMIN_PW = 'browser-test-' + Math.random().toString(36).slice(2, 12);
const USER = 'member';
const USER_PW = 'member-pw-' + Math.random().toString(36).slice(2, 12);
const API_KEY = 'test-key-' + Math.random().toString(16).slice(2) + Math.random().toString(16).slice(2);

let upstream;
let edge;
let browser;
let context; // the admin's, desktop
let page;

const MOBILE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'light' };

async function csp(p) {
  // DOMPurify parsing an answer's inline handler is reported although nothing runs (chat.test.mjs).
  return (await p.evaluate(() => window.__csp || [])).filter((v) => !/^script-src-attr .*\/vendor\/purify\.min\.js:\d+$/.test(v));
}

const sent = new WeakMap(); // page -> how many answers it showed before the last send

async function send(p, text) {
  sent.set(p, await p.locator('.msg-assistant').count());
  await p.fill('#input', text);
  await p.press('#input', 'Enter');
}

/** The answer to the last `send` once it has stopped streaming. */
async function answerDone(p, timeout = 20000) {
  await p.waitForFunction((before) => {
    const all = document.querySelectorAll('.msg-assistant');
    const last = all[all.length - 1];
    return all.length > before && last.dataset.state && last.dataset.state !== 'streaming';
  }, sent.get(p) || 0, { timeout });
  return p.locator('.msg-assistant').last();
}

async function newChat(p) {
  if (await p.locator('#open-nav').isVisible()) await p.click('#new-chat-top');
  else await p.click('#new-chat');
  await p.waitForFunction(() => document.querySelectorAll('.msg').length === 0);
}

/** Width and height of a PNG, from its IHDR chunk. */
function pngSize(buf) {
  assert.equal(buf.subarray(1, 4).toString('latin1'), 'PNG');
  return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
}

before(async () => {
  upstream = await startFakeUpstream({ apiKey: API_KEY });
  edge = await startEdge({ upstreamUrl: upstream.url, apiKey: API_KEY, adminPassword: ADMIN_PW });
  // A small PNG and PDF the "model" links to.
  fs.copyFileSync(path.join(repo, 'www/icons/icon-192.png'), path.join(edge.media, 'chart.png'));
  fs.writeFileSync(path.join(edge.media, 'report.pdf'), minimalPdf());
  // Chromium registers no service worker from a certificate it does not trust (the test server's
  // is from its own local CA), whatever the context's ignoreHTTPSErrors says.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: [...LAUNCH_ARGS, '--ignore-certificate-errors'] });
  context = await newContext(browser, { colorScheme: 'light' });
  page = await context.newPage();
  await login(page, edge.base, ADMIN, ADMIN_PW);
  await page.waitForSelector('#input');
  // A second account that is not an administrator.
  const made = await page.evaluate(async ([u, pw]) => {
    const r = await fetch('/api/admin/users', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ username: u, password: pw, role: 'user' }) });
    return r.status;
  }, [USER, USER_PW]);
  assert.equal(made, 201);
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (edge) await edge.stop();
  if (upstream) await upstream.close().catch(() => {});
});

function minimalPdf() {
  const objs = ['<< /Type /Catalog /Pages 2 0 R >>', '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 100] >>'];
  let out = '%PDF-1.4\n';
  const offs = [];
  objs.forEach((o, i) => { offs.push(out.length); out += (i + 1) + ' 0 obj\n' + o + '\nendobj\n'; });
  const xref = out.length;
  out += 'xref\n0 ' + (objs.length + 1) + '\n0000000000 65535 f \n' + offs.map((o) => String(o).padStart(10, '0') + ' 00000 n \n').join('');
  out += 'trailer\n<< /Size ' + (objs.length + 1) + ' /Root 1 0 R >>\nstartxref\n' + xref + '\n%%EOF\n';
  return out;
}

// ---------------------------------------------------------------- installable

test('the manifest, icons and service worker are served without a login and reveal nothing', { timeout: 30000 }, async () => {
  const m = await request('GET', edge.base + '/manifest.webmanifest');
  assert.equal(m.status, 200);
  assert.match(m.headers['content-type'], /^application\/manifest\+json/);
  const manifest = JSON.parse(m.body);
  assert.equal(manifest.name, 'Hermes');
  assert.equal(manifest.short_name, 'Hermes');
  assert.equal(manifest.start_url, '/');
  assert.equal(manifest.scope, '/');
  assert.equal(manifest.display, 'standalone');
  assert.ok(manifest.theme_color && manifest.background_color);
  const sizes = new Map();
  for (const icon of manifest.icons.filter((i) => i.type === 'image/png')) {
    const r = await fetch(edge.base + icon.src).catch(() => null); // node's fetch refuses the local CA; use request
    assert.equal(r, null);
    const res = await new Promise((resolve, reject) => {
      import('node:https').then(({ default: https }) => https.get(edge.base + icon.src, { rejectUnauthorized: false }, (x) => {
        const parts = [];
        x.on('data', (d) => parts.push(d));
        x.on('end', () => resolve({ status: x.statusCode, type: x.headers['content-type'], body: Buffer.concat(parts) }));
      }).on('error', reject));
    });
    assert.equal(res.status, 200, icon.src);
    assert.equal(res.type, 'image/png');
    const [w, h] = pngSize(res.body);
    assert.equal(w + 'x' + h, icon.sizes, icon.src);
    sizes.set(icon.purpose + ' ' + icon.sizes, true);
  }
  for (const want of ['any 192x192', 'any 512x512', 'maskable 192x192', 'maskable 512x512']) assert.ok(sizes.has(want), want);
  const sw = await request('GET', edge.base + '/sw.js');
  assert.equal(sw.status, 200);
  assert.equal(sw.headers['cache-control'], 'no-cache');
  assert.equal(sw.headers['service-worker-allowed'], '/');
  assert.match(sw.headers['content-type'], /javascript/);
  assert.equal((await request('GET', edge.base + '/icons/apple-touch-icon.png')).status, 200);
  // The chat page itself still needs the login; its CSP lets the worker and manifest load.
  const root = await request('GET', edge.base + '/');
  assert.equal(root.status, 303);
  assert.match(root.headers['content-security-policy'], /worker-src 'self'/);
  assert.match(root.headers['content-security-policy'], /manifest-src 'self'/);
});

test('the service worker controls the page, keeps the app shell only, and the app opens offline', { timeout: 60000 }, async () => {
  await page.goto(edge.base + '/');
  await page.waitForSelector('#input');
  await page.evaluate(() => navigator.serviceWorker.ready);
  if (!await page.evaluate(() => !!navigator.serviceWorker.controller)) {
    await page.reload();
    await page.waitForSelector('#input');
  }
  assert.equal(await page.evaluate(() => navigator.serviceWorker.controller && new URL(navigator.serviceWorker.controller.scriptURL).pathname), '/sw.js');
  // Use the page: an answer (API, SSE), a /media/ image, the conversation list.
  await send(page, 'echo:A chart: ![chart](/media/chart.png) and the [report](/media/report.pdf).');
  await answerDone(page);
  await page.waitForFunction(() => { const i = document.querySelector('.msg-assistant .md img'); return i && i.complete && i.naturalWidth > 0; });
  await page.reload();
  await page.waitForSelector('.msg-assistant .md img');
  await sleep(500);
  const cached = await page.evaluate(async () => {
    const out = {};
    for (const name of await caches.keys()) {
      const c = await caches.open(name);
      out[name] = (await c.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search);
    }
    return out;
  });
  const names = Object.keys(cached);
  assert.deepEqual(names, ['hermes-shell-v1']);
  const paths = cached[names[0]];
  for (const p of paths) {
    assert.ok(!/^\/(api|v1|media|login|logout|view|healthz|dashboard|metrics)(\/|$|\?)/.test(p), 'never kept: ' + p);
  }
  for (const want of ['/', '/style.css', '/js/main.js', '/js/markdown.js', '/vendor/marked.min.js', '/manifest.webmanifest', '/icons/icon-192.png']) {
    assert.ok(paths.includes(want), want + ' is kept; kept: ' + paths.join(' '));
  }
  // Every module the page loads is in the shell list (an offline start needs them all).
  for (const f of fs.readdirSync(path.join(repo, 'www/js'))) assert.ok(paths.includes('/js/' + f), '/js/' + f + ' kept');
  // Another page of the site (the viewer) is not kept, and does not replace the chat page.
  const viewer = await context.newPage();
  await viewer.goto(edge.base + '/view?src=' + encodeURIComponent('/media/chart.png'));
  await viewer.waitForSelector('img.viewer-media');
  await viewer.close();
  const after = await page.evaluate(async () => (await (await caches.open('hermes-shell-v1')).keys()).map((r) => new URL(r.url).pathname));
  assert.ok(!after.some((p) => p === '/view' || p.startsWith('/media/')), after.join(' '));
  // The one page kept is the static chat page, the same for everyone.
  const shell = await page.evaluate(async () => (await (await caches.open('hermes-shell-v1')).match('/')).text());
  assert.equal(shell, fs.readFileSync(path.join(repo, 'www/index.html'), 'utf8'));
  // Installability as Chromium judges it: the manifest parses, its icons load, a worker controls the page.
  const cdp = await context.newCDPSession(page);
  const appManifest = await cdp.send('Page.getAppManifest');
  assert.deepEqual(appManifest.errors, []);
  // A test's browser context is an incognito one (never installable there); nothing else may be missing.
  const inst = await cdp.send('Page.getInstallabilityErrors');
  assert.deepEqual(inst.installabilityErrors.filter((e) => e.errorId !== 'in-incognito'), [], JSON.stringify(inst));
  await cdp.detach();
  // Offline: the shell opens from the cache and says it is offline.
  await context.setOffline(true);
  try {
    await page.reload();
    await page.waitForSelector('#input');
    const banner = page.locator('.banner[data-key="offline"]');
    await banner.waitFor({ timeout: 10000 });
    assert.match(await banner.textContent(), /offline/i);
  } finally {
    await context.setOffline(false);
  }
  await page.waitForFunction(() => !document.querySelector('.banner[data-key="offline"]'), null, { timeout: 10000 });
  assert.deepEqual(await csp(page), []);
});

// ---------------------------------------------------------------- rendering

const RICH = [
  'echo:Maths: $$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$',
  '',
  'Inline $e^{i\\pi} + 1 = 0$ and \\(\\sqrt{2}\\), but prices like $5 and $10 stay text.',
  '',
  'Harder: $\\boldsymbol{v} \\cdot \\overrightarrow{AB}$ and $$\\begin{array}{|c|c|}\\hline a & b \\\\ \\hline\\end{array}$$ and a mistake $\\frac{1}{$.',
  '',
  '- [ ] to do',
  '- [x] done',
  '',
  '| Name | Status | Notes |',
  '|---|---|---|',
  '| build | Status ok | all good |',
  '',
  'Before the drawing',
  '',
  '<svg width="300" height="150"><circle cx="50" cy="50" r="40"/></svg>',
  '',
  'After the drawing',
  '',
  '![chart](/media/chart.png) ![elsewhere](https://example.com/x.png)',
  '',
  '`$not maths$` in code',
].join('\n');

test('maths is typeset by KaTeX (loaded only then), task lists, tables, /media/ images and <svg>', { timeout: 60000 }, async () => {
  await newChat(page);
  // No maths yet: KaTeX is not in the page.
  await send(page, 'echo:No maths here, just $5 and $10.');
  const plain = await answerDone(page);
  assert.equal(await page.evaluate(() => typeof window.katex), 'undefined');
  assert.equal(await page.locator('link[href*="katex"], script[src*="katex"]').count(), 0);
  assert.equal((await plain.locator('.md').textContent()).trim(), 'No maths here, just $5 and $10.');

  await send(page, RICH);
  const answer = await answerDone(page);
  await page.waitForFunction(() => document.querySelectorAll('.msg-assistant:last-child .katex').length >= 3, null, { timeout: 10000 });
  const md = answer.locator('.md');
  assert.equal(await md.locator('.math-display .katex-display').count(), 2);
  // The TeX reached KaTeX intact (markdown did not eat "\,").
  const tex = await md.locator('.math-display annotation[encoding="application/x-tex"]').first().textContent();
  assert.equal(tex, '\\int_0^1 x^2\\,dx = \\frac{1}{3}');
  assert.equal(await md.locator('.math-inline .katex').count(), 3);
  // Bad TeX is shown as written, marked, and breaks nothing else.
  assert.equal(await md.locator('.math-inline .katex-error').textContent(), '\\frac{1}{');
  assert.match(await md.textContent(), /prices like \$5 and \$10 stay text/);
  assert.match(await md.locator('code').last().textContent(), /^\$not maths\$$/);
  // Rendered, not raw: the fraction has a real height.
  const h = await md.locator('.math-display').first().evaluate((e) => e.getBoundingClientRect().height);
  assert.ok(h > 30, 'display maths height ' + h);
  // Task list: disabled checkboxes, the second ticked.
  const boxes = md.locator('li.task-item > input[type="checkbox"]');
  assert.equal(await boxes.count(), 2);
  assert.deepEqual(await boxes.evaluateAll((bs) => bs.map((b) => [b.checked, b.disabled])), [[false, true], [true, true]]);
  // The table: in its scroll box, "Status" on one line.
  assert.equal(await md.locator('.table-wrap > table').count(), 1);
  const statusLines = await md.locator('th').nth(1).evaluate((th) => {
    const r = document.createRange();
    r.selectNodeContents(th);
    return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size;
  });
  assert.equal(statusLines, 1);
  // No <svg> from the model, and no gap where it was.
  assert.equal(await md.evaluate((m) => [...m.querySelectorAll('svg')].filter((s) => !s.closest('.katex')).length), 0);
  const gap = await md.evaluate((m) => {
    const ps = [...m.querySelectorAll('p')];
    const a = ps.find((p) => p.textContent === 'Before the drawing');
    const b = ps.find((p) => p.textContent === 'After the drawing');
    return b.getBoundingClientRect().top - a.getBoundingClientRect().bottom;
  });
  assert.ok(gap < 40, 'gap where the <svg> was: ' + gap);
  // The /media/ image is shown (and opens in the viewer); the other site's is a link, not a broken image.
  const img = md.locator('img.md-image');
  assert.equal(await img.count(), 1);
  await page.waitForFunction(() => { const i = document.querySelector('.msg-assistant:last-child img.md-image'); return i && i.naturalWidth > 0; });
  assert.equal(await md.locator('a.md-image-link').getAttribute('href'), '/view?src=' + encodeURIComponent('/media/chart.png'));
  assert.equal(await md.locator('img:not(.md-image)').count(), 0);
  assert.equal(await md.locator('a.md-image-blocked').getAttribute('href'), 'https://example.com/x.png');
  assert.deepEqual(await csp(page), []);
  await page.mouse.move(0, 0);
  await answer.evaluate((a) => a.scrollIntoView({ block: 'start' }));
  await sleep(100);
  await page.screenshot({ path: path.join(shots, 'screenshot-rendering-desktop.png') });
  // After a reload (from the stored history), the same.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('.msg-assistant:last-child .katex').length >= 3, null, { timeout: 10000 });
  assert.deepEqual(await csp(page), []);
});

test('at 390 px a wide table and a long formula scroll in their own boxes and the page does not', { timeout: 60000 }, async () => {
  const mobile = await newContext(browser, Object.assign({ storageState: await context.storageState() }, MOBILE));
  const p = await mobile.newPage();
  await p.goto(edge.base + '/');
  await p.waitForSelector('#input');
  await send(p, 'echo:| ' + Array.from({ length: 8 }, (_, i) => 'Column' + i).join(' | ') + ' |\n|' + '---|'.repeat(8) + '\n| ' + Array.from({ length: 8 }, () => 'Status').join(' | ') + ' |');
  const answer = await answerDone(p);
  // Read in one go from the live page: the answer is drawn again once more when its run ends.
  const dims = await p.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    const w = all[all.length - 1].querySelector('.table-wrap');
    return w && w.isConnected && w.clientWidth > 0 && [w.scrollWidth, w.clientWidth];
  }, null, { timeout: 5000 });
  const [sw, cw] = await dims.jsonValue();
  assert.ok(sw > cw, 'the table is wider than its box: ' + sw + ' > ' + cw);
  const page1 = await p.evaluate(() => [document.getElementById('scroller').scrollWidth, document.getElementById('scroller').clientWidth]);
  assert.ok(page1[0] <= page1[1], 'no page scroll: ' + page1);
  const broken = await answer.locator('td').evaluateAll((tds) => tds.filter((td) => {
    const r = document.createRange();
    r.selectNodeContents(td);
    return new Set([...r.getClientRects()].map((x) => Math.round(x.top))).size > 1;
  }).length);
  assert.equal(broken, 0, 'no cell breaks "Status" in two');
  // A long display formula scrolls in its own box too; inline maths wraps with the text.
  await send(p, 'echo:Energy $E = mc^2$ and a long one: $$' + Array.from({ length: 14 }, (_, i) => 'x_{' + i + '}^2').join(' + ') + ' = \\frac{a}{b}$$');
  await answerDone(p);
  await p.waitForFunction(() => document.querySelectorAll('.msg-assistant:last-of-type .katex').length === 2, null, { timeout: 10000 });
  const maths = await p.evaluate(() => {
    const d = [...document.querySelectorAll('.math-display')].pop();
    const s = document.getElementById('scroller');
    return { box: [d.scrollWidth, d.clientWidth], page: [s.scrollWidth, s.clientWidth] };
  });
  assert.ok(maths.box[0] > maths.box[1], 'the formula scrolls in its box: ' + JSON.stringify(maths));
  assert.ok(maths.page[0] <= maths.page[1], 'no page scroll: ' + JSON.stringify(maths));
  await p.screenshot({ path: path.join(shots, 'screenshot-rendering-mobile.png') });
  assert.deepEqual(await csp(p), []);
  await mobile.close();
});

// ---------------------------------------------------------------- viewer and missing files

test('the viewer shows a PDF in a frame; a missing file has a page with a way back and no Download', { timeout: 60000 }, async () => {
  const v = await context.newPage();
  await v.goto(edge.base + '/view?src=' + encodeURIComponent('/media/report.pdf'));
  await v.waitForSelector('iframe.viewer-pdf, .viewer-message');
  assert.equal(await v.locator('.viewer-message').count(), 0, 'not "cannot be shown"');
  assert.equal(await v.locator('iframe.viewer-pdf').getAttribute('src'), '/media/report.pdf');
  assert.equal(await v.isVisible('#download'), true);
  // The PDF may be framed by the site's own pages only.
  const cookie = (await context.cookies()).map((c) => c.name + '=' + c.value).join('; ');
  const pdf = await request('GET', edge.base + '/media/report.pdf', { Cookie: cookie });
  assert.equal(pdf.status, 200);
  assert.equal(pdf.headers['x-frame-options'], 'SAMEORIGIN');
  assert.match(pdf.headers['content-security-policy'], /frame-ancestors 'self'/);
  assert.doesNotMatch(pdf.headers['content-security-policy'], /sandbox/);
  const png = await request('GET', edge.base + '/media/chart.png', { Cookie: cookie });
  assert.equal(png.headers['x-frame-options'], 'DENY');
  assert.deepEqual(await csp(v), []);

  // A missing file in the viewer: said so, a way back, no Download.
  await v.goto(edge.base + '/view?src=' + encodeURIComponent('/media/gone.png'));
  await v.waitForSelector('.viewer-message');
  assert.equal(await v.textContent('.viewer-message h1'), 'File not found');
  assert.equal(await v.isVisible('#download'), false);
  assert.equal(await v.locator('.viewer-message a[download]').count(), 0);
  assert.equal(await v.getAttribute('#viewer-back', 'href'), '/');
  // Opened directly: an HTML page for the browser, JSON for an API client.
  const nav = await v.goto(edge.base + '/media/gone.png');
  assert.equal(nav.status(), 404);
  assert.match(nav.headers()['content-type'], /^text\/html/);
  assert.equal(await v.textContent('h1'), 'File not found');
  await Promise.all([v.waitForURL((u) => u.pathname === '/'), v.click('a[href="/"]')]);
  const api = await request('GET', edge.base + '/media/gone.png', { Cookie: cookie, Accept: 'application/json' });
  assert.equal(api.status, 404);
  assert.equal(JSON.parse(api.body).error.code, 'not_found');
  await v.close();
});

// ---------------------------------------------------------------- sign-in and banners

test('a wrong password keeps the username and the "keep me signed in" box', { timeout: 30000 }, async () => {
  const ctx = await newContext(browser);
  const p = await ctx.newPage();
  await p.goto(edge.base + '/login');
  await p.fill('#username', USER);
  await p.fill('#password', 'wrong-password');
  await p.check('#remember');
  // The form is sent with fetch: the page stays, and says why.
  await p.click('#login-submit');
  await p.waitForFunction(() => /Wrong username or password/.test(document.getElementById('login-error').textContent));
  assert.equal(new URL(p.url()).pathname, '/login');
  assert.equal(await p.inputValue('#username'), USER);
  assert.equal(await p.isChecked('#remember'), true);
  assert.equal(await p.inputValue('#password'), '');
  assert.equal(await p.evaluate(() => document.activeElement.id), 'password');
  assert.doesNotMatch(p.url(), /member/); // the name is not in the address
  // Unticked stays unticked.
  await p.evaluate(() => { document.getElementById('login-error').textContent = ''; });
  await p.fill('#password', 'wrong-again');
  await p.uncheck('#remember');
  await p.click('#login-submit');
  await p.waitForFunction(() => /Wrong username or password/.test(document.getElementById('login-error').textContent));
  assert.equal(await p.isChecked('#remember'), false);
  assert.equal(await p.inputValue('#username'), USER);
  await ctx.close();
});

test('Hermes down: operator instructions for an admin only, a plain banner for others, gone within seconds of recovery', { timeout: 90000 }, async () => {
  const port = upstream.port;
  const memberCtx = await newContext(browser, MOBILE);
  const member = await memberCtx.newPage();
  await login(member, edge.base, USER, USER_PW);
  await member.waitForSelector('#input');
  await member.waitForFunction(() => document.getElementById('me').textContent.length > 0);
  await upstream.close();
  try {
    await newChat(page);
    await send(page, 'anyone home?');
    await send(member, 'anyone home?');
    const adminBanner = page.locator('.banner[data-key="upstream"]');
    const memberBanner = member.locator('.banner[data-key="upstream"]');
    await adminBanner.waitFor({ timeout: 15000 });
    await memberBanner.waitFor({ timeout: 15000 });
    const adminText = await adminBanner.locator('.banner-text').textContent();
    const memberText = await memberBanner.locator('.banner-text').textContent();
    assert.match(adminText, /API_SERVER_ENABLED=true/);
    assert.doesNotMatch(adminText, /API_SERVER_KEY=\S/);
    assert.doesNotMatch(adminText, new RegExp(API_KEY));
    assert.equal(memberText, 'The assistant is unreachable right now. Retrying…');
    assert.doesNotMatch(await member.locator('body').textContent(), /API_SERVER|hermes gateway|127\.0\.0\.1/);
    await member.screenshot({ path: path.join(shots, 'screenshot-unreachable-mobile.png') });
    for (const b of await memberBanner.locator('button').all()) {
      const r = await b.boundingBox();
      assert.ok(r.width >= 44 && r.height >= 44, 'banner button ' + JSON.stringify(r));
    }
    // Closed by the person, it stays closed while the page keeps checking quietly (more than one
    // check interval).
    await memberBanner.locator('.banner-close').tap();
    await sleep(3500);
    assert.equal(await memberBanner.count(), 0);
    // Hermes is back on the same port: the banner goes within a few seconds.
    upstream = await startFakeUpstream({ apiKey: API_KEY, port });
    const back = Date.now();
    await page.waitForFunction(() => !document.querySelector('.banner[data-key="upstream"]'), null, { timeout: 8000 });
    assert.ok(Date.now() - back < 8000);
    // And a send works again for both.
    await send(member, 'echo:back again');
    assert.equal((await (await answerDone(member)).locator('.md').textContent()).trim(), 'back again');
  } finally {
    if (!upstream.port || upstream.port !== port) upstream = await startFakeUpstream({ apiKey: API_KEY, port }).catch(() => upstream);
    await memberCtx.close();
  }
});

// ---------------------------------------------------------------- phone

test('at 390 px every conversation has a ⋯ menu (and a long press) to rename and delete it, confirmed by touch', { timeout: 90000 }, async () => {
  const mobile = await newContext(browser, Object.assign({ storageState: await context.storageState() }, MOBILE));
  const p = await mobile.newPage();
  await p.goto(edge.base + '/');
  await p.waitForSelector('#input');
  // Three conversations of its own.
  const ids = [];
  for (const n of [1, 2, 3]) {
    await newChat(p);
    await send(p, 'echo:Conversation number ' + n);
    await answerDone(p);
    ids.push(new URL(p.url()).searchParams.get('c'));
  }
  await p.tap('#open-nav');
  await p.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().x === 0);
  // Every row has its menu button, not only the open conversation.
  const rows = p.locator('.conv-item');
  const count = await rows.count();
  assert.ok(count >= 3);
  assert.equal(await p.locator('.conv-item .conv-more:visible').count(), count);
  // Tap targets: at least 44 px each way.
  const small = await p.evaluate(() => {
    const sel = ['#close-nav', '#new-chat', '.conv-link', '.conv-more', '#open-tokens', '.logout-form button'];
    const out = [];
    for (const s of sel) for (const e of document.querySelectorAll(s)) {
      const r = e.getBoundingClientRect();
      if (r.width && (r.width < 44 || r.height < 44)) out.push(s + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
    }
    return out;
  });
  assert.deepEqual(small, []);
  // Rename an older (not open) conversation from its menu.
  const other = p.locator(`.conv-item[data-id="${ids[0]}"]`);
  await other.locator('.conv-more').tap();
  const menu = other.locator('.conv-menu');
  await menu.waitFor();
  await p.screenshot({ path: path.join(shots, 'screenshot-conversation-menu-mobile.png') });
  for (const b of await menu.locator('button').all()) {
    const r = await b.boundingBox();
    assert.ok(r.height >= 44, 'menu button height ' + r.height);
  }
  await menu.getByRole('menuitem', { name: 'Rename' }).tap();
  await p.fill('.rename-input', 'Renamed on the phone');
  await p.press('.rename-input', 'Enter');
  await p.waitForFunction((id) => {
    const l = document.querySelector(`.conv-item[data-id="${id}"] .conv-link`);
    return l && l.textContent === 'Renamed on the phone';
  }, ids[0]);
  // Delete another one by a long press, then the confirm in the menu.
  const victim = p.locator(`.conv-item[data-id="${ids[1]}"]`);
  const box = await victim.locator('.conv-link').boundingBox();
  const cdp = await mobile.newCDPSession(p);
  const point = { x: box.x + 30, y: box.y + box.height / 2 };
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [point] });
  await sleep(800);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await cdp.detach();
  await victim.locator('.conv-menu').waitFor({ timeout: 5000 });
  assert.equal(new URL(p.url()).searchParams.get('c'), ids[2], 'the long press did not open the conversation');
  await victim.getByRole('menuitem', { name: 'Delete' }).tap();
  const confirm = victim.getByRole('menuitem', { name: 'Delete' });
  await victim.locator('.conv-menu-confirm-text').waitFor();
  assert.match(await victim.locator('.conv-menu-confirm-text').textContent(), /cannot be undone/);
  await p.screenshot({ path: path.join(shots, 'screenshot-delete-confirm-mobile.png') });
  assert.ok((await confirm.boundingBox()).height >= 44);
  await confirm.tap();
  await p.waitForFunction((id) => !document.querySelector(`.conv-item[data-id="${id}"]`), ids[1], { timeout: 5000 });
  assert.equal((await p.request.get(edge.base + '/api/conversations/' + ids[1])).status(), 404);
  // Cancel keeps it.
  const keep = p.locator(`.conv-item[data-id="${ids[2]}"]`);
  await keep.locator('.conv-more').tap();
  await keep.getByRole('menuitem', { name: 'Delete' }).tap();
  await keep.getByRole('menuitem', { name: 'Cancel' }).tap();
  await keep.getByRole('menuitem', { name: 'Rename' }).waitFor();
  assert.equal((await p.request.get(edge.base + '/api/conversations/' + ids[2])).status(), 200);
  // The chat's own controls at 390 px.
  await p.tap('#scrim', { position: { x: 370, y: 400 } }).catch(() => p.click('#scrim', { position: { x: 370, y: 400 } }));
  await p.waitForFunction(() => !document.getElementById('app').classList.contains('nav-open'));
  const smallMain = await p.evaluate(() => {
    const out = [];
    for (const s of ['#open-nav', '#new-chat-top', '#attach', '#send', '.msg-actions button']) for (const e of document.querySelectorAll(s)) {
      const r = e.getBoundingClientRect();
      if (r.width && (r.width < 44 || r.height < 44)) out.push(s + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
    }
    return out;
  });
  assert.deepEqual(smallMain, []);
  assert.deepEqual(await csp(p), []);
  await mobile.close();
});
