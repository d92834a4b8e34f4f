/*
 * Web Push in the service worker: a classic script the service worker loads with
 * importScripts('/push-sw.js'). The server's push (docs/http-api.md, "Push notifications") says
 * which conversation and why ({"conversation_id", "kind": "approval" | "done"}, and "text" only
 * when this device allowed it); this shows it as a notification, and a click focuses the tab that
 * shows that conversation or opens it. The URL is built here from the id, never taken from the
 * payload, so a push can only ever open a page of this site.
 */
'use strict';

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (_) {
    data = {};
  }
  const id = typeof data.conversation_id === 'string' ? data.conversation_id : '';
  const approval = data.kind === 'approval';
  const title = approval ? 'Hermes is waiting for your approval' : 'Hermes has answered';
  const text = typeof data.text === 'string' ? data.text.trim() : '';
  const body = text || (approval ? 'Open the conversation to approve or deny the command.' : 'Your answer is ready.');
  event.waitUntil(self.registration.showNotification(title, {
    body,
    // One notification per conversation: a newer push replaces the older one.
    tag: 'hermes-' + id,
    renotify: approval,
    requireInteraction: approval,
    icon: '/favicon.svg',
    data: { url: id ? '/?c=' + encodeURIComponent(id) : '/' },
  }));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const path = (event.notification.data && event.notification.data.url) || '/';
  const url = new URL(path, self.location.origin);
  if (url.origin !== self.location.origin) return;
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const tab of tabs) {
      if (tab.url === url.href && 'focus' in tab) return tab.focus();
    }
    return self.clients.openWindow(url.href);
  })());
});
