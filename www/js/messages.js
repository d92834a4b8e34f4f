/*
 * The messages of the conversation shown: rendering (user bubbles, assistant answers with their tool
 * steps, status and actions), scrolling, stream renders coalesced per frame, and the message
 * actions "edit and resend" and "regenerate".
 */

import { app, titleEl, scroller, messagesEl, emptyEl, el, icon, ICONS, iconButton, copyText } from './dom.js';
import { state } from './state.js';
import { renderMarkdown } from './markdown.js';
import { sendChat } from './chat.js';

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
  if (msg.content) body.appendChild(el('div', 'bubble', msg.content));
  art.appendChild(body);
  const actions = el('div', 'msg-actions');
  actions.appendChild(iconButton('copy', 'Copy message', (e) => copyText(msg.content || '', e.currentTarget)));
  actions.appendChild(iconButton('edit', 'Edit and resend', () => startEdit(pos), 'edit-btn'));
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
  const md = el('div', 'md');
  body.appendChild(md);
  const status = el('div', 'msg-status');
  body.appendChild(status);
  const actions = el('div', 'msg-actions');
  body.appendChild(actions);
  art.appendChild(body);
  msg.parts = { art, steps, md, status, actions };
  updateAssistant(msg, pos);
  return art;
}

function stepStatusClass(status) {
  if (status === 'running' || status === 'started' || status === 'pending') return 'running';
  if (status === 'completed' || status === 'done' || status === 'success' || status === 'succeeded') return 'completed';
  return 'failed';
}

function renderSteps(msg) {
  const list = msg.parts.steps;
  const steps = msg.tool_steps || [];
  list.hidden = steps.length === 0;
  list.replaceChildren();
  for (const s of steps) {
    const kind = stepStatusClass(s.status);
    const li = el('li', 'tool-step ' + kind);
    li.dataset.status = kind;
    li.dataset.tool = s.tool || '';
    li.appendChild(el('span', 'tool-emoji', s.emoji || '🔧'));
    li.appendChild(el('span', 'tool-label', s.label || s.tool || 'tool'));
    const st = el('span', 'tool-status');
    if (kind === 'running') {
      st.appendChild(el('span', 'spinner'));
      st.appendChild(el('span', 'visually-hidden', 'running'));
    } else if (kind === 'completed') {
      st.appendChild(icon(ICONS.check, 14));
      st.appendChild(el('span', 'visually-hidden', 'done'));
    } else {
      st.textContent = String(s.status || 'failed');
    }
    li.appendChild(st);
    list.appendChild(li);
  }
}

function updateAssistant(msg, pos) {
  const p = msg.parts;
  if (!p) return;
  p.art.classList.toggle('streaming', !!msg.streaming);
  p.art.dataset.state = msg.streaming ? 'streaming' : (msg.error ? 'error' : (msg.stopped ? 'stopped' : 'done'));
  renderSteps(msg);
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
  p.status.replaceChildren();
  p.status.hidden = true;
  if (msg.error) {
    p.status.hidden = false;
    p.status.className = 'msg-status msg-error';
    p.status.textContent = msg.error;
  } else if (msg.stopped) {
    p.status.hidden = false;
    p.status.className = 'msg-status msg-stopped';
    p.status.textContent = 'Stopped';
  } else if (msg.pending && !msg.streaming) {
    p.status.hidden = false;
    p.status.className = 'msg-status msg-stopped';
    p.status.textContent = 'This answer is still being written. Reload to see it.';
  }
  p.actions.replaceChildren();
  if (!msg.streaming) {
    p.actions.appendChild(iconButton('copy', 'Copy answer', (e) => copyText(msg.content || '', e.currentTarget)));
    if (pos === lastAssistantPos() && !state.controller) {
      p.actions.appendChild(iconButton('regen', 'Regenerate answer', regenerate, 'regen-btn'));
    }
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
  if (state.controller) return;
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

function regenerate() {
  if (state.controller || !state.currentId) return;
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
