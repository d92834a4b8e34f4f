/*
 * "Sign in with a passkey" on the login page: POST /login/passkey for the options (the ceremony
 * is bound to this browser by a short-lived cookie), navigator.credentials.get, then
 * POST /login/passkey/finish, which sets the session cookie. Where the browser supports it, the
 * passkeys are also offered in the username field's autofill (conditional mediation).
 */

import { supported, openedByIp, requestOptions, assertionJSON, postJSON, errorText } from './webauthn.js';

const button = document.getElementById('passkey-signin');
const box = document.getElementById('login-error');
const note = document.getElementById('passkey-note');
let pending = null; // the AbortController of the autofill request, if one is waiting

function show(text) {
  box.textContent = text;
  box.hidden = false;
}

async function signIn(mediation) {
  const start = await postJSON('/login/passkey');
  if (!start.ok) {
    if (mediation !== 'conditional') show(errorText(start.body, 'Passkey sign-in is unavailable right now; use your password.'));
    return;
  }
  const opts = requestOptions(start.body.options);
  if (mediation === 'conditional') {
    pending = new AbortController();
    opts.mediation = 'conditional';
    opts.signal = pending.signal;
  }
  let cred;
  try {
    cred = await navigator.credentials.get(opts);
  } catch (e) {
    if (mediation !== 'conditional' && e && e.name !== 'AbortError') {
      show(e.name === 'NotAllowedError'
        ? 'No passkey was used. Try again, or sign in with your password.'
        : 'The browser could not use a passkey here (' + e.message + '). Sign in with your password.');
    }
    return;
  }
  if (!cred) return;
  const remember = document.getElementById('remember');
  const done = await postJSON('/login/passkey/finish', {
    credential: assertionJSON(cred),
    remember: !!(remember && remember.checked),
    next: document.getElementById('next').value,
  });
  if (!done.ok) {
    show(errorText(done.body, 'That passkey was not accepted. Sign in with your password.'));
    return;
  }
  location.assign((done.body && done.body.next) || '/');
}

if (button) {
  if (!supported()) {
    button.hidden = true;
  } else if (openedByIp()) {
    button.hidden = true;
    note.textContent = 'Passkeys need this site\u2019s name (not an IP address); sign in with your password here.';
    note.hidden = false;
  } else {
    button.hidden = false;
    button.addEventListener('click', async () => {
      if (pending) { pending.abort(); pending = null; }
      button.disabled = true;
      try {
        await signIn('modal');
      } catch (e) {
        show('Passkey sign-in failed: ' + e.message + '. Use your password.');
      } finally {
        button.disabled = false;
      }
    });
    // Autofill: the browser lists this site's passkeys under the username field.
    if (typeof PublicKeyCredential.isConditionalMediationAvailable === 'function') {
      PublicKeyCredential.isConditionalMediationAvailable().then((ok) => {
        if (ok) signIn('conditional').catch(() => {});
      }).catch(() => {});
    }
  }
}
