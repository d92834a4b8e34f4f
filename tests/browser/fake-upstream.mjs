// A scripted stand-in for the Hermes API Server (OpenAI-compatible), for the browser tests.
//
// POST /v1/chat/completions answers with SSE chunks ~150 ms apart; what it says depends on the last user
// message (case-insensitive keywords):
//   "slow"      a never-ending stream (one chunk every 200 ms, capped at 120 s) whose client disconnect is
//               recorded in `disconnects`
//   "xss"       an answer containing <img src=x onerror=alert(1)> and <script>window.__pwned=1</script>
//   "tool"      an `event: hermes.tool.progress` running -> completed pair around the text
//   "code"      a fenced code block
//   "media"     a markdown link to /media/clip.mp4
//   "multiline" one chunk whose JSON is split across two `data:` lines
//   otherwise   a short greeting in several chunks
// GET /health and /v1/health answer {"status":"ok"}. Every request is recorded in `requests`.
// Usable as a module (startFakeUpstream) or alone: `node fake-upstream.mjs [port]`.

import http from 'node:http';
import { pathToFileURL } from 'node:url';

const CHUNK_MS = 150;
const SLOW_CHUNK_MS = 200;
const SLOW_MAX_MS = 120_000;

function lastUserText(body) {
  const msgs = Array.isArray(body && body.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) {
    if (msgs[i] && msgs[i].role === 'user') {
      const c = msgs[i].content;
      if (typeof c === 'string') return c;
      if (Array.isArray(c)) return c.filter((p) => p && p.type === 'text').map((p) => p.text).join(' ');
    }
  }
  return '';
}

function script(text) {
  const t = text.toLowerCase();
  if (t.includes('xss')) {
    return [
      { content: 'Here is an image: ' },
      { content: '<img src=x onerror=alert(1)>' },
      { content: ' and a script: ' },
      { content: '<script>window.__pwned=1</script>' },
      { content: ' **end of test**.' },
    ];
  }
  if (t.includes('code')) {
    return [
      { content: 'Here is a small function:\n\n' },
      { content: '```python\ndef greet(name: str) -> str:\n' },
      { content: '    """Say hello."""\n    return f"Hello, {name}!"\n' },
      { content: '```\n\nCall it with `greet("world")`.' },
    ];
  }
  if (t.includes('media')) {
    return [
      { content: 'The clip is ready: ' },
      { content: '[clip.mp4](/media/clip.mp4)' },
      { content: '.' },
    ];
  }
  const steps = [];
  if (t.includes('tool')) {
    steps.push({ tool: { tool: 'web_search', emoji: '🔍', label: 'web_search: "hermes edge"', toolCallId: 'call_1', status: 'running' } });
    steps.push({ content: 'Searching' });
    steps.push({ pause: true });
    steps.push({ tool: { tool: 'web_search', emoji: '🔍', label: 'web_search: "hermes edge"', toolCallId: 'call_1', status: 'completed' } });
  }
  if (t.includes('multiline')) steps.push({ multiline: ' (split data lines)' });
  steps.push(
    { content: (steps.length ? ' done. ' : '') + 'Hello' },
    { content: ' there!' },
    { content: ' I am the' },
    { content: ' fake upstream,' },
    { content: ' answering in' },
    { content: ' small steps.' },
  );
  return steps;
}

function chunk(content, finish) {
  return JSON.stringify({
    id: 'chatcmpl-fake',
    object: 'chat.completion.chunk',
    created: Math.floor(Date.now() / 1000),
    model: 'fake-model',
    choices: [{ index: 0, delta: finish ? {} : { content }, finish_reason: finish ? 'stop' : null }],
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function startFakeUpstream({ port = 0, apiKey = null } = {}) {
  const requests = [];
  const disconnects = [];
  const control = { failDeletes: false };

  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { if (raw.length < 20_000_000) raw += d; });
    req.on('end', () => handle(req, res, raw));
  });

  async function handle(req, res, raw) {
    let body = null;
    try { body = raw ? JSON.parse(raw) : null; } catch (_) { body = null; }
    const rec = { at: Date.now(), method: req.method, url: req.url, headers: req.headers, body };
    requests.push(rec);
    const path = (req.url || '/').split('?')[0];

    if (req.method === 'GET' && (path === '/health' || path === '/v1/health')) {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ status: 'ok', platform: 'fake-upstream' }));
      return;
    }
    if (req.method === 'GET' && path === '/v1/models') {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'hermes-agent', object: 'model' }] }));
      return;
    }
    // Hermes' `DELETE /api/sessions/{id}` (0.19): deleted, or 500 while `failDeletes` is set.
    if (req.method === 'DELETE' && path.startsWith('/api/sessions/')) {
      const id = decodeURIComponent(path.slice('/api/sessions/'.length));
      if (control.failDeletes) {
        res.writeHead(500, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'state.db is locked', type: 'server_error', code: 'internal' } }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ object: 'hermes.session.deleted', id, deleted: true }));
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'not found', type: 'invalid_request_error', code: 'not_found' } }));
      return;
    }
    if (apiKey && req.headers.authorization !== 'Bearer ' + apiKey) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'Invalid API key', type: 'invalid_request_error', code: 'invalid_api_key' } }));
      return;
    }
    if (!body || !Array.isArray(body.messages)) {
      res.writeHead(400, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'messages required', type: 'invalid_request_error' } }));
      return;
    }

    const text = lastUserText(body);
    let closed = false;
    res.on('close', () => {
      if (!res.writableFinished) {
        closed = true;
        disconnects.push({ at: Date.now(), message: text });
      }
    });
    const headers = { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' };
    if (req.headers['x-hermes-session-id']) headers['X-Hermes-Session-Id'] = req.headers['x-hermes-session-id'];
    res.writeHead(200, headers);
    res.write(': keepalive\n\n');

    if (text.toLowerCase().includes('slow')) {
      const start = Date.now();
      let n = 0;
      while (!closed && Date.now() - start < SLOW_MAX_MS) {
        res.write('data: ' + chunk((n === 0 ? 'Thinking slowly' : '') + ' …' + n) + '\n\n');
        n += 1;
        await sleep(SLOW_CHUNK_MS);
      }
      if (!closed) {
        res.write('data: ' + chunk('', true) + '\n\ndata: [DONE]\n\n');
        res.end();
      }
      return;
    }

    for (const step of script(text)) {
      if (closed) return;
      if (step.tool) {
        res.write('event: hermes.tool.progress\ndata: ' + JSON.stringify(step.tool) + '\n\n');
      } else if (step.multiline) {
        const json = chunk(step.multiline);
        const cut = json.indexOf('"choices"');
        res.write('data: ' + json.slice(0, cut) + '\ndata: ' + json.slice(cut) + '\n\n');
      } else if (step.content) {
        res.write('data: ' + chunk(step.content) + '\n\n');
      }
      await sleep(step.pause ? CHUNK_MS * 3 : CHUNK_MS);
    }
    if (closed) return;
    res.write('data: ' + chunk('', true) + '\n\n');
    res.write('data: [DONE]\n\n');
    res.end();
  }

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = server.address().port;
  return {
    port: actual,
    url: 'http://127.0.0.1:' + actual,
    requests,
    disconnects,
    control,
    chatRequests: () => requests.filter((r) => r.url.startsWith('/v1/chat/completions')),
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  const up = await startFakeUpstream({ port: Number(process.argv[2] || 0) });
  console.log('fake upstream listening on ' + up.url);
}
