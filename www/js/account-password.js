/*
 * The "Password" section of the account page: GET /api/account/password says whether the
 * account has one (single sign-on accounts do not: the section says so); POST
 * /api/account/password {current, new} changes it and signs out the other sessions.
 */

import { api, $, say } from './manage.js';

const form = $('password-form');
const errorBox = $('password-error');
const doneBox = $('password-done');

async function load() {
  try {
    const s = await api('GET', '/api/account/password');
    form.hidden = !s.has_password;
    $('password-none').hidden = !!s.has_password;
  } catch (e) {
    say(errorBox, e.message);
  }
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  say(errorBox, '');
  say(doneBox, '');
  const current = $('password-current').value;
  const next = $('password-new').value;
  if ([...next].length < 8) {
    say(errorBox, 'The new password must be at least 8 characters.');
    $('password-new').focus();
    return;
  }
  if (next !== $('password-repeat').value) {
    say(errorBox, 'The two new passwords differ.');
    $('password-repeat').focus();
    return;
  }
  const submit = $('password-submit');
  submit.disabled = true;
  try {
    const r = await api('POST', '/api/account/password', { current, new: next });
    form.reset();
    const n = r && r.other_sessions_ended;
    say(doneBox, 'Password changed.' + (n ? ' ' + n + ' other session' + (n === 1 ? ' was' : 's were') + ' signed out.' : ''));
    document.dispatchEvent(new CustomEvent('sessions-changed'));
  } catch (e) {
    say(errorBox, e.message);
  } finally {
    submit.disabled = false;
  }
});

load();
