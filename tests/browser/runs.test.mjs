// Browser tests of the page side of runs (docs/http-api.md "Runs: the chat stream"): answers that
// outlive the tab, approvals, truthful tool steps, drafts. The page runs against mock-edge.mjs (the
// contract imitated in node), which drives the runs API of fake-upstream.mjs (started here, so the
// tests can see what reached "Hermes"), in headless Chromium.
//
//   node --test --test-concurrency=1 runs.test.mjs
//
// Optional env: CHROMIUM (default /usr/bin/chromium), KEEP_TMP=1.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startFakeUpstream } from './fake-upstream.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(shots, { recursive: true });
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PW = 'runs-test-' + Math.random().toString(36).slice(2, 12);
const API_KEY = 'test-key-' + Math.random().toString(36).slice(2, 14);
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let tmp;
let upstream;
let edge;
let edgeLog = '';
let base;
let browser;
let context;
let page;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function getStatus(url) {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => { res.resume(); resolve(res.statusCode); });
    req.on('error', () => resolve(null));
    req.on('timeout', () => { req.destroy(); resolve(null); });
  });
}

async function until(fn, ms, what, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(every);
  }
}

async function newContext(opts) {
  const ctx = await browser.newContext(Object.assign({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } }, opts || {}));
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + (e.lineNumber || ''));
    });
  });
  return ctx;
}

async function ready(p) {
  await p.waitForFunction(() => document.getElementById('app').classList.contains('ready'), null, { timeout: 10000 });
}

async function openPage(ctx, url) {
  const p = await ctx.newPage();
  await p.goto(url || base + '/');
  await ready(p);
  return p;
}

async function sendMessage(p, text) {
  await p.fill('#input', text);
  await p.press('#input', 'Enter');
}

const lastAnswer = (p) => p.locator('.msg-assistant').last();

async function answerState(p) {
  return p.evaluate(() => {
    const all = document.querySelectorAll('.msg-assistant');
    const last = all[all.length - 1];
    return last ? last.dataset.state : null;
  });
}

async function waitAnswerState(p, want, timeout = 20000) {
  await p.waitForFunction((w) => {
    const all = document.querySelectorAll('.msg-assistant');
    const last = all[all.length - 1];
    return last && last.dataset.state === w;
  }, want, { timeout });
}

async function waitText(p, re, timeout = 10000) {
  await p.waitForFunction((src) => {
    const all = document.querySelectorAll('.msg-assistant');
    const last = all[all.length - 1];
    return last && new RegExp(src).test(last.querySelector('.md').textContent);
  }, re.source, { timeout });
}

const convId = (p) => new URL(p.url()).searchParams.get('c');
const runOf = (text) => [...upstream.runs.values()].filter((r) => r.text === text).pop();
const cspViolations = (p) => p.evaluate(() => window.__csp || []);

async function noHScroll(p) {
  const [sw, cw] = await p.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert.ok(sw <= cw, `scrollWidth ${sw} > clientWidth ${cw}`);
}

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-runs-'));
  upstream = await startFakeUpstream({ apiKey: API_KEY });
  const port = await freePort();
  base = 'https://127.0.0.1:' + port;
  edge = spawn(process.execPath, [path.join(here, 'mock-edge.mjs'), '--listen', '127.0.0.1:' + port,
    '--certs-dir', path.join(tmp, 'certs'), '--upstream', upstream.url], {
    env: Object.assign({}, process.env, {
      HERMES_EDGE_ADMIN_PASSWORD: PW, HERMES_EDGE_API_KEY: API_KEY, MOCK_EDGE_TEST_HOOKS: '1',
      MOCK_EDGE_MAX_RUNS: '3', MOCK_EDGE_APPROVAL_TIMEOUT_SECS: '90',
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  edge.stdout.on('data', (d) => { edgeLog += d; });
  edge.stderr.on('data', (d) => { edgeLog += d; });
  let exited = null;
  edge.on('exit', (code) => { exited = code; });
  await until(async () => {
    if (exited !== null) throw new Error('mock-edge exited with ' + exited + ':\n' + edgeLog);
    return (await getStatus(base + '/healthz')) === 200;
  }, 30000, 'mock-edge /healthz', 200);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  context = await newContext({ colorScheme: 'light' });
  page = await context.newPage();
  await page.goto(base + '/login');
  await page.fill('#username', 'admin');
  await page.fill('#password', PW);
  await Promise.all([page.waitForNavigation(), page.click('#login-submit')]);
  await ready(page);
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (edge && edge.exitCode === null) {
    edge.kill('SIGTERM');
    await Promise.race([new Promise((r) => edge.once('exit', r)), sleep(3000)]);
    if (edge.exitCode === null) edge.kill('SIGKILL');
  }
  if (upstream) await upstream.close().catch(() => {});
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
});

test('an approval card at desktop width: the command, the choices, a countdown; "Allow once" runs it', { timeout: 60000 }, async () => {
  await sendMessage(page, 'please approve the cleanup');
  const card = lastAnswer(page).locator('.approval');
  await card.locator('[data-choice]').first().waitFor({ timeout: 10000 });
  assert.equal(await card.getAttribute('data-state'), 'waiting');
  assert.equal(await card.locator('.approval-cmd code').textContent(), 'rm -rf /tmp/hermes-demo/build');
  assert.equal(await card.locator('.approval-desc').textContent(), 'delete in root path');
  // Exactly the choices the run offers (Hermes' "always" never), in that order.
  assert.deepEqual(await card.locator('.approval-btn').allTextContents(), ['Allow once', 'Allow for this answer', 'Deny']);
  assert.match(await card.locator('.approval-timer').textContent(), /^1:(29|30) left$/);
  // The card sits under the step that waits, which says so (not a spinner, not a tick).
  const step = lastAnswer(page).locator('.tool-step');
  assert.equal(await step.getAttribute('data-status'), 'waiting_approval');
  assert.equal(await step.getAttribute('data-tool'), 'terminal');
  assert.equal(await step.locator('.tool-emoji').textContent(), '💻');
  assert.equal(await step.locator('.tool-label').textContent(), 'rm -rf /tmp/hermes-demo/build'); // the command, as Hermes previews it
  assert.equal(await step.locator('.spinner').count(), 0);
  assert.equal(await page.evaluate(() => {
    const s = document.querySelector('.msg-assistant:last-child .tool-steps');
    return s.nextElementSibling.classList.contains('approval-slot');
  }), true);
  // The conversation list marks the conversation as waiting for the person.
  const id = convId(page);
  await page.waitForSelector(`.conv-item[data-id="${id}"][data-run="waiting_approval"] .conv-run-waiting`, { timeout: 5000 });
  await page.mouse.move(0, 0);
  await page.screenshot({ path: path.join(shots, 'screenshot-approval-desktop.png') });

  await card.locator('[data-choice="once"]').click();
  await card.and(page.locator('[data-outcome="once"]')).waitFor({ timeout: 10000 });
  assert.equal(await card.locator('.approval-outcome').textContent(), 'Allowed once.');
  assert.equal(await card.locator('.approval-btn').count(), 0);
  await waitAnswerState(page, 'done');
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), 'Done: the build folder is gone.');
  assert.equal(await step.getAttribute('data-status'), 'completed');
  assert.equal(await step.locator('.tool-duration').textContent(), '38 ms');
  assert.deepEqual(runOf('please approve the cleanup').approvals, ['once']);
  // The run is over: the list no longer marks it.
  await page.waitForSelector(`.conv-item[data-id="${id}"]:not([data-run])`, { timeout: 5000 });
  // Stored: after a reload the step is still completed, with its preview and duration.
  await page.reload();
  await ready(page);
  await page.waitForSelector('.msg-assistant .tool-step');
  assert.equal(await page.locator('.msg-assistant .tool-step').getAttribute('data-status'), 'completed');
  assert.equal(await page.locator('.msg-assistant .tool-label').textContent(), 'rm -rf /tmp/hermes-demo/build');
  assert.equal(await page.locator('.msg-assistant .tool-duration').textContent(), '38 ms');
  assert.deepEqual(await cspViolations(page), []);
});

test('at 390 px the approval card fits, its buttons are at least 44 px tall, and "Deny" never shows a tick', { timeout: 60000 }, async () => {
  const mobile = await newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, storageState: await context.storageState() });
  const p = await openPage(mobile);
  await sendMessage(p, 'approve deleting the build folder');
  const card = lastAnswer(p).locator('.approval');
  await card.locator('[data-choice]').first().waitFor({ timeout: 10000 });
  for (const b of await card.locator('.approval-btn').all()) {
    const box = await b.boundingBox();
    assert.ok(box.height >= 44, 'tap target height ' + box.height);
    assert.ok(box.x >= 0 && box.x + box.width <= 390, 'button inside the screen: ' + JSON.stringify(box));
  }
  const cardBox = await card.boundingBox();
  assert.ok(cardBox.x >= 0 && cardBox.x + cardBox.width <= 390, 'card fits: ' + JSON.stringify(cardBox));
  await noHScroll(p);
  await p.screenshot({ path: path.join(shots, 'screenshot-approval-mobile.png') });
  await card.locator('[data-choice="deny"]').tap();
  await card.and(p.locator('[data-outcome="deny"]')).waitFor({ timeout: 10000 });
  assert.match(await card.locator('.approval-outcome').textContent(), /^Denied\./);
  await waitAnswerState(p, 'done');
  const step = lastAnswer(p).locator('.tool-step');
  assert.equal(await step.getAttribute('data-status'), 'denied');
  assert.equal(await step.locator('.tool-status-text').textContent(), 'denied');
  assert.equal(await lastAnswer(p).locator('.tool-step.completed').count(), 0);
  assert.match(await lastAnswer(p).locator('.md').textContent(), /I did not run it: the command was denied\./);
  assert.deepEqual(runOf('approve deleting the build folder').approvals, ['deny']);
  await p.screenshot({ path: path.join(shots, 'screenshot-approval-denied-mobile.png') });
  assert.deepEqual(await cspViolations(p), []);
  await mobile.close();
});

test('reloading in the middle of a slow answer continues it, and it completes', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  const text = 'a slow 4 s answer';
  await sendMessage(page, text);
  await waitText(page, /Thinking slowly.* …3/);
  const id = convId(page);
  assert.ok(id);
  await page.reload();
  await ready(page);
  assert.equal(convId(page), id);
  // Everything so far at once (the snapshot), then live.
  await waitText(page, /^Thinking slowly …0 …1 …2 …3/, 5000);
  assert.equal(await answerState(page), 'streaming');
  assert.equal(await page.isVisible('#stop'), true);
  await waitAnswerState(page, 'done', 15000);
  const shown = (await lastAnswer(page).locator('.md').textContent()).trim();
  assert.equal(shown, runOf(text).output.trim());
  assert.match(shown, / Finished\.$/);
  assert.equal(runOf(text).stopped, false); // the reload did not stop it
  assert.equal(await page.locator('.msg-user').count(), 1);
  assert.equal(await page.locator('.msg-assistant').count(), 1);
});

test('a second page on the same conversation shows the same run live', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  const text = 'slow 3 s for two tabs';
  await sendMessage(page, text);
  await waitText(page, /Thinking slowly/);
  const second = await openPage(context, page.url());
  await waitText(second, /Thinking slowly/, 5000);
  assert.equal(await answerState(second), 'streaming');
  // It grows there too (live, not only the snapshot).
  const t0 = await lastAnswer(second).locator('.md').textContent();
  await until(async () => (await lastAnswer(second).locator('.md').textContent()).length > t0.length, 5000, 'the second page to grow');
  await Promise.all([waitAnswerState(page, 'done', 15000), waitAnswerState(second, 'done', 15000)]);
  const a = (await lastAnswer(page).locator('.md').textContent()).trim();
  const b = (await lastAnswer(second).locator('.md').textContent()).trim();
  assert.equal(a, b);
  assert.equal(a, runOf(text).output.trim());
  await second.close();
});

test('a stream that drops (the network gone for a moment) attaches again and completes', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  const text = 'slow 4 s while offline';
  await sendMessage(page, text);
  await waitText(page, /Thinking slowly.* …2/);
  const attaches = [];
  const onReq = (r) => { if (r.method() === 'GET' && /\/api\/conversations\/[^/]+\/run$/.test(new URL(r.url()).pathname)) attaches.push(r.url()); };
  page.on('request', onReq);
  await context.setOffline(true);
  await sleep(800);
  assert.equal(await answerState(page), 'streaming'); // not given up, not "stopped"
  await context.setOffline(false);
  await waitAnswerState(page, 'done', 20000);
  page.off('request', onReq);
  assert.ok(attaches.length >= 1, 'attached again');
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), runOf(text).output.trim());
  assert.equal(runOf(text).stopped, false);
});

test('Stop and Esc call the stop route; the run ends as stopped', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  const stops = [];
  const onReq = (r) => { if (r.method() === 'POST' && /\/run\/stop$/.test(r.url())) stops.push(r.url()); };
  page.on('request', onReq);
  try {
    await sendMessage(page, 'a slow answer to stop');
    await waitText(page, /Thinking slowly/);
    const id = convId(page);
    await page.click('#stop');
    await waitAnswerState(page, 'stopped', 8000);
    assert.deepEqual(stops, [base + '/api/conversations/' + id + '/run/stop']);
    assert.equal(runOf('a slow answer to stop').stopped, true);
    assert.equal(await page.isVisible('#send'), true);
    const t1 = await lastAnswer(page).locator('.md').textContent();
    await sleep(600);
    assert.equal(await lastAnswer(page).locator('.md').textContent(), t1);
    assert.equal(await lastAnswer(page).locator('.msg-status').textContent(), 'Stopped');

    await sendMessage(page, 'another slow answer to stop with Esc');
    await waitText(page, /Thinking slowly/);
    await page.keyboard.press('Escape');
    await waitAnswerState(page, 'stopped', 8000);
    assert.equal(stops.length, 2);
    assert.equal(runOf('another slow answer to stop with Esc').stopped, true);
  } finally {
    page.off('request', onReq);
  }
});

test('switching to another conversation does not stop a run; coming back shows it going on', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  const text = 'slow 4 s in the background';
  await sendMessage(page, text);
  await waitText(page, /Thinking slowly/);
  const id = convId(page);
  await page.waitForSelector(`.conv-item[data-id="${id}"][data-run="running"]`, { timeout: 5000 });
  await page.click('#new-chat');
  await sleep(500);
  assert.equal(runOf(text).stopped, false);
  await page.click(`.conv-item[data-id="${id}"] .conv-link`);
  await waitText(page, /Thinking slowly/, 5000);
  await waitAnswerState(page, 'done', 15000);
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), runOf(text).output.trim());
});

test('the draft of each conversation and of a new chat survives a reload, and goes once sent', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  await page.fill('#input', 'half-written new chat');
  await page.reload();
  await ready(page);
  assert.equal(await page.inputValue('#input'), 'half-written new chat');
  // Another conversation has a draft of its own.
  const other = await page.locator('.conv-item .conv-link').first().getAttribute('href');
  await page.click('.conv-item .conv-link >> nth=0');
  await page.waitForURL((u) => u.search.includes('c='));
  assert.equal(await page.inputValue('#input'), '');
  await page.fill('#input', 'draft for an old conversation');
  await page.click('#new-chat');
  assert.equal(await page.inputValue('#input'), 'half-written new chat');
  await page.goto(base + other);
  await ready(page);
  assert.equal(await page.inputValue('#input'), 'draft for an old conversation');
  // Sent: gone, also after a reload.
  await page.press('#input', 'Enter');
  await waitAnswerState(page, 'done');
  assert.equal(await page.inputValue('#input'), '');
  await page.reload();
  await ready(page);
  assert.equal(await page.inputValue('#input'), '');
  // Drafts are per user: stored under the user's name.
  const keys = await page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('hermes.draft.v1:')));
  assert.ok(keys.length >= 1 && keys.every((k) => k.startsWith('hermes.draft.v1:admin:')), JSON.stringify(keys));
});

test('an answer cut off by a server restart shows "Interrupted" with Continue and Regenerate', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  await sendMessage(page, 'slow 60 s to be interrupted');
  await waitText(page, /Thinking slowly.* …2/);
  const r = await page.request.post(base + '/__mock/restart');
  assert.equal(r.status(), 200);
  await waitAnswerState(page, 'interrupted', 15000);
  const status = lastAnswer(page).locator('.msg-status');
  assert.match(await status.textContent(), /^Interrupted/);
  assert.match(await lastAnswer(page).locator('.md').textContent(), /Thinking slowly.* …2/); // the text so far is kept
  assert.equal(await status.locator('.continue-btn').textContent(), 'Continue');
  assert.equal(await status.locator('.regen-text-btn').textContent(), 'Regenerate');
  // Also after a reload (from the stored message).
  await page.reload();
  await ready(page);
  await waitAnswerState(page, 'interrupted', 5000);
  const posted = [];
  const onReq = (q) => { if (q.method() === 'POST' && q.url().endsWith('/api/chat')) posted.push(q.postDataJSON()); };
  page.on('request', onReq);
  await lastAnswer(page).locator('.regen-text-btn').click();
  await waitAnswerState(page, 'streaming', 5000);
  page.off('request', onReq);
  assert.equal(posted.length, 1);
  assert.equal(posted[0].regenerate, true);
  await page.click('#stop');
  await waitAnswerState(page, 'stopped', 8000);
});

test('429 too_many_runs says so plainly and gives the text back', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  // Three runs going (the mock's limit), started without reading their streams.
  const ids = await page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 3; i++) {
      const r = await fetch('/api/chat', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ message: 'slow 60 s number ' + i }) });
      out.push(r.headers.get('X-Conversation-Id'));
      r.body.cancel();
    }
    return out;
  });
  try {
    await sendMessage(page, 'one more, please');
    const banner = page.locator('.banner[data-key="chat"]');
    await banner.waitFor({ timeout: 5000 });
    assert.match(await banner.textContent(), /3 answers being written/);
    assert.equal(await page.inputValue('#input'), 'one more, please');
    assert.equal(await page.locator('.msg').count(), 0);
    // The list shows the three running.
    await page.waitForFunction(() => document.querySelectorAll('.conv-item[data-run="running"]').length >= 3, null, { timeout: 5000 });
  } finally {
    await page.evaluate(async (list) => {
      for (const id of list) await fetch('/api/conversations/' + id + '/run/stop', { method: 'POST' });
    }, ids);
    await until(async () => {
      const r = await page.request.get(base + '/api/conversations');
      return (await r.json()).conversations.every((c) => !c.run);
    }, 10000, 'the three runs to end');
  }
});

test('sending while another tab has started an answer here: 409 run_in_progress, and the page follows that answer', { timeout: 60000 }, async () => {
  await page.click('#new-chat');
  await sendMessage(page, 'first message here');
  await waitAnswerState(page, 'done');
  const id = convId(page);
  // "Another tab" starts a run in this conversation; this page does not know yet.
  await page.evaluate(async (cid) => {
    const r = await fetch('/api/chat', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ conversation_id: cid, message: 'slow 3 s from the other tab' }) });
    r.body.cancel();
  }, id);
  await sendMessage(page, 'my own question');
  const banner = page.locator('.banner[data-key="chat"]');
  await banner.waitFor({ timeout: 5000 });
  assert.match(await banner.textContent(), /already being written/);
  assert.equal(await page.inputValue('#input'), 'my own question');
  // The page now shows the other tab's question and follows its answer to the end.
  await waitText(page, /Thinking slowly/, 5000);
  assert.deepEqual(await page.locator('.msg-user .bubble').allTextContents(), ['first message here', 'slow 3 s from the other tab']);
  await waitAnswerState(page, 'done', 15000);
  assert.equal((await lastAnswer(page).locator('.md').textContent()).trim(), runOf('slow 3 s from the other tab').output.trim());
});
