// Browser test of "Notifications on this device" (issue 26, Web Push): headless Chromium has no
// push service, so PushManager's subscribe/getSubscription are stubbed in the page (they capture
// the applicationServerKey and hand back a subscription with a real P-256 key); the service
// worker (/sw.js, which imports /push-sw.js) is registered for real. Checks: the bell shows, the
// page subscribes with the server's VAPID key and posts the subscription, the bell shows its
// state (also after a reload), the account page's text setting is posted and read back, turning
// the bell off deletes the subscription on the server, and no CSP violation. Desktop and
// 390 px.
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test push.test.mjs
//
// Optional env as in chat.test.mjs: CHROMIUM, KEEP_TMP=1, HERMES_EDGE_EMBEDDED_WWW=1, SHOW_SERVER_LOG=1,
// SCREENSHOT_DIR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, freePort, sleep, until } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(shots, { recursive: true });
const BIN = process.env.HERMES_EDGE_BIN;
const ADMIN_PW = 'push-test-' + Math.random().toString(36).slice(2, 12);
// --ignore-certificate-errors: Chromium refuses to register a service worker from a site whose
// certificate it does not trust, which Playwright's ignoreHTTPSErrors does not change; the
// server's certificate here is from its own local CA.
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--ignore-certificate-errors'];
const MOBILE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let tmp;
let server;
let serverLog = '';
let base;
let browser;

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

/** A signed-in page whose PushManager is stubbed as described at the top. */
async function signedInPage(opts, endpoint) {
  const context = await browser.newContext(Object.assign({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } }, opts || {}));
  await context.grantPermissions(['notifications'], { origin: base });
  // What a browser's subscription holds: a P-256 public key (uncompressed) and a 16-byte secret.
  const ecdh = crypto.createECDH('prime256v1');
  const p256dh = ecdh.generateKeys().toString('base64url');
  const auth = crypto.randomBytes(16).toString('base64url');
  await context.addInitScript(({ endpoint, p256dh, auth }) => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => { window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '')); });
    const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    // The subscription outlives a page (as a browser's does): its key is kept in sessionStorage.
    window.__push = { keys: [], unsubscribed: 0 };
    const make = (key) => ({
      endpoint,
      options: { applicationServerKey: key.buffer, userVisibleOnly: true },
      toJSON() { return { endpoint, expirationTime: null, keys: { p256dh, auth } }; },
      async unsubscribe() { sessionStorage.removeItem('__push_key'); window.__push.unsubscribed += 1; return true; },
    });
    PushManager.prototype.subscribe = async function (options) {
      const key = new Uint8Array(options.applicationServerKey);
      window.__push.keys.push({ key: b64url(key), userVisibleOnly: options.userVisibleOnly });
      sessionStorage.setItem('__push_key', JSON.stringify(Array.from(key)));
      return make(key);
    };
    PushManager.prototype.getSubscription = async function () {
      const kept = sessionStorage.getItem('__push_key');
      return kept ? make(new Uint8Array(JSON.parse(kept))) : null;
    };
  }, { endpoint, p256dh, auth });
  const page = await context.newPage();
  await page.goto(base + '/');
  await page.fill('#username', 'admin');
  await page.fill('#password', ADMIN_PW);
  await Promise.all([page.waitForNavigation(), page.click('#login-submit')]);
  await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
  return { context, page, p256dh, auth };
}

before(async () => {
  assert.ok(BIN, 'set HERMES_EDGE_BIN to the hermes-edge binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-push-'));
  for (const d of ['certs', 'data', 'media']) fs.mkdirSync(path.join(tmp, d));
  const port = await freePort();
  base = 'https://127.0.0.1:' + port;
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', 'http://127.0.0.1:9'];
  if (!process.env.HERMES_EDGE_EMBEDDED_WWW) args.push('--www', path.join(repo, 'www'));
  server = spawn(BIN, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: ADMIN_PW }),
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
});

after(async () => {
  if (browser) await browser.close().catch(() => {});
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await Promise.race([new Promise((r) => server.once('exit', r)), sleep(5000)]);
    if (server.exitCode === null) server.kill('SIGKILL');
  }
  if (tmp && !process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
  if (process.env.SHOW_SERVER_LOG) console.log(serverLog);
});

for (const [name, opts] of [['desktop', {}], ['mobile', MOBILE]]) {
  test(`${name}: the bell subscribes with the server's VAPID key, posts the subscription, shows its state and turns off`, { timeout: 60000 }, async () => {
    const endpoint = 'https://push.example.com/send/' + name + '-' + crypto.randomBytes(6).toString('hex');
    const { context, page, p256dh, auth } = await signedInPage(opts, endpoint);
    try {
      if (name === 'mobile') await page.click('#open-nav');
      const bell = page.locator('#push-toggle');
      await bell.waitFor({ state: 'visible' });
      assert.equal(await bell.getAttribute('aria-checked'), 'false');
      assert.equal(await bell.getAttribute('role'), 'switch');
      const box = await bell.boundingBox();
      assert.ok(box.width >= 28 && box.height >= 28, 'a target one can tap: ' + JSON.stringify(box));

      const key = await page.evaluate(async () => (await (await fetch('/api/push/key')).json()).public_key);
      const [posted] = await Promise.all([
        page.waitForRequest((r) => r.url().endsWith('/api/push/subscriptions') && r.method() === 'POST', { timeout: 8000 })
          .catch(async (e) => { throw new Error(e.message + '; the bell says: ' + await bell.getAttribute('title')); }),
        bell.click(),
      ]);
      assert.deepEqual(posted.postDataJSON(), { endpoint, expirationTime: null, keys: { p256dh, auth } });
      const answer = await posted.response();
      assert.equal(answer.status(), 201, await answer.text());
      await page.waitForFunction(() => document.getElementById('push-toggle').getAttribute('aria-checked') === 'true');
      assert.match(await bell.getAttribute('title'), /: on$/);
      assert.deepEqual(await page.evaluate(() => window.__push.keys), [{ key, userVisibleOnly: true }]);
      // The service worker that receives pushes is the real one, with the push handlers imported.
      const sw = await page.evaluate(async () => {
        const reg = await navigator.serviceWorker.getRegistration('/');
        return reg && reg.active && new URL(reg.active.scriptURL).pathname;
      });
      assert.equal(sw, '/sw.js');
      await page.screenshot({ path: path.join(shots, 'screenshot-push-' + name + '.png') });

      // The account page: this device's text setting, off until allowed, kept by the server.
      await page.goto(base + '/account');
      const allow = page.locator('#push-include-text');
      await page.waitForFunction(() => { const b = document.getElementById('push-include-text'); return b && !b.disabled; });
      assert.equal(await allow.isChecked(), false);
      const [allowed] = await Promise.all([
        page.waitForRequest((r) => r.url().endsWith('/api/push/subscriptions') && r.method() === 'POST' && 'include_text' in (r.postDataJSON() || {})),
        allow.click(),
      ]);
      assert.equal(allowed.postDataJSON().include_text, true);
      assert.deepEqual(await (await allowed.response()).json(), { subscribed: true, include_text: true });
      await page.reload();
      await page.waitForFunction(() => { const b = document.getElementById('push-include-text'); return b && !b.disabled; });
      assert.equal(await allow.isChecked(), true, 'the setting is read back from the server');
      assert.deepEqual(await page.evaluate(() => window.__csp), []);
      await page.screenshot({ path: path.join(shots, 'screenshot-push-account-' + name + '.png'), fullPage: true });

      // Back in the chat the bell shows it is on (the browser's subscription, read at load).
      await page.goto(base + '/');
      await page.waitForFunction(() => document.getElementById('app').classList.contains('ready'));
      if (name === 'mobile') await page.click('#open-nav');
      await page.waitForFunction(() => document.getElementById('push-toggle').getAttribute('aria-checked') === 'true');

      // Off: the server forgets this endpoint, the browser unsubscribes.
      const [deleted] = await Promise.all([
        page.waitForRequest((r) => r.url().endsWith('/api/push/subscriptions') && r.method() === 'DELETE'),
        bell.click(),
      ]);
      assert.deepEqual(deleted.postDataJSON(), { endpoint });
      assert.equal((await deleted.response()).status(), 204);
      await page.waitForFunction(() => document.getElementById('push-toggle').getAttribute('aria-checked') === 'false');
      assert.equal(await page.evaluate(() => window.__push.unsubscribed), 1);
      assert.deepEqual(await page.evaluate(() => window.__csp), []);
    } finally {
      await context.close();
    }
  });
}
