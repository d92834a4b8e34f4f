/*
 * The conversation list in the sidebar (grouped by date, rename, delete) and switching conversations:
 * new chat, open, load from the server (the URL's ?c= names the one shown).
 */

import { app, convList, titleEl, input, el, iconButton } from './dom.js';
import { state } from './state.js';
import { api } from './api.js';
import { showBanner, errorText } from './banners.js';
import { renderAll, isNearBottom, scrollToBottom } from './messages.js';
import { autosize, updateSendEnabled } from './composer.js';
import { detach, attachRun, normStep, recentlyNoRun } from './runs.js';
import { switchDraft } from './drafts.js';
import { closeNav } from './nav.js';
import { openConvMenu, closeConvMenu, wireLongPress } from './convmenu.js';

// ---------------------------------------------------------------- conversations
function groupLabel(date) {
  const now = new Date();
  const startOfDay = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const t = date.getTime();
  if (!Number.isFinite(t)) return 'Older';
  if (t >= startOfDay) return 'Today';
  if (t >= startOfDay - 86400000) return 'Yesterday';
  if (t >= startOfDay - 7 * 86400000) return 'Previous 7 days';
  if (t >= startOfDay - 30 * 86400000) return 'Previous 30 days';
  return 'Older';
}

function renderConversations() {
  closeConvMenu();
  convList.replaceChildren();
  if (state.conversations.length === 0) {
    convList.appendChild(el('p', 'conv-empty', 'No conversations yet.'));
    return;
  }
  let group = null;
  for (const c of state.conversations) {
    const g = groupLabel(new Date(c.updated_at || c.created_at));
    if (g !== group) {
      group = g;
      convList.appendChild(el('h3', 'conv-group', g));
    }
    convList.appendChild(renderConvItem(c));
  }
}

function renderConvItem(c) {
  const item = el('div', 'conv-item');
  item.dataset.id = c.id;
  if (c.id === state.currentId) {
    item.classList.add('active');
  }
  const link = el('a', 'conv-link', c.title || 'Untitled');
  link.href = '/?c=' + encodeURIComponent(c.id);
  link.title = c.title || 'Untitled';
  if (c.id === state.currentId) link.setAttribute('aria-current', 'page');
  link.addEventListener('click', (e) => {
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    openConversation(c.id);
  });
  item.appendChild(link);
  // A run going on in this conversation (maybe in another tab): marked, and "needs you" when it waits.
  const run = c.run && typeof c.run === 'object' ? c.run : null;
  if (run) {
    const waiting = run.status === 'waiting_approval';
    item.dataset.run = waiting ? 'waiting_approval' : 'running';
    const mark = el('span', 'conv-run ' + (waiting ? 'conv-run-waiting' : 'conv-run-running'), waiting ? 'Approve?' : '');
    mark.title = waiting ? 'Waiting for your approval' : 'An answer is being written';
    mark.setAttribute('role', 'img');
    mark.setAttribute('aria-label', mark.title);
    if (!waiting) mark.appendChild(el('span', 'spinner'));
    item.appendChild(mark);
  }
  const tools = el('div', 'conv-tools');
  tools.appendChild(iconButton('pencil', 'Rename', () => startRename(item, c), 'rename-btn'));
  const del = iconButton('trash', 'Delete', () => {
    if (!item.classList.contains('confirm-delete')) {
      item.classList.add('confirm-delete');
      del.setAttribute('aria-label', 'Confirm delete');
      del.title = 'Click again to delete';
      setTimeout(() => {
        item.classList.remove('confirm-delete');
        del.setAttribute('aria-label', 'Delete');
        del.title = 'Delete';
      }, 3000);
      return;
    }
    deleteConversation(c.id);
  }, 'delete-btn');
  tools.appendChild(del);
  item.appendChild(tools);
  // The menu: the ⋯ button (the only way on phones, where there is no hover), a long press, a right click.
  const openMenu = () => openConvMenu(item, c, {
    rename: () => startRename(item, c),
    remove: () => deleteConversation(c.id),
  }, more);
  const more = iconButton('more', 'More actions for “' + (c.title || 'Untitled') + '”', (e) => {
    e.stopPropagation();
    if (item.classList.contains('menu-open')) closeConvMenu();
    else openMenu();
  }, 'conv-more');
  more.setAttribute('aria-haspopup', 'menu');
  more.setAttribute('aria-expanded', 'false');
  item.appendChild(more);
  wireLongPress(item, openMenu);
  return item;
}

function startRename(item, c) {
  const form = el('form', 'rename-form');
  const field = el('input', 'rename-input');
  field.value = c.title || '';
  field.maxLength = 200;
  field.setAttribute('aria-label', 'Conversation title');
  form.appendChild(field);
  item.replaceChildren(form);
  item.classList.add('renaming');
  field.focus();
  field.select();
  let done = false;
  const commit = async (save) => {
    if (done) return;
    done = true;
    const title = field.value.trim();
    if (save && title && title !== c.title) {
      try {
        await api('PATCH', '/api/conversations/' + encodeURIComponent(c.id), { title });
        c.title = title;
        if (c.id === state.currentId) {
          state.title = title;
          titleEl.textContent = title;
          document.title = title + ' · Hermes';
        }
      } catch (e) {
        showBanner('conv', 'error', 'Could not rename the conversation: ' + e.message);
      }
    }
    renderConversations();
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); commit(true); });
  field.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); commit(false); } });
  field.addEventListener('blur', () => commit(true));
}

async function deleteConversation(id) {
  let result;
  try {
    result = await api('DELETE', '/api/conversations/' + encodeURIComponent(id));
  } catch (e) {
    showBanner('conv', 'error', 'Could not delete the conversation: ' + e.message);
    return;
  }
  // Deleted here either way; say so when Hermes could not delete its own copy.
  if (result && result.hermes_session === 'not_deleted') {
    showBanner('conv', 'warn', result.message || 'The conversation was deleted here, but Hermes still keeps its copy.');
  }
  state.conversations = state.conversations.filter((c) => c.id !== id);
  if (id === state.currentId) newChat();
  renderConversations();
}

export async function refreshConversations() {
  try {
    const body = await api('GET', '/api/conversations');
    state.conversations = (body && Array.isArray(body.conversations)) ? body.conversations : [];
    const cur = state.conversations.find((c) => c.id === state.currentId);
    if (cur && cur.title && !state.stream) {
      state.title = cur.title;
      titleEl.textContent = cur.title;
    }
    // Not under the person's finger: a row being renamed or with its menu open stays as it is.
    if (!convList.querySelector('.menu-open, .renaming')) renderConversations();
    // The shown conversation has a run this page does not follow (started in another tab): follow it.
    if (cur && cur.run && !state.stream && !app.classList.contains('is-loading') && !recentlyNoRun(cur.id)) {
      loadConversation(cur.id, true);
    }
  } catch (_) { /* banner already shown */ }
}

export function newChat() {
  detach();
  state.currentId = null;
  showDraft(null);
  state.title = '';
  state.messages = [];
  history.replaceState(null, '', '/');
  renderAll();
  renderConversations();
  closeNav();
  input.focus();
}

function openConversation(id) {
  detach();
  history.pushState(null, '', '/?c=' + encodeURIComponent(id));
  closeNav();
  loadConversation(id, false);
}

export async function loadConversation(id, quiet) {
  if (!id) return;
  const seq = ++state.loadSeq;
  if (!quiet) {
    detach();
    if (state.currentId !== id) showDraft(id);
    state.currentId = id;
    const c = state.conversations.find((x) => x.id === id);
    state.title = c ? c.title : '';
    state.messages = [];
    renderAll();
    renderConversations();
    app.classList.add('is-loading');
  }
  let conv;
  try {
    conv = await api('GET', '/api/conversations/' + encodeURIComponent(id));
  } catch (e) {
    app.classList.remove('is-loading');
    if (e.info && e.info.status === 404) {
      showBanner('conv', 'warn', 'That conversation was not found. It may have been deleted.');
      newChat();
    }
    return;
  }
  app.classList.remove('is-loading');
  // A newer load or a stream started meanwhile: this answer is stale.
  if (seq !== state.loadSeq || state.stream) return;
  const atBottom = isNearBottom();
  const prevLast = state.messages[state.messages.length - 1];
  const wasStopped = quiet && prevLast && prevLast.role === 'assistant' && prevLast.stopped;
  state.currentId = conv.id || id;
  state.title = conv.title || '';
  state.messages = (conv.messages || []).map((m) => ({
    index: m.index,
    role: m.role === 'user' ? 'user' : 'assistant',
    content: typeof m.content === 'string' ? m.content : '',
    created_at: typeof m.created_at === 'string' ? m.created_at : null,
    images: Array.isArray(m.images) ? m.images : [],
    tool_steps: Array.isArray(m.tool_steps) ? m.tool_steps.filter((s) => s && typeof s === 'object').map(normStep) : [],
    error: storedError(m.error),
    stopped: !!(m.error && m.error.code === 'stopped'),
    interrupted: !!(m.error && m.error.code === 'interrupted'),
    running: m.role === 'assistant' && m.state === 'running',
    // A server without runs says nothing of the state: an empty answer without error is still coming.
    pending: m.role === 'assistant' && !m.state && !m.content && !m.error,
  }));
  // The server keeps a stopped answer as it was; keep showing that it was stopped.
  const last = state.messages[state.messages.length - 1];
  if (wasStopped && last && last.role === 'assistant' && !last.error) last.stopped = true;
  // The outcome of an approval answered while this page watched stays shown (it is not stored).
  if (quiet && prevLast && prevLast.approval && prevLast.approval.outcome && last && last.role === 'assistant' &&
      (prevLast.index == null || prevLast.index === last.index)) {
    last.approval = prevLast.approval;
  }
  renderAll();
  renderConversations();
  if (!quiet || atBottom) scrollToBottom(true);
  // A run going on: show everything so far, then the rest live.
  const item = state.conversations.find((c) => c.id === state.currentId);
  const running = last && last.role === 'assistant' && (last.running || last.pending);
  const unanswered = item && item.run && (!last || last.role === 'user');
  if ((running || unanswered) && !recentlyNoRun(state.currentId, !!(last && last.running))) attachRun(state.currentId);
}

function showDraft(id) {
  switchDraft(id);
  autosize();
  updateSendEnabled();
}

/** A stored message's `error` ({code, message} or null) as text; "stopped" and "interrupted" are shown apart. */
function storedError(err) {
  if (!err) return null;
  if (typeof err === 'string') return err;
  if (err.code === 'stopped' || err.code === 'interrupted') return null;
  return errorText(err.code, err.message, '') || 'The answer could not be completed.';
}
