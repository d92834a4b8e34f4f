/*
 * Message times: relative ("just now", "5 min ago", "14:02", "yesterday 14:02", "Mon 09:15",
 * "3 Dec, 14:02"), the exact time in the title (hover) and shown in place on a tap (touch screens
 * have no hover). One timer refreshes the text of every shown time in place, so the conversation
 * is never re-rendered for it.
 */

import { el } from './dom.js';

const REFRESH_MS = 30000;
let timer = null;

function clock(d) {
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** The relative text for `date` as seen at `now` (both Date). */
export function relativeTime(date, now) {
  const t = date.getTime();
  if (!Number.isFinite(t)) return '';
  const diff = now.getTime() - t;
  if (diff < 45000) return 'just now';
  if (diff < 3600000) return Math.max(1, Math.round(diff / 60000)) + ' min ago';
  const startOfDay = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  if (t >= startOfDay) return clock(date);
  if (t >= startOfDay - 86400000) return 'yesterday ' + clock(date);
  if (t >= startOfDay - 6 * 86400000) {
    return date.toLocaleDateString([], { weekday: 'short' }) + ' ' + clock(date);
  }
  if (date.getFullYear() === now.getFullYear()) {
    return date.toLocaleDateString([], { day: 'numeric', month: 'short' }) + ', ' + clock(date);
  }
  return date.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' });
}

/** The exact local time, for the title and the tapped state. */
export function exactTime(date) {
  return date.toLocaleString([], {
    weekday: 'short', year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

function show(node) {
  const d = new Date(node.dateTime);
  node.textContent = node.classList.contains('exact') ? exactTime(d) : relativeTime(d, new Date());
}

/**
 * A <time> for a message (its `created_at`; a message made on this page and not yet reloaded
 * from the server gets the time it was first shown).
 */
export function timeEl(msg) {
  if (!msg.created_at || !Number.isFinite(new Date(msg.created_at).getTime())) {
    msg.created_at = new Date().toISOString();
  }
  const node = el('time', 'msg-time');
  node.dateTime = msg.created_at;
  const exact = exactTime(new Date(msg.created_at));
  node.title = exact;
  node.setAttribute('aria-label', exact);
  node.tabIndex = 0;
  if (msg.showExactTime) node.classList.add('exact');
  show(node);
  // A tap (or Enter) shows the exact time in place, and again the relative one; the message
  // remembers it across the re-renders of its actions row.
  const toggle = () => {
    msg.showExactTime = !node.classList.contains('exact');
    node.classList.toggle('exact', msg.showExactTime);
    show(node);
  };
  node.addEventListener('click', toggle);
  node.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(); }
  });
  return node;
}

/** Refreshes the text of every time shown. */
export function refreshTimes() {
  document.querySelectorAll('time.msg-time').forEach(show);
}

/** Starts the refresh timer (once), and refreshes when the page is shown again. */
export function wireTimestamps() {
  if (timer) return;
  timer = setInterval(refreshTimes, REFRESH_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshTimes(); });
}
