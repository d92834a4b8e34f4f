// The account page's password, sessions and API token sections, and the admin page (users with an
// invite link, roles, removal; everyone's sessions; the sign-in audit with filters), in headless
// Chromium against the real hermes-edge binary, on desktop and at 390 px (no sideways scroll,
// 44 px tap targets), light and dark, with no inline script.
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test admin.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import https from 'node:https';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, freePort, sleep } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
// Screenshots go to target/screenshots (SCREENSHOT_DIR=docs for the docs' copies).
const shots = path.resolve(repo, process.env.SCREENSHOT_DIR || 'target/screenshots');
fs.mkdirSync(shots, { recursive: true });
const BIN = process.env.HERMES_EDGE_BIN;
const PASSWORD = 'alice-password-' + Math.random().toString(36).slice(2, 10);
const ADMIN_PASSWORD = 'admin-' + PASSWORD;

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

function cli(...args) {
  return execFileSync(BIN, ['--data-dir', path.join(tmp, 'data'), ...args], {
    input: PASSWORD + '\n',
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

before(async () => {
  assert.ok(BIN, 'HERMES_EDGE_BIN must name the binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-admin-'));
  fs.mkdirSync(path.join(tmp, 'media'));
  const port = await freePort();
  base = 'https://127.0.0.1:' + port;
  // The upstream is never asked: nothing here chats. The dashboard is configured (not running):
  // the pages only link to it.
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', 'http://127.0.0.1:9',
    '--www', path.join(repo, 'www'), '--config', path.join(tmp, 'edge.toml')];
  fs.writeFileSync(path.join(tmp, 'edge.toml'),
    '[auth]\nlogin_attempts_per_minute_per_ip = 100\n\n[dashboard]\nupstream = "http://127.0.0.1:9"\n');
  server = spawn(BIN, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: ADMIN_PASSWORD, HERMES_EDGE_API_KEY: 'k'.repeat(32) }),
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

async function newPage(options = {}) {
  const ctx = await browser.newContext(Object.assign({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } }, options));
  // Record CSP violations: the pages must need no inline script or style.
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => { window.__csp.push(e.violatedDirective + ' ' + e.blockedURI); });
  });
  const p = await ctx.newPage();
  return { ctx, p };
}

async function signIn(p, name, password, landing = '/') {
  await p.goto(base + '/login');
  await p.fill('#username', name);
  await p.fill('#password', password);
  await Promise.all([p.waitForURL((u) => u.pathname === landing), p.click('#login-submit')]);
}

/** At phone width: nothing scrolls sideways, and every visible control is at least 44 px tall. */
async function checkPhoneLayout(p) {
  const [sw, cw] = await p.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  const wide = sw > cw ? await p.evaluate((w) => [...document.querySelectorAll('main *')]
    .filter((e) => e.getBoundingClientRect().right > w)
    .map((e) => (e.id || e.className || e.tagName) + ' ' + Math.round(e.getBoundingClientRect().right)).slice(0, 8), cw) : [];
  assert.ok(sw <= cw, `scrollWidth ${sw} > clientWidth ${cw}: ${wide.join(', ')}`);
  const small = await p.evaluate(() => [...document.querySelectorAll('main button, main a.btn, main input, main select, .page-links a')]
    .filter((e) => e.offsetParent !== null && e.type !== 'hidden')
    // A checkbox's tap target is its whole label.
    .map((e) => [e.id || e.className || e.textContent.trim(), Math.round(((e.type === 'checkbox' && e.closest('label')) || e).getBoundingClientRect().height)])
    .filter(([, h]) => h < 44));
  assert.deepEqual(small, [], 'controls under 44 px: ' + JSON.stringify(small));
}

test('the account page changes the password, lists and ends sessions, and makes API tokens', { timeout: 90000 }, async () => {
  const other = await newPage({ userAgent: 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1' });
  await signIn(other.p, 'alice', PASSWORD);
  const { ctx, p } = await newPage();
  await signIn(p, 'alice', PASSWORD);
  await Promise.all([p.waitForURL((u) => u.pathname === '/account'), p.click('#open-account')]);
  // Not an admin: no link to the admin page, and no page there.
  assert.equal(await p.isVisible('#admin-link'), false);

  // Sessions: this device marked, the phone summarised and signed out with a confirmation.
  await p.waitForFunction(() => document.querySelectorAll('#session-list .session-item').length === 2);
  assert.equal(await p.locator('#session-list .badge-ok').count(), 1);
  assert.match(await p.textContent('#session-list'), /Safari on iOS/);
  assert.match(await p.textContent('#session-list'), /Chrome on Linux/);

  // Password: a wrong current one is refused and said so; the right one signs the others out.
  await p.waitForSelector('#password-form:not([hidden])');
  await p.fill('#password-current', 'not-the-password');
  await p.fill('#password-new', 'a-brand-new-password');
  await p.fill('#password-repeat', 'a-brand-new-password');
  await p.click('#password-submit');
  await p.waitForSelector('#password-error:not([hidden])');
  assert.match(await p.textContent('#password-error'), /current password is wrong/);
  await p.fill('#password-repeat', 'something-else-entirely');
  await p.fill('#password-current', PASSWORD);
  await p.click('#password-submit');
  assert.match(await p.textContent('#password-error'), /differ/);
  await p.fill('#password-repeat', 'a-brand-new-password');
  await p.click('#password-submit');
  await p.waitForSelector('#password-done:not([hidden])');
  assert.match(await p.textContent('#password-done'), /1 other session was signed out/);
  await p.waitForFunction(() => document.querySelectorAll('#session-list .session-item').length === 1);
  const status = await other.p.evaluate(() => fetch('/api/me').then((r) => r.status));
  assert.equal(status, 401, 'the other session ended');
  await other.ctx.close();

  // A second session again, ended from here with the in-place confirmation.
  const third = await newPage({ userAgent: 'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0' });
  await signIn(third.p, 'alice', 'a-brand-new-password');
  await p.reload();
  await p.waitForFunction(() => document.querySelectorAll('#session-list .session-item').length === 2);
  assert.match(await p.textContent('#session-list'), /Firefox on Windows/);
  await p.click('#session-list .session-revoke');
  await p.click('#session-list .confirm-yes');
  await p.waitForFunction(() => document.querySelectorAll('#session-list .session-item').length === 1);
  assert.equal(await third.p.evaluate(() => fetch('/api/me').then((r) => r.status)), 401);
  await third.ctx.close();

  // API tokens: made here, shown once, listed, revoked with a confirmation.
  await p.fill('#acct-token-name', 'laptop');
  await p.click('#acct-token-create');
  await p.waitForSelector('#acct-token-created:not([hidden])');
  assert.match(await p.textContent('#acct-token-secret'), /^\S{20,}$/);
  await p.waitForFunction(() => document.querySelectorAll('#acct-token-list .token-item').length === 1);
  await p.screenshot({ path: path.join(shots, 'screenshot-account-security-desktop.png'), fullPage: true });
  await p.click('#acct-token-done');
  await p.fill('#acct-token-name', 'script');
  await p.click('#acct-token-create');
  await p.waitForFunction(() => document.querySelectorAll('#acct-token-list .token-item').length === 2);
  await p.click('#acct-token-done');
  await p.click('#acct-token-list .revoke-btn');
  await p.click('#acct-token-list .confirm-yes');
  await p.waitForFunction(() => document.querySelectorAll('#acct-token-list .token-item').length === 1);

  // At phone width, light and dark.
  await p.setViewportSize({ width: 390, height: 844 });
  await checkPhoneLayout(p);
  await p.locator('#password-section').scrollIntoViewIfNeeded();
  await p.screenshot({ path: path.join(shots, 'screenshot-account-security-mobile.png'), fullPage: true });
  assert.deepEqual(await p.evaluate(() => window.__csp), []);
  const resp = await p.goto(base + '/admin');
  assert.equal(resp.status(), 404);
  await ctx.close();

  const dark = await newPage({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  await signIn(dark.p, 'alice', 'a-brand-new-password');
  await dark.p.goto(base + '/account');
  await dark.p.waitForFunction(() => document.querySelectorAll('#session-list .session-item').length >= 1);
  await checkPhoneLayout(dark.p);
  await dark.p.screenshot({ path: path.join(shots, 'screenshot-account-security-mobile-dark.png'), fullPage: true });
  await dark.ctx.close();
});

test('the admin page invites, changes roles, protects the last admin, removes, and filters the audit', { timeout: 120000 }, async () => {
  // A failed sign-in for the audit.
  const failed = await newPage();
  await failed.p.goto(base + '/login');
  await failed.p.fill('#username', 'bob');
  await failed.p.fill('#password', 'wrong-password');
  await failed.p.click('#login-submit');
  await failed.p.waitForSelector('#login-error:not([hidden])');
  await failed.ctx.close();

  const { ctx, p } = await newPage();
  await signIn(p, 'admin', ADMIN_PASSWORD);
  // The user menu links to the admin page and, configured, the dashboard.
  await p.waitForSelector('#open-admin:not([hidden])');
  assert.equal(await p.isVisible('#open-dashboard'), true);
  await Promise.all([p.waitForURL((u) => u.pathname === '/admin'), p.click('#open-admin')]);
  await p.waitForSelector('#dashboard-link:not([hidden])');
  await p.waitForFunction(() => document.querySelectorAll('#user-list .user-item').length === 3);

  // Invite: a link, opened by someone without a session, sets the password once.
  await p.fill('#new-username', 'carol');
  await p.click('#user-add');
  await p.waitForSelector('#invite-result:not([hidden])');
  const url = (await p.textContent('#invite-url')).trim();
  assert.match(url, /\/invite\/[A-Za-z0-9_-]{43}$/);
  await p.waitForFunction(() => document.querySelectorAll('#user-list .user-item').length === 4);
  assert.match(await p.textContent('#user-list [data-name="carol"]'), /Link not used yet/);
  await p.screenshot({ path: path.join(shots, 'screenshot-admin-desktop.png'), fullPage: true });
  await p.click('#invite-close');

  const guest = await newPage({ viewport: { width: 390, height: 844 } });
  const invitePath = new URL(url).pathname;
  await guest.p.goto(base + invitePath);
  await guest.p.waitForSelector('#invite-fields:not([hidden])');
  assert.match(await guest.p.textContent('#invite-sub'), /carol/);
  await checkPhoneLayout(guest.p);
  await guest.p.screenshot({ path: path.join(shots, 'screenshot-admin-invite-mobile.png'), fullPage: true });
  await guest.p.fill('#invite-password', 'carols-password');
  await guest.p.fill('#invite-repeat', 'carols-password');
  await guest.p.click('#invite-submit');
  await guest.p.waitForSelector('#invite-done:not([hidden])');
  await Promise.all([guest.p.waitForURL((u) => u.pathname === '/login'), guest.p.click('#invite-login')]);
  await signIn(guest.p, 'carol', 'carols-password');
  // Used: the link now says so.
  await guest.p.goto(base + invitePath);
  await guest.p.waitForSelector('#invite-error:not([hidden])');
  assert.match(await guest.p.textContent('#invite-error'), /used already/);
  assert.deepEqual(await guest.p.evaluate(() => window.__csp), []);
  await guest.ctx.close();

  // The only admin cannot become a user: refused, and said why.
  await p.click('#user-list [data-name="admin"] .role-btn');
  await p.waitForSelector('#users-error:not([hidden])');
  assert.match(await p.textContent('#users-error'), /only administrator/);
  // Bob becomes an admin.
  await p.click('#user-list [data-name="bob"] .role-btn');
  await p.waitForFunction(() => /Administrator/.test(document.querySelector('#user-list [data-name="bob"]').textContent));

  // Reset a password to a new one.
  await p.click('#user-list [data-name="bob"] .password-btn');
  await p.fill('#user-list [data-name="bob"] .user-panel input', 'bobs-new-password');
  await p.click('#user-list [data-name="bob"] .reset-set');
  await p.waitForFunction(() => /Password of bob changed/.test(document.getElementById('users-done').textContent));

  // Remove, with the confirmation in the row.
  await p.click('#user-list [data-name="carol"] .remove-btn');
  assert.match(await p.textContent('#user-list [data-name="carol"] .token-confirm-text'), /Remove carol\?/);
  await p.click('#user-list [data-name="carol"] .confirm-yes');
  await p.waitForFunction(() => !document.querySelector('#user-list [data-name="carol"]'));

  // Everyone's sessions.
  await p.waitForFunction(() => document.querySelectorAll('#all-session-list .session-item').length >= 1);

  // The audit: failures of bob only.
  await p.fill('#audit-user', 'bob');
  await p.selectOption('#audit-success', 'false');
  await p.click('#audit-apply');
  await p.waitForFunction(() => {
    const items = document.querySelectorAll('#audit-list .audit-item');
    return items.length >= 1 && [...items].every((i) => /bob/.test(i.textContent) && /failed/.test(i.textContent));
  });

  // At phone width, light and dark.
  await p.setViewportSize({ width: 390, height: 844 });
  await checkPhoneLayout(p);
  await p.screenshot({ path: path.join(shots, 'screenshot-admin-mobile.png'), fullPage: true });
  assert.deepEqual(await p.evaluate(() => window.__csp), []);
  await ctx.close();

  const dark = await newPage({ viewport: { width: 390, height: 844 }, colorScheme: 'dark' });
  await signIn(dark.p, 'admin', ADMIN_PASSWORD);
  await dark.p.goto(base + '/admin');
  await dark.p.waitForFunction(() => document.querySelectorAll('#user-list .user-item').length === 3);
  await checkPhoneLayout(dark.p);
  await dark.p.screenshot({ path: path.join(shots, 'screenshot-admin-mobile-dark.png'), fullPage: true });
  await dark.ctx.close();
});
