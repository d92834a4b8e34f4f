/*
 * The "Notifications on this device" section of the account page: whether this device's push
 * notifications may carry text (the first words of an answer or of a command waiting for approval).
 * The setting belongs to the device's subscription, so the section reads this browser's own
 * subscription (the one the bell in the chat's sidebar made, js/push.js) and posts it with
 * "include_text" (POST /api/push/subscriptions, whose answer says the stored setting). Hidden when
 * the browser has no Web Push or the server has it off. Everything it touches is inside #push-section.
 */

const $ = (id) => document.getElementById(id);
const section = $('push-section');
const box = $('push-include-text');
const stateText = $('push-state');
const errorBox = $('push-error');

function showError(text) {
  errorBox.textContent = text || '';
  errorBox.hidden = !text;
}

async function post(sub, includeText) {
  const body = sub.toJSON();
  if (includeText !== undefined) body.include_text = includeText;
  const res = await fetch('/api/push/subscriptions', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body),
  });
  const v = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((v.error && v.error.message) || ('HTTP ' + res.status));
  return v.include_text === true;
}

async function start() {
  if (!window.isSecureContext || !('serviceWorker' in navigator) || !('PushManager' in window)) return;
  const key = await fetch('/api/push/key', { credentials: 'same-origin' }).catch(() => null);
  if (!key || !key.ok) return; // push is off on this server
  section.hidden = false;
  const reg = await navigator.serviceWorker.getRegistration('/');
  const sub = reg ? await reg.pushManager.getSubscription() : null;
  if (!sub) return; // the paragraph says how to turn them on; the box stays disabled
  stateText.textContent = 'Notifications are on for this device: it is told when an answer is ready or the agent waits for your approval, while no tab of yours shows the conversation.';
  try {
    box.checked = await post(sub);
    box.disabled = false;
  } catch (e) {
    showError('Cannot read this device\'s setting: ' + e.message);
  }
  box.addEventListener('change', async () => {
    const want = box.checked;
    box.disabled = true;
    showError('');
    try {
      box.checked = await post(sub, want);
    } catch (e) {
      box.checked = !want;
      showError('Not changed: ' + e.message);
    } finally {
      box.disabled = false;
    }
  });
}

start().catch((e) => showError(String(e && e.message ? e.message : e)));
