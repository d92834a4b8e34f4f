/*
 * Runs (docs/http-api.md, "Runs: the chat stream"): an answer belongs to the server, not to this tab.
 * This module follows the shown conversation's run live: the stream of `POST /api/chat` or of
 * `GET /api/conversations/{id}/run` (attach), whose first event `edge.run` replaces the answer with
 * everything so far. When the stream drops (network, a phone asleep) it attaches again, with a bounded
 * backoff, at once when the page is visible or online again. Stop is `POST .../run/stop`; leaving the
 * page or switching conversations only stops reading (detach). Approvals are answered with
 * `POST .../run/approval`.
 */

import { state } from './state.js';
import { api } from './api.js';
import { readSSE } from './sse.js';
import { clearBanner, rateLimited, upstreamUnreachable, sessionExpired, errorText } from './banners.js';
import { renderAll, scheduleRender, scrollToBottom } from './messages.js';
import { setBusy } from './composer.js';
import { refreshConversations, loadConversation } from './conversations.js';

const RETRY_MS = [1000, 2000, 4000, 8000, 15000];
const MAX_ATTEMPTS = 12; // about two and a half minutes of trying, then give up until visible/online again
const STALL_MS = 45000; // nothing at all (not even a keepalive) for this long: attach again
const STOP_GRACE_MS = 5000; // after a stop was accepted, wait this long for the stream to say so
const REVISIT_MS = 5000; // visible again after at least this long hidden: attach again (fresh snapshot)

const runUrl = (id) => '/api/conversations/' + encodeURIComponent(id) + '/run';

/** One run followed live. `ac` is the AbortController of the current request (POST or attach). */
class Stream {
  constructor(convId, msg) {
    this.convId = convId;
    this.msg = msg;
    this.ac = null;
    this.timer = null;
    this.attempts = 0;
    this.closed = false;
    this.stopRequested = false;
    this.lastByte = Date.now();
    this.parked = false; // waiting for the page to be visible / online before trying again
  }
  abort() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ac) this.ac.abort();
  }
}

export function newAnswer() {
  return { role: 'assistant', content: '', tool_steps: [], error: null, streaming: true, approval: null };
}

/** Follow a run from now on (the caller starts the request). */
export function beginStream(convId, msg) {
  if (state.stream) detach();
  const s = new Stream(convId, msg);
  state.stream = s;
  msg.streaming = true;
  setBusy(true);
  return s;
}

/** Stop following (switching conversations, new chat). The run goes on at the server. */
export function detach() {
  const s = state.stream;
  if (!s) return;
  s.abort();
  state.stream = null;
  s.msg.streaming = false;
  setBusy(false);
}

// ---------------------------------------------------------------- reading a run's stream
/**
 * Read a run's event stream to its end. Returns 'done' ([DONE]), 'error' / 'stopped' (edge.error),
 * 'aborted' (we stopped reading) or 'dropped' (the stream ended or broke before the run did).
 */
export async function readRun(s, res, ac) {
  s.lastByte = Date.now();
  noteClock(res);
  let outcome = 'dropped';
  const watchdog = setInterval(() => {
    if (Date.now() - s.lastByte > STALL_MS) ac.abort();
  }, 5000);
  try {
    await readSSE(res, (ev) => {
      s.lastByte = Date.now();
      const o = applyEvent(s, ev);
      if (o && (outcome === 'dropped' || o !== 'done')) outcome = o;
    }, () => { s.lastByte = Date.now(); });
  } catch (_) {
    // aborted (by us, or the stall watchdog) or the connection broke
  } finally {
    clearInterval(watchdog);
  }
  if (s.closed) return 'aborted';
  return outcome;
}

/** The stream of `s` ended with `outcome`: attach again, or settle the answer. */
export function settle(s, outcome) {
  if (outcome === 'aborted' || s.closed) return;
  if (outcome === 'dropped' && !s.stopRequested) {
    if (!s.convId) {
      s.msg.error = 'The connection was interrupted before the answer was complete.';
      finishStream(s, true);
      return;
    }
    retry(s);
    return;
  }
  if (outcome === 'dropped' && s.stopRequested) s.msg.stopped = true;
  finishStream(s, true);
}

/** The run is over (or we gave up on it): show the answer as it is, then sync with the server. */
function finishStream(s, sync) {
  s.abort();
  if (s.convId) lastFinished = { id: s.convId, at: Date.now() };
  if (state.stream === s) state.stream = null;
  s.msg.streaming = false;
  s.msg.reconnecting = false;
  s.msg.stopping = false;
  setBusy(false);
  renderAll();
  scrollToBottom(false);
  refreshConversations();
  if (sync && s.convId) {
    const id = s.convId;
    setTimeout(() => {
      if (!state.stream && state.currentId === id) loadConversation(id, true);
    }, s.msg.stopped ? 400 : 0);
  }
}

function retry(s) {
  if (s.closed) return;
  s.ac = null;
  s.msg.reconnecting = true;
  scheduleRender(s.msg);
  if (document.hidden || !navigator.onLine) { s.parked = true; return; }
  if (s.attempts >= MAX_ATTEMPTS) {
    s.parked = true; // tried long enough; the page becoming visible or online again tries once more
    s.msg.lost = true;
    scheduleRender(s.msg);
    return;
  }
  const delay = RETRY_MS[Math.min(s.attempts, RETRY_MS.length - 1)];
  s.attempts += 1;
  clearTimeout(s.timer);
  s.timer = setTimeout(() => connect(s), delay);
}

/**
 * Not attaching in a loop: `strong` (the server said "nothing running" to GET .../run) holds off every
 * attach for a moment; a run seen to end here holds off only the guesses (a list that still shows the
 * run, an empty answer of a server without runs), not a stored answer that says it is running.
 */
let lastNoRun = { id: null, at: 0 };
let lastFinished = { id: null, at: 0 };
export function recentlyNoRun(id, explicit) {
  const recent = (m) => m.id === id && Date.now() - m.at < 3000;
  return recent(lastNoRun) || (!explicit && recent(lastFinished));
}

/** GET .../run: 200 the stream (snapshot first), 204 nothing running. */
async function connect(s) {
  if (s.closed) return;
  clearTimeout(s.timer);
  s.parked = false;
  if (s.ac) s.ac.abort(); // a reader still open (attaching again for a fresh snapshot)
  const ac = new AbortController();
  s.ac = ac;
  let res;
  try {
    res = await fetch(runUrl(s.convId), {
      credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'text/event-stream' }, signal: ac.signal,
    });
  } catch (_) {
    if (s.closed || ac !== s.ac) return;
    retry(s);
    return;
  }
  if (s.closed || ac !== s.ac) { ac.abort(); return; }
  if (res.status === 200) {
    s.attempts = 0;
    s.msg.reconnecting = false;
    s.msg.lost = false;
    clearBanner('offline');
    const outcome = await readRun(s, res, ac);
    if (ac !== s.ac) return;
    settle(s, outcome);
    return;
  }
  ac.abort();
  if (res.status === 401) { sessionExpired(); finishStream(s, false); return; }
  // 204: nothing running (the stored messages are the whole answer); 404: no such conversation, or a
  // server without runs. Either way the stored conversation is the truth.
  if (res.status === 204 || res.status === 404) {
    lastNoRun = { id: s.convId, at: Date.now() };
    if (s.stopRequested) s.msg.stopped = true;
    finishStream(s, true);
    return;
  }
  retry(s); // 5xx, a proxy in the way: try again
}

/**
 * Show the run of conversation `convId` (the one shown): attach to it. `msg` is the stored running
 * answer if the conversation has one; otherwise an answer is added.
 */
export function attachRun(convId) {
  if (state.stream && state.stream.convId === convId) return;
  let msg = state.messages[state.messages.length - 1];
  if (!msg || msg.role !== 'assistant' || !(msg.running || msg.pending)) {
    msg = newAnswer();
    state.messages.push(msg);
  }
  const s = beginStream(convId, msg);
  renderAll();
  scrollToBottom(true);
  connect(s);
}

/** Attach again now (visible / online again, or a stale reader). */
function reconnectNow(force) {
  const s = state.stream;
  if (!s || s.closed || !s.convId) return;
  if (s.parked || s.timer && !s.ac) {
    s.attempts = 0;
    connect(s);
    return;
  }
  if (force) connect(s);
}

// ---------------------------------------------------------------- events
function str(v) { return typeof v === 'string' ? v : ''; }

/** A Step of the contract (or the older `hermes.tool.progress` shape) as the page keeps it. */
export function normStep(p) {
  const id = p.id != null ? String(p.id) : (p.toolCallId || (str(p.tool) + '|' + str(p.label)));
  return {
    id,
    tool: str(p.tool),
    emoji: str(p.emoji),
    label: str(p.label),
    preview: str(p.preview),
    status: str(p.status),
    duration: typeof p.duration === 'number' && Number.isFinite(p.duration) ? p.duration : null,
  };
}

function upsertStep(msg, p) {
  const n = normStep(p);
  const steps = msg.tool_steps || (msg.tool_steps = []);
  const step = steps.find((x) => x.id === n.id);
  if (!step) { steps.push(n); return; }
  for (const k of ['tool', 'emoji', 'label', 'preview', 'status']) if (n[k]) step[k] = n[k];
  if (n.duration != null) step.duration = n.duration;
}

function sameApproval(a, b) {
  return a && b && a.command === b.command && String(a.requested_at) === String(b.requested_at == null ? '' : b.requested_at);
}

/** A time from the server: RFC 3339, or milliseconds (seconds if that small) since 1970. */
function serverTime(v) {
  if (typeof v === 'number' && Number.isFinite(v)) return v < 1e11 ? v * 1000 : v;
  const t = Date.parse(str(v));
  return Number.isFinite(t) ? t : null;
}

function makeApproval(d) {
  const choices = Array.isArray(d.choices) ? d.choices.filter((c) => c === 'once' || c === 'session' || c === 'deny') : [];
  const timeout = Number.isFinite(d.timeout_secs) ? d.timeout_secs : null;
  let requested = serverTime(d.requested_at);
  if (requested == null) requested = Date.now() + state.clockSkew;
  return {
    command: str(d.command),
    description: str(d.description),
    choices: choices.length ? choices : ['once', 'deny'],
    timeout_secs: timeout,
    requested_at: String(d.requested_at == null ? '' : d.requested_at),
    deadline: timeout != null ? requested + timeout * 1000 : null, // server clock
    sending: null, // the choice being posted
    sent: null, // the choice the server took
    note: '',
    outcome: null, // once | session | deny | timeout, from edge.approval.done
  };
}

function parse(data) {
  try { return JSON.parse(data); } catch (_) { return null; }
}

let listTimer = null;
function refreshListSoon() {
  clearTimeout(listTimer);
  listTimer = setTimeout(refreshConversations, 150);
}

/** Apply one event of a run's stream to its answer. Returns the outcome it implies, if any. */
function applyEvent(s, ev) {
  const msg = s.msg;
  if (ev.type === 'edge.run') {
    const d = parse(ev.data);
    if (!d || typeof d !== 'object') return null;
    msg.content = str(d.text);
    msg.tool_steps = Array.isArray(d.steps) ? d.steps.filter((x) => x && typeof x === 'object').map(normStep) : [];
    if (d.approval && typeof d.approval === 'object') {
      if (!sameApproval(msg.approval, d.approval)) msg.approval = makeApproval(d.approval);
    } else if (msg.approval && !msg.approval.outcome) {
      msg.approval = null; // answered while this page was not reading; the step says how
    }
    msg.runStatus = str(d.status);
    if (Number.isInteger(d.message_index)) msg.index = d.message_index;
    msg.reconnecting = false;
    msg.error = null;
    scheduleRender(msg);
    return null;
  }
  if (ev.type === 'message') {
    if (ev.data === '[DONE]') return 'done';
    const chunk = parse(ev.data);
    if (chunk && chunk.error) {
      msg.error = (chunk.error.message || 'The agent reported an error.');
      scheduleRender(msg);
      return null;
    }
    const choice = chunk && chunk.choices && chunk.choices[0];
    const delta = choice && choice.delta && choice.delta.content;
    if (typeof delta === 'string' && delta) {
      msg.content += delta;
      scheduleRender(msg);
    }
    return null;
  }
  if (ev.type === 'hermes.tool.progress') {
    const p = parse(ev.data);
    if (!p || typeof p !== 'object') return null;
    upsertStep(msg, p);
    scheduleRender(msg);
    return null;
  }
  if (ev.type === 'edge.approval') {
    const d = parse(ev.data);
    if (!d || typeof d !== 'object') return null;
    if (!sameApproval(msg.approval, d)) msg.approval = makeApproval(d);
    msg.runStatus = 'waiting_approval';
    scheduleRender(msg);
    refreshListSoon();
    return null;
  }
  if (ev.type === 'edge.approval.done') {
    const d = parse(ev.data) || {};
    if (msg.approval) {
      msg.approval.outcome = str(d.choice) || 'deny';
      msg.approval.sending = null;
    }
    msg.runStatus = 'running';
    scheduleRender(msg);
    refreshListSoon();
    return null;
  }
  if (ev.type === 'edge.error') {
    const e = parse(ev.data) || {};
    const code = e.code || 'upstream_error';
    if (code === 'stopped') {
      msg.stopped = true;
      scheduleRender(msg);
      return 'stopped';
    }
    if (code === 'interrupted') msg.interrupted = true;
    else msg.error = errorText(code, e.message, '') || 'The answer could not be completed.';
    if (code === 'upstream_unreachable') upstreamUnreachable(e.message, code);
    else if (code === 'rate_limited') rateLimited(e.retry_after);
    scheduleRender(msg);
    return 'error';
  }
  return null;
}

/** Remember how far the server's clock is from ours (the approval countdown uses the server's). */
export function noteClock(res) {
  const d = Date.parse(res.headers.get('Date') || '');
  if (!Number.isFinite(d)) return;
  const skew = d - Date.now();
  state.clockSkew = Math.abs(skew) > 2000 ? skew : 0;
}

// ---------------------------------------------------------------- stop and approvals
function stopLocally(s) {
  if (s.closed) return;
  s.msg.stopped = true;
  finishStream(s, true);
}

/** Stop the run shown (the Stop button, Esc): `POST .../run/stop`. */
export async function stop() {
  const s = state.stream;
  if (!s || s.stopRequested) return;
  s.stopRequested = true;
  s.msg.stopping = true;
  scheduleRender(s.msg);
  if (!s.convId) {
    // The run has no id yet (the answer's head has not arrived): js/chat.js posts the stop once it
    // does; if it never does, stop reading.
    s.timer = setTimeout(() => { if (!s.convId) stopLocally(s); }, 8000);
    return;
  }
  await postStop(s);
}

export async function postStop(s) {
  let res = null;
  try {
    res = await fetch(runUrl(s.convId) + '/stop', {
      method: 'POST', credentials: 'same-origin', headers: { Accept: 'application/json' },
    });
  } catch (_) { res = null; }
  if (res && res.ok) {
    // The stream ends with edge.error "stopped"; if it does not say so soon, stop reading.
    setTimeout(() => stopLocally(s), STOP_GRACE_MS);
    if (!s.ac) connect(s); // between two attaches: look now
    return;
  }
  if (res && res.status === 401) sessionExpired();
  // 404 no_run: it had ended already. A server without runs (404 no route) stops an answer when its
  // reader goes away; unreachable: nothing else to do from here.
  stopLocally(s);
}

/** The person clicked one of the approval card's buttons. */
export async function answerApproval(msg, choice) {
  const a = msg.approval;
  const s = state.stream;
  const id = s && s.msg === msg ? s.convId : state.currentId;
  if (!a || a.outcome || a.sending || !id) return;
  a.sending = choice;
  a.note = '';
  scheduleRender(msg);
  try {
    await api('POST', runUrl(id) + '/approval', { choice });
    a.sent = choice;
  } catch (e) {
    const info = e.info || {};
    if (info.code === 'no_approval') {
      a.note = 'This was already answered, or the wait is over.';
      a.sent = a.sent || choice;
    } else if (info.code === 'approval_admin_only') {
      a.note = info.message || 'Only an administrator can answer this here.';
    } else {
      a.note = 'Your answer was not sent: ' + (info.message || e.message || 'no connection') + ' Try again.';
    }
  }
  a.sending = null;
  scheduleRender(msg);
}

// ---------------------------------------------------------------- page life
const POLL_MS = 30000;
let hiddenAt = 0;
let pollTimer = null;

function poll() {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(() => {
    if (!document.hidden) refreshConversations();
    poll();
  }, POLL_MS);
}

/** Page-wide listeners (main.js calls this once). */
export function wireRuns() {
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) { hiddenAt = Date.now(); return; }
    const s = state.stream;
    const away = hiddenAt && Date.now() - hiddenAt > REVISIT_MS;
    // Back from elsewhere (a phone asleep, another tab): the reader may be dead without knowing it.
    reconnectNow(away || (s && Date.now() - s.lastByte > 20000));
    refreshConversations();
  });
  window.addEventListener('online', () => reconnectNow(true));
  window.addEventListener('offline', () => {
    const s = state.stream;
    if (s && s.ac) s.ac.abort(); // the reader will not hear anything more; retry() parks until online
  });
  poll();
}
