/*
 * Sending: POST /api/chat, which starts a run at the server and streams it (js/runs.js reads the
 * stream), and the refusals before a run starts (429 too_many_runs among them).
 */

import { titleEl, input } from './dom.js';
import { state } from './state.js';
import { readError } from './api.js';
import { showBanner, clearBanner, rateLimited, upstreamUnreachable, sessionExpired } from './banners.js';
import { renderAll, scrollToBottom } from './messages.js';
import { renderAttachments, autosize, setBusy } from './composer.js';
import { newChat, refreshConversations, loadConversation } from './conversations.js';
import { saveDraft } from './drafts.js';
import { beginStream, newAnswer, readRun, settle, postStop } from './runs.js';

// ---------------------------------------------------------------- sending
/**
 * POST /api/chat and stream the answer into a new assistant message.
 * `userMsg` is shown immediately (null for regenerate); `draft` is restored if the server refuses.
 */
export async function sendChat(body, userMsg, draft) {
  if (state.currentId) body.conversation_id = state.currentId;
  if (userMsg) state.messages.push(userMsg);
  const msg = newAnswer();
  state.messages.push(msg);
  const s = beginStream(state.currentId, msg);
  const ac = new AbortController();
  s.ac = ac;
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
      signal: ac.signal,
    });
  } catch (e) {
    if (s.closed) return; // detached meanwhile
    msg.error = 'Could not reach hermes-edge. Check your connection and try again.';
    showBanner('offline', 'error', 'Cannot reach hermes-edge. Check your connection.');
    settle(s, 'error');
    return;
  }

  if (!res.ok) {
    const err = await readError(res);
    // The server refused before starting: undo the optimistic messages and give the text back.
    if (state.stream === s) { state.stream = null; setBusy(false); }
    s.abort();
    if (state.messages[state.messages.length - 1] === msg) {
      state.messages.pop();
      if (userMsg && state.messages[state.messages.length - 1] === userMsg) state.messages.pop();
    }
    if (draft && !input.value && state.currentId === convAtStart) {
      input.value = draft.text;
      saveDraft(state.currentId, draft.text);
      state.pendingImages = draft.images;
      if (draft.files) state.pendingFiles = draft.files;
      renderAttachments();
      autosize();
    }
    renderAll();
    handleChatError(err, !!body.conversation_id);
    if (!userMsg && err.status !== 401) loadConversation(state.currentId, true);
    return;
  }

  clearBanner('offline');
  clearBanner('upstream');
  clearBanner('chat');
  const cid = res.headers.get('X-Conversation-Id');
  s.convId = cid || convAtStart;
  if (s.closed) { ac.abort(); return; }
  if (cid && cid !== state.currentId) {
    state.currentId = cid;
    history.replaceState(null, '', '/?c=' + encodeURIComponent(cid));
  }
  if (!convAtStart) {
    state.title = userMsg && userMsg.content ? userMsg.content.split('\n')[0].slice(0, 80) : 'New chat';
    titleEl.textContent = state.title;
  }
  refreshConversations(); // the list marks the conversation whose run started
  if (s.stopRequested) postStop(s); // Stop was pressed before the run had an id

  const outcome = await readRun(s, res, ac);
  if (ac !== s.ac) return; // attached again meanwhile: that reader settles
  settle(s, outcome);
}

function handleChatError(err, hadConversation) {
  if (err.status === 401) { sessionExpired(); return; }
  if (err.status === 429 && err.code === 'too_many_runs') {
    showBanner('chat', 'warn', err.message ||
      'Too many answers are being written at once. Wait for one to finish, or stop one, then send again.');
    refreshConversations(); // the list marks the conversations with a run
    return;
  }
  if (err.status === 409 && err.code === 'run_in_progress') {
    // Another tab started an answer here meanwhile: follow it; the text stays in the box.
    showBanner('chat', 'warn', err.message || 'An answer is already being written in this conversation.');
    if (state.currentId) loadConversation(state.currentId, true);
    return;
  }
  if (err.status === 429) { rateLimited(err.retryAfter); return; }
  if (err.status === 502 || err.status === 503 || err.status === 504) {
    upstreamUnreachable(err.message || undefined, err.code);
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
