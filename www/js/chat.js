/*
 * Sending: POST /api/chat and the answer streamed back as server-sent events (the OpenAI-style
 * chunks, Hermes's tool progress, hermes-edge's own errors), stopping, and the refusals.
 */

import { titleEl, input } from './dom.js';
import { state } from './state.js';
import { readError } from './api.js';
import { readSSE } from './sse.js';
import { showBanner, clearBanner, rateLimited, upstreamUnreachable, sessionExpired } from './banners.js';
import { renderAll, scheduleRender, scrollToBottom } from './messages.js';
import { setBusy, renderAttachments, autosize } from './composer.js';
import { newChat, refreshConversations, loadConversation } from './conversations.js';

// ---------------------------------------------------------------- sending
/**
 * POST /api/chat and stream the answer into a new assistant message.
 * `userMsg` is shown immediately (null for regenerate); `draft` is restored if the server refuses.
 */
export async function sendChat(body, userMsg, draft) {
  if (state.currentId) body.conversation_id = state.currentId;
  if (userMsg) state.messages.push(userMsg);
  const msg = { role: 'assistant', content: '', tool_steps: [], error: null, streaming: true };
  state.messages.push(msg);
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  renderAll();
  state.stickToBottom = true;
  scrollToBottom(true);
  const convAtStart = state.currentId;

  let res;
  try {
    res = await fetch('/api/chat', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
  } catch (e) {
    if (controller.signal.aborted) {
      msg.stopped = true;
    } else {
      msg.error = 'Could not reach hermes-edge. Check your connection and try again.';
      showBanner('offline', 'error', 'Cannot reach hermes-edge. Check your connection.');
    }
    finish(msg, controller);
    return;
  }

  if (!res.ok) {
    const err = await readError(res);
    // The server refused before starting: undo the optimistic messages and give the text back.
    state.messages.pop();
    if (userMsg) state.messages.pop();
    if (draft && !input.value) {
      input.value = draft.text;
      state.pendingImages = draft.images;
      renderAttachments();
      autosize();
    }
    handleChatError(err, !!body.conversation_id);
    finish(null, controller);
    if (!userMsg && err.status !== 401) loadConversation(state.currentId, true);
    return;
  }

  clearBanner('offline');
  clearBanner('upstream');
  clearBanner('chat');
  const cid = res.headers.get('X-Conversation-Id');
  if (cid && cid !== state.currentId) {
    state.currentId = cid;
    history.replaceState(null, '', '/?c=' + encodeURIComponent(cid));
  }
  if (!convAtStart) {
    state.title = userMsg && userMsg.content ? userMsg.content.split('\n')[0].slice(0, 80) : 'New chat';
    titleEl.textContent = state.title;
    refreshConversations();
  }

  try {
    await readSSE(res, (ev) => onStreamEvent(msg, ev));
  } catch (e) {
    if (controller.signal.aborted) {
      msg.stopped = true;
    } else if (!msg.error) {
      msg.error = 'The connection was interrupted before the answer was complete.';
    }
  }
  finish(msg, controller);
  // Sync with the server's copy (indices, stored partial answers, titles).
  if (state.currentId) {
    const id = state.currentId;
    setTimeout(() => {
      if (!state.controller && state.currentId === id) loadConversation(id, true);
      refreshConversations();
    }, controller.signal.aborted ? 400 : 0);
  }
}

function finish(msg, controller) {
  if (state.controller === controller) state.controller = null;
  if (msg) msg.streaming = false;
  setBusy(false);
  renderAll();
  scrollToBottom(false);
}

function onStreamEvent(msg, ev) {
  if (ev.type === 'message') {
    if (ev.data === '[DONE]') return;
    let chunk;
    try { chunk = JSON.parse(ev.data); } catch (_) { return; }
    if (chunk && chunk.error) {
      msg.error = (chunk.error.message || 'The agent reported an error.');
      scheduleRender(msg);
      return;
    }
    const choice = chunk && chunk.choices && chunk.choices[0];
    const delta = choice && choice.delta && choice.delta.content;
    if (typeof delta === 'string' && delta) {
      msg.content += delta;
      scheduleRender(msg);
    }
  } else if (ev.type === 'hermes.tool.progress') {
    let p;
    try { p = JSON.parse(ev.data); } catch (_) { return; }
    if (!p || typeof p !== 'object') return;
    const key = p.toolCallId || (p.tool + '|' + p.label);
    const steps = msg.tool_steps;
    let step = steps.find((s) => s.key === key);
    if (!step) {
      step = { key, tool: p.tool, emoji: p.emoji, label: p.label, status: p.status };
      steps.push(step);
    }
    if (p.emoji) step.emoji = p.emoji;
    if (p.label) step.label = p.label;
    if (p.status) step.status = p.status;
    scheduleRender(msg);
  } else if (ev.type === 'edge.error') {
    let e;
    try { e = JSON.parse(ev.data); } catch (_) { e = {}; }
    const code = e.code || 'upstream_error';
    msg.error = e.message || 'The answer could not be completed.';
    if (code === 'upstream_unreachable') upstreamUnreachable(e.message);
    else if (code === 'rate_limited') rateLimited(e.retry_after);
    scheduleRender(msg);
  }
}

function handleChatError(err, hadConversation) {
  if (err.status === 401) { sessionExpired(); return; }
  if (err.status === 429) { rateLimited(err.retryAfter); return; }
  if (err.status === 502 || err.status === 503 || err.status === 504) {
    upstreamUnreachable(err.message || undefined);
    return;
  }
  if (err.status === 413) {
    showBanner('chat', 'error', err.message || 'The images are too large. Attach smaller images (5 MiB each at most).');
    return;
  }
  if (err.status === 404 && hadConversation && err.code === 'not_found') {
    showBanner('chat', 'error', 'This conversation no longer exists. Start a new one.');
    newChat();
    refreshConversations();
    return;
  }
  showBanner('chat', 'error', err.message || ('The message could not be sent (HTTP ' + err.status + ').'));
}

export function stop() {
  if (state.controller) state.controller.abort();
}
