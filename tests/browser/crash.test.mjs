// Browser test of a server crash in the middle of an answer (issue 23): the real hermes-edge binary is
// killed with SIGKILL while it streams a run, started again on the same data dir, certs and port, and the
// page shows the text stored before the crash marked "Interrupted", with Continue and Regenerate.
// Its own server and data dir (chat.test.mjs's server keeps running across its tests).
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test crash.test.mjs
//
// Optional env as in chat.test.mjs: CHROMIUM, HERMES_EDGE_EXTRA_ARGS, KEEP_TMP=1,
// HERMES_EDGE_EMBEDDED_WWW=1, SHOW_SERVER_LOG=1.

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
const BIN = process.env.HERMES_EDGE_BIN;
const ADMIN_PW = 'crash-test-' + Math.random().toString(36).slice(2, 12);
const API_KEY = 'test-key-' + Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let tmp;
let upstream;
let port;
let base;
let server; // the running hermes-edge child process (the second one after the crash)
let serverLog = '';
let browser;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    });
  });
}

function getHealth(url) {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => { req.destroy(); resolve(null); });
  });
}

/** Poll `fn` every `every` ms until it returns a truthy value or `ms` pass. */
async function until(fn, ms, what, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(every);
  }
}

/** Starts hermes-edge on `port` with the test's data dir and certs; resolves once /healthz answers 200. */
async function startEdge(label) {
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', upstream.url];
  if (!process.env.HERMES_EDGE_EMBEDDED_WWW) args.push('--www', path.join(repo, 'www'));
  if (process.env.HERMES_EDGE_EXTRA_ARGS) args.push(...process.env.HERMES_EDGE_EXTRA_ARGS.split(' ').filter(Boolean));
  serverLog += `--- ${label} ---\n`;
  const child = spawn(BIN, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: ADMIN_PW, HERMES_EDGE_API_KEY: API_KEY }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => { serverLog += d; });
  child.stderr.on('data', (d) => { serverLog += d; });
  let exited = null;
  child.on('exit', (code, signal) => { exited = code !== null ? code : signal; });
  await until(async () => {
    if (exited !== null) throw new Error('hermes-edge exited with ' + exited);
    const h = await getHealth(base + '/healthz');
    return h && h.status === 200;
  }, 60000, 'GET /healthz', 200).catch((e) => {
    if (exited === null) child.kill('SIGKILL');
    throw new Error(e.message + '\n--- server output ---\n' + serverLog);
  });
  return child;
}

/** SIGKILL to `child` (a process this test started), resolved once it has exited. */
async function killHard(child) {
  const gone = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, 'SIGKILL');
  await Promise.race([gone, sleep(10000).then(() => { throw new Error('hermes-edge did not exit after SIGKILL'); })]);
}

before(async () => {
  assert.ok(BIN, 'set HERMES_EDGE_BIN to the hermes-edge binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-crash-'));
  for (const d of ['certs', 'data', 'media']) fs.mkdirSync(path.join(tmp, d));
  upstream = await startFakeUpstream({ apiKey: API_KEY });
  port = await freePort();
  base = 'https://127.0.0.1:' + port;
  server = await startEdge('first start');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.once('exit', r)), sleep(5000)]);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
  if (upstream) await upstream.close().catch(() => {});
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  if (process.env.SHOW_SERVER_LOG) console.log(serverLog);
});

test('kill -9 of the server mid-answer: after a restart the page shows the kept text marked interrupted, and Regenerate answers again', { timeout: 90000 }, async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const last = () => page.locator('.msg-assistant').last();

  // Sign in (remembered: the session is a row in the SQLite database, so it outlives the process).
  await page.goto(base + '/');
  await page.waitForURL((u) => u.pathname === '/login');
  await page.fill('#username', 'admin');
  await page.fill('#password', ADMIN_PW);
  await page.check('#remember');
  await Promise.all([page.waitForNavigation(), page.click('#login-submit')]);
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'), null, { timeout: 10000 });

  // An answer that streams for 6 s at Hermes (a delta every 200 ms), then " Finished.".
  const text = 'slow 6 s through a crash';
  const sentAt = Date.now();
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    const a = all[all.length - 1];
    return a && a.dataset.state === 'streaming' && /^Thinking slowly/.test(a.querySelector('.md').textContent);
  }, null, { timeout: 10000 });
  const id = await until(() => new URL(page.url()).searchParams.get('c'), 5000, 'the conversation id in the URL');
  // The server stores the answer about once a second: wait for at least 1.5 s and for a stored text.
  const stored = await until(async () => {
    if (Date.now() - sentAt < 1500) return null;
    const r = await page.request.get(base + '/api/conversations/' + id);
    if (r.status() !== 200) return null;
    const m = (await r.json()).messages.filter((x) => x.role === 'assistant').pop();
    return m && m.state === 'running' && m.content ? m.content : null;
  }, 4000, 'the server to store part of the answer', 100);
  const shownAtKill = (await last().locator('.md').textContent()).trim();
  assert.equal(await last().getAttribute('data-state'), 'streaming', 'the answer was still being written when killed');

  await killHard(server);
  const run = [...upstream.runs.values()].filter((r) => r.text === text).pop();
  assert.ok(run, 'the answer was a run at Hermes');
  assert.equal(run.ended, false, 'the run at Hermes had not ended before the kill');

  // Started again on the same data dir, certs and port; the browser keeps its cookie.
  server = await startEdge('restart after SIGKILL');
  assert.match(serverLog.split('--- restart after SIGKILL ---')[1], /1 answer\(s\) were being written when the server last stopped/);

  // Reload, and open the conversation from the list.
  await page.goto(base + '/');
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'), null, { timeout: 10000 });
  assert.equal(new URL(page.url()).pathname, '/', 'still signed in after the restart');
  const item = page.locator(`.conv-item[data-id="${id}"]`);
  await item.waitFor({ timeout: 10000 });
  assert.equal(await item.getAttribute('data-run'), null, 'no run going after the restart');
  await item.locator('.conv-link').click();
  await page.waitForSelector(`.conv-item.active[data-id="${id}"]`, { timeout: 5000 });
  const answer = page.locator('.msg-assistant[data-state="interrupted"]');
  await answer.waitFor({ timeout: 10000 });
  assert.equal(await page.locator('.msg-assistant').count(), 1);
  assert.deepEqual(await page.locator('.msg-user .bubble').allTextContents(), [text]);

  // The kept text: at least what was stored before the kill, all of it Hermes' output, and the same
  // answer the page was showing (one of the two is a prefix of the other: the page and the store each
  // lag the stream a little).
  const kept = (await answer.locator('.md').textContent()).trim();
  assert.match(kept, /^Thinking slowly …0/);
  assert.ok(kept.startsWith(stored.trim()), `kept ${JSON.stringify(kept)} starts with the stored ${JSON.stringify(stored)}`);
  assert.ok(run.output.startsWith(kept), `kept ${JSON.stringify(kept)} is a prefix of Hermes' output`);
  assert.ok(shownAtKill.startsWith(kept) || kept.startsWith(shownAtKill),
    `kept ${JSON.stringify(kept)} vs shown before the kill ${JSON.stringify(shownAtKill)}`);
  assert.ok(!/Finished\./.test(kept));

  // Marked interrupted, with Continue and Regenerate.
  const status = answer.locator('.msg-status.msg-interrupted');
  assert.equal(await status.isVisible(), true);
  assert.match(await status.textContent(), /^Interrupted: the server stopped while this answer was being written\./);
  assert.equal(await status.locator('.continue-btn').textContent(), 'Continue');
  assert.equal(await status.locator('.regen-text-btn').textContent(), 'Regenerate');
  assert.equal(await page.isVisible('#send'), true);
  assert.equal(await page.isVisible('#stop'), false);

  // Regenerate: a new run for the same message, streamed to the end.
  const n = upstream.runRequests().length;
  await status.locator('.regen-text-btn').click();
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    return all.length === 1 && all[0].dataset.state === 'streaming';
  }, null, { timeout: 10000 });
  const outcome = await page.waitForFunction(() => {
    const err = document.querySelector('.banner-error, .banner[data-key="chat"]');
    if (err) return 'banner: ' + err.textContent;
    const all = document.querySelectorAll('.msg-assistant');
    const a = all[all.length - 1];
    return a && a.dataset.state && a.dataset.state !== 'streaming' && a.dataset.state;
  }, null, { timeout: 20000 });
  assert.equal(await outcome.jsonValue(), 'done');
  const reqs = upstream.runRequests().slice(n);
  assert.equal(reqs.length, 1);
  assert.match(JSON.stringify(reqs[0].body.input), /slow 6 s through a crash/);
  assert.deepEqual(reqs[0].body.conversation_history || [], []); // the interrupted answer is not sent again
  const regenRun = [...upstream.runs.values()].pop();
  const done = (await last().locator('.md').textContent()).trim();
  assert.match(done, /^Thinking slowly …0 .* Finished\.$/);
  assert.equal(done, regenRun.output.trim());
  assert.equal(await page.locator('.msg-assistant').count(), 1);
  assert.equal(await page.locator('.msg-interrupted').count(), 0);

  // The server agrees after a reload.
  await page.reload();
  await page.waitForSelector('.msg-assistant[data-state]', { timeout: 10000 });
  assert.deepEqual(await page.locator('.msg-user .bubble').allTextContents(), [text]);
  assert.equal(await page.locator('.msg-assistant').count(), 1);
  assert.equal(await last().getAttribute('data-state'), 'done');
  assert.equal((await last().locator('.md').textContent()).trim(), done);
  await context.close();
});
