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
//   "echo:…"    (at the start, case as sent) the rest of the message, verbatim, in two chunks
//   otherwise   a short greeting in several chunks
// GET /health and /v1/health answer {"status":"ok"}. Every request is recorded in `requests`.
//
// It also speaks Hermes' runs API (docs/hermes-notes.md section h): GET /v1/capabilities, POST /v1/runs
// (202 {run_id}), GET /v1/runs/{id} (status), GET /v1/runs/{id}/events (`data: {json}` lines, one reader,
// events kept until it connects, `: stream closed` at the end; a reader that leaves drops the queue, as
// Hermes does), POST /v1/runs/{id}/approval {choice}, POST /v1/runs/{id}/stop. What a run does depends
// on its last user text:
//   "approve"   tool.started terminal `rm -rf /tmp/hermes-demo/build`, approval.request, then waits for
//               POST .../approval (or `control.approvalTimeoutMs`, default 60 s: denied without an
//               approval.responded, as Hermes does), tool.completed (error for deny/timeout), text
//   "slow N s"  a delta every 200 ms for N seconds (default 120 s), then run.completed
//   "fail"      run.failed
//   otherwise   the answers of the chat completions above ("tool": tool.started web_search / tool.completed)
// A stop ends any of them with run.cancelled; `runs` holds every run ({id, text, stopped, approvals}).
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

/** "echo:<text>": the text in two pieces (split mid-way, as streaming splits it). */
function echo(text) {
  if (!text.startsWith('echo:')) return null;
  const rest = text.slice(5);
  const mid = Math.floor(rest.length / 2);
  return [{ content: rest.slice(0, mid) }, { content: rest.slice(mid) }];
}

function script(text) {
  const echoed = echo(text);
  if (echoed) return echoed;
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
  const control = { failDeletes: false, approvalTimeoutMs: 60_000 };
  const runs = new Map();

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
    if (path === '/v1/capabilities' || path === '/v1/runs' || path.startsWith('/v1/runs/')) {
      if (apiKey && req.headers.authorization !== 'Bearer ' + apiKey) {
        res.writeHead(401, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'Invalid API key', type: 'invalid_request_error', code: 'invalid_api_key' } }));
        return;
      }
      handleRuns(req, res, path, body);
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

  // ------------------------------------------------------------ the runs API
  function jsonOut(res, status, obj) {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(obj));
  }

  function runInputText(body) {
    const inp = body && body.input;
    if (typeof inp === 'string') return inp;
    if (Array.isArray(inp) && inp.length) {
      const c = inp[inp.length - 1] && inp[inp.length - 1].content;
      if (typeof c === 'string') return c;
      if (Array.isArray(c)) return c.filter((p) => p && (p.type === 'text' || p.type === 'input_text')).map((p) => p.text).join(' ');
    }
    return '';
  }

  function handleRuns(req, res, path, body) {
    if (req.method === 'GET' && path === '/v1/capabilities') {
      return jsonOut(res, 200, {
        object: 'hermes.api_server.capabilities', platform: 'hermes-agent', model: 'hermes-agent',
        features: { chat_completions: true, chat_completions_streaming: true, run_submission: true, run_status: true,
          run_events_sse: true, run_stop: true, run_approval_response: true, tool_progress_events: true, approval_events: true },
        endpoints: { runs: { method: 'POST', path: '/v1/runs' }, run_status: { method: 'GET', path: '/v1/runs/{run_id}' },
          run_events: { method: 'GET', path: '/v1/runs/{run_id}/events' }, run_approval: { method: 'POST', path: '/v1/runs/{run_id}/approval' },
          run_stop: { method: 'POST', path: '/v1/runs/{run_id}/stop' } },
      });
    }
    if (req.method === 'POST' && path === '/v1/runs') {
      if (!body || body.input == null) return jsonOut(res, 400, { error: { message: "Missing 'input' field", type: 'invalid_request_error' } });
      const id = 'run_' + [...Array(32)].map(() => Math.floor(Math.random() * 16).toString(16)).join('');
      const run = { id, text: runInputText(body), body, status: 'running', queue: [], reader: null, queueGone: false,
        ended: false, stopped: false, pending: null, approvals: [], output: null, created_at: Date.now() / 1000 };
      runs.set(id, run);
      const headers = { 'Content-Type': 'application/json' };
      if (req.headers['x-hermes-session-key']) headers['X-Hermes-Session-Key'] = req.headers['x-hermes-session-key'];
      res.writeHead(202, headers);
      res.end(JSON.stringify({ run_id: id, status: 'started' }));
      runScript(run).catch(() => {});
      return;
    }
    const m = /^\/v1\/runs\/([^/]+)(\/events|\/approval|\/stop)?$/.exec(path);
    const run = m && runs.get(m[1]);
    const notFound = () => jsonOut(res, 404, { error: { message: 'Run not found', type: 'invalid_request_error', code: 'run_not_found' } });
    if (!run) return notFound();
    if (req.method === 'GET' && !m[2]) {
      return jsonOut(res, 200, { object: 'hermes.run', run_id: run.id, status: run.status, output: run.output || undefined });
    }
    if (req.method === 'GET' && m[2] === '/events') {
      if (run.queueGone || run.reader) return notFound();
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      run.reader = res;
      res.on('close', () => {
        if (!res.writableFinished) { run.queueGone = true; run.reader = null; }
      });
      for (const line of run.queue.splice(0)) res.write(line);
      if (run.ended) closeEvents(run);
      return;
    }
    if (req.method === 'POST' && m[2] === '/approval') {
      if (run.ended) return jsonOut(res, 409, { error: { message: 'Run is not active', code: 'approval_not_active' } });
      let choice = String((body && body.choice) || '').toLowerCase();
      if (['approve', 'approved', 'allow'].includes(choice)) choice = 'once';
      if (!['once', 'session', 'always', 'deny'].includes(choice)) return jsonOut(res, 400, { error: { message: 'Invalid choice', code: 'invalid_approval_choice' } });
      if (!run.pending) return jsonOut(res, 409, { error: { message: 'No approval pending', code: 'approval_not_pending' } });
      run.approvals.push(choice);
      const p = run.pending;
      run.pending = null;
      p(choice);
      return jsonOut(res, 200, { object: 'hermes.run.approval_response', run_id: run.id, choice, resolved: 1 });
    }
    if (req.method === 'POST' && m[2] === '/stop') {
      if (run.ended) return notFound();
      run.stopped = true;
      run.status = 'stopping';
      if (run.pending) { const p = run.pending; run.pending = null; p('stop'); }
      return jsonOut(res, 200, { run_id: run.id, status: 'stopping' });
    }
    return jsonOut(res, 405, { error: { message: 'method not allowed' } });
  }

  function emit(run, obj) {
    if (run.queueGone) return;
    const line = 'data: ' + JSON.stringify(Object.assign({}, obj, { run_id: run.id, timestamp: Date.now() / 1000 })) + '\n\n';
    if (run.reader) run.reader.write(line);
    else run.queue.push(line);
  }

  function closeEvents(run) {
    if (run.reader) {
      run.reader.end(': stream closed\n\n');
      run.reader = null;
      run.queueGone = true;
    }
  }

  function endRun(run, obj, status) {
    emit(run, obj);
    run.status = status;
    run.ended = true;
    closeEvents(run);
  }

  async function runScript(run) {
    const t = run.text.toLowerCase();
    const cancelled = () => {
      if (!run.stopped) return false;
      endRun(run, { event: 'run.cancelled' }, 'cancelled');
      return true;
    };
    const say = async (parts) => {
      for (const d of parts) {
        if (cancelled()) return false;
        emit(run, { event: 'message.delta', delta: d });
        run.output = (run.output || '') + d;
        await sleep(CHUNK_MS);
      }
      return true;
    };
    await sleep(50);
    if (run.text.startsWith('echo:')) {
      if (!await say(echo(run.text).map((p) => p.content))) return;
      endRun(run, { event: 'run.completed', output: run.output }, 'completed');
      return;
    }
    if (t.includes('approve')) {
      const command = 'rm -rf /tmp/hermes-demo/build';
      emit(run, { event: 'tool.started', tool: 'terminal', preview: command });
      await sleep(CHUNK_MS);
      emit(run, { event: 'approval.request', command, pattern_key: 'delete in root path', pattern_keys: ['delete in root path'],
        description: 'delete in root path', allow_permanent: true, choices: ['once', 'session', 'always', 'deny'] });
      run.status = 'waiting_for_approval';
      const choice = await new Promise((resolve) => {
        run.pending = resolve;
        setTimeout(() => { if (run.pending === resolve) { run.pending = null; resolve('timeout'); } }, control.approvalTimeoutMs);
      });
      run.status = run.stopped ? 'stopping' : 'running';
      if (choice !== 'timeout' && choice !== 'stop') emit(run, { event: 'approval.responded', choice, resolved: 1 });
      const allowed = choice === 'once' || choice === 'session' || choice === 'always';
      emit(run, { event: 'tool.completed', tool: 'terminal', duration: allowed ? 0.038 : 0.001, error: !allowed });
      if (cancelled()) return;
      run.output = '';
      if (!await say(allowed ? ['\n\nDone: ', 'the build folder ', 'is gone.'] : ['\n\nI did not run it: ', 'the command was denied.'])) return;
      endRun(run, { event: 'run.completed', output: run.output.replace(/^\n\n/, ''), usage: { input_tokens: 20, output_tokens: 7, total_tokens: 27 } }, 'completed');
      return;
    }
    if (t.includes('slow')) {
      const m = /slow\s+(\d+)\s*s/.exec(t);
      const ms = m ? Number(m[1]) * 1000 : SLOW_MAX_MS;
      const start = Date.now();
      let n = 0;
      while (Date.now() - start < ms) {
        if (cancelled()) return;
        const d = (n === 0 ? 'Thinking slowly' : '') + ' …' + n;
        emit(run, { event: 'message.delta', delta: d });
        run.output = (run.output || '') + d;
        n += 1;
        await sleep(SLOW_CHUNK_MS);
      }
      if (!await say([' Finished.'])) return;
      endRun(run, { event: 'run.completed', output: run.output }, 'completed');
      return;
    }
    if (t.includes('fail')) {
      await sleep(CHUNK_MS);
      endRun(run, { event: 'run.failed', error: 'HTTP 500: fake provider failure' }, 'failed');
      return;
    }
    // The same answers as the chat completions above, as run events.
    let afterTool = false;
    for (const step of script(run.text)) {
      if (cancelled()) return;
      if (step.tool) {
        if (step.tool.status === 'running') emit(run, { event: 'tool.started', tool: step.tool.tool, preview: 'hermes edge' });
        else { emit(run, { event: 'tool.completed', tool: step.tool.tool, duration: 0.45, error: false }); afterTool = true; }
      } else {
        const d = step.content || step.multiline;
        if (d) {
          // Hermes starts the text after a tool call with a blank line (_stream_needs_break).
          const delta = afterTool ? '\n\n' + d : d;
          afterTool = false;
          emit(run, { event: 'message.delta', delta });
          run.output = (run.output || '') + delta;
        }
      }
      await sleep(step.pause ? CHUNK_MS * 3 : CHUNK_MS);
    }
    if (cancelled()) return;
    endRun(run, { event: 'run.completed', output: run.output }, 'completed');
  }

  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = server.address().port;
  return {
    port: actual,
    url: 'http://127.0.0.1:' + actual,
    requests,
    disconnects,
    control,
    runs,
    runRequests: () => requests.filter((r) => r.method === 'POST' && r.url === '/v1/runs'),
    chatRequests: () => requests.filter((r) => r.url.startsWith('/v1/chat/completions')),
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  const up = await startFakeUpstream({ port: Number(process.argv[2] || 0) });
  console.log('fake upstream listening on ' + up.url);
}
