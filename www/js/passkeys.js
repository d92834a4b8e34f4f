/*
 * The "Passkeys" section of the account page: list (GET /api/passkeys), add (POST
 * /api/passkeys/register, navigator.credentials.create, POST /api/passkeys/register/finish) and
 * remove after a confirmation (DELETE /api/passkeys/{id}). Everything it touches is inside
 * #passkeys-section.
 */

import { supported, creationOptions, registrationJSON, postJSON, errorText } from './webauthn.js';

const $ = (id) => document.getElementById(id);
const list = $('passkey-list');
const form = $('passkey-form');
const nameInput = $('passkey-name');
const addBtn = $('passkey-add');
const errorBox = $('passkeys-error');
const unavailableBox = $('passkeys-unavailable');
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

function formatDate(text) {
  const d = new Date(text);
  return Number.isFinite(d.getTime()) ? dateFormat.format(d) : String(text || '');
}

function showError(text) {
  errorBox.textContent = text || '';
  errorBox.hidden = !text;
}

async function getJSON(url) {
  const res = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (res.status === 401) {
    location.assign('/login?next=' + encodeURIComponent(location.pathname));
    return null;
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(errorText(body, 'HTTP ' + res.status));
  return body;
}

function render(passkeys) {
  list.replaceChildren();
  if (!passkeys.length) {
    list.append(el('li', 'token-empty', 'No passkeys yet.'));
    return;
  }
  for (const p of passkeys) {
    const item = el('li', 'token-item passkey-item');
    item.dataset.id = String(p.id);
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.append(el('span', 'token-name passkey-name', p.name), el('span', 'token-prefix', 'for ' + p.rp_id));
    const meta = el('div', 'token-meta');
    meta.append(el('span', null, 'Added ' + formatDate(p.created_at)),
      el('span', 'passkey-last-used', p.last_used_at ? 'Last used ' + formatDate(p.last_used_at) : 'Never used'));
    info.append(head, meta);
    const actions = el('div', 'token-actions');
    const remove = el('button', 'btn btn-small passkey-remove', 'Remove');
    remove.type = 'button';
    remove.setAttribute('aria-label', 'Remove passkey ' + p.name);
    remove.addEventListener('click', () => confirmRemove(item, p, remove));
    actions.append(remove);
    item.append(info, actions);
    list.append(item);
  }
}

/** Asks in place before removing: signing in with that passkey stops working at once. */
function confirmRemove(item, p, removeBtn) {
  if (item.classList.contains('confirming')) return;
  item.classList.add('confirming');
  removeBtn.hidden = true;
  const box = el('div', 'token-confirm');
  const text = el('span', 'token-confirm-text', 'Remove \u201c' + p.name + '\u201d? Signing in with it will stop working.');
  const buttons = el('div', 'token-confirm-buttons');
  const yes = el('button', 'btn btn-small btn-danger passkey-confirm-remove', 'Remove');
  const no = el('button', 'btn btn-small passkey-cancel-remove', 'Cancel');
  yes.type = 'button';
  no.type = 'button';
  no.addEventListener('click', () => {
    box.remove();
    item.classList.remove('confirming');
    removeBtn.hidden = false;
  });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    const res = await fetch('/api/passkeys/' + encodeURIComponent(p.id), {
      method: 'DELETE', credentials: 'same-origin', headers: { Accept: 'application/json' },
    }).catch(() => null);
    if (!res || !(res.ok || res.status === 404)) {
      const body = res ? await res.json().catch(() => null) : null;
      showError('Could not remove the passkey: ' + errorText(body, 'the server is not reachable') + '.');
      yes.disabled = false;
      return;
    }
    showError('');
    await refresh();
  });
  buttons.append(no, yes);
  box.append(text, buttons);
  item.append(box);
  no.focus();
}

async function refresh() {
  let data;
  try {
    data = await getJSON('/api/passkeys');
  } catch (e) {
    showError('Could not load your passkeys: ' + e.message + '.');
    return;
  }
  if (!data) return;
  const unusable = !data.available ? data.message
    : !supported() ? 'This browser does not support passkeys. Your password keeps working.' : '';
  unavailableBox.textContent = unusable || '';
  unavailableBox.hidden = !unusable;
  form.hidden = !!unusable;
  render(data.passkeys || []);
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  showError('');
  const name = nameInput.value.trim();
  if (!name) { nameInput.focus(); return; }
  addBtn.disabled = true;
  try {
    const start = await postJSON('/api/passkeys/register', { name });
    if (!start.ok) { showError(errorText(start.body, 'Could not start adding a passkey.')); return; }
    let cred;
    try {
      cred = await navigator.credentials.create(creationOptions(start.body.options));
    } catch (e) {
      showError(e && e.name === 'InvalidStateError'
        ? 'This device already holds a passkey for your account.'
        : 'No passkey was created (' + (e && e.message ? e.message : 'cancelled') + ').');
      return;
    }
    const done = await postJSON('/api/passkeys/register/finish', {
      ceremony: start.body.ceremony,
      credential: registrationJSON(cred),
    });
    if (!done.ok) { showError(errorText(done.body, 'The passkey was not accepted.')); return; }
    nameInput.value = '';
    await refresh();
  } catch (e) {
    showError('Could not add a passkey: ' + e.message + '.');
  } finally {
    addBtn.disabled = false;
  }
});

refresh();
