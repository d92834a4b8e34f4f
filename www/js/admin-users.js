/*
 * The admin page's "Users" section: the list (GET /api/admin/users), adding an account with a
 * password (POST /api/admin/users) or a one-time invite link (POST /api/admin/invites), and per
 * account: change role, reset password (a new one, or a reset link), reset second factor and
 * remove, each through POST /api/admin/users/{name}/... or DELETE /api/admin/users/{name}.
 * Destructive actions ask in the row first. Also shows the dashboard link when GET /api/me says
 * it is configured.
 */

import { api, $, el, button, formatDate, say, confirmInPlace } from './manage.js';

const list = $('user-list');
const errorBox = $('users-error');
const doneBox = $('users-done');
const form = $('user-form');
let me = null;

function userPath(name, rest) {
  return '/api/admin/users/' + encodeURIComponent(name) + (rest ? '/' + rest : '');
}

function showLink(text, url) {
  $('invite-result-text').textContent = text;
  $('invite-url').textContent = url;
  $('invite-copy').textContent = 'Copy link';
  $('invite-result').hidden = false;
  $('invite-copy').focus();
}

function badges(u) {
  const out = [];
  out.push(el('span', 'badge' + (u.role === 'admin' ? ' badge-ok' : ''), u.role === 'admin' ? 'Administrator' : 'User'));
  out.push(el('span', 'badge' + (u.totp ? ' badge-ok' : ''), u.totp ? '2FA on' : '2FA off'));
  if (u.passkeys) out.push(el('span', 'badge badge-ok', u.passkeys + ' passkey' + (u.passkeys === 1 ? '' : 's')));
  if (u.sso) out.push(el('span', 'badge', 'SSO: ' + u.sso));
  if (u.pending_link) out.push(el('span', 'badge badge-warn', 'Link not used yet'));
  else if (!u.has_password && !u.sso) out.push(el('span', 'badge badge-warn', 'No password'));
  return out;
}

/** The inline "reset password" panel of a row: a new password, or a reset link. */
function passwordPanel(item, u) {
  item.querySelector('.user-panel')?.remove();
  const panel = el('div', 'user-panel');
  panel.append(el('p', null, 'Resetting signs ' + u.username + ' out everywhere and revokes their API tokens.'));
  const row = el('form', 'token-form-row');
  const input = el('input');
  input.type = 'password';
  input.autocomplete = 'new-password';
  input.placeholder = 'New password (8 or more)';
  input.setAttribute('aria-label', 'New password for ' + u.username);
  input.minLength = 8;
  const set = el('button', 'btn btn-primary reset-set', 'Set password');
  set.type = 'submit';
  row.append(input, set);
  const buttons = el('div', 'row-buttons');
  const link = button('reset-link', 'Make a reset link instead');
  const cancel = button('btn-ghost', 'Cancel');
  buttons.append(link, cancel);
  panel.append(row, buttons);
  item.append(panel);
  input.focus();
  cancel.addEventListener('click', () => panel.remove());
  row.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const r = await api('POST', userPath(u.username, 'password'), { password: input.value });
      say(doneBox, 'Password of ' + u.username + ' changed; signed out everywhere, ' + r.tokens_revoked + ' API token(s) revoked.');
      await load();
    } catch (e) { say(errorBox, e.message); }
  });
  link.addEventListener('click', async () => {
    try {
      const r = await api('POST', userPath(u.username, 'password'), { link: true });
      showLink('Reset link for ' + u.username + ' (works once, until ' + formatDate(r.expires_at) + '). Their old password no longer works.', r.url);
      await load();
    } catch (e) { say(errorBox, e.message); }
  });
}

function render(users) {
  list.replaceChildren();
  for (const u of users) {
    const item = el('li', 'token-item user-item');
    item.dataset.name = u.username;
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.append(el('span', 'token-name', u.username));
    if (me && me.username === u.username) head.append(el('span', 'badge', 'you'));
    const detail = el('div', 'user-detail');
    detail.append(...badges(u));
    const meta = el('div', 'token-meta');
    meta.append(el('span', null, 'Created ' + formatDate(u.created_at)),
      el('span', null, u.last_sign_in ? 'Last sign-in ' + formatDate(u.last_sign_in) : 'Never signed in'));
    info.append(head, detail, meta);

    const actions = el('div', 'token-actions');
    const role = button('role-btn', u.role === 'admin' ? 'Make user' : 'Make admin');
    role.addEventListener('click', async () => {
      say(errorBox, '');
      try {
        await api('POST', userPath(u.username, 'role'), { role: u.role === 'admin' ? 'user' : 'admin' });
        say(doneBox, u.username + ' is now ' + (u.role === 'admin' ? 'a user' : 'an administrator') + '.');
        await load();
      } catch (e) { say(errorBox, e.message); }
    });
    const pw = button('password-btn', 'Reset password');
    pw.addEventListener('click', () => passwordPanel(item, u));
    actions.append(role, pw);
    if (u.totp) {
      const tf = button('twofa-btn', 'Reset 2FA');
      tf.addEventListener('click', () => confirmInPlace(item, actions,
        'Remove the authenticator app and recovery codes of ' + u.username + '? They are signed out everywhere and sign in with their password alone.',
        'Reset 2FA', async () => {
          await api('POST', userPath(u.username, '2fa/reset'), {});
          say(doneBox, 'Two-factor sign-in of ' + u.username + ' was reset.');
          await load();
        }, (t) => say(errorBox, t)));
      actions.append(tf);
    }
    const rm = button('remove-btn', 'Remove', 'Remove ' + u.username);
    rm.addEventListener('click', () => confirmInPlace(item, actions,
      'Remove ' + u.username + '? Their sessions, API tokens and conversations are deleted.',
      'Remove', async () => {
        await api('DELETE', userPath(u.username));
        say(doneBox, u.username + ' was removed.');
        await load();
      }, (t) => say(errorBox, t)));
    actions.append(rm);
    item.append(info, actions);
    list.append(item);
  }
}

async function load() {
  try {
    const r = await api('GET', '/api/admin/users');
    render((r && r.users) || []);
  } catch (e) {
    say(errorBox, e.message);
  }
}

$('new-how').addEventListener('change', () => {
  const withPassword = $('new-how').value === 'password';
  $('new-password-field').hidden = !withPassword;
  $('new-password').required = withPassword;
  $('user-add').textContent = withPassword ? 'Add user' : 'Add and make a link';
});

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say(errorBox, '');
  say(doneBox, '');
  const username = $('new-username').value.trim();
  const role = $('new-role').value;
  const submit = $('user-add');
  submit.disabled = true;
  try {
    if ($('new-how').value === 'password') {
      await api('POST', '/api/admin/users', { username, role, password: $('new-password').value });
      say(doneBox, username + ' was added.');
    } else {
      const r = await api('POST', '/api/admin/invites', { username, role });
      showLink('Invite link for ' + username + ': send it to them. It works once, until ' + formatDate(r.expires_at) + '.', r.url);
    }
    form.reset();
    $('new-how').dispatchEvent(new Event('change'));
    await load();
  } catch (e) {
    say(errorBox, e.message);
  } finally {
    submit.disabled = false;
  }
});

$('invite-copy').addEventListener('click', async (ev) => {
  try {
    await navigator.clipboard.writeText($('invite-url').textContent);
    ev.currentTarget.textContent = 'Copied';
  } catch (_) {
    ev.currentTarget.textContent = 'Select and copy it by hand';
  }
});
$('invite-close').addEventListener('click', () => {
  $('invite-result').hidden = true;
  $('invite-url').textContent = '';
});

async function start() {
  try {
    me = await api('GET', '/api/me');
    $('dashboard-link').hidden = !(me && me.dashboard);
  } catch (_) { /* the list below says what is wrong */ }
  $('new-how').dispatchEvent(new Event('change'));
  await load();
}

start();
