/*
 * The admin page's "Sessions" (everyone's, GET /api/admin/sessions, revoke with DELETE
 * /api/admin/sessions/{id}) and "Sign-in audit" sections (GET /api/admin/audit with filters:
 * user, success, method, from/to as Unix seconds; paged with `before`).
 */

import { api, $, el, button, formatDate, say, uaSummary, confirmInPlace } from './manage.js';

const sessionList = $('all-session-list');
const sessionsError = $('all-sessions-error');
const auditList = $('audit-list');
const auditError = $('audit-error');
const moreBtn = $('audit-more');
const PAGE = 50;
let lastId = null;

async function loadSessions() {
  let r;
  try {
    r = await api('GET', '/api/admin/sessions');
  } catch (e) {
    say(sessionsError, e.message);
    return;
  }
  say(sessionsError, '');
  sessionList.replaceChildren();
  const sessions = (r && r.sessions) || [];
  if (!sessions.length) sessionList.append(el('li', 'token-empty', 'Nobody is signed in.'));
  for (const s of sessions) {
    const item = el('li', 'token-item session-item');
    item.dataset.id = s.id;
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.append(el('span', 'token-name', s.username), el('span', 'token-prefix', uaSummary(s.user_agent)));
    if (s.current) head.append(el('span', 'badge badge-ok', 'This device'));
    const meta = el('div', 'token-meta');
    meta.append(el('span', null, s.ip || ''), el('span', null, 'Signed in ' + formatDate(s.created_at)),
      el('span', null, 'Last seen ' + formatDate(s.last_seen)));
    info.append(head, meta);
    item.append(info);
    if (!s.current) {
      const actions = el('div', 'token-actions');
      const out = button('session-revoke', 'Sign out', 'Sign out ' + s.username + ' on ' + uaSummary(s.user_agent));
      out.addEventListener('click', () => confirmInPlace(item, actions,
        'Sign out ' + s.username + ' on this device?', 'Sign out', async () => {
          await api('DELETE', '/api/admin/sessions/' + encodeURIComponent(s.id)).catch((e) => { if (e.status !== 404) throw e; });
          await loadSessions();
        }, (t) => say(sessionsError, t)));
      actions.append(out);
      item.append(actions);
    }
    sessionList.append(item);
  }
}

/** Local midnight of a date input's value, as Unix seconds; `days` later for an end date. */
function dayStart(value, days) {
  if (!value) return null;
  const [y, m, d] = value.split('-').map(Number);
  const t = new Date(y, m - 1, d + days).getTime();
  return Number.isFinite(t) ? Math.floor(t / 1000) : null;
}

function query(before) {
  const q = new URLSearchParams();
  q.set('limit', String(PAGE));
  const user = $('audit-user').value.trim();
  if (user) q.set('user', user);
  if ($('audit-success').value) q.set('success', $('audit-success').value);
  if ($('audit-method').value) q.set('method', $('audit-method').value);
  const from = dayStart($('audit-from').value, 0);
  const to = dayStart($('audit-to').value, 1);
  if (from != null) q.set('from', String(from));
  if (to != null) q.set('to', String(to));
  if (before != null) q.set('before', String(before));
  return q.toString();
}

const METHODS = { password: 'password', passkey: 'passkey', oidc: 'single sign-on', password_change: 'password change' };

async function loadAudit(more) {
  let r;
  try {
    r = await api('GET', '/api/admin/audit?' + query(more ? lastId : null));
  } catch (e) {
    say(auditError, e.message);
    return;
  }
  say(auditError, '');
  if (!more) auditList.replaceChildren();
  const entries = (r && r.entries) || [];
  if (!more && !entries.length) auditList.append(el('li', 'token-empty', 'No sign-in attempts match.'));
  for (const a of entries) {
    const item = el('li', 'token-item audit-item');
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.append(el('span', 'token-name', a.username || '(no name)'),
      el('span', 'badge ' + (a.success ? 'badge-ok' : 'badge-err'), a.success ? 'success' : 'failed'),
      el('span', 'token-prefix', (METHODS[a.method] || a.method) + (a.detail && a.detail !== a.method ? ' · ' + a.detail.replace(/_/g, ' ') : '')));
    const meta = el('div', 'token-meta');
    meta.append(el('span', null, formatDate(a.at)), el('span', null, a.ip));
    info.append(head, meta);
    item.append(info);
    auditList.append(item);
    lastId = a.id;
  }
  moreBtn.hidden = !r.more;
}

$('audit-filters').addEventListener('submit', (ev) => { ev.preventDefault(); loadAudit(false); });
moreBtn.addEventListener('click', () => loadAudit(true));

loadSessions();
loadAudit(false);
