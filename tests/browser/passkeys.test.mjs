// Passkeys in real headless Chromium with its virtual WebAuthn authenticator (DevTools protocol
// `WebAuthn.*`): register a passkey on the account page, sign out, sign in with the passkey alone,
// remove it; and a ceremony at an address that is not one of the server's names (an IP address,
// another name) is refused.
//
//   HERMES_EDGE_BIN=target/debug/hermes-edge node --test passkeys.test.mjs
//
// WebAuthn needs a name and a certificate the browser accepts: the page is opened at
// https://localhost:PORT, and Chromium is told to accept the server's key
// (--ignore-certificate-errors-spki-list), since a page with a certificate error gets no WebAuthn.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import https from 'node:https';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const BIN = process.env.HERMES_EDGE_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ADMIN_PW = 'passkey-test-' + crypto.randomBytes(6).toString('hex');
const OTHER_NAME = 'not-this-server.test';

let tmp;
let server;
let serverLog = '';
let port;
let base; // https://localhost:PORT
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

/** One HTTPS request from node (not the browser). */
function request(method, url, headers = {}, body = null) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, rejectUnauthorized: false, timeout: 10000, lookup: (h, o, cb) => (o && o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) }, (res) => {
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

async function until(fn, ms, what, every = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => null);
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what + '\n--- server output ---\n' + serverLog);
    await sleep(every);
  }
}

/** The base64 SHA-256 of the server certificate's public key, for Chromium's SPKI allow-list. */
function serverSpki() {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const der = s.getPeerX509Certificate().publicKey.export({ type: 'spki', format: 'der' });
      s.end();
      resolve(crypto.createHash('sha256').update(der).digest('base64'));
    });
    s.on('error', reject);
  });
}

/** A page with a virtual platform authenticator (resident keys, user verification). */
async function pageWithAuthenticator() {
  const context = await browser.newContext({ viewport: { width: 1100, height: 800 } });
  const page = await context.newPage();
  page.on('dialog', (d) => d.dismiss().catch(() => {}));
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true },
  });
  return { context, page, cdp, authenticatorId };
}

async function passwordLogin(page, origin) {
  await page.goto(origin + '/login');
  await page.fill('#username', 'admin');
  await page.fill('#password', ADMIN_PW);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('#login-submit')]);
}

async function signOut(page) {
  const status = await page.evaluate(async () => (await fetch('/logout', { method: 'POST', headers: { Accept: 'application/json' } })).status);
  assert.equal(status, 204);
  assert.equal(await page.evaluate(async () => (await fetch('/api/me')).status), 401);
}

before(async () => {
  assert.ok(BIN, 'set HERMES_EDGE_BIN to the hermes-edge binary');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-passkeys-'));
  for (const d of ['certs', 'data']) fs.mkdirSync(path.join(tmp, d));
  port = await freePort();
  base = 'https://localhost:' + port;
  // Both tests sign in several times from 127.0.0.1, past the default per-address limit.
  const config = path.join(tmp, 'hermes-edge.toml');
  fs.writeFileSync(config, '[auth]\nlogin_attempts_per_minute_per_ip = 100\n[limits]\n# The tests send bursts no person does.\nrequests_per_second_per_ip = 1000\nrequest_burst_per_ip = 1000\n');
  const args = ['--config', config, '--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--upstream', 'http://127.0.0.1:9', '--www', path.join(repo, 'www')];
  server = spawn(BIN, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: ADMIN_PW, HERMES_HOME: path.join(tmp, 'hermes-home') }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout.on('data', (d) => { serverLog += d; });
  server.stderr.on('data', (d) => { serverLog += d; });
  await until(async () => {
    if (server.exitCode !== null) throw new Error('hermes-edge exited with ' + server.exitCode + ':\n' + serverLog);
    return (await request('GET', base + '/healthz')).status === 200;
  }, 60000, 'GET /healthz');
  const spki = await serverSpki();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--ignore-certificate-errors-spki-list=' + spki,
      // Another name for the same server, which it does not serve: its ceremonies are refused.
      '--host-resolver-rules=MAP ' + OTHER_NAME + ' 127.0.0.1'],
  });
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

test('a passkey registered on the account page signs in alone, and once removed it does not', { timeout: 90000 }, async () => {
  const { context, page, cdp, authenticatorId } = await pageWithAuthenticator();
  try {
    await passwordLogin(page, base);
    await page.goto(base + '/account');
    await page.waitForSelector('#passkey-form:not([hidden])');
    assert.equal(await page.isVisible('#passkeys-unavailable'), false);
    await page.waitForSelector('.token-empty');

    // Register.
    await page.fill('#passkey-name', 'Test laptop');
    await page.click('#passkey-add');
    await page.waitForSelector('.passkey-item');
    assert.equal(await page.isVisible('#passkeys-error'), false, await page.textContent('#passkeys-error'));
    assert.equal(await page.textContent('.passkey-item .passkey-name'), 'Test laptop');
    assert.match(await page.textContent('.passkey-item'), /for localhost/);
    assert.match(await page.textContent('.passkey-item .passkey-last-used'), /Never used/);
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0].isResidentCredential, true, 'the passkey is discoverable');
    assert.equal(credentials[0].rpId, 'localhost');

    // Sign out, then sign in with the passkey alone: no user name, no password. First through
    // the username field's autofill (conditional mediation), which the virtual authenticator
    // answers at once, as a person picking the passkey from the list would.
    await signOut(page);
    await page.goto(base + '/login?next=' + encodeURIComponent('/account'));
    await page.waitForURL((u) => u.pathname === '/account', { timeout: 20000 });
    let me = await page.evaluate(async () => (await fetch('/api/me')).json());
    assert.equal(me.username, 'admin');

    // Then with the button, in a browser without autofill of passkeys.
    await signOut(page);
    await page.addInitScript(() => { PublicKeyCredential.isConditionalMediationAvailable = async () => false; });
    await page.goto(base + '/login?next=' + encodeURIComponent('/account'));
    await page.waitForSelector('#passkey-signin:not([hidden])');
    assert.equal(new URL(page.url()).pathname, '/login');
    await Promise.all([page.waitForURL((u) => u.pathname === '/account', { timeout: 20000 }), page.click('#passkey-signin')]);
    me = await page.evaluate(async () => (await fetch('/api/me')).json());
    assert.equal(me.username, 'admin');
    // The same session cookie as the password form makes.
    const cookies = await context.cookies(base);
    const session = cookies.find((c) => c.name === '__Host-hermes_session');
    assert.ok(session && session.secure && session.httpOnly && session.sameSite === 'Strict', JSON.stringify(cookies));
    await page.waitForSelector('.passkey-item');
    assert.match(await page.textContent('.passkey-item .passkey-last-used'), /Last used/);
    const audit = await page.evaluate(async () => (await fetch('/api/admin/audit')).json());
    assert.equal(audit.entries[0].method, 'passkey');
    assert.equal(audit.entries[0].success, true);
    assert.equal(audit.entries[0].username, 'admin');
    assert.equal(audit.entries.filter((e) => e.method === 'passkey' && e.success).length, 2);

    // Remove: it asks first, and Cancel keeps it.
    await page.click('.passkey-remove');
    assert.match(await page.textContent('.token-confirm-text'), /Remove “Test laptop”\?/);
    await page.click('.passkey-cancel-remove');
    assert.equal(await page.locator('.passkey-item').count(), 1);
    await page.click('.passkey-remove');
    await page.click('.passkey-confirm-remove');
    await page.waitForSelector('.token-empty');
    assert.equal((await page.evaluate(async () => (await fetch('/api/passkeys')).json())).passkeys.length, 0);

    // The authenticator still holds the key, but the server no longer accepts it.
    await signOut(page);
    await page.goto(base + '/login');
    await page.waitForSelector('#passkey-signin:not([hidden])');
    await page.click('#passkey-signin');
    await page.waitForSelector('#login-error:not([hidden])');
    assert.match(await page.textContent('#login-error'), /not accepted/);
    assert.equal(new URL(page.url()).pathname, '/login');
    assert.equal(await page.evaluate(async () => (await fetch('/api/me')).status), 401);
  } finally {
    await context.close();
  }
});

test('ceremonies at an IP address or at a name this server does not serve are refused', { timeout: 60000 }, async () => {
  const { context, page } = await pageWithAuthenticator();
  try {
    // By IP address: the login page and the account page say why, and the password still works.
    const byIp = 'https://127.0.0.1:' + port;
    await page.goto(byIp + '/login');
    await page.waitForSelector('#passkey-note:not([hidden])');
    assert.equal(await page.isVisible('#passkey-signin'), false);
    assert.match(await page.textContent('#passkey-note'), /need this site.s name/);
    await passwordLogin(page, byIp);
    await page.goto(byIp + '/account');
    await page.waitForSelector('#passkeys-unavailable:not([hidden])');
    assert.match(await page.textContent('#passkeys-unavailable'), /Passkeys need a name/);
    assert.equal(await page.isVisible('#passkey-form'), false);
    let r = await page.evaluate(async () => {
      const res = await fetch('/api/passkeys/register', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"name":"x"}' });
      return { status: res.status, body: await res.json() };
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'passkeys_need_a_name');

    // At another name that reaches the same server: no RP id is made up from the Host header.
    const other = 'https://' + OTHER_NAME + ':' + port;
    await passwordLogin(page, other);
    await page.goto(other + '/account');
    await page.waitForSelector('#passkeys-unavailable:not([hidden])');
    assert.match(await page.textContent('#passkeys-unavailable'), /not offered at not-this-server\.test/);
    r = await page.evaluate(async () => {
      const res = await fetch('/login/passkey', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
      return { status: res.status, body: await res.json() };
    });
    assert.equal(r.status, 400);
    assert.equal(r.body.error.code, 'passkeys_not_offered_here');
    // The browser itself refuses an RP id that is not the page's own name.
    const err = await page.evaluate(async () => {
      try {
        await navigator.credentials.create({ publicKey: {
          rp: { id: 'localhost', name: 'x' }, user: { id: new Uint8Array(16), name: 'a', displayName: 'a' },
          challenge: new Uint8Array(32), pubKeyCredParams: [{ type: 'public-key', alg: -7 }] } });
        return 'created';
      } catch (e) { return e.name; }
    });
    assert.equal(err, 'SecurityError');
  } finally {
    await context.close();
  }

  // From another origin, with the right Host: refused before any ceremony starts.
  for (const p of ['/login/passkey', '/login/passkey/finish']) {
    const res = await request('POST', base + p, { Origin: 'https://evil.example', 'Content-Type': 'application/json' }, '{}');
    assert.equal(res.status, 403, p + ': ' + res.body);
  }
  // A finish without its ceremony (no cookie) is refused and counted as a failed sign-in.
  const res = await request('POST', base + '/login/passkey/finish', { Origin: base, 'Content-Type': 'application/json' },
    JSON.stringify({ credential: { id: 'AA', rawId: 'AA', type: 'public-key', response: { authenticatorData: 'AA', clientDataJSON: 'AA', signature: 'AA', userHandle: null }, extensions: {} } }));
  assert.equal(res.status, 401, res.body);
});
