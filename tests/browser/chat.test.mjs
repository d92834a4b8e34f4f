// Browser tests of the chat page: the real hermes-edge binary, a scripted fake upstream, and Debian's
// headless Chromium driven by playwright-core. Covers issue 7's "Must show" list.
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test --test-concurrency=1 chat.test.mjs
//
// Optional env: HERMES_EDGE_ADMIN_USER (default "admin"), CHROMIUM (default /usr/bin/chromium),
// HERMES_EDGE_EXTRA_ARGS (extra flags for the binary, space separated), KEEP_TMP=1 (keep the temp dirs),
// HERMES_EDGE_EMBEDDED_WWW=1 (test the page embedded in the binary, not this tree's www/).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
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
// Screenshots go to target/screenshots; SCREENSHOT_DIR=docs refreshes the ones the README shows.
const docs = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(docs, { recursive: true });
const BIN = process.env.HERMES_EDGE_BIN;
const ADMIN_USER = process.env.HERMES_EDGE_ADMIN_USER || 'admin';
const ADMIN_PW = 'browser-test-' + Math.random().toString(36).slice(2, 12);
const API_KEY = 'test-key-' + Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16)).join('');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required'];

let tmp;
let upstream;
let server;
let serverLog = '';
let base;
let browser;
let context;
let page;
const dialogs = [];

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

/** One HTTPS request from node (not the browser): no cookie, no Origin. */
function request(method, url, headers = {}, body = null) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, rejectUnauthorized: false, timeout: 15000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error(method + ' ' + url + ' timed out')));
    req.end(body);
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

async function newPage(ctx) {
  const p = await ctx.newPage();
  p.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  return p;
}

async function newContext(opts) {
  const ctx = await browser.newContext(Object.assign({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } }, opts || {}));
  // Record CSP violations: the page must need no inline script or style.
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + (e.lineNumber || ''));
    });
  });
  return ctx;
}

async function login(p, password = ADMIN_PW) {
  await p.fill('#username', ADMIN_USER);
  await p.fill('#password', password);
  await p.check('#remember');
  await Promise.all([p.waitForNavigation(), p.click('#login-submit')]);
}

async function sendMessage(p, text) {
  await p.fill('#input', text);
  await p.press('#input', 'Enter');
}

/** The last assistant message once it has stopped streaming. */
async function waitAnswerDone(p, timeout = 20000) {
  const outcome = await p.waitForFunction(() => {
    const err = document.querySelector('.banner-error, .banner[data-key="chat"]');
    if (err) return 'banner: ' + err.textContent;
    const all = document.querySelectorAll('.msg-assistant');
    const last = all[all.length - 1];
    return last && last.dataset.state && last.dataset.state !== 'streaming' && 'done';
  }, null, { timeout });
  const v = await outcome.jsonValue();
  if (v !== 'done') throw new Error('the answer did not arrive; the page shows ' + v);
  return p.locator('.msg-assistant').last();
}

async function newChat(p) {
  if (await p.locator('#new-chat').isVisible()) await p.click('#new-chat');
  else await p.click('#new-chat-top');
  await p.waitForFunction(() => document.querySelectorAll('.msg').length === 0);
}

async function cspViolations(p) {
  return p.evaluate(() => window.__csp || []);
}

before(async () => {
  assert.ok(BIN, 'set HERMES_EDGE_BIN to the hermes-edge binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-browser-'));
  for (const d of ['certs', 'data', 'media']) fs.mkdirSync(path.join(tmp, d));
  execFileSync('ffmpeg', ['-y', '-loglevel', 'error', '-f', 'lavfi', '-i', 'testsrc=duration=3:size=320x240:rate=25',
    '-pix_fmt', 'yuv420p', '-c:v', 'libx264', '-movflags', '+faststart', path.join(tmp, 'media', 'clip.mp4')]);

  upstream = await startFakeUpstream({ apiKey: API_KEY });
  const port = await freePort();
  base = 'https://127.0.0.1:' + port;
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', upstream.url];
  // The page under test is this tree's www/ (a binary built elsewhere embeds its own copy);
  // HERMES_EDGE_EMBEDDED_WWW=1 tests the binary's embedded copy instead.
  if (!process.env.HERMES_EDGE_EMBEDDED_WWW) args.push('--www', path.join(repo, 'www'));
  if (process.env.HERMES_EDGE_EXTRA_ARGS) args.push(...process.env.HERMES_EDGE_EXTRA_ARGS.split(' ').filter(Boolean));
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
  }, 60000, 'GET /healthz', 200).catch((e) => { throw new Error(e.message + '\n--- server output ---\n' + serverLog); });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  context = await newContext({ colorScheme: 'light' });
  page = await newPage(context);
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

test('the chat page sends a signed-out visitor to the login page, which rejects a wrong password', { timeout: 30000 }, async () => {
  await page.goto(base + '/');
  await page.waitForURL((u) => u.pathname === '/login');
  assert.equal(new URL(page.url()).searchParams.get('next'), '/');
  assert.equal(await page.inputValue('#next'), '/');
  // The form is sent by fetch(): a wrong password leaves the page as it was, with the message.
  await page.fill('#username', ADMIN_USER);
  await page.fill('#password', 'not-the-password');
  await page.click('#login-submit');
  await page.waitForSelector('#login-error:not([hidden])');
  assert.equal(new URL(page.url()).pathname, '/login');
  assert.match(await page.textContent('#login-error'), /Wrong username or password/);
  assert.equal(await page.isVisible('#login-error'), true);
});

test('the login page explains a rate limit and re-enables the button when the wait is over', { timeout: 30000 }, async () => {
  await page.goto(base + '/login?error=rate_limited&retry_after=2&next=' + encodeURIComponent('/?c=abc'));
  assert.equal(await page.inputValue('#next'), '/?c=abc');
  assert.match(await page.textContent('#login-error'), /Too many sign-in attempts\. Try again in 2 seconds\./);
  assert.equal(await page.isDisabled('#login-submit'), true);
  await page.waitForFunction(() => !document.getElementById('login-submit').disabled, null, { timeout: 5000 });
  assert.equal(await page.textContent('#login-error'), 'You can try again now.');
  // A `next` that leaves the site is not used.
  await page.goto(base + '/login?next=' + encodeURIComponent('//evil.example/x'));
  assert.equal(await page.inputValue('#next'), '/');
});

test('logging in lands on the chat page with the composer ready', { timeout: 30000 }, async () => {
  await login(page);
  assert.equal(new URL(page.url()).pathname, '/');
  await page.waitForSelector('#input');
  await page.waitForFunction(() => document.getElementById('me').textContent.length > 0);
  assert.equal(await page.textContent('#me'), ADMIN_USER);
  assert.deepEqual(await cspViolations(page), []);
});

test('an answer streams in: the text grows in at least three steps before it completes', { timeout: 30000 }, async () => {
  // Sample the answer's text in the page on every animation frame until it is done.
  const sampling = page.evaluate(() => new Promise((resolve) => {
    const seen = [];
    const start = performance.now();
    const tick = () => {
      const all = document.querySelectorAll('.msg-assistant');
      const last = all[all.length - 1];
      if (last) {
        const text = last.querySelector('.md').textContent.trim();
        if (text && seen[seen.length - 1] !== text) seen.push(text);
        if (last.dataset.state && last.dataset.state !== 'streaming') { resolve({ seen, state: last.dataset.state }); return; }
      }
      const err = document.querySelector('.banner-error, .banner[data-key="chat"]');
      if (err) { resolve({ seen, state: 'banner: ' + err.textContent }); return; }
      if (performance.now() - start > 20000) { resolve({ seen, state: 'timeout' }); return; }
      requestAnimationFrame(tick);
    };
    tick();
  }));
  await sendMessage(page, 'hello there');
  const { seen, state } = await sampling;
  assert.equal(state, 'done');
  const final = seen[seen.length - 1];
  assert.equal(final, 'Hello there! I am the fake upstream, answering in small steps.');
  const partial = seen.slice(0, -1).filter((t) => t.length < final.length && final.startsWith(t));
  assert.ok(partial.length >= 3, 'expected >= 3 partial renders, saw ' + JSON.stringify(seen));
  // The answer is a run at Hermes (POST /v1/runs; docs/http-api.md "Runs"), named after the conversation.
  const reqs = upstream.runRequests();
  assert.ok(reqs.length >= 1);
  const last = reqs[reqs.length - 1];
  assert.equal(last.headers.authorization, 'Bearer ' + API_KEY);
  assert.match(JSON.stringify(last.body.input), /hello there/);
  assert.equal(last.body.session_id, 'web-' + new URL(page.url()).searchParams.get('c'));
  // The user's message is shown as sent, and the URL now names the conversation.
  assert.equal(await page.locator('.msg-user .bubble').last().textContent(), 'hello there');
  assert.ok(new URL(page.url()).searchParams.get('c'), 'conversation id in the URL');
});

test('a tool step appears as running and then completes', { timeout: 30000 }, async () => {
  await sendMessage(page, 'please use a tool');
  const step = page.locator('.msg-assistant').last().locator('.tool-step');
  await step.and(page.locator('[data-status="running"]')).waitFor({ timeout: 10000 });
  assert.equal(await step.locator('.tool-emoji').textContent(), '🌐');
  assert.equal(await step.locator('.tool-label').textContent(), 'hermes edge'); // Hermes' preview of the call
  await step.and(page.locator('[data-status="completed"]')).waitFor({ timeout: 10000 });
  const done = await waitAnswerDone(page);
  assert.equal(await done.getAttribute('data-state'), 'done');
  assert.match((await done.locator('.md').textContent()).trim(), /small steps\.$/);
  assert.equal(await done.locator('.tool-step').count(), 1);
});

test('Stop ends the stream and stops the run at Hermes', { timeout: 30000 }, async () => {
  await sendMessage(page, 'a slow answer please');
  const answer = page.locator('.msg-assistant').last();
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    return /Thinking slowly/.test(all[all.length - 1].textContent);
  }, null, { timeout: 10000 });
  assert.equal(await page.isVisible('#stop'), true);
  const stoppedAt = Date.now();
  await page.click('#stop');
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    return all[all.length - 1].dataset.state === 'stopped';
  }, null, { timeout: 5000 });
  assert.equal(await answer.getAttribute('data-state'), 'stopped');
  assert.equal(await page.isVisible('#send'), true);
  assert.equal(await page.isVisible('#stop'), false);
  // Since runs, Stop is POST .../run/stop, which stops the run in Hermes too (a tab going away does not).
  const run = [...upstream.runs.values()].filter((r) => r.text === 'a slow answer please').pop();
  assert.ok(run, 'the answer was a run at Hermes');
  await until(() => run.stopped, 10000, 'Hermes to be asked to stop the run');
  assert.ok(Date.now() - stoppedAt < 10000);
  // The text no longer grows once stopped.
  const text1 = await answer.locator('.md').textContent();
  assert.ok(text1.length > 0);
  await sleep(700);
  assert.equal(await answer.locator('.md').textContent(), text1);
});

test('reloading the page shows the conversation from the server', { timeout: 30000 }, async () => {
  const id = new URL(page.url()).searchParams.get('c');
  await sleep(500); // let the server store the partial answer of the stopped stream
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('.msg-user').length >= 3, null, { timeout: 10000 });
  const users = await page.locator('.msg-user .bubble').allTextContents();
  assert.deepEqual(users.slice(0, 3), ['hello there', 'please use a tool', 'a slow answer please']);
  const answers = (await page.locator('.msg-assistant .md').allTextContents()).map((t) => t.trim());
  assert.equal(answers[0], 'Hello there! I am the fake upstream, answering in small steps.');
  assert.equal(await page.locator('.msg-assistant').nth(1).locator('.tool-step[data-status="completed"]').count(), 1);
  // The sidebar lists it, marked as the open one.
  await page.waitForSelector('.conv-item.active');
  assert.equal(await page.getAttribute('.conv-item.active', 'data-id'), id);
});

test('an answer outlives a reload: the reloaded page attaches to the run, which completes', { timeout: 40000 }, async () => {
  await newChat(page);
  const text = 'slow 4 s across a reload';
  await sendMessage(page, text);
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    return / …2/.test(all[all.length - 1].textContent);
  }, null, { timeout: 10000 });
  const id = new URL(page.url()).searchParams.get('c');
  await page.reload();
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
  assert.equal(new URL(page.url()).searchParams.get('c'), id);
  // Everything so far at once (edge.run), then live; the Stop button is there for it.
  await page.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    const last = all[all.length - 1];
    return last && last.dataset.state === 'streaming' && /^Thinking slowly …0 …1 …2/.test(last.querySelector('.md').textContent);
  }, null, { timeout: 5000 });
  assert.equal(await page.isVisible('#stop'), true);
  // A second tab on the same conversation follows the same run.
  const second = await newPage(context);
  await second.goto(page.url());
  await second.waitForFunction(() => {
    const all = document.querySelectorAll('.msg-assistant');
    return all.length && all[all.length - 1].dataset.state === 'streaming';
  }, null, { timeout: 5000 });
  const done = await waitAnswerDone(page, 15000);
  await waitAnswerDone(second, 15000);
  const run = [...upstream.runs.values()].filter((r) => r.text === text).pop();
  assert.equal(run.stopped, false, 'the reload did not stop the run');
  assert.equal(await done.getAttribute('data-state'), 'done');
  const shown = (await done.locator('.md').textContent()).trim();
  assert.equal(shown, run.output.trim());
  assert.equal((await second.locator('.msg-assistant').last().locator('.md').textContent()).trim(), shown);
  assert.equal(await page.locator('.msg-assistant').count(), 1);
  await second.close();
});

test('an approval is answered in the page and reaches Hermes; the step says what happened', { timeout: 40000 }, async () => {
  await newChat(page);
  await sendMessage(page, 'approve the cleanup');
  const answer = page.locator('.msg-assistant').last();
  const card = answer.locator('.approval');
  await card.locator('[data-choice]').first().waitFor({ timeout: 10000 });
  assert.equal(await card.locator('.approval-cmd code').textContent(), 'rm -rf /tmp/hermes-demo/build');
  assert.equal(await card.locator('.approval-desc').textContent(), 'delete in root path');
  assert.deepEqual(await card.locator('.approval-btn').allTextContents(), ['Allow once', 'Allow for this answer', 'Deny']);
  assert.match(await card.locator('.approval-timer').textContent(), /^\d+:\d\d left$/);
  assert.equal(await answer.locator('.tool-step').getAttribute('data-status'), 'waiting_approval');
  const id = new URL(page.url()).searchParams.get('c');
  await page.waitForSelector(`.conv-item[data-id="${id}"][data-run="waiting_approval"]`, { timeout: 5000 });
  await card.locator('[data-choice="session"]').click();
  await card.and(page.locator('[data-outcome="session"]')).waitFor({ timeout: 10000 });
  await waitAnswerDone(page);
  assert.equal(await answer.locator('.tool-step').getAttribute('data-status'), 'completed');
  assert.match(await answer.locator('.md').textContent(), /the build folder is gone/);
  const run = [...upstream.runs.values()].filter((r) => r.text === 'approve the cleanup').pop();
  assert.deepEqual(run.approvals, ['session']);
  await page.waitForSelector(`.conv-item[data-id="${id}"]:not([data-run])`, { timeout: 5000 });
});

test('regenerate asks for a new last answer with regenerate: true', { timeout: 30000 }, async () => {
  const n = upstream.runRequests().length;
  await newChat(page);
  await sendMessage(page, 'first question');
  await waitAnswerDone(page);
  await page.locator('.msg-assistant').last().hover();
  await page.click('.msg-assistant:last-child .regen-btn');
  const answer = await waitAnswerDone(page);
  assert.equal(await answer.getAttribute('data-state'), 'done');
  assert.equal(await page.locator('.msg-assistant').count(), 1);
  assert.equal(await page.locator('.msg-user').count(), 1);
  const reqs = upstream.runRequests().slice(n);
  assert.equal(reqs.length, 2);
  assert.match(JSON.stringify(reqs[1].body.input), /first question/);
  assert.deepEqual(reqs[1].body.conversation_history || [], []); // the old answer is not sent again
});

test('edit-and-resend replaces the edited message and everything after it', { timeout: 30000 }, async () => {
  await sendMessage(page, 'second question');
  await waitAnswerDone(page);
  const n = upstream.runRequests().length;
  const first = page.locator('.msg-user').first();
  await first.hover();
  await first.locator('.edit-btn').click();
  await page.fill('.edit-input', 'first question, edited');
  await page.press('.edit-input', 'Enter');
  await waitAnswerDone(page);
  await page.waitForFunction(() => document.querySelectorAll('.msg-user').length === 1, null, { timeout: 5000 });
  assert.deepEqual(await page.locator('.msg-user .bubble').allTextContents(), ['first question, edited']);
  const reqs = upstream.runRequests().slice(n);
  assert.equal(reqs.length, 1);
  assert.match(JSON.stringify(reqs[0].body.input), /first question, edited/);
  // The server agrees after a reload.
  await page.reload();
  await page.waitForSelector('.msg-user');
  assert.deepEqual(await page.locator('.msg-user .bubble').allTextContents(), ['first question, edited']);
});

test('Shift+Enter makes a new line and Enter sends', { timeout: 30000 }, async () => {
  await newChat(page);
  await page.click('#input');
  await page.keyboard.type('line one');
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('line two');
  assert.equal(await page.locator('.msg-user').count(), 0);
  assert.equal(await page.inputValue('#input'), 'line one\nline two');
  await page.keyboard.press('Enter');
  await waitAnswerDone(page);
  assert.equal(await page.locator('.msg-user .bubble').last().textContent(), 'line one\nline two');
  assert.equal(await page.inputValue('#input'), '');
});

test('images are attached by picking, limited to 4 of at most 5 MiB, and sent as data URLs', { timeout: 30000 }, async () => {
  // A 1x1 PNG.
  const png = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
  await page.setInputFiles('#file', { name: 'big.png', mimeType: 'image/png', buffer: Buffer.alloc(5 * 1024 * 1024 + 1) });
  await page.waitForSelector('.banner[data-key="attach"]');
  assert.match(await page.textContent('.banner[data-key="attach"]'), /larger than 5 MiB/);
  assert.equal(await page.locator('.attachment').count(), 0);
  const files = [1, 2, 3, 4, 5].map((i) => ({ name: `dot${i}.png`, mimeType: 'image/png', buffer: png }));
  await page.setInputFiles('#file', files);
  await page.waitForFunction(() => document.querySelectorAll('.attachment').length === 4);
  assert.match(await page.textContent('.banner[data-key="attach"]'), /at most 4 images/);
  await page.click('.attachment:nth-child(4) .attachment-remove');
  assert.equal(await page.locator('.attachment').count(), 3);
  const n = upstream.chatRequests().length;
  await sendMessage(page, 'what is in these pictures?');
  await waitAnswerDone(page);
  assert.equal(await page.locator('.attachment').count(), 0);
  const shown = await page.locator('.msg-user').last().locator('.msg-images img').evaluateAll((imgs) => imgs.map((i) => i.getAttribute('src').slice(0, 22)));
  assert.deepEqual(shown, ['data:image/png;base64,', 'data:image/png;base64,', 'data:image/png;base64,']);
  const req = upstream.chatRequests()[n];
  const lastMsg = JSON.stringify(req.body.messages[req.body.messages.length - 1]);
  assert.equal(lastMsg.split('data:image/png;base64,').length - 1, 3);
});

test('an answer containing <img onerror> and <script> runs nothing', { timeout: 30000 }, async () => {
  await newChat(page);
  await sendMessage(page, 'xss test');
  const answer = await waitAnswerDone(page);
  assert.equal(await answer.getAttribute('data-state'), 'done');
  await sleep(500); // give a failed image load time to fire onerror, if it were there
  assert.deepEqual(dialogs, []);
  assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  assert.equal(await page.locator('img[onerror]').count(), 0);
  assert.equal(await page.locator('.md script').count(), 0);
  assert.match(await answer.locator('.md').textContent(), /Here is an image:.*end of test/);
  // Chromium (seen with 156.0.8078.114) reports an inline handler attribute as a script-src-attr
  // violation when it merely parses it, even into a <template> or a DOMParser document where
  // nothing can run; DOMPurify must parse the answer to clean it, so those reports come from
  // purify.min.js. Any other violation (an inline script or style the page itself needs) fails.
  const csp = await cspViolations(page);
  assert.deepEqual(csp.filter((v) => !/^script-src-attr .*\/vendor\/purify\.min\.js:\d+$/.test(v)), []);
  // Also after a reload (rendered from the stored history).
  await page.reload();
  await page.waitForSelector('.msg-assistant .md');
  await sleep(300);
  assert.deepEqual(dialogs, []);
  assert.equal(await page.evaluate(() => typeof window.__pwned), 'undefined');
  assert.equal(await page.locator('img[onerror]').count(), 0);
});

test('a code block is highlighted and has a copy button', { timeout: 30000 }, async () => {
  await newChat(page);
  await sendMessage(page, 'show me some code');
  const answer = await waitAnswerDone(page);
  const block = answer.locator('.code-block');
  assert.equal(await block.count(), 1);
  assert.equal(await block.locator('.code-lang').textContent(), 'python');
  assert.ok(await block.locator('code.hljs span.hljs-keyword').count() >= 2, 'highlighted keywords (def, return)');
  assert.equal(await block.locator('code span:not([class^="hljs-"])').count(), 0);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await block.locator('.code-copy').click();
  await page.waitForFunction(() => document.querySelector('.code-copy.copied'));
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.equal(copied, 'def greet(name: str) -> str:\n    """Say hello."""\n    return f"Hello, {name}!"\n');
});

test('a link to a /media/ file in an answer points at the viewer page', { timeout: 30000 }, async () => {
  await sendMessage(page, 'send the media file');
  const answer = await waitAnswerDone(page);
  const href = await answer.locator('.md a').getAttribute('href');
  assert.equal(href, '/view?src=' + encodeURIComponent('/media/clip.mp4'));
  assert.equal(await answer.locator('.md a').getAttribute('target'), '_blank');
});

test('the viewer plays a /media/ mp4 (its currentTime advances)', { timeout: 30000 }, async () => {
  const viewer = await newPage(context);
  await viewer.goto(base + '/view?src=' + encodeURIComponent('/media/clip.mp4'));
  await viewer.waitForSelector('video, .viewer-message');
  if (await viewer.locator('.viewer-message').count()) {
    throw new Error('the viewer could not load the file: ' + await viewer.textContent('.viewer-message'));
  }
  const video = viewer.locator('video');
  assert.equal(await video.getAttribute('src'), '/media/clip.mp4');
  const played = await viewer.evaluate(async () => {
    const v = document.querySelector('video');
    v.muted = true;
    await v.play();
    const t0 = v.currentTime;
    await new Promise((r) => setTimeout(r, 1200));
    return { t0, t1: v.currentTime, error: v.error && v.error.code };
  });
  assert.equal(played.error, null);
  assert.ok(played.t1 > played.t0 + 0.3, 'currentTime advanced: ' + JSON.stringify(played));
  assert.deepEqual(await cspViolations(viewer), []);
  // The viewer refuses anything outside /media/.
  await viewer.goto(base + '/view?src=' + encodeURIComponent('https://example.com/x.mp4'));
  await viewer.waitForSelector('.viewer-message');
  assert.equal(await viewer.locator('video').count(), 0);
  await viewer.close();
});

test('a /media/ HTML, SVG or script file runs nothing in the site\'s origin; the viewer still shows the SVG', { timeout: 30000 }, async () => {
  // Anything that can write into the media folder (the agent can) tries to act as the signed-in
  // user; each attempt would fetch a marker URL.
  const media = path.join(tmp, 'media');
  fs.writeFileSync(path.join(media, 'evil.html'),
    '<!doctype html><script>fetch("/api/me?evil-html-ran")</script><script src="/media/evil.js"></script>');
  fs.writeFileSync(path.join(media, 'evil.js'), 'fetch("/api/me?evil-js-ran"); self.__evil = 1;');
  fs.writeFileSync(path.join(media, 'evil.svg'),
    '<svg xmlns="http://www.w3.org/2000/svg" width="40" height="30"><rect width="40" height="30" fill="red"/>' +
    '<script>fetch("/api/me?evil-svg-ran")</script></svg>');
  const ran = [];
  const onRequest = (r) => { if (r.url().includes('-ran')) ran.push(r.url()); };
  context.on('request', onRequest);
  try {
    // Opened directly: saved, never shown as a page of the site.
    for (const name of ['evil.html', 'evil.svg']) {
      const p = await newPage(context);
      const [download] = await Promise.all([
        p.waitForEvent('download', { timeout: 10000 }),
        p.goto(base + '/media/' + name).catch(() => null),
      ]);
      assert.equal(download.suggestedFilename(), name);
      await download.cancel().catch(() => {});
      await p.close();
    }
    // Used as a script by a page of the site (as if HTML had been injected into it): refused.
    const app = await newPage(context);
    await app.goto(base + '/');
    const loaded = await app.evaluate(async () => {
      const tag = await new Promise((resolve) => {
        const s = document.createElement('script');
        s.src = '/media/evil.js';
        s.onload = () => resolve('loaded');
        s.onerror = () => resolve('refused');
        document.head.appendChild(s);
      });
      const mod = await import('/media/evil.js').then(() => 'loaded', () => 'refused');
      const worker = await new Promise((resolve) => {
        try {
          const w = new Worker('/media/evil.js');
          w.onerror = () => resolve('refused');
          setTimeout(() => resolve('no error within 2 s'), 2000);
        } catch (_) { resolve('refused'); }
      });
      return { tag, mod, worker, evil: self.__evil === 1 };
    });
    assert.deepEqual(loaded, { tag: 'refused', mod: 'refused', worker: 'refused', evil: false });
    await app.close();
    // The viewer still shows the SVG as an image (an <img> runs none of its script).
    const viewer = await newPage(context);
    await viewer.goto(base + '/view?src=' + encodeURIComponent('/media/evil.svg'));
    await viewer.waitForSelector('img.viewer-media, .viewer-message');
    const width = await viewer.waitForFunction(() => {
      const img = document.querySelector('img.viewer-media');
      return img && img.complete && img.naturalWidth;
    }, null, { timeout: 10000 });
    assert.equal(await width.jsonValue(), 40);
    await viewer.close();
    await sleep(300);
    assert.deepEqual(ran, []);
  } finally {
    context.off('request', onRequest);
  }
});

test('desktop screenshots, light and dark', { timeout: 60000 }, async () => {
  await newChat(page);
  await sendMessage(page, 'Search the web with a tool, then say hello');
  await waitAnswerDone(page);
  await sendMessage(page, 'Show me some code, please');
  await waitAnswerDone(page);
  await sleep(300);
  fs.mkdirSync(docs, { recursive: true });
  await page.mouse.move(0, 0);
  await page.screenshot({ path: path.join(docs, 'screenshot-desktop-light.png') });
  await page.emulateMedia({ colorScheme: 'dark' });
  await sleep(200);
  await page.screenshot({ path: path.join(docs, 'screenshot-desktop-dark.png') });
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.notEqual(bg, 'rgb(255, 255, 255)');
  await page.emulateMedia({ colorScheme: 'light' });
});

test('at 390x844 the login page and the empty chat page have no horizontal scroll', { timeout: 60000 }, async () => {
  const mobile = await newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const p = await newPage(mobile);
  const noHScroll = async () => {
    const [sw, cw] = await p.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
    assert.ok(sw <= cw, `${p.url()}: scrollWidth ${sw} > clientWidth ${cw}`);
  };
  await p.goto(base + '/login');
  await noHScroll();
  await p.fill('#username', ADMIN_USER);
  await p.fill('#password', ADMIN_PW);
  await Promise.all([p.waitForNavigation(), p.click('#login-submit')]);
  await p.waitForSelector('#input');
  await p.fill('#input', 'a_very_long_word_without_spaces_'.repeat(8));
  await noHScroll();
  assert.equal(await p.isVisible('#open-nav'), true);
  const closed = await p.locator('#sidebar').boundingBox();
  assert.ok(closed.x + closed.width <= 0, 'the sidebar is a closed drawer off to the left: ' + JSON.stringify(closed));
  await p.click('#open-nav');
  await p.waitForFunction(() => document.getElementById('app').classList.contains('nav-open'));
  await p.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().x === 0);
  await p.click('#new-chat');
  await noHScroll();
  await p.waitForFunction(() => !document.getElementById('app').classList.contains('nav-open')); // New chat closes it
  assert.deepEqual(await cspViolations(p), []);
  await mobile.close();
});

test('at 390x844 a conversation has no horizontal scroll', { timeout: 60000 }, async () => {
  const url = page.url();
  const mobile = await newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'light', storageState: await context.storageState() });
  const p = await newPage(mobile);
  await p.goto(url);
  await p.waitForSelector('.code-block');
  await p.evaluate(() => { document.getElementById('scroller').scrollTop = 0; });
  await sleep(200);
  await p.screenshot({ path: path.join(docs, 'screenshot-mobile.png') });
  await sendMessage(p, 'a_very_long_word_without_spaces_'.repeat(8));
  await waitAnswerDone(p);
  await sleep(300);
  const dims = await p.evaluate(() => ({
    doc: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
    body: [document.body.scrollWidth, document.body.clientWidth],
    scroller: [document.getElementById('scroller').scrollWidth, document.getElementById('scroller').clientWidth],
  }));
  for (const [k, [sw, cw]] of Object.entries(dims)) assert.ok(sw <= cw, `${k}: scrollWidth ${sw} > clientWidth ${cw}`);
  assert.equal(await p.isVisible('#sidebar'), true); // present but off-canvas
  assert.equal(await p.isVisible('#open-nav'), true);
  // The drawer opens and closes.
  await p.click('#open-nav');
  await p.waitForFunction(() => document.getElementById('app').classList.contains('nav-open'));
  await p.click('#scrim', { position: { x: 370, y: 400 } });
  await p.waitForFunction(() => !document.getElementById('app').classList.contains('nav-open'));
  assert.deepEqual(await cspViolations(p), []);
  await mobile.close();
});

test('conversations can be renamed and deleted from the sidebar', { timeout: 30000 }, async () => {
  const id = new URL(page.url()).searchParams.get('c');
  const item = page.locator(`.conv-item[data-id="${id}"]`);
  await item.hover();
  await item.locator('.rename-btn').click();
  await page.fill('.rename-input', 'Renamed in the test');
  await page.press('.rename-input', 'Enter');
  await page.waitForFunction((cid) => {
    const el = document.querySelector(`.conv-item[data-id="${cid}"] .conv-link`);
    return el && el.textContent === 'Renamed in the test';
  }, id, { timeout: 5000 });
  const r = await page.request.get(base + '/api/conversations/' + id);
  assert.equal(r.status(), 200);
  assert.equal((await r.json()).title, 'Renamed in the test');
  await item.hover();
  await item.locator('.delete-btn').click();
  await item.locator('.delete-btn').click(); // second click confirms
  await page.waitForFunction((cid) => !document.querySelector(`.conv-item[data-id="${cid}"]`), id, { timeout: 5000 });
  assert.equal((await page.request.get(base + '/api/conversations/' + id)).status(), 404);
  assert.equal(new URL(page.url()).searchParams.get('c'), null);
  assert.equal(await page.locator('.msg').count(), 0);  // Hermes deleted its copy too: the session of this conversation, and no warning.
  const deletes = upstream.requests.filter((r) => r.method === 'DELETE');
  assert.deepEqual(deletes.map((r) => r.url), ['/api/sessions/web-' + id]);
  assert.equal(deletes[0].headers.authorization, 'Bearer ' + API_KEY);
  assert.equal(await page.locator('.banner[data-key="conv"]').count(), 0);
});

test('when Hermes cannot delete its copy of a conversation a warning says so', { timeout: 30000 }, async () => {
  await newChat(page);
  await sendMessage(page, 'short-lived');
  await waitAnswerDone(page);
  const id = new URL(page.url()).searchParams.get('c');
  upstream.control.failDeletes = true;
  try {
    const item = page.locator(`.conv-item[data-id="${id}"]`);
    await item.hover();
    await item.locator('.delete-btn').click();
    await item.locator('.delete-btn').click(); // second click confirms
    await page.waitForFunction((cid) => !document.querySelector(`.conv-item[data-id="${cid}"]`), id, { timeout: 5000 });
    const banner = page.locator('.banner[data-key="conv"]');
    await banner.waitFor({ timeout: 5000 });
    assert.equal(await banner.getAttribute('class'), 'banner banner-warn');
    const text = await banner.locator('.banner-text').textContent();
    assert.ok(text.includes('web-' + id), text);
    assert.ok(text.includes('Hermes still keeps its copy'), text);
    // Gone at the edge all the same.
    assert.equal((await page.request.get(base + '/api/conversations/' + id)).status(), 404);
  } finally {
    upstream.control.failDeletes = false;
  }
});

test('an expired session goes to the login page and back to where the user was', { timeout: 30000 }, async () => {
  await sendMessage(page, 'hello again');
  await waitAnswerDone(page);
  const url = new URL(page.url());
  await context.clearCookies();
  await sendMessage(page, 'are you there?');
  await page.waitForURL((u) => u.pathname === '/login', { timeout: 10000 });
  assert.equal(new URL(page.url()).searchParams.get('next'), url.pathname + url.search);
  await login(page);
  await page.waitForURL((u) => u.pathname === url.pathname && u.search === url.search);
  await page.waitForSelector('.msg-user');
  assert.deepEqual(await page.locator('.msg-user .bubble').allTextContents(), ['hello again']);
  assert.equal(await page.inputValue('#input'), 'are you there?'); // the draft survived the detour
});

/** `POST /v1/chat/completions` as an OpenAI client would send it, with `token` as the API key. */
function v1Chat(token, text) {
  const body = JSON.stringify({ model: 'hermes-agent', messages: [{ role: 'user', content: text }], stream: true });
  return request('POST', base + '/v1/chat/completions',
    { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }, body);
}

test('API tokens: made in the dialog, shown once, usable on /v1, and dead once revoked', { timeout: 60000 }, async () => {
  await page.goto(base + '/');
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
  await page.click('#open-tokens');
  const dialog = page.locator('#tokens-dialog');
  await dialog.waitFor({ state: 'visible' });
  assert.equal(await dialog.getAttribute('open'), '');
  assert.equal(await page.evaluate(() => document.getElementById('tokens-dialog').contains(document.activeElement)), true);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'token-name');
  await page.waitForSelector('#token-list .token-empty:text("No tokens yet.")');

  // A name over 64 characters (typed past the field's own limit) gets the server's 400, shown in the dialog.
  await page.evaluate(() => document.getElementById('token-name').removeAttribute('maxlength'));
  await page.fill('#token-name', 'x'.repeat(65));
  await page.click('#token-create');
  await page.waitForSelector('#tokens-error:not([hidden])');
  assert.equal(await page.textContent('#tokens-error'),
    'Could not create the token: a token name is 1 to 64 characters without line breaks.');
  assert.equal(await page.locator('#token-list .token-item').count(), 0);
  assert.equal(await page.isVisible('#token-created'), false);

  await page.fill('#token-name', 'laptop');
  await page.press('#token-name', 'Enter');
  await page.waitForSelector('#token-created:not([hidden])');
  assert.equal(await page.isVisible('#tokens-error'), false);
  const token = await page.textContent('#token-secret');
  assert.match(token, /^hek_[A-Za-z0-9_-]{20,}$/);
  assert.equal(await page.textContent('#token-base-url'), base + '/v1');
  const example = await page.textContent('#token-example');
  assert.ok(example.startsWith('curl ' + base + '/v1/chat/completions \\\n'), example);
  assert.ok(example.includes('-H "Authorization: Bearer ' + token + '"'), example);
  assert.match(await page.textContent('#token-created'), /It will not be shown again\./);
  const row = page.locator('#token-list .token-item');
  assert.equal(await row.count(), 1);
  assert.equal(await row.locator('.token-name').textContent(), 'laptop');
  assert.equal(await row.locator('.token-prefix').textContent(), token.slice(0, 12) + '…');
  assert.equal(await row.locator('.token-used').textContent(), 'Never used');
  // The listing never carries the secret.
  const listed = await page.request.get(base + '/api/tokens');
  assert.equal(listed.status(), 200);
  assert.ok(!(await listed.text()).includes(token));
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
  await page.click('#token-copy');
  await page.waitForSelector('#token-copy.copied');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);
  await page.mouse.move(0, 0);
  await sleep(1600); // the "Copied" mark fades
  await dialog.screenshot({ path: path.join(docs, 'screenshot-tokens-desktop.png') });
  assert.deepEqual(await cspViolations(page), []);

  // The token works from node, as an OpenAI-compatible client would use it.
  const n = upstream.chatRequests().length;
  const chat = await v1Chat(token, 'hello from a token');
  assert.equal(chat.status, 200, chat.body);
  assert.equal(chat.headers['content-type'], 'text/event-stream');
  const said = chat.body.split('\n').filter((l) => l.startsWith('data: {'))
    .map((l) => JSON.parse(l.slice(6)).choices[0].delta.content || '').join('');
  assert.equal(said, 'Hello there! I am the fake upstream, answering in small steps.');
  assert.ok(chat.body.endsWith('data: [DONE]\n\n'), chat.body);
  const sent = upstream.chatRequests()[n];
  assert.equal(sent.headers.authorization, 'Bearer ' + API_KEY);
  // The account's memory scope: `u<id>-<24 hex>` for accounts made since schema version 5.
  const scope = sent.headers['x-hermes-session-key'].replace(/^web:/, '');
  assert.match(scope, /^u\d+-[0-9a-f]{24}$/);
  assert.equal(sent.body.messages[0].role, 'system');
  assert.equal(sent.body.messages[0].content, 'api user: ' + scope);
  const models = await request('GET', base + '/v1/models', { Authorization: 'Bearer ' + token });
  assert.equal(models.status, 200, models.body);
  assert.equal(JSON.parse(models.body).data[0].id, 'hermes-agent');

  // Esc closes the dialog, forgets the secret, and gives the focus back to the opener.
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.textContent('#token-secret'), '');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'open-tokens');
  // Opened again: the token is listed, now used, and not shown again.
  await page.click('#open-tokens');
  await page.waitForSelector('#token-list .token-item .token-used:text-matches("^Last used ")');
  assert.equal(await page.isVisible('#token-created'), false);
  assert.equal(await page.isVisible('#token-form'), true);

  // Revoke asks first; Cancel keeps it.
  await row.locator('.revoke-btn').click();
  assert.match(await row.locator('.token-confirm-text').textContent(), /^Revoke “laptop”\?/);
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Cancel');
  await row.getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await row.locator('.token-confirm').isVisible(), false);
  assert.equal((await v1Chat(token, 'still there?')).status, 200);
  await row.locator('.revoke-btn').click();
  await row.locator('.confirm-revoke-btn').click();
  await page.waitForSelector('#token-list .token-empty:text("No tokens yet.")');
  assert.equal(await page.locator('#token-list .token-item').count(), 0);
  const listedAfter = await page.request.get(base + '/api/tokens');
  assert.deepEqual(await listedAfter.json(), { tokens: [] });

  const refused = await v1Chat(token, 'hello after revoke');
  assert.equal(refused.status, 401);
  assert.equal(refused.headers['www-authenticate'], 'Bearer');
  assert.equal(JSON.parse(refused.body).error.code, 'invalid_token');
  assert.equal((await request('GET', base + '/v1/models', { Authorization: 'Bearer ' + token })).status, 401);
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.deepEqual(await cspViolations(page), []);
});

test('at 390x844 the API tokens dialog fits, and a signed-out create goes to the login page', { timeout: 60000 }, async () => {
  const mobile = await newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'light', storageState: await context.storageState() });
  const p = await newPage(mobile);
  await p.goto(base + '/');
  await p.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
  await p.click('#open-nav');
  await p.waitForFunction(() => document.getElementById('sidebar').getBoundingClientRect().x === 0);
  await p.click('#open-tokens');
  await p.waitForSelector('#tokens-dialog[open]');
  assert.equal(await p.evaluate(() => document.getElementById('app').classList.contains('nav-open')), false);
  assert.equal(await p.evaluate(() => document.activeElement.id), 'tokens-close');
  await p.fill('#token-name', 'phone');
  await p.click('#token-create');
  await p.waitForSelector('#token-created:not([hidden])');
  await p.waitForSelector('#token-list .token-item');
  await p.evaluate(() => { document.querySelector('#tokens-dialog .dialog-body').scrollTop = 0; });
  await sleep(300);
  const box = await p.locator('#tokens-dialog').boundingBox();
  assert.ok(box.x >= 0 && box.x + box.width <= 390, 'the dialog fits the width: ' + JSON.stringify(box));
  const dims = await p.evaluate(() => {
    const b = document.querySelector('#tokens-dialog .dialog-body');
    return [b.scrollWidth, b.clientWidth];
  });
  assert.ok(dims[0] <= dims[1], `dialog body: scrollWidth ${dims[0]} > clientWidth ${dims[1]}`);
  await p.screenshot({ path: path.join(docs, 'screenshot-tokens-mobile.png') });
  await p.locator('#token-list .revoke-btn').click(); // the confirm step, in dark
  await p.emulateMedia({ colorScheme: 'dark' });
  await sleep(300);
  await p.screenshot({ path: path.join(docs, 'screenshot-tokens-mobile-dark.png') });
  await p.emulateMedia({ colorScheme: 'light' });
  await p.locator('#token-list .confirm-revoke-btn').click();
  await p.waitForSelector('#token-list .token-empty');
  assert.deepEqual(await cspViolations(p), []);

  // Signed out meanwhile: the create answers 401 and the page goes to sign in, back to the chat after.
  await mobile.clearCookies();
  await p.fill('#token-name', 'too late');
  await p.click('#token-create');
  await p.waitForSelector('#tokens-error:not([hidden])');
  assert.match(await p.textContent('#tokens-error'), /session has expired/);
  await p.waitForURL((u) => u.pathname === '/login', { timeout: 10000 });
  assert.equal(new URL(p.url()).searchParams.get('next'), '/');
  await mobile.close();
});

test('when Hermes is unreachable a banner says so', { timeout: 30000 }, async () => {
  await upstream.close();
  await newChat(page);
  await sendMessage(page, 'anyone home?');
  // 502/503/504 before the stream, or `edge.error` upstream_unreachable inside it, raise this banner.
  const banner = page.locator('.banner[data-key="upstream"]');
  await banner.waitFor({ timeout: 15000 });
  assert.equal(await banner.getAttribute('class'), 'banner banner-error');
  assert.ok((await banner.locator('.banner-text').textContent()).length > 10);
  // Nothing was stored, so the text is back in the composer to try again.
  assert.equal(await page.inputValue('#input'), 'anyone home?');
});
