/*
 * The banners above the messages: hermes-edge offline, rate limits (with a countdown), Hermes
 * unreachable (with a health re-check), an expired session (then the sign-in page, keeping the draft).
 */

import { banners, input, el, iconButton } from './dom.js';

const HEALTH_RECHECK_MS = 30000;

function currentPath() {
  return location.pathname + location.search;
}

function goToLogin() {
  try { sessionStorage.setItem('hermes.draft', input.value); } catch (_) { /* storage off */ }
  location.assign('/login?next=' + encodeURIComponent(currentPath()));
}

// ---------------------------------------------------------------- banners
const bannerTimers = new Map();

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
  b.appendChild(iconButton('x', 'Dismiss', () => clearBanner(key), 'banner-close'));
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

export function upstreamUnreachable(message) {
  showBanner('upstream', 'error', message || 'Hermes is not reachable right now. The agent may be stopped or restarting.', {
    label: 'Check again',
    onClick: () => checkHealth(true),
  });
  scheduleHealthCheck();
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
  healthTimer = setTimeout(() => { healthTimer = null; checkHealth(false); }, HEALTH_RECHECK_MS);
}

export async function checkHealth(manual) {
  try {
    const res = await fetch('/healthz', { credentials: 'same-origin', cache: 'no-store' });
    const body = await res.json();
    clearBanner('offline');
    if (body && body.upstream && body.upstream.reachable === false) {
      upstreamUnreachable();
    } else {
      clearBanner('upstream');
    }
  } catch (_) {
    if (manual) showBanner('offline', 'error', 'Cannot reach hermes-edge. Check your connection.');
    scheduleHealthCheck();
  }
}
