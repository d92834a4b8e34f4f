/*
 * The "Sessions" section of the account page: where and when you are signed in
 * (GET /api/sessions), this device marked; sign out one (DELETE /api/sessions/{id}) or all the
 * others.
 */

import { api, $, el, button, formatDate, say, uaSummary, confirmInPlace } from './manage.js';

const list = $('session-list');
const errorBox = $('sessions-error');
const othersBtn = $('sessions-others');

let sessions = [];

function render() {
  list.replaceChildren();
  for (const s of sessions) {
    const item = el('li', 'token-item session-item');
    item.dataset.id = s.id;
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.append(el('span', 'token-name', uaSummary(s.user_agent)));
    if (s.current) head.append(el('span', 'badge badge-ok', 'This device'));
    const meta = el('div', 'token-meta');
    meta.append(el('span', null, s.ip || 'unknown address'),
      el('span', null, 'Signed in ' + formatDate(s.created_at)),
      el('span', null, 'Last seen ' + formatDate(s.last_seen)));
    info.append(head, meta);
    item.append(info);
    if (!s.current) {
      const actions = el('div', 'token-actions');
      const out = button('session-revoke', 'Sign out', 'Sign out ' + uaSummary(s.user_agent) + ' at ' + (s.ip || ''));
      out.addEventListener('click', () => confirmInPlace(item, actions,
        'Sign out this session? That device must sign in again.', 'Sign out',
        async () => { await api('DELETE', '/api/sessions/' + encodeURIComponent(s.id)).catch(ignore404); await load(); },
        (t) => say(errorBox, t)));
      actions.append(out);
      item.append(actions);
    }
    list.append(item);
  }
  othersBtn.hidden = !sessions.some((s) => !s.current);
}

function ignore404(e) { if (e.status !== 404) throw e; }

async function load() {
  try {
    const r = await api('GET', '/api/sessions');
    sessions = (r && r.sessions) || [];
    say(errorBox, '');
    render();
  } catch (e) {
    say(errorBox, e.message);
  }
}

othersBtn.addEventListener('click', () => {
  const row = $('sessions-others-row');
  confirmInPlace(row, othersBtn.parentElement, 'Sign out every other session? Only this device stays signed in.', 'Sign out others',
    async () => {
      for (const s of sessions.filter((x) => !x.current)) {
        await api('DELETE', '/api/sessions/' + encodeURIComponent(s.id)).catch(ignore404);
      }
      row.querySelector('.token-confirm')?.remove();
      row.classList.remove('confirming');
      othersBtn.parentElement.hidden = false;
      await load();
    }, (t) => say(errorBox, t));
});

document.addEventListener('sessions-changed', load);
load();
