/*
 * The banners above the messages: hermes-edge offline, rate limits (with a countdown), Hermes
 * unreachable (with a health re-check), an expired session (then the sign-in page, keeping the draft).
 *
 * Hermes unreachable: the server's message says what the operator should run; only an administrator
 * sees it, everyone else a plain "unreachable, retrying". While it is down, /healthz is asked every
 * few seconds (a light request: the edge asks Hermes' /health with a short timeout), so the banner
 * goes within seconds of Hermes being back; after a long outage, less often.
 */

import { app, banners, input, el, iconButton } from './dom.js';
import { state } from './state.js';

const HEALTH_RETRY_MS = 2500; // while Hermes is down: how soon a recovery is seen
const HEALTH_RETRY_SLOW_MS = 10000; // once it has been down for HEALTH_SLOW_AFTER_MS
const HEALTH_SLOW_AFTER_MS = 120000;

/** Error codes whose message is an instruction for the operator (docs/http-api.md). */
const OPERATOR_CODES = new Set(['upstream_unreachable', 'api_key_missing', 'upstream_auth']);
const PLAIN_UNREACHABLE = 'The assistant is unreachable right now. Retrying…';

/** The text a person is shown for a server error: an operator's instruction only to an admin. */
export function errorText(code, message, plain) {
  if (OPERATOR_CODES.has(code) && state.role !== 'admin') {
    return plain || 'The assistant could not be reached, so there is no answer. Try again in a moment.';
  }
  // Never a key's value, should a message ever carry one.
  return (message || plain || '').replace(/\b(API_SERVER_KEY|HERMES_EDGE_API_KEY)=(?!\.\.\.|…)\S+/g, '$1=…');
}

function currentPath() {
  return location.pathname + location.search;
}

function goToLogin() {
  try { sessionStorage.setItem('hermes.draft', input.value); } catch (_) { /* storage off */ }
  location.assign('/login?next=' + encodeURIComponent(currentPath()));
}

// ---------------------------------------------------------------- banners
const bannerTimers = new Map();
// Banners the person closed: the background re-check does not bring them back (a new failed send does).
const dismissed = new Set();

export function showBanner(key, kind, text, action) {
  let b = banners.querySelector('[data-key="' + key + '"]');
  if (!b) {
    b = el('div', 'banner');
    b.dataset.key = key;
    b.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    banners.appendChild(b);
  }
  b.className = 'banner banner-' + kind;
  b.replaceChildren();
  b.appendChild(el('span', 'banner-text', text));
  if (action) {
    const a = el('button', 'banner-action', action.label);
    a.type = 'button';
    a.addEventListener('click', action.onClick);
    b.appendChild(a);
  }
  b.appendChild(iconButton('x', 'Dismiss', () => { dismissed.add(key); clearBanner(key); }, 'banner-close'));
  return b;
}

export function clearBanner(key) {
  const b = banners.querySelector('[data-key="' + key + '"]');
  if (b) b.remove();
  const t = bannerTimers.get(key);
  if (t) { clearInterval(t); bannerTimers.delete(key); }
}

function formatWait(s) {
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  const r = s % 60;
  return r ? m + ' min ' + r + ' s' : m + ' min';
}

export function rateLimited(retryAfter) {
  clearBanner('rate');
  let left = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(Math.ceil(retryAfter), 86400) : null;
  const render = () => {
    if (left == null) {
      showBanner('rate', 'warn', 'Too many requests. Please wait a moment before sending again.');
    } else {
      showBanner('rate', 'warn', 'Rate limited. You can send again in ' + formatWait(left) + '.');
    }
  };
  render();
  if (left == null) return;
  const timer = setInterval(() => {
    left -= 1;
    if (left <= 0) { clearBanner('rate'); return; }
    render();
  }, 1000);
  bannerTimers.set('rate', timer);
}

let downSince = 0;

export function upstreamUnreachable(message, code) {
  if (!downSince) downSince = Date.now();
  dismissed.delete('upstream');
  const admin = state.role === 'admin';
  const text = admin
    ? errorText(code || 'upstream_unreachable', message, '') || 'Hermes is not reachable right now. The agent may be stopped or restarting.'
    : PLAIN_UNREACHABLE;
  const b = showBanner('upstream', 'error', text, {
    label: 'Check again',
    onClick: () => checkHealth(true),
  });
  b.dataset.audience = admin ? 'admin' : 'user';
  scheduleHealthCheck();
}

/**
 * The edge cannot be reached: the device is offline (the installed app then runs from the service
 * worker's copy, www/sw.js), or the server is.
 */
export function unreachableEdge() {
  const offline = navigator.onLine === false;
  app.classList.toggle('is-offline', offline);
  showBanner('offline', 'error', offline
    ? 'You are offline. Your conversations appear again when the connection is back.'
    : 'Cannot reach hermes-edge. Check your connection; the page will keep trying.');
}

let sessionExpiring = false;
export function sessionExpired() {
  if (sessionExpiring) return;
  sessionExpiring = true;
  showBanner('session', 'warn', 'Your session has expired. Taking you to the sign-in page…');
  setTimeout(goToLogin, 900);
}

let healthTimer = null;
function scheduleHealthCheck() {
  if (healthTimer) return;
  const wait = downSince && Date.now() - downSince > HEALTH_SLOW_AFTER_MS ? HEALTH_RETRY_SLOW_MS : HEALTH_RETRY_MS;
  healthTimer = setTimeout(() => {
    healthTimer = null;
    // A hidden tab asks nothing; it checks again when it is shown (visibilitychange in main.js).
    if (document.hidden) { healthTimer = null; return; }
    checkHealth(false);
  }, wait);
}

/** Whether the "unreachable" banner is up (main.js re-checks when the page is shown again). */
export function upstreamDown() {
  return !!banners.querySelector('[data-key="upstream"]');
}

export async function checkHealth(manual) {
  try {
    const res = await fetch('/healthz', { credentials: 'same-origin', cache: 'no-store' });
    const body = await res.json();
    clearBanner('offline');
    if (body && body.upstream && body.upstream.reachable === false) {
      const shown = banners.querySelector('[data-key="upstream"]');
      // Shown: keep the server's message and look again soon; closed by the person: look quietly.
      if (shown || (dismissed.has('upstream') && !manual)) scheduleHealthCheck();
      else upstreamUnreachable();
    } else {
      downSince = 0;
      dismissed.delete('upstream');
      clearBanner('upstream');
    }
  } catch (_) {
    if (!downSince) downSince = Date.now();
    if (manual || navigator.onLine === false) unreachableEdge();
    scheduleHealthCheck();
  }
}
