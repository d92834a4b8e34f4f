/*
 * The "API tokens" section of the account page: the same personal tokens as the chat page's
 * dialog (GET/POST/DELETE /api/tokens[/{id}]). A new token's secret is shown once, here, until
 * "I have copied it".
 */

import { api, $, el, button, formatDate, say, confirmInPlace } from './manage.js';

const list = $('acct-token-list');
const form = $('acct-token-form');
const nameInput = $('acct-token-name');
const errorBox = $('acct-tokens-error');
const created = $('acct-token-created');

function render(tokens) {
  list.replaceChildren();
  if (!tokens.length) {
    list.append(el('li', 'token-empty', 'No tokens yet.'));
    return;
  }
  for (const t of tokens) {
    const item = el('li', 'token-item');
    item.dataset.id = String(t.id);
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.append(el('span', 'token-name', t.name || 'API token'), el('code', 'token-prefix', (t.prefix || '') + '…'));
    const meta = el('div', 'token-meta');
    meta.append(el('span', null, 'Created ' + formatDate(t.created_at)),
      el('span', null, t.last_used_at ? 'Last used ' + formatDate(t.last_used_at) : 'Never used'));
    info.append(head, meta);
    const actions = el('div', 'token-actions');
    const revoke = button('revoke-btn', 'Revoke', 'Revoke ' + (t.name || 'API token'));
    revoke.addEventListener('click', () => confirmInPlace(item, actions,
      'Revoke \u201c' + (t.name || 'API token') + '\u201d? Programs using it stop working at once.', 'Revoke',
      async () => {
        await api('DELETE', '/api/tokens/' + encodeURIComponent(t.id)).catch((e) => { if (e.status !== 404) throw e; });
        await load();
      }, (text) => say(errorBox, text)));
    actions.append(revoke);
    item.append(info, actions);
    list.append(item);
  }
}

async function load() {
  try {
    const r = await api('GET', '/api/tokens');
    render((r && r.tokens) || []);
  } catch (e) {
    say(errorBox, e.message);
  }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say(errorBox, '');
  const name = nameInput.value.trim();
  const submit = $('acct-token-create');
  submit.disabled = true;
  try {
    const made = await api('POST', '/api/tokens', name ? { name } : {});
    nameInput.value = '';
    $('acct-token-secret').textContent = made.token;
    $('acct-token-base').textContent = location.origin + '/v1';
    created.hidden = false;
    form.hidden = true;
    await load();
  } catch (e) {
    say(errorBox, e.message);
  } finally {
    submit.disabled = false;
  }
});

$('acct-token-copy').addEventListener('click', async (ev) => {
  const b = ev.currentTarget;
  try {
    await navigator.clipboard.writeText($('acct-token-secret').textContent);
    b.textContent = 'Copied';
  } catch (_) {
    b.textContent = 'Select and copy it by hand';
  }
});

$('acct-token-done').addEventListener('click', () => {
  $('acct-token-secret').textContent = '';
  created.hidden = true;
  form.hidden = false;
  nameInput.focus();
});

load();
