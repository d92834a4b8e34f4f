/*
 * Drafts: text typed in the message box but not sent survives a reload, per user and conversation
 * (and one for "new chat"), in localStorage. Cleared when sent; pruned after 30 days. Images are not
 * kept (too large for localStorage).
 */

import { input } from './dom.js';
import { state } from './state.js';

const PREFIX = 'hermes.draft.v1:';
const MAX_AGE_MS = 30 * 86400000;
const MAX_DRAFTS = 100;
const SAVE_DELAY_MS = 250;

function key(convId) {
  if (!state.me) return null; // unknown user: keep nothing rather than risk showing it to another
  return PREFIX + state.me + ':' + (convId || 'new');
}

export function saveDraft(convId, text) {
  const k = key(convId);
  if (!k) return;
  try {
    if (text && text.trim()) localStorage.setItem(k, JSON.stringify({ text, at: Date.now() }));
    else localStorage.removeItem(k);
  } catch (_) { /* storage off or full */ }
}

export function loadDraft(convId) {
  const k = key(convId);
  if (!k) return '';
  try {
    const d = JSON.parse(localStorage.getItem(k) || 'null');
    if (d && typeof d.text === 'string' && Date.now() - d.at < MAX_AGE_MS) return d.text;
  } catch (_) { /* storage off or not ours */ }
  return '';
}

export function clearDraft(convId) {
  saveDraft(convId, '');
}

/** The message box changed: save it a moment later for the conversation it was typed in. */
let saveTimer = null;
let saveFor = null;
export function draftChanged() {
  saveFor = state.currentId;
  clearTimeout(saveTimer);
  saveTimer = setTimeout(flushDraft, SAVE_DELAY_MS);
}

/** Save a pending change now (before switching conversations, or when the page is hidden). */
export function flushDraft() {
  if (!saveTimer) return;
  clearTimeout(saveTimer);
  saveTimer = null;
  saveDraft(saveFor, input.value);
}

/** Showing another conversation: keep what was typed for the old one, show the new one's draft. */
export function switchDraft(toId) {
  flushDraft();
  input.value = loadDraft(toId);
}

/** Drop old drafts, and the oldest beyond MAX_DRAFTS. */
export function pruneDrafts() {
  try {
    const found = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (!k || !k.startsWith(PREFIX)) continue;
      let at = 0;
      try { at = JSON.parse(localStorage.getItem(k)).at || 0; } catch (_) { at = 0; }
      found.push({ k, at });
    }
    found.sort((a, b) => b.at - a.at);
    found.forEach((d, i) => {
      if (i >= MAX_DRAFTS || Date.now() - d.at > MAX_AGE_MS) localStorage.removeItem(d.k);
    });
  } catch (_) { /* storage off */ }
}
