/*
 * The chat page. Talks to hermes-edge as described in docs/http-api.md:
 *   GET/PATCH/DELETE /api/conversations[/{id}], GET /api/me, GET /healthz, POST /api/chat (SSE),
 *   GET /api/conversations/{id}/run (SSE), POST .../run/stop and .../run/approval,
 *   GET/POST/DELETE /api/tokens[/{id}] (the "API tokens" dialog), GET /api/search (js/search.js),
 *   GET /api/conversations/{id}/export (js/export.js), GET /api/push/key and
 *   POST/DELETE /api/push/subscriptions (js/push.js).
 * No inline script or style (the CSP forbids both). The page's code is ES modules (see www/README.md
 * for which holds what), loaded from this one (index.html: <script type="module" src="/js/main.js">).
 * The other modules only define things (and look up their elements); this one wires the page
 * together and starts it.
 */

import { $, app, input, scrim } from './dom.js';
import { state } from './state.js';
import { api } from './api.js';
import { checkHealth, upstreamDown, clearBanner, unreachableEdge } from './banners.js';
import { renderAll, wireMessages } from './messages.js';
import { autosize, updateSendEnabled, wireComposer } from './composer.js';
import { stop, wireRuns } from './runs.js';
import { newChat, refreshConversations, loadConversation } from './conversations.js';
import { openNav, closeNav } from './nav.js';
import { tokensDialog, wireTokens } from './tokens.js';
import { flushDraft, loadDraft, pruneDrafts } from './drafts.js';
import { wireSearch } from './search.js';
import { wireExport } from './export.js';
import { wireTimestamps } from './timestamps.js';
import { wirePush } from './push.js';

// ---------------------------------------------------------------- wiring
wireMessages();
wireTokens();
wireComposer();
wireRuns();
wireSearch();
wireExport();
wireTimestamps();
wirePush();

document.addEventListener('keydown', (e) => {
  if (tokensDialog.open) return; // Esc there closes the dialog (the browser's own cancel), nothing else
  if (e.key === 'Escape' && state.stream) stop();
  if (e.key === 'Escape' && app.classList.contains('nav-open')) closeNav();
});
$('new-chat').addEventListener('click', newChat);
$('new-chat-top').addEventListener('click', newChat);
$('open-nav').addEventListener('click', openNav);
$('close-nav').addEventListener('click', closeNav);
scrim.addEventListener('click', closeNav);
// Leaving or hiding the page keeps the draft (and never stops a run: that is only the Stop button).
window.addEventListener('pagehide', flushDraft);
document.addEventListener('visibilitychange', () => { if (document.hidden) flushDraft(); });

// Back in view with Hermes down: look now rather than at the next timer.
document.addEventListener('visibilitychange', () => { if (!document.hidden && upstreamDown()) checkHealth(false); });

// The installed app: the service worker keeps the page's own files so it opens without a network
// (www/sw.js); what it shows then says so, and everything is fetched again once online.
if ('serviceWorker' in navigator) {
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => { /* not offered: a plain page */ });
}
window.addEventListener('offline', unreachableEdge);
window.addEventListener('online', () => {
  app.classList.remove('is-offline');
  clearBanner('offline');
  if (!state.me) loadMe();
  refreshConversations();
  checkHealth(false);
});

window.addEventListener('popstate', () => {
  const id = new URLSearchParams(location.search).get('c');
  if (id) loadConversation(id, false);
  else newChat();
});

/** Who is signed in (the name in the sidebar, the drafts' key, whether to show operator instructions). */
function loadMe() {
  return api('GET', '/api/me').then((m) => {
    if (m && m.username) {
      state.me = m.username;
      state.role = m.role || '';
      $('me').textContent = m.username;
      $('me-avatar').textContent = m.username.slice(0, 1).toUpperCase();
      $('open-admin').hidden = m.role !== 'admin';
      $('open-dashboard').hidden = !m.dashboard;
    }
  }).catch(() => {});
}

async function init() {
  autosize();
  updateSendEnabled();
  renderAll();
  const id = new URLSearchParams(location.search).get('c');
  const me = loadMe();
  if (navigator.onLine === false) unreachableEdge();
  checkHealth(false);
  await Promise.all([me, refreshConversations()]);
  pruneDrafts();
  if (id) await loadConversation(id, false);
  else if (!input.value) input.value = loadDraft(null);
  // Back from the sign-in page: the text that was being sent wins over the stored draft.
  try {
    const draft = sessionStorage.getItem('hermes.draft');
    if (draft) {
      input.value = draft;
      sessionStorage.removeItem('hermes.draft');
    }
  } catch (_) { /* storage off */ }
  autosize();
  updateSendEnabled();
  if (window.matchMedia('(min-width: 800px)').matches) input.focus();
  app.classList.add('ready');
}

init();
