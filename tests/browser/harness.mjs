// What a browser test needs to run the real hermes-edge binary: a free port, the binary started on a
// temporary data, certificate and media folder against a fake upstream, waiting helpers, and a
// browser context that records CSP violations. (chat.test.mjs keeps its own copies of these; new
// test files use this module.)

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import https from 'node:https';
import { fileURLToPath } from 'node:url';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One HTTPS request from node (not the browser): no cookie unless given, no Origin. */
export function request(method, url, headers = {}, body = null) {
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
export async function until(fn, ms, what, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('timed out waiting for ' + what);
    await sleep(every);
  }
}

/**
 * hermes-edge on a free loopback port against `upstreamUrl`, serving this tree's www/ (unless
 * HERMES_EDGE_EMBEDDED_WWW is set), with a fresh data, certs and media folder.
 * Returns { base, tmp, media, log(), stop() }.
 */
export async function startEdge({ upstreamUrl, apiKey, adminPassword }) {
  const bin = process.env.HERMES_EDGE_BIN;
  if (!bin) throw new Error('set HERMES_EDGE_BIN to the hermes-edge binary');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'hermes-edge-browser-'));
  for (const d of ['certs', 'data', 'media']) fs.mkdirSync(path.join(tmp, d));
  const port = await freePort();
  const base = 'https://127.0.0.1:' + port;
  const args = ['--listen', '127.0.0.1:' + port, '--http-listen', 'off', '--certs-dir', path.join(tmp, 'certs'),
    '--data-dir', path.join(tmp, 'data'), '--media', path.join(tmp, 'media'), '--upstream', upstreamUrl];
  if (!process.env.HERMES_EDGE_EMBEDDED_WWW) args.push('--www', path.join(repo, 'www'));
  let log = '';
  const child = spawn(bin, args, {
    env: Object.assign({}, process.env, { HERMES_EDGE_ADMIN_PASSWORD: adminPassword, HERMES_EDGE_API_KEY: apiKey }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  let exited = null;
  child.on('exit', (code) => { exited = code; });
  await until(async () => {
    if (exited !== null) throw new Error('hermes-edge exited with ' + exited + ':\n' + log);
    const h = await request('GET', base + '/healthz').catch(() => null);
    return h && h.status === 200;
  }, 60000, 'GET /healthz', 200).catch((e) => { throw new Error(e.message + '\n--- server output ---\n' + log); });
  return {
    base,
    tmp,
    media: path.join(tmp, 'media'),
    log: () => log,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await Promise.race([new Promise((r) => child.once('exit', r)), sleep(5000)]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      if (!process.env.KEEP_TMP) fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** A browser context that records CSP violations in `window.__csp`. */
export async function newContext(browser, opts) {
  const ctx = await browser.newContext(Object.assign({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } }, opts || {}));
  await ctx.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sourceFile || '') + ':' + (e.lineNumber || ''));
    });
  });
  return ctx;
}

export async function login(p, base, user, password, remember = true) {
  await p.goto(base + '/login');
  await p.fill('#username', user);
  await p.fill('#password', password);
  if (remember) await p.check('#remember');
  await Promise.all([p.waitForNavigation(), p.click('#login-submit')]);
}
