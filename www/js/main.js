/*
 * The chat page. Talks to hermes-edge as described in docs/http-api.md:
 *   GET/PATCH/DELETE /api/conversations[/{id}], GET /api/me, GET /healthz, POST /api/chat (SSE),
 *   GET/POST/DELETE /api/tokens[/{id}] (the "API tokens" dialog).
 * No inline script or style (the CSP forbids both). The page's code is ES modules (see www/README.md
 * for which holds what), loaded from this one (index.html: <script type="module" src="/js/main.js">).
 * The other modules only define things (and look up their elements); this one wires the page
 * together and starts it.
 */

import { $, app, input, scrim } from './dom.js';
import { state } from './state.js';
import { api } from './api.js';
import { checkHealth } from './banners.js';
import { renderAll, wireMessages } from './messages.js';
import { autosize, updateSendEnabled, wireComposer } from './composer.js';
import { stop } from './chat.js';
import { newChat, refreshConversations, loadConversation } from './conversations.js';
import { openNav, closeNav } from './nav.js';
import { tokensDialog, wireTokens } from './tokens.js';

// ---------------------------------------------------------------- wiring
wireMessages();
wireTokens();
wireComposer();

document.addEventListener('keydown', (e) => {
  if (tokensDialog.open) return; // Esc there closes the dialog (the browser's own cancel), nothing else
  if (e.key === 'Escape' && state.controller) stop();
  if (e.key === 'Escape' && app.classList.contains('nav-open')) closeNav();
});
$('new-chat').addEventListener('click', newChat);
$('new-chat-top').addEventListener('click', newChat);
$('open-nav').addEventListener('click', openNav);
$('close-nav').addEventListener('click', closeNav);
scrim.addEventListener('click', closeNav);

window.addEventListener('popstate', () => {
  const id = new URLSearchParams(location.search).get('c');
  if (id) loadConversation(id, false);
  else newChat();
});

async function init() {
  try {
    const draft = sessionStorage.getItem('hermes.draft');
    if (draft) {
      input.value = draft;
      sessionStorage.removeItem('hermes.draft');
    }
  } catch (_) { /* storage off */ }
  autosize();
  updateSendEnabled();
  renderAll();
  const id = new URLSearchParams(location.search).get('c');
  api('GET', '/api/me').then((me) => {
    if (me && me.username) {
      $('me').textContent = me.username;
      $('me-avatar').textContent = me.username.slice(0, 1).toUpperCase();
    }
  }).catch(() => {});
  checkHealth(false);
  await refreshConversations();
  if (id) await loadConversation(id, false);
  if (window.matchMedia('(min-width: 800px)').matches) input.focus();
  app.classList.add('ready');
}

init();
