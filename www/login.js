/*
 * Login page behaviour on top of a plain form POST (the form works without this script):
 * fills the hidden `next` from the query string (same-site paths only) and explains `?error=` codes,
 * counting down the wait after `error=rate_limited&retry_after=N`.
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

  function show(text) {
    box.textContent = text;
    box.hidden = false;
  }

  // What was typed before a refused sign-in (the server's redirect carries no username): kept in
  // this tab only, never the password.
  let typed = null;
  try { typed = JSON.parse(sessionStorage.getItem('hermes.login') || 'null'); } catch (_) { typed = null; }
  try { sessionStorage.removeItem('hermes.login'); } catch (_) { /* storage off */ }

  if (error === 'invalid') {
    show('Wrong username or password. Please try again.');
    const user = document.getElementById('username');
    user.value = params.get('username') || (typed && typeof typed.username === 'string' ? typed.username : '');
    if (typed && typed.remember) document.getElementById('remember').checked = true;
    document.getElementById(user.value ? 'password' : 'username').focus();
  } else if (error === 'rate_limited') {
    let left = parseInt(params.get('retry_after') || '', 10);
    if (!Number.isFinite(left) || left < 0) left = 60;
    left = Math.min(left, 24 * 3600);
    const tick = () => {
      if (left <= 0) {
        show('You can try again now.');
        submit.disabled = false;
        return;
      }
      show('Too many sign-in attempts. Try again in ' + formatWait(left) + '.');
      submit.disabled = true;
      left -= 1;
      setTimeout(tick, 1000);
    };
    tick();
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

  document.getElementById('login-form').addEventListener('submit', () => {
    try {
      sessionStorage.setItem('hermes.login', JSON.stringify({
        username: document.getElementById('username').value,
        remember: document.getElementById('remember').checked,
      }));
    } catch (_) { /* storage off */ }
    // Let the browser post the form; just avoid double submits.
    setTimeout(() => { submit.disabled = true; submit.textContent = 'Signing in…'; }, 0);
  });
})();
