// Browser tests of finding and keeping conversations (issue 26): the search box over the conversation
// list (results with the hit marked, never as HTML; a hit opens its conversation at the message; Esc
// brings the list back), the export menu of the open conversation (Markdown and JSON downloads), and
// message times (relative, exact on hover and on a tap, refreshed in place), and attached files (uploaded,
// the agent told their path, shown as a chip that opens the viewer). Desktop and 390 px.
// Its own server and data dir, against the scripted fake upstream.
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test history.test.mjs
//
// Optional env as in chat.test.mjs: CHROMIUM, KEEP_TMP=1, HERMES_EDGE_EMBEDDED_WWW=1, SHOW_SERVER_LOG=1,
// SCREENSHOT_DIR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startFakeUpstream } from './fake-upstream.mjs';
import { CHROMIUM, LAUNCH_ARGS, freePort, sleep, until } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(shots, { recursive: true });
const BIN = process.env.HERMES_EDGE_BIN;
const ADMIN_PW = 'history-test-' + Math.random().toString(36).slice(2, 12);
const API_KEY = 'test-key-' + Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
const MOBILE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let tmp;
let upstream;
let server;
let serverLog = '';
let base;
let browser;
let context;
let page;
const conv = {}; // name -> conversation id

function getHealth(url) {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode }));
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => { req.destroy(); resolve(null); });
  });
}

async function newContext(opts) {
  const ctx = await browser.newContext(Object.assign({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 }, acceptDownloads: true }, opts || {}));
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => { window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '')); });
  });
  return ctx;
}

/** Sends `text` in a new conversation (or the open one) and waits for the answer; returns the conversation id. */
async function converse(p, text, fresh) {
  if (fresh) {
    if (await p.locator('#new-chat').isVisible()) await p.click('#new-chat');
    else await p.click('#new-chat-top');
    await p.waitForFunction(() => document.querySelectorAll('.msg').length === 0);
  }
  const before = await p.locator('.msg-assistant').count();
  await p.fill('#input', text);
  await p.press('#input', 'Enter');
  await p.waitForFunction((n) => {
    const all = document.querySelectorAll('.msg-assistant');
    return all.length > n && all[all.length - 1].dataset.state === 'done';
  }, before, { timeout: 20000 });
  // The run is stored when it ends; wait until the server has the answer before searching for it.
  const id = await until(() => new URL(p.url()).searchParams.get('c'), 5000, 'the conversation id in the URL');
  await until(async () => {
    const v = await p.evaluate(async (cid) => (await fetch('/api/conversations/' + cid)).json(), id);
    const last = v.messages && v.messages[v.messages.length - 1];
    return last && last.role === 'assistant' && last.state === 'done';
  }, 10000, 'the stored answer');
  return id;
}

before(async () => {
  assert.ok(BIN, 'set HERMES_EDGE_BIN to the hermes-edge binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-history-'));
  for (const d of ['certs', 'data', 'media']) fs.mkdirSync(path.join(tmp, d));
  upstream = await startFakeUpstream({ apiKey: API_KEY });
  const port = await freePort();
  base = 'https://127.0.0.1:' + port;
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', upstream.url];
  if (!process.env.HERMES_EDGE_EMBEDDED_WWW) args.push('--www', path.join(repo, 'www'));
  server = spawn(BIN, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: ADMIN_PW, HERMES_EDGE_API_KEY: API_KEY }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  let exited = null;
  server.on('exit', (code) => { exited = code; });
  await until(async () => {
    if (exited !== null) throw new Error('hermes-edge exited with ' + exited + ':\n' + serverLog);
    const h = await getHealth(base + '/healthz');
    return h && h.status === 200;
  }, 60000, 'GET /healthz', 200);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  context = await newContext({ colorScheme: 'light' });
  page = await context.newPage();
  await page.goto(base + '/');
  await page.fill('#username', 'admin');
  await page.fill('#password', ADMIN_PW);
  await Promise.all([page.waitForNavigation(), page.click('#login-submit')]);
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'));

  conv.groceries = await converse(page, 'Groceries for sunday', true);
  conv.html = await converse(page, 'Notes <b>bold</b> <img src=x onerror=window.__pwned=1>', true);
  conv.pelican = await converse(page, 'Pelican migration notes', true);
  await converse(page, 'and the zeppelin ferry timetable', false);
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.once('exit', r)), sleep(5000)]);
    if (server.exitCode === null) server.kill('SIGKILL');
  }
  if (upstream) await upstream.close().catch(() => {});
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  if (process.env.SHOW_SERVER_LOG) console.log(serverLog);
});

test('search: results replace the list with the hit marked, a hit opens the conversation at the message, Esc restores', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  await page.fill('#search', 'zeppel');
  await page.waitForSelector('#search-results .search-hit');
  assert.equal(await page.isVisible('#conv-list'), false, 'the list gives way to the results');
  const hits = page.locator('#search-results .search-hit');
  assert.equal(await hits.count(), 1);
  assert.equal(await hits.first().getAttribute('data-id'), conv.pelican);
  assert.equal(await hits.first().locator('.search-hit-title').textContent(), 'Pelican migration notes');
  assert.deepEqual(await hits.first().locator('.search-hit-snippet mark').allTextContents(), ['zeppelin']);
  await page.screenshot({ path: path.join(shots, 'screenshot-search-desktop.png') });

  // Pressing Enter opens the first hit; the matching message (index 2) is scrolled into view and flashed.
  await page.press('#search', 'Enter');
  await page.waitForFunction((id) => new URL(location.href).searchParams.get('c') === id, conv.pelican);
  await page.waitForSelector('.msg[data-index="2"].search-target');
  assert.equal(await page.locator('.msg[data-index="2"]').isVisible(), true);
  assert.equal(await page.isVisible('#search-results'), true, 'the results stay until the search is cleared');

  // Esc clears the search and brings the list back.
  await page.press('#search', 'Escape');
  assert.equal(await page.inputValue('#search'), '');
  assert.equal(await page.isVisible('#conv-list'), true);
  assert.equal(await page.isVisible('#search-results'), false);
  assert.equal(await page.locator('#conv-list .conv-item').count(), 3);

  // A title hit; more than one result comes newest first.
  await page.fill('#search', 'notes');
  await page.waitForFunction(() => document.querySelectorAll('#search-results .search-hit').length === 2);
  assert.deepEqual(await page.locator('#search-results .search-hit').evaluateAll((a) => a.map((x) => x.dataset.id)),
    [conv.pelican, conv.html]);
  assert.deepEqual(await page.locator('#search-results .search-hit').first().locator('.search-hit-title mark').allTextContents(), ['notes']);

  // What the person typed and what was stored stay text: no <b>, no <img> from a title or a snippet.
  await page.fill('#search', 'bold');
  await page.waitForFunction(() => /bold/.test(document.getElementById('search-results').textContent) &&
    document.querySelector('#search-results .search-hit'));
  const res = page.locator('#search-results');
  assert.equal(await res.locator('b, img').count(), 0);
  assert.match(await res.textContent(), /<b>bold<\/b>/);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);

  // Query syntax is plain text: no error, just no match.
  for (const q of ['"', 'NEAR(', '*', 'a"b OR c']) {
    await page.fill('#search', q);
    await page.waitForFunction(() => {
      const r = document.getElementById('search-results');
      return r.querySelector('.search-none, .search-hit, .search-error') && !/Searching/.test(r.textContent);
    });
    assert.equal(await res.locator('.search-error').count(), 0, q);
  }
  // Clearing the box by hand restores the list too.
  await page.fill('#search', '');
  assert.equal(await page.isVisible('#conv-list'), true);
  // Ctrl+K focuses the box.
  await page.click('#input');
  await page.keyboard.press('Control+k');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'search');
  assert.deepEqual(await page.evaluate(() => window.__csp), []);
});

test('export: the open conversation downloads as Markdown and JSON from its header menu', { timeout: 60000 }, async () => {
  await page.goto(base + '/?c=' + conv.pelican);
  await page.waitForSelector('.msg-assistant[data-state="done"]');
  assert.equal(await page.isVisible('#export-btn'), true);
  assert.equal(await page.isVisible('#export-menu'), false);
  await page.click('#export-btn');
  assert.equal(await page.isVisible('#export-menu'), true);
  assert.equal(await page.getAttribute('#export-btn', 'aria-expanded'), 'true');
  const [md] = await Promise.all([page.waitForEvent('download'), page.click('#export-md')]);
  assert.equal(md.suggestedFilename(), 'Pelican migration notes.md');
  const text = fs.readFileSync(await md.path(), 'utf8');
  assert.match(text, /^# Pelican migration notes\n/);
  assert.equal(text.match(/\n## You · /g).length, 2);
  assert.match(text, /zeppelin ferry timetable/);
  assert.equal(await page.isVisible('#export-menu'), false, 'the menu closes after a choice');

  await page.click('#export-btn');
  const [json] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  assert.equal(json.suggestedFilename(), 'Pelican migration notes.json');
  const v = JSON.parse(fs.readFileSync(await json.path(), 'utf8'));
  assert.equal(v.id, conv.pelican);
  assert.deepEqual(v.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);

  // Esc and a click elsewhere close the menu; a new chat has nothing to export.
  await page.click('#export-btn');
  await page.keyboard.press('Escape');
  assert.equal(await page.isVisible('#export-menu'), false);
  await page.click('#export-btn');
  await page.click('#messages');
  assert.equal(await page.isVisible('#export-menu'), false);
  await page.click('#new-chat');
  assert.equal(await page.isVisible('#export-btn'), false);
});

test('message times: relative, exact in the title, refreshed in place without re-rendering', { timeout: 60000 }, async () => {
  const ctx = await newContext({ colorScheme: 'light', storageState: await context.storageState() });
  try {
    const p = await ctx.newPage();
    await p.clock.install();
    await p.goto(base + '/?c=' + conv.pelican);
    await p.waitForSelector('.msg-assistant[data-state="done"] time.msg-time');
    const times = p.locator('.msg time.msg-time');
    assert.equal(await times.count(), 4);
    const first = times.first();
    assert.match(await first.textContent(), /^(just now|1 min ago)$/);
    const stored = await p.evaluate(async (id) => (await (await fetch('/api/conversations/' + id)).json()).messages[0].created_at, conv.pelican);
    assert.equal(await first.getAttribute('datetime'), stored);
    const title = await first.getAttribute('title');
    assert.ok(title && /\d{1,2}:\d{2}:\d{2}/.test(title), 'the exact time with seconds: ' + title);
    // Mark the message node: after the clock moves on, the same node shows the new text.
    await p.evaluate(() => { document.querySelector('.msg').__kept = true; });
    await p.clock.fastForward('06:00');
    await p.waitForFunction(() => /^\d+ min ago$/.test(document.querySelector('.msg time.msg-time').textContent));
    assert.match(await first.textContent(), /^(6|7) min ago$/);
    assert.equal(await p.evaluate(() => document.querySelector('.msg').__kept), true, 'not re-rendered');
    // Keyboard and click show the exact time in place, and the relative one again.
    await first.click();
    assert.equal(await first.textContent(), title);
    await first.press('Enter');
    assert.match(await first.textContent(), /min ago$/);
  } finally {
    await ctx.close();
  }
});

test('at 390x844: search in the drawer, a tapped hit opens the conversation, export and a tapped time fit', { timeout: 60000 }, async () => {
  const ctx = await newContext(Object.assign({ colorScheme: 'light', storageState: await context.storageState() }, MOBILE));
  try {
    const p = await ctx.newPage();
    await p.goto(base + '/');
    await p.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
    const closed = await p.locator('#search').boundingBox();
    assert.ok(!closed || closed.x + closed.width <= 0, 'in the closed drawer: ' + JSON.stringify(closed));
    await p.tap('#open-nav');
    await p.waitForFunction(() => {
      const r = document.getElementById('search').getBoundingClientRect();
      return r.left >= 0 && r.right <= 390 && r.width > 150;
    });
    const box = await p.locator('#search').boundingBox();
    assert.ok(box.height >= 44, 'a 44 px target: ' + JSON.stringify(box));
    await p.fill('#search', 'ferry');
    await p.waitForSelector('#search-results .search-hit');
    await p.screenshot({ path: path.join(shots, 'screenshot-search-mobile.png') });
    await p.tap('#search-results .search-hit');
    await p.waitForFunction((id) => new URL(location.href).searchParams.get('c') === id, conv.pelican);
    await p.waitForSelector('.msg[data-index="2"].search-target');
    await p.waitForFunction(() => !document.getElementById('app').classList.contains('nav-open'));

    // Export sits in the header and its menu stays on screen.
    const btn = await p.locator('#export-btn').boundingBox();
    assert.ok(btn.width >= 44 && btn.height >= 44 && btn.x + btn.width <= 390, JSON.stringify(btn));
    await p.tap('#export-btn');
    const menu = await p.locator('#export-menu').boundingBox();
    assert.ok(menu.x >= 0 && menu.x + menu.width <= 390, 'the menu fits: ' + JSON.stringify(menu));
    await p.screenshot({ path: path.join(shots, 'screenshot-export-mobile.png') });
    await p.tap('#messages');
    assert.equal(await p.isVisible('#export-menu'), false);

    // No hover on a phone: a tap shows the exact time.
    const t = p.locator('.msg-assistant time.msg-time').last();
    const exact = await t.getAttribute('title');
    await t.tap();
    assert.equal(await t.textContent(), exact);
    const tb = await t.boundingBox();
    assert.ok(tb.x + tb.width <= 390, 'the exact time fits: ' + JSON.stringify(tb));
    assert.equal(await p.evaluate(() => document.documentElement.scrollWidth), 390, 'no horizontal scroll');
  } finally {
    await ctx.close();
  }
});

test('files: a picked PDF uploads, is sent as a line that tells the agent its path, and shows as a chip that opens the viewer', { timeout: 60000 }, async () => {
  await page.goto(base + '/');
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
  const pdf = Buffer.from('%PDF-1.4\n% a tiny test file\n');
  await page.setInputFiles('#file', { name: 'Trip plan.pdf', mimeType: 'application/pdf', buffer: pdf });
  const chip = page.locator('#attachments .file-chip');
  await chip.waitFor();
  await page.waitForFunction(() => !document.querySelector('#attachments .file-chip.uploading'));
  assert.equal(await chip.locator('.file-chip-name').textContent(), 'Trip_plan.pdf');
  assert.equal(await page.isDisabled('#send'), false, 'a file alone can be sent');
  const n = upstream.runRequests().length;
  await page.click('#send');
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    return all.length && all[all.length - 1].dataset.state === 'done';
  }, null, { timeout: 20000 });
  assert.equal(await page.locator('#attachments .file-chip').count(), 0);
  // The agent got the line with the path on disk, under the account's own folder.
  const input = JSON.stringify(upstream.runRequests()[n].body.input);
  assert.match(input, /\[attached file: Trip_plan\.pdf \(application\/pdf, \d+ bytes\) at \/.*\/media\/users\/1\/[0-9a-f]{8}-Trip_plan\.pdf\]/);
  // Reloaded from the server, the message shows the chip, not the line.
  await page.reload();
  const sent = page.locator('.msg-user').last();
  await sent.locator('.file-chip').waitFor();
  assert.equal(await sent.locator('.bubble').count(), 0, 'no text besides the file');
  assert.doesNotMatch(await sent.textContent(), /attached file:/);
  const href = await sent.locator('.file-chip').getAttribute('href');
  assert.match(href, /^\/view\?src=%2Fmedia%2Fusers%2F1%2F[0-9a-f]{8}-Trip_plan\.pdf$/);
  const src = decodeURIComponent(href.split('src=')[1]);
  const got = await page.evaluate(async (u) => { const r = await fetch(u); return { status: r.status, text: await r.text() }; }, src);
  assert.deepEqual(got, { status: 200, text: pdf.toString() });
  assert.equal(await page.title(), 'Trip_plan.pdf · Hermes');
  assert.deepEqual(await page.evaluate(() => window.__csp), []);

  // At 390 px the chip fits.
  const ctx = await newContext(Object.assign({ colorScheme: 'light', storageState: await context.storageState() }, MOBILE));
  try {
    const p = await ctx.newPage();
    await p.goto(page.url());
    const c = p.locator('.msg-user .file-chip').last();
    await c.waitFor();
    const box = await c.boundingBox();
    assert.ok(box.x >= 0 && box.x + box.width <= 390 && box.height >= 44, JSON.stringify(box));
    await p.screenshot({ path: path.join(shots, 'screenshot-file-mobile.png') });
  } finally {
    await ctx.close();
  }
});
