/*
 * The account page's two-factor section (a classic script, like login.js):
 * set up an authenticator app (the server makes the secret and draws its QR code), confirm it with
 * a first code, show the recovery codes once, make new ones or turn it off with a code or the
 * password. The other sections have their own modules (www/js/passkeys.js, account-*.js).
 *
 * `?enrol=1`, or an account the server says must have a second factor, shows why the rest of the
 * site is closed until enrolment is done.
 */
(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const errorBox = $('account-error');
  const params = new URLSearchParams(location.search);
  let required = params.get('enrol') === '1';

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  /** A JSON request of the account API; a missing session goes to the login page. */
  async function api(method, path, body) {
    const init = { method, headers: { 'Accept': 'application/json' }, credentials: 'same-origin' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new Error('The server cannot be reached. Check the connection and try again.');
    }
    if (res.status === 401) {
      location.assign('/login?next=' + encodeURIComponent('/account'));
      throw new Error('Your session has ended.');
    }
    let data = null;
    if (res.status !== 204) {
      try { data = await res.json(); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const message = data && data.error && data.error.message;
      const wait = res.headers.get('Retry-After');
      throw new Error(message || ('Request failed (' + res.status + ')' + (wait ? '; try again in ' + wait + ' s' : '') + '.'));
    }
    return data;
  }

  function show(id, on) { $(id).hidden = !on; }

  async function refresh() {
    const s = await api('GET', '/api/account/2fa');
    required = required || (s.required && !s.totp);
    $('enrol-notice').hidden = !(s.required && !s.totp);
    if (s.totp) {
      $('tf-status').textContent = 'On: sign-in asks for a code from your authenticator app. Recovery codes left: ' + s.recovery_codes_left + '.';
    } else {
      $('tf-status').textContent = 'Off: your password alone signs you in.';
    }
    show('tf-off', !s.totp && $('tf-setup').hidden);
    show('tf-disable', s.totp && $('tf-codes').hidden);
    return s;
  }

  $('tf-start').addEventListener('click', async () => {
    showError('');
    try {
      const e = await api('POST', '/api/account/2fa/totp');
      if (e.qr_svg) {
        $('tf-qr').src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(e.qr_svg);
      }
      $('tf-secret').textContent = e.secret;
      $('tf-uri').textContent = e.uri;
      $('tf-uri').href = e.uri;
      show('tf-setup', true);
      show('tf-off', false);
      $('tf-code').focus();
    } catch (err) {
      showError(err.message);
    }
  });

  $('tf-confirm-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError('');
    $('tf-confirm').disabled = true;
    try {
      const r = await api('POST', '/api/account/2fa/totp/confirm', { code: $('tf-code').value });
      showCodes(r.recovery_codes);
      show('tf-setup', false);
      $('tf-secret').textContent = '';
      $('tf-uri').textContent = '';
      $('tf-qr').removeAttribute('src');
      await refresh();
      $('tf-done').focus();
    } catch (err) {
      showError(err.message);
      $('tf-code').select();
    } finally {
      $('tf-confirm').disabled = false;
    }
  });

  /** Shows recovery codes, this once (they are never sent again). */
  function showCodes(codes) {
    const list = $('tf-code-list');
    list.textContent = '';
    for (const c of codes) {
      const li = document.createElement('li');
      li.textContent = c;
      list.appendChild(li);
    }
    show('tf-codes', true);
  }

  /** The proof typed in the two-factor form: a code if there is one, else the password. */
  function proof() {
    const code = $('tf-disable-code').value.trim();
    const password = $('tf-disable-password').value;
    if (!code && !password) return null;
    return code ? { code } : { password };
  }

  function clearProof() {
    $('tf-disable-code').value = '';
    $('tf-disable-password').value = '';
  }

  $('tf-renew').addEventListener('click', async () => {
    showError('');
    const body = proof();
    if (!body) {
      showError('Enter a code or your password.');
      return;
    }
    try {
      const r = await api('POST', '/api/account/2fa/recovery-codes', body);
      clearProof();
      show('tf-disable', false);
      showCodes(r.recovery_codes);
      await refresh();
      $('tf-done').focus();
    } catch (err) {
      showError(err.message);
    }
  });

  $('tf-copy').addEventListener('click', async () => {
    const text = Array.from($('tf-code-list').children, (li) => li.textContent).join('\n');
    try { await navigator.clipboard.writeText(text); $('tf-copy').textContent = 'Copied'; } catch (_) { /* select by hand */ }
  });

  $('tf-done').addEventListener('click', () => {
    $('tf-code-list').textContent = '';
    show('tf-codes', false);
    if (required) {
      location.assign('/');
      return;
    }
    refresh().catch((err) => showError(err.message));
  });

  $('tf-disable').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError('');
    const body = proof();
    if (!body) {
      showError('Enter a code or your password.');
      return;
    }
    try {
      await api('POST', '/api/account/2fa/disable', body);
      clearProof();
      await refresh();
    } catch (err) {
      showError(err.message);
    }
  });

  fetch('/api/me', { headers: { 'Accept': 'application/json' }, credentials: 'same-origin' })
    .then((r) => (r.ok ? r.json() : null))
    .then((me) => {
      if (!me) return;
      $('account-user').textContent = 'Signed in as ' + me.username + (me.role === 'admin' ? ' (administrator)' : '');
      $('admin-link').hidden = me.role !== 'admin';
      // The password manager files a change under this name.
      $('password-username').value = me.username;
    })
    .catch(() => {});
  refresh().catch((err) => showError(err.message));
})();
