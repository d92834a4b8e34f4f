// Two-factor sign-in in headless Chromium against the real hermes-edge binary: the login page asks
// for the code after a correct password (keeping the user name, the password and "keep me signed
// in"), a wrong password keeps the user name and the box, and the account page enrols an
// authenticator (codes computed here with RFC 6238), shows the recovery codes once and renews them.
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test two-factor.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, freePort, sleep } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
// Screenshots go to target/screenshots, as chat.test.mjs's do (SCREENSHOT_DIR=docs for the docs' copies).
const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(shots, { recursive: true });
const BIN = process.env.HERMES_EDGE_BIN;
const PASSWORD = 'alice-password-' + Math.random().toString(36).slice(2, 10);

let tmp;
let server;
let serverLog = '';
let base;
let browser;

function healthy(url) {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    if (v < 0) throw new Error('not base32: ' + text);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code (HMAC-SHA-1, 6 digits, 30 s) of `secret` at `at` seconds. */
function totp(secret, at = Date.now() / 1000) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30)));
  const h = crypto.createHmac('sha1', secret).update(counter).digest();
  const o = h[19] & 0x0f;
  const n = (h.readUInt32BE(o) & 0x7fffffff) % 1000000;
  return String(n).padStart(6, '0');
}

function cli(...args) {
  return execFileSync(BIN, ['--data-dir', path.join(tmp, 'data'), ...args], {
    input: PASSWORD + '\n',
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

before(async () => {
  assert.ok(BIN, 'HERMES_EDGE_BIN must name the binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-2fa-'));
  fs.mkdirSync(path.join(tmp, 'media'));
  const port = await freePort();
  base = 'https://127.0.0.1:' + port;
  // The upstream is never asked: nothing here chats.
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', 'http://127.0.0.1:9',
    '--www', path.join(repo, 'www'), '--config', path.join(tmp, 'edge.toml')];
  // Room for every sign-in attempt of these tests from one address (the default is 5 a minute).
  fs.writeFileSync(path.join(tmp, 'edge.toml'), '[auth]\nlogin_attempts_per_minute_per_ip = 50\n');
  server = spawn(BIN, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: 'admin-' + PASSWORD, HERMES_EDGE_API_KEY: 'k'.repeat(32) }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  const end = Date.now() + 60000;
  while (!(await healthy(base + '/healthz'))) {
    if (server.exitCode !== null || Date.now() > end) throw new Error('hermes-edge did not start:\n' + serverLog);
    await sleep(200);
  }
  cli('user', 'add', 'alice', '--password-stdin');
  cli('user', 'add', 'bob', '--password-stdin');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run'] });
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

async function newPage() {
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  // Record CSP violations: the pages must need no inline script or style.
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });
  });
  const p = await ctx.newPage();
  return { ctx, p };
}

test('sign-in with password then code; a wrong password keeps the user name and the box', { timeout: 60000 }, async () => {
  const out = cli('user', '2fa', 'enable', 'alice');
  const uri = out.split('\n').find((l) => l.startsWith('otpauth://totp/'));
  const secret = base32Decode(new URL(uri).searchParams.get('secret'));
  const { ctx, p } = await newPage();
  await p.goto(base + '/login?next=' + encodeURIComponent('/c/xyz'));
  assert.equal(await p.isVisible('#code-field'), false);

  // A wrong password: the page stays, the name and the box are kept, the password is emptied.
  await p.fill('#username', 'alice');
  await p.fill('#password', 'not-her-password');
  await p.check('#remember');
  await p.click('#login-submit');
  await p.waitForSelector('#login-error:not([hidden])');
  assert.match(await p.textContent('#login-error'), /Wrong username or password/);
  assert.equal(new URL(p.url()).pathname, '/login');
  assert.equal(await p.inputValue('#username'), 'alice');
  assert.equal(await p.isChecked('#remember'), true);
  assert.equal(await p.inputValue('#password'), '');

  // The right password: the code field appears; name, password and box stay as they were.
  await p.fill('#password', PASSWORD);
  await p.click('#login-submit');
  await p.waitForSelector('#code-field:not([hidden])');
  assert.match(await p.textContent('#login-error'), /code from your authenticator app/);
  assert.equal(await p.inputValue('#username'), 'alice');
  assert.equal(await p.inputValue('#password'), PASSWORD);
  assert.equal(await p.isChecked('#remember'), true);
  assert.equal(await p.evaluate(() => document.activeElement.id), 'code');
  await p.screenshot({ path: path.join(shots, 'screenshot-login-code.png') });

  // A wrong code is said so; the right one signs in, remembered, and goes to `next`.
  const right = totp(secret);
  await p.fill('#code', right === '000000' ? '111111' : '000000');
  await p.click('#login-submit');
  await p.waitForFunction(() => /Wrong or already used code/.test(document.getElementById('login-error').textContent));
  await p.fill('#code', totp(secret));
  await Promise.all([p.waitForURL((u) => u.pathname === '/c/xyz'), p.click('#login-submit')]);
  const cookie = (await ctx.cookies()).find((c) => c.name === '__Host-hermes_session');
  assert.ok(cookie && cookie.expires > Date.now() / 1000 + 20 * 86400, 'a "keep me signed in" cookie: ' + JSON.stringify(cookie));
  await ctx.close();
});

test('the account page enrols an authenticator app and shows the recovery codes once', { timeout: 60000 }, async () => {
  const { ctx, p } = await newPage();
  await p.goto(base + '/login');
  await p.fill('#username', 'bob');
  await p.fill('#password', PASSWORD);
  await Promise.all([p.waitForURL((u) => u.pathname === '/'), p.click('#login-submit')]);
  // The user menu links to the account page.
  await Promise.all([p.waitForURL((u) => u.pathname === '/account'), p.click('#open-account')]);
  await p.waitForFunction(() => /^Off/.test(document.getElementById('tf-status').textContent));
  await p.click('#tf-start');
  await p.waitForSelector('#tf-setup:not([hidden])');
  const secret = base32Decode((await p.textContent('#tf-secret')).trim());
  assert.match(await p.getAttribute('#tf-qr', 'src'), /^data:image\/svg\+xml/);
  assert.match(await p.textContent('#tf-uri'), /^otpauth:\/\/totp\/Hermes:bob\?secret=/);
  // The QR code is drawn: the image loaded.
  await p.waitForFunction(() => {
    const img = document.getElementById('tf-qr');
    return img.complete && img.naturalWidth > 0;
  }, null, { timeout: 15000 });
  await p.fill('#tf-code', totp(secret));
  await p.click('#tf-confirm');
  await p.waitForSelector('#tf-codes:not([hidden])');
  assert.equal(await p.locator('#tf-code-list li').count(), 10);
  assert.match(await p.textContent('#tf-status'), /^On/);
  await p.click('#tf-done');
  assert.equal(await p.locator('#tf-code-list li').count(), 0);
  await p.waitForSelector('#tf-disable:not([hidden])', { timeout: 15000 });
  // New recovery codes, with the password as proof.
  await p.fill('#tf-disable-password', PASSWORD);
  await p.click('#tf-renew');
  await p.waitForSelector('#tf-codes:not([hidden])');
  assert.equal(await p.locator('#tf-code-list li').count(), 10);
  await p.click('#tf-done');
  await p.waitForSelector('#tf-disable:not([hidden])', { timeout: 15000 });
  await p.screenshot({ path: path.join(shots, 'screenshot-account-desktop.png'), fullPage: true });
  // At phone width the page fits without sideways scrolling.
  await p.setViewportSize({ width: 390, height: 844 });
  const [sw, cw] = await p.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert.ok(sw <= cw, `scrollWidth ${sw} > clientWidth ${cw}`);
  await p.screenshot({ path: path.join(shots, 'screenshot-account-mobile.png'), fullPage: true });
  // The page needs no inline script or style.
  assert.deepEqual(await p.evaluate(() => window.__csp), []);
  await ctx.close();
});
