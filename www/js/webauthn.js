/*
 * WebAuthn between the browser's ArrayBuffers and the server's JSON (base64url, as webauthn-rs
 * sends and expects it). Shared by the account page (registering) and the login page (signing in).
 */

export function supported() {
  return typeof window.PublicKeyCredential === 'function' && !!navigator.credentials;
}

/** True when the page was opened by IP address, where browsers refuse WebAuthn. */
export function openedByIp() {
  const h = location.hostname;
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':') || h.startsWith('[');
}

export function fromB64u(text) {
  let s = String(text).replace(/-/g, '+').replace(/_/g, '/');
  while (s.length % 4) s += '=';
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

export function toB64u(buf) {
  const bytes = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

const withIds = (list) => (list || []).map((c) => Object.assign({}, c, { id: fromB64u(c.id) }));

/** The server's creation options as `navigator.credentials.create` takes them. */
export function creationOptions(options) {
  const pk = Object.assign({}, options.publicKey);
  pk.challenge = fromB64u(pk.challenge);
  pk.user = Object.assign({}, pk.user, { id: fromB64u(pk.user.id) });
  if (pk.excludeCredentials) pk.excludeCredentials = withIds(pk.excludeCredentials);
  return { publicKey: pk };
}

/** The server's request options as `navigator.credentials.get` takes them. */
export function requestOptions(options) {
  const pk = Object.assign({}, options.publicKey);
  pk.challenge = fromB64u(pk.challenge);
  if (pk.allowCredentials) pk.allowCredentials = withIds(pk.allowCredentials);
  return { publicKey: pk };
}

export function registrationJSON(cred) {
  const r = cred.response;
  return {
    id: cred.id,
    rawId: toB64u(cred.rawId),
    type: cred.type,
    response: {
      attestationObject: toB64u(r.attestationObject),
      clientDataJSON: toB64u(r.clientDataJSON),
      transports: typeof r.getTransports === 'function' ? r.getTransports() : undefined,
    },
    extensions: cred.getClientExtensionResults(),
  };
}

export function assertionJSON(cred) {
  const r = cred.response;
  return {
    id: cred.id,
    rawId: toB64u(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: toB64u(r.authenticatorData),
      clientDataJSON: toB64u(r.clientDataJSON),
      signature: toB64u(r.signature),
      userHandle: r.userHandle ? toB64u(r.userHandle) : null,
    },
    extensions: cred.getClientExtensionResults(),
  };
}

/** POST JSON to this site; resolves to { ok, status, body }. */
export async function postJSON(url, body) {
  const res = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await res.json(); } catch (_) { /* empty or not JSON */ }
  return { ok: res.ok, status: res.status, body: data };
}

/** The message of an error body, or `fallback`. */
export function errorText(body, fallback) {
  return (body && body.error && body.error.message) || fallback;
}
