/*
 * The service worker (scope "/"): keeps the app shell (the chat page's HTML, scripts, styles,
 * vendored libraries, icons) so the installed app opens offline, and nothing else.
 *
 * Network first: every shell request goes to the server, and the cache is only the answer when the
 * network fails, so a deploy is seen on the next load. Never stored: API answers (/api/, /v1/,
 * /dashboard/), /media/ files, /login, /logout, /view, /healthz, any answer that is not a plain 200,
 * or a navigation that was redirected (to the sign-in page). The one page kept, "/", is the same
 * static file for every user (index.html); what a user sees comes from the API afterwards.
 * Web Push notifications are handled by push-sw.js, loaded below.
 */
'use strict';

importScripts('/push-sw.js');

const CACHE = 'hermes-shell-v1';

/** Fetched at install so the first offline start works; all public except "/". */
const PRECACHE = [
  '/', '/style.css', '/favicon.svg', '/manifest.webmanifest',
  '/icons/icon-192.png', '/icons/icon-512.png', '/icons/maskable-192.png', '/icons/maskable-512.png',
  '/icons/apple-touch-icon.png',
  '/vendor/marked.min.js', '/vendor/purify.min.js', '/vendor/highlight.min.js',
  '/vendor/hljs-github.min.css', '/vendor/hljs-github-dark.min.css',
  '/js/main.js', '/js/dom.js', '/js/state.js', '/js/api.js', '/js/banners.js', '/js/sse.js',
  '/js/markdown.js', '/js/maths.js', '/js/messages.js', '/js/chat.js', '/js/runs.js', '/js/drafts.js',
  '/js/composer.js', '/js/conversations.js', '/js/nav.js', '/js/tokens.js', '/js/convmenu.js',
  '/history.css', '/js/search.js', '/js/export.js', '/js/timestamps.js', '/js/files.js',
  '/js/webauthn.js', '/js/passkeys.js', '/js/passkey-login.js',
  '/js/manage.js', '/js/account-password.js', '/js/account-sessions.js', '/js/account-tokens.js',
  '/js/admin-users.js', '/js/admin-activity.js', '/js/invite.js', '/js/push.js', '/js/push-text.js',
];

/** Whether a same-origin path belongs to the shell (and so may be kept). */
function isShell(path) {
  if (path === '/' || path === '/style.css' || path === '/history.css' || path === '/favicon.svg' || path === '/manifest.webmanifest') return true;
  // KaTeX's script, style and fonts are in vendor/ too: kept once a message with maths loaded them.
  return /^\/(js|vendor|icons)\/[\w./-]+$/.test(path) && !path.includes('..');
}

/** The cache key of a request, or null when it must never be kept. */
function shellKey(request) {
  if (request.method !== 'GET') return null;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return null;
  // The chat page is "/" (a conversation is "/?c=id"). Other pages (/login, /view, and any page
  // added later) are never kept: keeping them under "/" would replace the chat page.
  if (request.mode === 'navigate') return url.pathname === '/' ? '/' : null;
  return isShell(url.pathname) ? url.pathname : null;
}

/** Only a plain 200 of the site itself, not redirected (the sign-in page) and not a private answer. */
function keepable(response) {
  return response && response.ok && response.status === 200 && response.type === 'basic' && !response.redirected;
}

self.addEventListener('install', (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await Promise.all(PRECACHE.map(async (path) => {
      try {
        const res = await fetch(path, { cache: 'no-cache', credentials: 'same-origin', redirect: 'follow' });
        if (keepable(res)) await cache.put(path, res);
      } catch (_) { /* offline at install: kept on the next visit */ }
    }));
    await self.skipWaiting();
  })());
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const key = shellKey(event.request);
  if (!key) return; // the browser's own handling: never cached here
  event.respondWith((async () => {
    try {
      const res = await fetch(event.request);
      if (keepable(res)) {
        const copy = res.clone();
        event.waitUntil(caches.open(CACHE).then((c) => c.put(key, copy)).catch(() => {}));
      }
      return res;
    } catch (err) {
      const hit = await caches.match(key, { cacheName: CACHE });
      if (hit) return hit;
      throw err;
    }
  })());
});
