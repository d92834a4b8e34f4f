/*
 * Login page behaviour on top of a plain form POST (the form works without this script for
 * accounts without a second factor): fills the hidden `next` from the query string (same-site
 * paths only) and explains `?error=` codes, counting down the wait after
 * `error=rate_limited&retry_after=N`.
 *
 * With this script the form is sent with fetch() and the page stays: a wrong password keeps the
 * user name and the "keep me signed in" box, and an account with two-factor sign-in gets the code
 * field while its user name and password stay in the form, sent again with the code (the server
 * checks the password with every attempt).
 */
(function () {
  'use strict';

  /** Only a local path ("/x", not "//host" or "/\\host") may be a redirect target. */
  function safeNext(value) {
    if (typeof value !== 'string' || value[0] !== '/' || value[1] === '/' || value[1] === '\\') return '/';
    if (/[\u0000-\u001f\\]/.test(value)) return '/';
    return value;
  }

  const params = new URLSearchParams(location.search);
  const next = document.getElementById('next');
  next.value = safeNext(params.get('next') || '/');

  const box = document.getElementById('login-error');
  const submit = document.getElementById('login-submit');
  const error = params.get('error');

  /** Shows `text` in the message box: an error, or (`info`) a next step such as the code prompt. */
  function show(text, info) {
    box.className = info ? 'notice' : 'alert';
    box.textContent = text;
    box.hidden = false;
  }

  const form = document.getElementById('login-form');
  const codeField = document.getElementById('code-field');
  const code = document.getElementById('code');
  let countdown = null;

  function rateLimited(secs) {
    let left = Number.isFinite(secs) && secs >= 0 ? Math.min(secs, 24 * 3600) : 60;
    if (countdown) clearTimeout(countdown);
    const tick = () => {
      if (left <= 0) {
        show('You can try again now.', true);
        submit.disabled = false;
        countdown = null;
        return;
      }
      show('Too many sign-in attempts. Try again in ' + formatWait(left) + '.');
      submit.disabled = true;
      left -= 1;
      countdown = setTimeout(tick, 1000);
    };
    tick();
  }

  function askForCode(text, info) {
    codeField.hidden = false;
    code.required = true;
    show(text, info);
    code.value = '';
    code.focus();
  }

  if (error === 'invalid') {
    show('Wrong username or password. Please try again.');
    const user = document.getElementById('username');
    user.value = params.get('username') || '';
    document.getElementById(user.value ? 'password' : 'username').focus();
  } else if (error === 'rate_limited') {
    rateLimited(parseInt(params.get('retry_after') || '', 10));
  } else if (error === 'code_required' || error === 'invalid_code') {
    codeField.hidden = false;
    show('This account has two-factor sign-in: enter your password again and the code from your app.', true);
  } else if (error === 'expired') {
    show('Your session has expired. Please sign in again.');
  } else if (error) {
    show('Sign-in failed. Please try again.');
  }

  function formatWait(s) {
    if (s < 60) return s + (s === 1 ? ' second' : ' seconds');
    const m = Math.floor(s / 60);
    const r = s % 60;
    return m + (m === 1 ? ' minute' : ' minutes') + (r ? ' ' + r + (r === 1 ? ' second' : ' seconds') : '');
  }

  function busy(on) {
    submit.disabled = on;
    submit.textContent = on ? 'Signing in…' : (codeField.hidden ? 'Sign in' : 'Verify');
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (submit.disabled) return;
    busy(true);
    let res;
    try {
      res = await fetch('/login', {
        method: 'POST',
        headers: { 'Accept': 'application/json' },
        body: new URLSearchParams(new FormData(form)),
        credentials: 'same-origin',
      });
    } catch (_) {
      busy(false);
      show('The server cannot be reached. Check the connection and try again.');
      return;
    }
    let body = {};
    try { body = await res.json(); } catch (_) { /* an empty or non-JSON answer */ }
    if (res.ok && body.ok) {
      location.assign(safeNext(body.next || next.value));
      return;
    }
    busy(false);
    const kind = body && body.error && body.error.code;
    if (res.status === 429) {
      rateLimited(parseInt(res.headers.get('Retry-After') || '', 10));
    } else if (kind === 'code_required') {
      askForCode('Enter the code from your authenticator app (or a recovery code).', true);
    } else if (kind === 'invalid_code') {
      askForCode('Wrong or already used code. Enter the current code from your app.');
    } else if (kind === 'invalid_credentials') {
      // Keep the user name and the box; the password is typed again.
      codeField.hidden = true;
      code.required = false;
      code.value = '';
      submit.textContent = 'Sign in';
      show('Wrong username or password. Please try again.');
      const pw = document.getElementById('password');
      pw.value = '';
      pw.focus();
    } else {
      show((body && body.error && body.error.message) || 'Sign-in failed. Please try again.');
    }
  });
})();
