/*
 * The messages of the conversation shown: rendering (user bubbles, assistant answers with their tool
 * steps, status and actions), scrolling, stream renders coalesced per frame, and the message
 * actions "edit and resend" and "regenerate".
 */

import { app, titleEl, scroller, messagesEl, emptyEl, el, icon, ICONS, iconButton, copyText } from './dom.js';
import { state } from './state.js';
import { renderMarkdown } from './markdown.js';
import { sendChat } from './chat.js';
import { answerApproval } from './runs.js';
import { timeEl } from './timestamps.js';
import { updateExport } from './export.js';
import { splitNotes, fileChip } from './files.js';

// ---------------------------------------------------------------- messages view
export function isNearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

export function scrollToBottom(force) {
  if (force || state.stickToBottom) scroller.scrollTop = scroller.scrollHeight;
}

/** Follows the reader: new text scrolls the view only while it is at the bottom. */
export function wireMessages() {
  scroller.addEventListener('scroll', () => { state.stickToBottom = isNearBottom(); }, { passive: true });
}

function lastAssistantPos() {
  for (let i = state.messages.length - 1; i >= 0; i--) {
    if (state.messages[i].role === 'assistant') return i;
  }
  return -1;
}

export function renderAll() {
  messagesEl.replaceChildren();
  for (let i = 0; i < state.messages.length; i++) {
    messagesEl.appendChild(renderMessage(state.messages[i], i));
  }
  emptyEl.hidden = state.messages.length > 0;
  app.classList.toggle('is-empty', state.messages.length === 0);
  titleEl.textContent = state.title || 'New chat';
  document.title = (state.title ? state.title + ' · ' : '') + 'Hermes';
  updateExport();
}

function renderMessage(msg, pos) {
  const node = msg.role === 'user' ? renderUser(msg, pos) : renderAssistant(msg, pos);
  msg.node = node;
  return node;
}

function renderUser(msg, pos) {
  const art = el('article', 'msg msg-user');
  art.dataset.index = String(msg.index != null ? msg.index : pos);
  const body = el('div', 'msg-body');
  if (msg.images && msg.images.length) {
    const imgs = el('div', 'msg-images');
    for (const src of msg.images) {
      if (typeof src !== 'string' || !/^(data:image\/|\/|blob:)/.test(src)) continue;
      const img = el('img');
      img.src = src;
      img.alt = 'attached image';
      img.loading = 'lazy';
      imgs.appendChild(img);
    }
    body.appendChild(imgs);
  }
  // Attached files: the lines that tell the agent where they are, shown as chips.
  const { text, files } = splitNotes(msg.content);
  for (const f of msg.files || []) if (!files.some((x) => x.src === f.src)) files.push(f);
  if (files.length) {
    const row = el('div', 'msg-files');
    for (const f of files) row.appendChild(fileChip(f));
    body.appendChild(row);
  }
  if (text) body.appendChild(el('div', 'bubble', text));
  art.appendChild(body);
  const actions = el('div', 'msg-actions');
  actions.appendChild(iconButton('copy', 'Copy message', (e) => copyText(text, e.currentTarget)));
  actions.appendChild(iconButton('edit', 'Edit and resend', () => startEdit(pos), 'edit-btn'));
  actions.prepend(timeEl(msg));
  art.appendChild(actions);
  return art;
}

function renderAssistant(msg, pos) {
  const art = el('article', 'msg msg-assistant');
  art.dataset.index = String(msg.index != null ? msg.index : pos);
  art.appendChild(el('div', 'avatar avatar-bot', 'H'));
  const body = el('div', 'msg-body');
  const steps = el('ol', 'tool-steps');
  body.appendChild(steps);
  const approval = el('div', 'approval-slot');
  body.appendChild(approval);
  const md = el('div', 'md');
  body.appendChild(md);
  const status = el('div', 'msg-status');
  body.appendChild(status);
  const actions = el('div', 'msg-actions');
  body.appendChild(actions);
  art.appendChild(body);
  msg.parts = { art, steps, approval, md, status, actions };
  updateAssistant(msg, pos);
  return art;
}

/** A step's status as one of the five the page shows (older servers' words mapped onto them). */
function stepKind(status) {
  if (status === 'running' || status === 'started' || status === 'pending') return 'running';
  if (status === 'completed' || status === 'done' || status === 'success' || status === 'succeeded') return 'completed';
  if (status === 'waiting_approval') return 'waiting_approval';
  if (status === 'denied') return 'denied';
  return 'failed';
}

const STEP_TEXT = {
  running: 'running',
  completed: 'done',
  failed: 'failed',
  waiting_approval: 'waiting for your approval',
  denied: 'denied',
};

export function formatDuration(d) {
  if (typeof d !== 'number' || !Number.isFinite(d) || d < 0) return '';
  if (d < 1) return Math.max(1, Math.round(d * 1000)) + ' ms';
  if (d < 60) return (Math.round(d * 10) / 10) + ' s';
  const m = Math.floor(d / 60);
  const r = Math.round(d % 60);
  return m + ' min' + (r ? ' ' + r + ' s' : '');
}

const PREVIEW_SHORT = 80;

function stepRow(s, kind) {
  const row = el('span', 'tool-row');
  row.appendChild(el('span', 'tool-emoji', s.emoji || '🔧'));
  row.appendChild(el('span', 'tool-label', s.label || s.tool || 'tool'));
  const preview = s.preview && s.preview !== s.label && !(s.label || '').includes(s.preview) ? s.preview : '';
  if (preview) {
    row.classList.add('has-preview');
    const oneLine = preview.split('\n')[0];
    let short = oneLine.length > PREVIEW_SHORT ? oneLine.slice(0, PREVIEW_SHORT - 1) + '…' : oneLine;
    if (oneLine !== preview && short === oneLine) short += ' …';
    row.appendChild(el('code', 'tool-preview', short));
  }
  const dur = formatDuration(s.duration);
  if (dur) row.appendChild(el('span', 'tool-duration', dur));
  const st = el('span', 'tool-status');
  st.title = STEP_TEXT[kind];
  if (kind === 'running') {
    st.appendChild(el('span', 'spinner'));
    st.appendChild(el('span', 'visually-hidden', STEP_TEXT[kind]));
  } else {
    st.appendChild(icon(STEP_ICON[kind], 14));
    const text = el('span', kind === 'completed' || kind === 'failed' ? 'visually-hidden' : 'tool-status-text', STEP_TEXT[kind]);
    st.appendChild(text);
  }
  row.appendChild(st);
  return row;
}

const STEP_ICON = {
  completed: ICONS.check,
  failed: ICONS.x,
  waiting_approval: ICONS.clock,
  denied: ICONS.blocked,
};

function renderSteps(msg) {
  const list = msg.parts.steps;
  const steps = msg.tool_steps || [];
  list.hidden = steps.length === 0;
  list.replaceChildren();
  for (const s of steps) {
    const kind = stepKind(s.status);
    const li = el('li', 'tool-step ' + kind);
    li.dataset.status = kind;
    li.dataset.tool = s.tool || '';
    if (s.id) li.dataset.id = s.id;
    const row = stepRow(s, kind);
    // More than the line shows (a long or multi-line command, what the tool returned): expandable.
    const longPreview = s.preview && (s.preview.length > PREVIEW_SHORT || s.preview.includes('\n'));
    if (longPreview || s.output) {
      const det = el('details', 'tool-details');
      const sum = el('summary');
      sum.appendChild(row);
      det.appendChild(sum);
      if (longPreview) det.appendChild(el('pre', 'tool-full', s.preview));
      if (s.output) {
        const out = el('pre', 'tool-output', s.output);
        out.setAttribute('aria-label', 'Output');
        det.appendChild(out);
      }
      det.open = !!s.open;
      det.addEventListener('toggle', () => { s.open = det.open; });
      li.appendChild(det);
    } else {
      li.appendChild(row);
    }
    list.appendChild(li);
  }
}

// ---------------------------------------------------------------- approval card
const CHOICE_LABEL = { once: 'Allow once', session: 'Allow for this answer', deny: 'Deny' };
const OUTCOME_TEXT = {
  once: 'Allowed once.',
  session: 'Allowed for the rest of this answer.',
  deny: 'Denied. The command was not run.',
  timeout: 'Not answered in time: denied. The command was not run.',
};

function remainingSecs(a) {
  if (a.deadline == null) return null;
  return Math.max(0, Math.ceil((a.deadline - (Date.now() + state.clockSkew)) / 1000));
}

function formatClock(secs) {
  const m = Math.floor(secs / 60);
  const r = secs % 60;
  return m + ':' + String(r).padStart(2, '0');
}

/** The card shown under the step that waits for the person; after the answer, its outcome. */
function renderApproval(msg) {
  const slot = msg.parts.approval;
  const a = msg.approval;
  slot.hidden = !a;
  if (!a) { slot.replaceChildren(); return; }
  // Rebuilt only when something the card shows changed: a countdown tick or a stream frame must not
  // take the focus away from its buttons.
  const sig = [a.command, a.requested_at, a.sending, a.sent, a.outcome, a.note].join('\u0001');
  if (slot.dataset.sig === sig && slot.firstChild) return;
  slot.dataset.sig = sig;
  const focused = slot.contains(document.activeElement) ? document.activeElement.dataset.choice : null;
  const card = el('section', 'approval');
  card.dataset.state = a.outcome ? 'done' : (a.sending ? 'sending' : 'waiting');
  if (a.outcome) card.dataset.outcome = a.outcome;
  card.setAttribute('aria-label', 'Approval');
  const head = el('div', 'approval-head');
  head.appendChild(icon(ICONS.shield, 18));
  head.appendChild(el('strong', 'approval-title', a.outcome ? 'Command approval' : 'Hermes wants to run this command'));
  const timer = el('span', 'approval-timer');
  head.appendChild(timer);
  card.appendChild(head);
  if (a.description) card.appendChild(el('p', 'approval-desc', a.description));
  const pre = el('pre', 'approval-cmd');
  pre.appendChild(el('code', null, a.command));
  card.appendChild(pre);
  if (a.outcome) {
    const out = el('p', 'approval-outcome', OUTCOME_TEXT[a.outcome] || ('Answered: ' + a.outcome));
    out.setAttribute('role', 'status');
    card.appendChild(out);
  } else {
    const row = el('div', 'approval-actions');
    for (const c of ['once', 'session', 'deny']) {
      if (!a.choices.includes(c)) continue;
      const b = el('button', 'btn approval-btn ' + (c === 'deny' ? 'btn-deny' : (c === 'once' ? 'btn-primary' : '')), CHOICE_LABEL[c]);
      b.type = 'button';
      b.dataset.choice = c;
      b.disabled = !!(a.sending || a.sent);
      if (a.sending === c) b.textContent = 'Sending…';
      b.addEventListener('click', () => answerApproval(msg, c));
      row.appendChild(b);
    }
    card.appendChild(row);
    const note = el('p', 'approval-note', a.note || (a.sent ? 'Answer sent (' + CHOICE_LABEL[a.sent] + ').' : ''));
    note.setAttribute('role', 'status');
    note.hidden = !note.textContent;
    card.appendChild(note);
  }
  slot.replaceChildren(card);
  if (focused) {
    const b = card.querySelector('[data-choice="' + focused + '"]');
    if (b && !b.disabled) b.focus();
  }
  if (!a.outcome) tickApproval(a, timer, card);
}

function tickApproval(a, timer, card) {
  const update = () => {
    const left = remainingSecs(a);
    if (left == null) { timer.textContent = ''; return true; }
    timer.textContent = left > 0 ? formatClock(left) + ' left' : 'time is up';
    timer.setAttribute('aria-label', left > 0 ? left + ' seconds left to answer' : 'time is up');
    if (left === 0) card.querySelectorAll('.approval-btn').forEach((b) => { b.disabled = true; });
    return left === 0;
  };
  if (update()) return;
  const t = setInterval(() => {
    if (!card.isConnected || a.outcome || update()) clearInterval(t);
  }, 1000);
}

function answerState(msg) {
  if (msg.streaming) return 'streaming';
  if (msg.interrupted) return 'interrupted';
  if (msg.error) return 'error';
  if (msg.stopped) return 'stopped';
  return 'done';
}

function updateAssistant(msg, pos) {
  const p = msg.parts;
  if (!p) return;
  p.art.classList.toggle('streaming', !!msg.streaming);
  p.art.dataset.state = answerState(msg);
  if (msg.streaming && msg.runStatus) p.art.dataset.run = msg.runStatus;
  else delete p.art.dataset.run;
  renderSteps(msg);
  renderApproval(msg);
  if (msg.content) {
    renderMarkdown(p.md, msg.content);
  } else {
    p.md.replaceChildren();
    if (msg.streaming && !(msg.tool_steps && msg.tool_steps.length)) {
      const dots = el('div', 'typing');
      dots.setAttribute('aria-label', 'Hermes is thinking');
      dots.append(el('span'), el('span'), el('span'));
      p.md.appendChild(dots);
    }
  }
  const last = pos === lastAssistantPos();
  p.status.replaceChildren();
  p.status.hidden = true;
  const status = (cls, text) => {
    p.status.hidden = false;
    p.status.className = 'msg-status ' + cls;
    p.status.textContent = text;
  };
  if (msg.streaming && msg.stopping) {
    status('msg-stopped', 'Stopping…');
  } else if (msg.streaming && msg.lost) {
    status('msg-stopped msg-reconnecting', 'Lost the connection to this answer; it goes on at the server. Trying again when the connection is back…');
  } else if (msg.streaming && msg.reconnecting) {
    status('msg-stopped msg-reconnecting', 'Reconnecting…');
  } else if (msg.interrupted) {
    status('msg-interrupted', 'Interrupted: the server stopped while this answer was being written.');
    if (last && !state.stream) {
      const row = el('span', 'msg-status-actions');
      const cont = el('button', 'btn btn-small continue-btn', 'Continue');
      cont.type = 'button';
      cont.addEventListener('click', continueAnswer);
      const regen = el('button', 'btn btn-small regen-text-btn', 'Regenerate');
      regen.type = 'button';
      regen.addEventListener('click', regenerate);
      row.append(cont, regen);
      p.status.appendChild(row);
    }
  } else if (msg.error) {
    status('msg-error', msg.error);
  } else if (msg.stopped) {
    status('msg-stopped', 'Stopped');
  } else if (msg.pending && !msg.streaming) {
    status('msg-stopped', 'This answer is still being written. Reload to see it.');
  }
  p.actions.replaceChildren();
  if (!msg.streaming) {
    p.actions.appendChild(iconButton('copy', 'Copy answer', (e) => copyText(msg.content || '', e.currentTarget)));
    if (last && !state.stream) {
      p.actions.appendChild(iconButton('regen', 'Regenerate answer', regenerate, 'regen-btn'));
    }
    p.actions.appendChild(timeEl(msg));
  }
}

// Stream renders are coalesced to one per animation frame.
let renderQueued = null;
export function scheduleRender(msg) {
  if (renderQueued) return;
  renderQueued = msg;
  requestAnimationFrame(() => {
    const m = renderQueued;
    renderQueued = null;
    updateAssistant(m, state.messages.indexOf(m));
    scrollToBottom(false);
  });
}

// ---------------------------------------------------------------- edit and resend
function startEdit(pos) {
  if (state.stream) return;
  const msg = state.messages[pos];
  if (!msg || !msg.node) return;
  const art = msg.node;
  art.classList.add('editing');
  const body = art.querySelector('.msg-body');
  const form = el('form', 'edit-form');
  const ta = el('textarea', 'edit-input');
  ta.value = msg.content || '';
  ta.rows = Math.min(12, Math.max(2, ta.value.split('\n').length));
  ta.setAttribute('aria-label', 'Edit message');
  const row = el('div', 'edit-row');
  const cancel = el('button', 'btn btn-ghost', 'Cancel');
  cancel.type = 'button';
  const save = el('button', 'btn btn-primary', 'Save & send');
  save.type = 'submit';
  row.append(cancel, save);
  form.append(ta, row);
  body.replaceWith(form);
  art.querySelector('.msg-actions').hidden = true;
  ta.focus();
  ta.setSelectionRange(ta.value.length, ta.value.length);
  cancel.addEventListener('click', () => renderAll());
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') renderAll();
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = ta.value.trim();
    if (!text) return;
    const index = msg.index != null ? msg.index : pos;
    const images = msg.images || [];
    state.messages = state.messages.slice(0, pos);
    const body2 = { message: text, edit_from: index };
    if (images.length) body2.images = images;
    sendChat(body2, { role: 'user', index, content: text, images });
  });
}

/** An interrupted answer: ask Hermes to carry on from where it was cut off. */
function continueAnswer() {
  if (state.stream || !state.currentId) return;
  sendChat({ message: 'Continue' }, { role: 'user', index: state.messages.length, content: 'Continue', images: [] });
}

function regenerate() {
  if (state.stream || !state.currentId) return;
  const pos = lastAssistantPos();
  if (pos < 0) return;
  let lastUser = null;
  for (let i = pos - 1; i >= 0; i--) {
    if (state.messages[i].role === 'user') { lastUser = state.messages[i]; break; }
  }
  state.messages = state.messages.slice(0, pos);
  const body = { regenerate: true };
  if (lastUser) body.message = lastUser.content || '';
  sendChat(body, null);
}
