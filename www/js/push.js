/*
 * "Notifications on this device" (the bell in the sidebar's foot): Web Push, docs/http-api.md
 * "Push notifications". On: the notification permission is asked, the service worker (/sw.js,
 * which loads /push-sw.js) is registered, the browser subscribes with the server's VAPID key
 * (GET /api/push/key) and the subscription is posted (POST /api/push/subscriptions). Off: the
 * server forgets it (DELETE /api/push/subscriptions) and the browser unsubscribes. The bell stays
 * hidden when the browser has no Web Push or the server has it off (404 push_off).
 */

import { $ } from './dom.js';
import { api } from './api.js';

const bell = $('push-toggle');
let serverKey = null; // Uint8Array, the VAPID public key
let busy = false;

function bytesOf(b64url) {
  const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function sameKey(a, b) {
  if (!a || !b) return false;
  const x = new Uint8Array(a);
  return x.length === b.length && x.every((v, i) => v === b[i]);
}

function show(on, note) {
  bell.setAttribute('aria-checked', on ? 'true' : 'false');
  bell.title = 'Notifications on this device: ' + (on ? 'on' : 'off') + (note ? ' (' + note + ')' : '');
}

async function currentSubscription() {
  const reg = await navigator.serviceWorker.getRegistration('/');
  return reg ? reg.pushManager.getSubscription() : null;
}

async function turnOn() {
  const permission = await Notification.requestPermission();
  if (permission !== 'granted') {
    show(false, 'blocked in the browser\'s site settings');
    return;
  }
  await navigator.serviceWorker.register('/sw.js');
  const reg = await navigator.serviceWorker.ready;
  let sub = await reg.pushManager.getSubscription();
  // A subscription made with another key (the server's was replaced) cannot receive: renew it.
  if (sub && !sameKey(sub.options && sub.options.applicationServerKey, serverKey)) {
    await sub.unsubscribe();
    sub = null;
  }
  if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: serverKey });
  await api('POST', '/api/push/subscriptions', sub.toJSON());
  show(true);
}

async function turnOff() {
  const sub = await currentSubscription();
  if (sub) {
    await api('DELETE', '/api/push/subscriptions', { endpoint: sub.endpoint });
    await sub.unsubscribe();
  }
  show(false);
}

async function toggle() {
  if (busy) return;
  busy = true;
  bell.disabled = true;
  const on = bell.getAttribute('aria-checked') === 'true';
  try {
    await (on ? turnOff() : turnOn());
  } catch (e) {
    show(on, 'could not be changed: ' + (e && e.message ? e.message : e));
  } finally {
    busy = false;
    bell.disabled = false;
  }
}

export async function wirePush() {
  if (!window.isSecureContext || !('serviceWorker' in navigator) || !('PushManager' in window) || !('Notification' in window)) return;
  try {
    const { public_key: key } = await api('GET', '/api/push/key');
    serverKey = bytesOf(key);
  } catch (_) {
    return; // push is off on this server
  }
  bell.hidden = false;
  bell.addEventListener('click', toggle);
  let sub = null;
  try { sub = await currentSubscription(); } catch (_) { sub = null; }
  const on = !!sub && Notification.permission === 'granted';
  show(on);
  // Posted again at each visit: the server may have dropped it (the push service said it was gone).
  if (on) api('POST', '/api/push/subscriptions', sub.toJSON()).catch(() => {});
}
