// DEV ONLY — NOT the server and NOT used by chat.test.mjs (runs.test.mjs drives the page against it).
//
// A tiny in-memory imitation of hermes-edge's HTTP contract (docs/http-api.md), written so the page in
// www/ could be built and screenshotted before the Rust server existed. It takes the same flags as the
// real binary, so it can stand in for it by hand:
//
//   node tests/browser/mock-edge.mjs --listen 127.0.0.1:8443 --certs-dir /tmp/c --media /tmp/media \
//        [--upstream http://127.0.0.1:PORT]        (without --upstream it starts fake-upstream.mjs itself)
//   HERMES_EDGE_ADMIN_PASSWORD=pw (user "admin"; default password "admin")
//   MOCK_EDGE_MAX_RUNS=3, MOCK_EDGE_APPROVAL_TIMEOUT_SECS=60, MOCK_EDGE_TEST_HOOKS=1 (enables
//   POST /__mock/restart: every run ends as a restart would leave it, marked `interrupted`)
//
// Answers are runs (docs/http-api.md "Runs"): the mock drives Hermes' runs API (fake-upstream.mjs
// speaks it), keeps each run's answer so far and streams it to every attached reader.
//
// It serves HTTPS with a throw-away self-signed certificate made by `openssl` in --certs-dir.
// Nothing here is hardened: it exists only for local page development.

import https from 'node:https';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startFakeUpstream } from './fake-upstream.mjs';
import { SSEParser } from '../../www/js/sse.js';

const here = path.dirname(fileURLToPath(import.meta.url));

function flag(name, def) {
  const i = process.argv.indexOf('--' + name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const listen = flag('listen', '127.0.0.1:8443');
const [host, portStr] = [listen.slice(0, listen.lastIndexOf(':')), listen.slice(listen.lastIndexOf(':') + 1)];
const wwwDir = path.resolve(flag('www', path.join(here, '../../www')));
const mediaDir = flag('media', null);
const certsDir = flag('certs-dir', fs.mkdtempSync('/tmp/mock-edge-certs-'));
let upstream = flag('upstream', null);
const ADMIN_USER = 'admin';
const ADMIN_PW = process.env.HERMES_EDGE_ADMIN_PASSWORD || 'admin';
const API_KEY = process.env.HERMES_EDGE_API_KEY || null;

if (!upstream) upstream = (await startFakeUpstream({ apiKey: API_KEY })).url;

const CSP = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const SECURITY = {
  'Strict-Transport-Security': 'max-age=31536000',
  'Content-Security-Policy': CSP,
  'X-Frame-Options': 'DENY',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};
const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png', '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp', '.mp4': 'video/mp4', '.webm': 'video/webm',
  '.mp3': 'audio/mpeg', '.json': 'application/json', '.md': 'text/plain; charset=utf-8', '.txt': 'text/plain; charset=utf-8',
};

const sessions = new Map(); // token -> username
const conversations = new Map(); // id -> {id, owner, title, created_at, updated_at, messages}
const failures = [];

function send(res, status, headers, body) {
  res.writeHead(status, Object.assign({}, SECURITY, headers));
  res.end(body);
}
function json(res, status, obj, extra) {
  send(res, status, Object.assign({ 'Content-Type': 'application/json' }, extra || {}), JSON.stringify(obj));
}
function apiError(res, status, code, message, extra) {
  const err = { code, message };
  if (extra && extra.retry_after) err.retry_after = extra.retry_after;
  json(res, status, { error: err }, extra && extra.retry_after ? { 'Retry-After': String(extra.retry_after) } : {});
}

function serveFile(req, res, file) {
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) return apiError(res, 404, 'not_found', 'No such file.');
    const type = TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream';
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
    if (range && (range[1] || range[2])) {
      let start = range[1] ? Number(range[1]) : st.size - Number(range[2]);
      let end = range[1] && range[2] ? Number(range[2]) : st.size - 1;
      start = Math.max(0, start);
      end = Math.min(end, st.size - 1);
      res.writeHead(206, Object.assign({}, SECURITY, {
        'Content-Type': type, 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes',
        'Content-Range': `bytes ${start}-${end}/${st.size}`,
      }));
      fs.createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, Object.assign({}, SECURITY, { 'Content-Type': type, 'Content-Length': st.size, 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-cache' }));
    if (req.method === 'HEAD') return res.end();
    fs.createReadStream(file).pipe(res);
  });
}

function underDir(dir, rel) {
  const p = path.resolve(dir, '.' + path.posix.normalize('/' + decodeURIComponent(rel)));
  return p.startsWith(path.resolve(dir) + path.sep) ? p : null;
}

function cookieUser(req) {
  const m = /(?:^|;\s*)__Host-hermes_session=([^;]+)/.exec(req.headers.cookie || '');
  return m ? sessions.get(m[1]) || null : null;
}

function readBody(req, limit = 30_000_000) {
  return new Promise((resolve, reject) => {
    let size = 0;
    const parts = [];
    req.on('data', (d) => { size += d.length; if (size > limit) { reject(new Error('too large')); req.destroy(); } else parts.push(d); });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function safeNext(n) {
  return typeof n === 'string' && n.startsWith('/') && !n.startsWith('//') && !n.includes('\\') ? n : '/';
}

function summary(c) {
  const run = runs.get(c.id);
  return { id: c.id, title: c.title, created_at: c.created_at, updated_at: c.updated_at, run: run ? { status: run.approval ? 'waiting_approval' : 'running' } : null };
}

async function handleLogin(req, res) {
  const origin = req.headers.origin;
  if (origin ? origin !== 'https://' + req.headers.host : req.headers['sec-fetch-site'] !== 'same-origin') {
    return apiError(res, 403, 'cross_origin', 'This form can only be sent from this site\'s own login page.');
  }
  const raw = await readBody(req, 100_000);
  const wantsJson = (req.headers.accept || '').includes('application/json');
  let f;
  if ((req.headers['content-type'] || '').includes('application/json')) {
    try { f = JSON.parse(raw); } catch (_) { f = {}; }
  } else {
    f = Object.fromEntries(new URLSearchParams(raw));
  }
  const next = safeNext(f.next);
  const now = Date.now();
  while (failures.length && now - failures[0] > 60_000) failures.shift();
  if (failures.length >= 5) {
    const retry = Math.ceil((60_000 - (now - failures[0])) / 1000);
    if (wantsJson) return apiError(res, 429, 'rate_limited', 'Too many attempts.', { retry_after: retry });
    return send(res, 303, { Location: `/login?error=rate_limited&retry_after=${retry}&next=${encodeURIComponent(next)}` }, '');
  }
  if (f.username !== ADMIN_USER || f.password !== ADMIN_PW) {
    failures.push(now);
    if (wantsJson) return apiError(res, 401, 'invalid_credentials', 'Wrong username or password.');
    return send(res, 303, { Location: `/login?error=invalid&next=${encodeURIComponent(next)}` }, '');
  }
  const token = crypto.randomBytes(24).toString('hex');
  sessions.set(token, f.username);
  const remember = f.remember === 'on' || f.remember === 'true' || f.remember === true;
  const cookie = `__Host-hermes_session=${token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=${remember ? 2592000 : 86400}`;
  if (wantsJson) return json(res, 200, { ok: true, next }, { 'Set-Cookie': cookie });
  send(res, 303, { Location: next, 'Set-Cookie': cookie }, '');
}

// ------------------------------------------------------------ runs (docs/http-api.md "Runs")
// A run belongs to the mock, not to the browser request: it reads Hermes' run events itself, keeps
// the answer so far, and fans the stream out to every attached reader (POST /api/chat and
// GET /api/conversations/{id}/run), each starting with the `edge.run` snapshot.
const MAX_RUNS = Number(process.env.MOCK_EDGE_MAX_RUNS || 3);
const APPROVAL_TIMEOUT_SECS = Number(process.env.MOCK_EDGE_APPROVAL_TIMEOUT_SECS || 60);
const runs = new Map(); // conversation id -> run
// As the real edge does (src/chat/runs/driver.rs): the emoji by tool, the preview as the label.
const EMOJI = { terminal: '💻', process: '💻', execute_code: '🐍', read_file: '📄', write_file: '📄', web_search: '🌐' };

function upstreamHeaders() {
  const h = { 'Content-Type': 'application/json' };
  if (API_KEY) h.Authorization = 'Bearer ' + API_KEY;
  return h;
}

function publicStep(s) {
  return { id: s.id, tool: s.tool, emoji: s.emoji, label: s.label, preview: s.preview, status: s.status, duration: s.duration };
}

function snapshot(run) {
  return {
    conversation_id: run.conv.id, message_index: run.index, status: run.approval ? 'waiting_approval' : 'running',
    text: run.answer.content, steps: run.answer.tool_steps.map(publicStep), approval: run.approval, started_at: run.started_at,
  };
}

function sseHead(res, extra) {
  res.writeHead(200, Object.assign({}, SECURITY, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' }, extra || {}));
}

function addReader(run, res) {
  res.write('event: edge.run\ndata: ' + JSON.stringify(snapshot(run)) + '\n\n');
  run.readers.add(res);
  res.on('close', () => run.readers.delete(res));
}

function broadcast(run, text) {
  for (const r of run.readers) r.write(text);
}
const sendEvent = (run, type, obj) => broadcast(run, (type ? 'event: ' + type + '\n' : '') + 'data: ' + JSON.stringify(obj) + '\n\n');
const sendStep = (run, s) => sendEvent(run, 'hermes.tool.progress', publicStep(s));

function finishRun(run, error) {
  if (run.finished) return;
  run.finished = true;
  clearTimeout(run.approvalTimer);
  clearInterval(run.keepalive);
  for (const s of run.answer.tool_steps) if (s.status === 'running' || s.status === 'waiting_approval') { s.status = error ? 'failed' : 'completed'; sendStep(run, s); }
  run.answer.error = error || null;
  run.answer.state = 'done';
  run.conv.updated_at = new Date().toISOString();
  if (error) sendEvent(run, 'edge.error', error);
  broadcast(run, 'data: [DONE]\n\n');
  for (const r of run.readers) r.end();
  run.readers.clear();
  if (runs.get(run.conv.id) === run) runs.delete(run.conv.id);
}

function onHermesEvent(run, e) {
  const a = run.answer;
  switch (e.event) {
    case 'tool.started': {
      const s = { id: 'step-' + (a.tool_steps.length + 1), tool: e.tool, emoji: EMOJI[e.tool] || '🔧', label: (e.preview || e.tool || '').slice(0, 200), preview: e.preview || '', status: 'running', duration: null };
      a.tool_steps.push(s);
      sendStep(run, s);
      break;
    }
    case 'approval.request': {
      const s = [...a.tool_steps].reverse().find((x) => x.status === 'running');
      if (s) { s.status = 'waiting_approval'; sendStep(run, s); }
      run.waitingStep = s || null;
      run.approval = {
        command: e.command, description: e.description || '',
        choices: (e.choices || ['once', 'deny']).filter((c) => c === 'once' || c === 'session' || c === 'deny'),
        timeout_secs: APPROVAL_TIMEOUT_SECS, requested_at: Date.now(), // milliseconds, as the real edge sends it
      };
      sendEvent(run, 'edge.approval', run.approval);
      clearTimeout(run.approvalTimer);
      run.approvalTimer = setTimeout(() => approvalDone(run, 'timeout'), APPROVAL_TIMEOUT_SECS * 1000);
      break;
    }
    case 'approval.responded':
      approvalDone(run, e.choice);
      break;
    case 'tool.completed': {
      const s = a.tool_steps.find((x) => x.tool === e.tool && !x.closed) || a.tool_steps.find((x) => !x.closed);
      if (!s) break;
      s.closed = true;
      s.duration = typeof e.duration === 'number' ? e.duration : null;
      s.status = s.status === 'denied' ? 'denied' : (e.error ? 'failed' : 'completed');
      sendStep(run, s);
      break;
    }
    case 'message.delta':
      if (typeof e.delta === 'string' && e.delta) {
        const d = a.content ? e.delta : e.delta.replace(/^\n\n/, '');
        if (!d) break;
        a.content += d;
        sendEvent(run, null, { id: 'chatcmpl-mock', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: d }, finish_reason: null }] });
      }
      break;
    case 'run.completed':
      finishRun(run, null);
      break;
    case 'run.failed':
      finishRun(run, { code: 'upstream_error', message: 'Hermes reported an error: ' + (e.error || 'unknown') });
      break;
    case 'run.cancelled':
      finishRun(run, { code: 'stopped', message: 'Stopped.' });
      break;
    default:
      break;
  }
}

function approvalDone(run, choice) {
  if (!run.approval) return;
  clearTimeout(run.approvalTimer);
  run.approval = null;
  const s = run.waitingStep;
  if (s) { s.status = choice === 'deny' || choice === 'timeout' ? 'denied' : 'running'; sendStep(run, s); }
  sendEvent(run, 'edge.approval.done', { choice });
}

/** Read the Hermes run's events to their end, whoever is watching. */
async function followHermesRun(run) {
  let res;
  try {
    res = await fetch(new URL('/v1/runs/' + run.hermesId + '/events', upstream), { headers: upstreamHeaders() });
  } catch (_) { res = null; }
  if (!res || !res.ok) { finishRun(run, { code: 'stream_broken', message: 'Lost the run at Hermes.' }); return; }
  const parser = new SSEParser((ev) => {
    let e;
    try { e = JSON.parse(ev.data); } catch (_) { return; }
    if (!run.finished) onHermesEvent(run, e);
  });
  const decoder = new TextDecoder();
  try {
    for await (const chunk of res.body) parser.push(decoder.decode(chunk, { stream: true }));
  } catch (_) { /* broken */ }
  if (!run.finished) finishRun(run, { code: 'stream_broken', message: 'The connection to Hermes broke.' });
}

async function handleChat(req, res, user) {
  let body;
  try { body = JSON.parse(await readBody(req)); } catch (e) {
    return apiError(res, e.message === 'too large' ? 413 : 400, e.message === 'too large' ? 'too_large' : 'bad_body', 'The request body is not valid JSON.');
  }
  // Dev aid: a message containing "ratelimit" gets the edge's 429, to look at the banner.
  if (typeof body.message === 'string' && body.message.includes('ratelimit')) {
    return apiError(res, 429, 'rate_limited', 'Too many messages; wait a little.', { retry_after: 42 });
  }
  const images = Array.isArray(body.images) ? body.images : [];
  if (images.length > 4 || images.some((u) => typeof u !== 'string' || !u.startsWith('data:image/') || u.length > 7_000_000)) {
    return apiError(res, 413, 'image_too_large', 'Up to 4 images of at most 5 MiB each.');
  }
  const mine = [...runs.values()].filter((r) => r.conv.owner === user).length;
  if (mine >= MAX_RUNS) {
    return apiError(res, 429, 'too_many_runs', `You already have ${mine} answers being written, the most at once.`, { retry_after: 5 });
  }
  let conv;
  let created = false;
  if (body.conversation_id) {
    conv = conversations.get(body.conversation_id);
    if (!conv || conv.owner !== user) return apiError(res, 404, 'not_found', 'No such conversation.');
    if (runs.has(conv.id)) return apiError(res, 409, 'run_in_progress', 'An answer is already being written in this conversation.');
  } else {
    const now = new Date().toISOString();
    conv = { id: crypto.randomUUID(), owner: user, title: (body.message || 'New chat').split('\n')[0].slice(0, 60), created_at: now, updated_at: now, messages: [] };
    created = true;
  }
  const before = conv.messages.slice();
  if (body.regenerate) {
    while (conv.messages.length && conv.messages[conv.messages.length - 1].role === 'assistant') conv.messages.pop();
    if (!conv.messages.length) return apiError(res, 400, 'nothing_to_regenerate', 'Nothing to regenerate.');
  } else {
    if (typeof body.message !== 'string' || (!body.message.trim() && !images.length)) return apiError(res, 400, 'empty_message', 'message is required.');
    if (Number.isInteger(body.edit_from)) {
      const target = conv.messages[body.edit_from];
      if (!target || target.role !== 'user') return apiError(res, 400, 'bad_edit_from', 'edit_from must be the index of a user message.');
      conv.messages = conv.messages.slice(0, body.edit_from);
    }
    conv.messages.push({ role: 'user', content: body.message, images, tool_steps: [], error: null, created_at: new Date().toISOString() });
  }
  const history = conv.messages.slice(0, -1).map((m) => ({ role: m.role, content: m.content }));
  const last = conv.messages[conv.messages.length - 1];
  let started;
  try {
    const r = await fetch(new URL('/v1/runs', upstream), {
      method: 'POST', headers: upstreamHeaders(),
      body: JSON.stringify({ input: last.content, conversation_history: history, session_id: 'web-' + conv.id }),
    });
    if (r.status !== 202) throw new Error('status ' + r.status);
    started = await r.json();
  } catch (e) {
    conv.messages = before;
    return apiError(res, 502, 'upstream_unreachable', 'Hermes is not reachable (' + e.message + '). Is the agent running?');
  }
  if (created) conversations.set(conv.id, conv);
  const answer = { role: 'assistant', content: '', images: [], tool_steps: [], error: null, state: 'running', created_at: new Date().toISOString() };
  conv.messages.push(answer);
  conv.updated_at = new Date().toISOString();
  const run = {
    conv, answer, index: conv.messages.length - 1, hermesId: started.run_id, started_at: new Date().toISOString(),
    readers: new Set(), approval: null, approvalTimer: null, waitingStep: null, finished: false,
    keepalive: setInterval(() => broadcast(run, ': keepalive\n\n'), 15000),
  };
  runs.set(conv.id, run);
  sseHead(res, { 'X-Conversation-Id': conv.id });
  addReader(run, res);
  followHermesRun(run);
}

function attachRun(res, conv) {
  const run = runs.get(conv.id);
  if (!run) return send(res, 204, {}, '');
  sseHead(res);
  addReader(run, res);
}

async function approveRun(req, res, conv) {
  let b;
  try { b = JSON.parse(await readBody(req, 10_000)); } catch (_) { return apiError(res, 400, 'bad_body', 'Invalid JSON.'); }
  if (!['once', 'session', 'deny'].includes(b && b.choice)) return apiError(res, 400, 'bad_choice', 'choice is once, session or deny.');
  const run = runs.get(conv.id);
  if (!run || !run.approval) return apiError(res, 409, 'no_approval', 'Nothing is waiting for an answer.');
  const r = await fetch(new URL('/v1/runs/' + run.hermesId + '/approval', upstream), { method: 'POST', headers: upstreamHeaders(), body: JSON.stringify({ choice: b.choice }) });
  if (r.status === 409) return apiError(res, 409, 'no_approval', 'Nothing is waiting for an answer.');
  if (!r.ok) return apiError(res, 502, 'upstream_error', 'Hermes answered ' + r.status + '.');
  return json(res, 200, { ok: true });
}

async function stopRun(res, conv) {
  const run = runs.get(conv.id);
  if (!run) return apiError(res, 404, 'no_run', 'Nothing is running in this conversation.');
  await fetch(new URL('/v1/runs/' + run.hermesId + '/stop', upstream), { method: 'POST', headers: upstreamHeaders() }).catch(() => null);
  // Hermes ends the run with run.cancelled; if it does not within 3 s, end it here.
  setTimeout(() => finishRun(run, { code: 'stopped', message: 'Stopped.' }), 3000);
  return json(res, 200, { ok: true });
}

/** Test aid: what a restart of the edge does to runs (their answers are kept, marked interrupted). */
function simulateRestart() {
  for (const run of runs.values()) {
    run.finished = true;
    clearTimeout(run.approvalTimer);
    clearInterval(run.keepalive);
    run.answer.state = 'done';
    run.answer.error = { code: 'interrupted', message: 'The server stopped while this answer was being written.' };
    for (const r of run.readers) r.destroy();
    fetch(new URL('/v1/runs/' + run.hermesId + '/stop', upstream), { method: 'POST', headers: upstreamHeaders() }).catch(() => null);
  }
  runs.clear();
}

async function route(req, res) {
  const url = new URL(req.url, 'https://x');
  const p = url.pathname;
  const m = req.method;

  if (p === '/healthz') {
    let reachable = false;
    try { reachable = (await fetch(new URL('/health', upstream), { signal: AbortSignal.timeout(1000) })).ok; } catch (_) { reachable = false; }
    return json(res, 200, { status: 'ok', version: '0.0.0-mock', upstream: { url: upstream, reachable } });
  }
  if (p === '/login' && m === 'GET') return serveFile(req, res, path.join(wwwDir, 'login.html'));
  if (p === '/login' && m === 'POST') return handleLogin(req, res);
  // Like the real router: any non-HTML file of www/ is public at the site root (/js/main.js, /vendor/...).
  if ((m === 'GET' || m === 'HEAD') && p !== '/' && !p.endsWith('.html') && !p.startsWith('/media/')) {
    const f = underDir(wwwDir, p.slice(1));
    if (f && fs.existsSync(f) && fs.statSync(f).isFile()) return serveFile(req, res, f);
  }

  const user = cookieUser(req);
  if (p === '/__mock/restart' && m === 'POST' && user && process.env.MOCK_EDGE_TEST_HOOKS === '1') {
    simulateRestart();
    return json(res, 200, { ok: true });
  }
  const isApi = p.startsWith('/api/') || p.startsWith('/v1/');
  if (!user) {
    if (isApi) return apiError(res, 401, 'login_required', 'Sign in first.');
    if (p === '/logout') return send(res, 303, { Location: '/login' }, '');
    return send(res, 303, { Location: '/login?next=' + encodeURIComponent(p + url.search) }, '');
  }
  if (!['GET', 'HEAD'].includes(m)) {
    const origin = req.headers.origin;
    // Strict like the real server: an Origin header, when present, must be this site.
    const same = origin ? origin === 'https://' + req.headers.host : req.headers['sec-fetch-site'] === 'same-origin';
    if (!same) return apiError(res, 403, 'cross_origin', 'Cross-origin request refused.');
  }
  if (p === '/logout' && m === 'POST') {
    const mm = /(?:^|;\s*)__Host-hermes_session=([^;]+)/.exec(req.headers.cookie || '');
    if (mm) sessions.delete(mm[1]);
    return send(res, 303, { Location: '/login', 'Set-Cookie': '__Host-hermes_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0' }, '');
  }
  if (p === '/api/me') return json(res, 200, { username: user, role: 'admin' });
  if (p === '/api/chat' && m === 'POST') return handleChat(req, res, user);
  if (p === '/api/conversations' && m === 'GET') {
    const list = [...conversations.values()].filter((c) => c.owner === user)
      .sort((a, b) => b.updated_at.localeCompare(a.updated_at)).map(summary);
    return json(res, 200, { conversations: list });
  }
  const rm = /^\/api\/conversations\/([^/]+)\/run(\/approval|\/stop)?$/.exec(p);
  if (rm) {
    const c = conversations.get(decodeURIComponent(rm[1]));
    if (!c || c.owner !== user) return apiError(res, 404, 'not_found', 'No such conversation.');
    if (!rm[2] && m === 'GET') return attachRun(res, c);
    if (rm[2] === '/approval' && m === 'POST') return approveRun(req, res, c);
    if (rm[2] === '/stop' && m === 'POST') return stopRun(res, c);
    return apiError(res, 405, 'method_not_allowed', 'Method not allowed.');
  }
  const cm = /^\/api\/conversations\/([^/]+)$/.exec(p);
  if (cm) {
    const c = conversations.get(decodeURIComponent(cm[1]));
    if (!c || c.owner !== user) return apiError(res, 404, 'not_found', 'No such conversation.');
    if (m === 'GET') {
      return json(res, 200, Object.assign(summary(c), {
        messages: c.messages.map((x, i) => Object.assign({ index: i, role: x.role, content: x.content, images: x.images, tool_steps: x.tool_steps.map(publicStep), error: x.error, created_at: x.created_at }, x.role === 'assistant' ? { state: x.state || 'done' } : {})),
      }));
    }
    if (m === 'PATCH') {
      let b;
      try { b = JSON.parse(await readBody(req, 10_000)); } catch (_) { return apiError(res, 400, 'bad_request', 'Invalid JSON.'); }
      if (typeof b.title !== 'string' || !b.title.trim()) return apiError(res, 400, 'bad_request', 'title is required.');
      c.title = b.title.trim().slice(0, 200);
      c.updated_at = new Date().toISOString();
      return json(res, 200, summary(c));
    }
    if (m === 'DELETE') {
      const run = runs.get(c.id);
      if (run) { fetch(new URL('/v1/runs/' + run.hermesId + '/stop', upstream), { method: 'POST', headers: upstreamHeaders() }).catch(() => null); finishRun(run, { code: 'stopped', message: 'Deleted.' }); }
      conversations.delete(c.id);
      return json(res, 200, { deleted: true, hermes_session: 'deleted' });
    }
  }
  if (p.startsWith('/media/') && mediaDir) {
    const f = underDir(mediaDir, p.slice('/media/'.length));
    return f ? serveFile(req, res, f) : apiError(res, 404, 'not_found', 'No such file.');
  }
  if (isApi) return apiError(res, 404, 'not_found', 'No such route.');
  if (p === '/view') return serveFile(req, res, path.join(wwwDir, 'view.html'));
  return serveFile(req, res, path.join(wwwDir, 'index.html'));
}

fs.mkdirSync(certsDir, { recursive: true });
const keyFile = path.join(certsDir, 'mock.key');
const certFile = path.join(certsDir, 'mock.crt');
if (!fs.existsSync(certFile)) {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
}
const server = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }, (req, res) => {
  route(req, res).catch((e) => { try { apiError(res, 500, 'internal', String(e)); } catch (_) { /* gone */ } });
});
server.listen(Number(portStr), host, () => {
  console.log(`ready https://${host}:${server.address().port}/ (mock-edge, dev only; upstream ${upstream})`);
});
