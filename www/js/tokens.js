/*
 * The "API tokens" dialog: GET/POST/DELETE /api/tokens[/{id}].
 */

import { $, el, copyText } from './dom.js';
import { api } from './api.js';
import { closeNav } from './nav.js';

// ---------------------------------------------------------------- API tokens dialog
// Personal tokens for /v1 (docs/http-api.md). The secret comes back once, from POST /api/tokens;
// it lives only in the dialog's DOM until the dialog is closed or "I have copied it" is pressed.
export const tokensDialog = $('tokens-dialog');
const tokenList = $('token-list');
const tokenForm = $('token-form');
const tokenName = $('token-name');
const tokenCreateBtn = $('token-create');
const tokenError = $('tokens-error');
const tokenCreated = $('token-created');
let createdId = null; // the token whose secret the dialog is showing
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function formatDate(text) {
  const d = new Date(text);
  return Number.isFinite(d.getTime()) ? dateFormat.format(d) : String(text || '');
}

function showTokenError(text) {
  tokenError.textContent = text;
  tokenError.hidden = !text;
}

function tokenErrorText(e, doing) {
  if (e && e.info) {
    if (e.info.status === 401 || e.info.status === 429) return e.message;
    return 'Could not ' + doing + ': ' + (e.info.message || ('HTTP ' + e.info.status)) + '.';
  }
  return 'Could not ' + doing + ': hermes-edge is not reachable. Check your connection and try again.';
}

function renderTokens(tokens) {
  tokenList.replaceChildren();
  if (!tokens.length) {
    tokenList.appendChild(el('li', 'token-empty', 'No tokens yet.'));
    return;
  }
  for (const t of tokens) tokenList.appendChild(renderTokenItem(t));
}

function renderTokenItem(t) {
  const li = el('li', 'token-item');
  li.dataset.id = String(t.id);
  const info = el('div', 'token-info');
  const head = el('div', 'token-head');
  head.appendChild(el('span', 'token-name', t.name || 'API token'));
  head.appendChild(el('code', 'token-prefix', (t.prefix || '') + '…'));
  info.appendChild(head);
  const meta = el('div', 'token-meta');
  meta.appendChild(el('span', null, 'Created ' + formatDate(t.created_at)));
  meta.appendChild(el('span', 'token-used', t.last_used_at ? 'Last used ' + formatDate(t.last_used_at) : 'Never used'));
  info.appendChild(meta);
  li.appendChild(info);

  const actions = el('div', 'token-actions');
  const revoke = el('button', 'btn btn-small revoke-btn', 'Revoke');
  revoke.type = 'button';
  revoke.setAttribute('aria-label', 'Revoke ' + (t.name || 'API token'));
  actions.appendChild(revoke);
  li.appendChild(actions);

  const confirm = el('div', 'token-confirm');
  confirm.hidden = true;
  confirm.appendChild(el('span', 'token-confirm-text', 'Revoke “' + (t.name || 'API token') + '”? Programs using it stop working at once.'));
  const cancel = el('button', 'btn btn-small btn-ghost', 'Cancel');
  cancel.type = 'button';
  const yes = el('button', 'btn btn-small btn-danger confirm-revoke-btn', 'Revoke');
  yes.type = 'button';
  const buttons = el('div', 'token-confirm-buttons');
  buttons.append(cancel, yes);
  confirm.appendChild(buttons);
  li.appendChild(confirm);

  const setConfirming = (on) => {
    li.classList.toggle('confirming', on);
    confirm.hidden = !on;
    actions.hidden = on;
    (on ? cancel : revoke).focus();
  };
  revoke.addEventListener('click', () => setConfirming(true));
  cancel.addEventListener('click', () => setConfirming(false));
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    cancel.disabled = true;
    try {
      await api('DELETE', '/api/tokens/' + encodeURIComponent(t.id));
    } catch (e) {
      // Already gone (another tab, the CLI): the list below shows what is left.
      if (!(e.info && e.info.status === 404)) {
        showTokenError(tokenErrorText(e, 'revoke the token'));
        yes.disabled = false;
        cancel.disabled = false;
        return;
      }
    }
    showTokenError('');
    if (t.id === createdId) forgetCreated();
    await loadTokens();
    tokenName.focus();
  });
  return li;
}

async function loadTokens() {
  try {
    const body = await api('GET', '/api/tokens');
    renderTokens(body && Array.isArray(body.tokens) ? body.tokens : []);
  } catch (e) {
    showTokenError(tokenErrorText(e, 'load your tokens'));
  }
}

function usageExample(token) {
  return 'curl ' + location.origin + '/v1/chat/completions \\\n' +
    '  -H "Authorization: Bearer ' + token + '" \\\n' +
    '  -H "Content-Type: application/json" \\\n' +
    '  -d \'{"model": "hermes-agent", "messages": [{"role": "user", "content": "Hello"}]}\'';
}

function showCreated(id, token) {
  createdId = id;
  $('token-secret').textContent = token;
  $('token-base-url').textContent = location.origin + '/v1';
  $('token-example').textContent = usageExample(token);
  tokenCreated.hidden = false;
  tokenForm.hidden = true;
  $('token-copy').focus();
}

function forgetCreated() {
  createdId = null;
  tokenCreated.hidden = true;
  tokenForm.hidden = false;
  $('token-secret').textContent = '';
  $('token-example').textContent = '';
}

async function createToken() {
  const name = tokenName.value.trim();
  tokenCreateBtn.disabled = true;
  try {
    const made = await api('POST', '/api/tokens', name ? { name } : {});
    showTokenError('');
    tokenName.value = '';
    await loadTokens();
    if (made && typeof made.token === 'string') showCreated(made.id, made.token);
  } catch (e) {
    showTokenError(tokenErrorText(e, 'create the token'));
    tokenName.focus();
  } finally {
    tokenCreateBtn.disabled = false;
  }
}

function openTokens() {
  closeNav();
  forgetCreated();
  showTokenError('');
  tokenList.replaceChildren(el('li', 'token-empty', 'Loading…'));
  tokensDialog.showModal();
  // Phones: no keyboard popping up at once; the close button takes the focus instead.
  if (window.matchMedia('(min-width: 800px)').matches) tokenName.focus();
  else $('tokens-close').focus();
  loadTokens();
}

/** The dialog's buttons, form and backdrop (main.js calls this once). */
export function wireTokens() {
  tokenForm.addEventListener('submit', (e) => { e.preventDefault(); createToken(); });
  $('open-tokens').addEventListener('click', openTokens);
  $('tokens-close').addEventListener('click', () => tokensDialog.close());
  $('token-copy').addEventListener('click', (e) => copyText($('token-secret').textContent, e.currentTarget));
  $('token-example-copy').addEventListener('click', (e) => copyText($('token-example').textContent, e.currentTarget));
  $('token-done').addEventListener('click', () => { forgetCreated(); tokenName.focus(); });
  // A click on the backdrop (outside the dialog box) closes it too.
  tokensDialog.addEventListener('click', (e) => {
    if (e.target !== tokensDialog) return;
    const r = tokensDialog.getBoundingClientRect();
    const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
    if (!inside) tokensDialog.close();
  });
  // The browser puts the focus back where it was when the dialog opened.
  tokensDialog.addEventListener('close', forgetCreated);
}
