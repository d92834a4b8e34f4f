/*
 * fetch for hermes-edge's JSON API (docs/http-api.md) and its error bodies. A 401 sends the user to
 * the sign-in page; a 429 or an unreachable server shows a banner.
 */

import { clearBanner, rateLimited, sessionExpired, unreachableEdge } from './banners.js';

export async function readError(res) {
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  const err = (body && body.error) || {};
  let retry = parseInt(res.headers.get('Retry-After') || '', 10);
  if (!Number.isFinite(retry) && Number.isFinite(err.retry_after)) retry = err.retry_after;
  return { status: res.status, code: err.code || '', message: err.message || '', retryAfter: Number.isFinite(retry) ? retry : null };
}

/** fetch for the JSON API; a 401 sends the user to the login page and back. */
export async function api(method, url, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, opts);
  } catch (e) {
    unreachableEdge();
    throw e;
  }
  clearBanner('offline');
  if (res.status === 401) {
    sessionExpired();
    const e = new Error('Your session has expired. Taking you to the sign-in page…');
    e.info = { status: 401, code: 'login_required', message: e.message, retryAfter: null };
    throw e;
  }
  if (!res.ok) {
    const err = await readError(res);
    if (res.status === 429) rateLimited(err.retryAfter);
    const e = new Error(err.message || ('HTTP ' + res.status));
    e.info = err;
    throw e;
  }
  if (res.status === 204) return null;
  return res.json();
}
