/*
 * The export menu in the open conversation's header: Markdown or JSON, downloaded from
 * GET /api/conversations/{id}/export?format=md|json (the server names the file). Shown only while a
 * stored conversation is open.
 */

import { $ } from './dom.js';
import { state } from './state.js';

const wrap = $('export');
const btn = $('export-btn');
const menu = $('export-menu');
const items = [$('export-md'), $('export-json')];

function setOpen(open) {
  menu.hidden = !open;
  btn.setAttribute('aria-expanded', String(open));
}

/** Shows the menu button for the conversation shown (none for a new chat); the links follow it. */
export function updateExport() {
  const id = state.currentId;
  wrap.hidden = !id;
  if (!id) { setOpen(false); return; }
  const base = '/api/conversations/' + encodeURIComponent(id) + '/export?format=';
  items[0].href = base + 'md';
  items[1].href = base + 'json';
}

export function wireExport() {
  btn.addEventListener('click', (e) => {
    e.stopPropagation();
    updateExport();
    setOpen(menu.hidden);
    if (!menu.hidden) items[0].focus();
  });
  for (const a of items) {
    a.addEventListener('click', () => setOpen(false));
  }
  menu.addEventListener('keydown', (e) => {
    const i = items.indexOf(document.activeElement);
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); setOpen(false); btn.focus(); }
    if (e.key === 'ArrowDown') { e.preventDefault(); items[(i + 1) % items.length].focus(); }
    if (e.key === 'ArrowUp') { e.preventDefault(); items[(i + items.length - 1) % items.length].focus(); }
  });
  document.addEventListener('click', (e) => {
    if (!menu.hidden && !wrap.contains(e.target)) setOpen(false);
  });
}
