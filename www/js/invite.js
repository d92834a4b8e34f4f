/*
 * The page of a one-time password link (/invite/{token}): asks GET /api/invite/{token} whom it
 * is for (or why it no longer works: expired, used, unknown), then POST /api/invite/{token}
 * {password} sets the password; the person then signs in as usual.
 */

const $ = (id) => document.getElementById(id);
const token = location.pathname.split('/').pop() || '';
const path = '/api/invite/' + encodeURIComponent(token);

function fail(text) {
  $('invite-error').textContent = text;
  $('invite-error').hidden = false;
}

async function json(res) {
  try { return await res.json(); } catch (_) { return null; }
}

function message(body, fallback) {
  return (body && body.error && body.error.message) || fallback;
}

async function start() {
  let res;
  try {
    res = await fetch(path, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
  } catch (_) {
    fail('The server cannot be reached. Check the connection and reload the page.');
    return;
  }
  const body = await json(res);
  if (!res.ok) {
    $('invite-title').textContent = 'This link does not work';
    $('invite-sub').textContent = '';
    fail(message(body, 'This link does not work (' + res.status + ').'));
    $('invite-login').hidden = false;
    return;
  }
  $('invite-title').textContent = body.purpose === 'reset' ? 'Choose a new password' : 'Welcome to Hermes';
  $('invite-sub').textContent = 'Set the password of the account ' + body.username + '. This link works once.';
  $('invite-username').value = body.username;
  $('invite-fields').hidden = false;
  $('invite-password').focus();
}

$('invite-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('invite-error').hidden = true;
  const password = $('invite-password').value;
  if ([...password].length < 8) { fail('The password must be at least 8 characters.'); return; }
  if (password !== $('invite-repeat').value) { fail('The two passwords differ.'); return; }
  $('invite-submit').disabled = true;
  let res;
  try {
    res = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ password }),
    });
  } catch (_) {
    fail('The server cannot be reached. Check the connection and try again.');
    $('invite-submit').disabled = false;
    return;
  }
  const body = await json(res);
  if (!res.ok) {
    fail(message(body, 'The password was not set (' + res.status + ').'));
    $('invite-submit').disabled = false;
    return;
  }
  $('invite-fields').hidden = true;
  $('invite-done').textContent = 'Your password is set. Sign in with ' + body.username + ' and the new password.';
  $('invite-done').hidden = false;
  $('invite-login').href = '/login';
  $('invite-login').hidden = false;
  $('invite-login').focus();
});

start();
