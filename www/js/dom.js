/*
 * The chat page's elements and the small DOM helpers the other modules share (elements, icons,
 * the clipboard).
 */

// ---------------------------------------------------------------- elements
export const $ = (id) => document.getElementById(id);
export const app = $('app');
export const scrim = $('scrim');
export const convList = $('conv-list');
export const titleEl = $('title');
export const banners = $('banners');
export const scroller = $('scroller');
export const messagesEl = $('messages');
export const emptyEl = $('empty');
export const composer = $('composer');
export const input = $('input');
export const sendBtn = $('send');
export const stopBtn = $('stop');
export const attachBtn = $('attach');
export const fileInput = $('file');
export const attachmentsEl = $('attachments');
export const dropzone = $('dropzone');
export const dropOverlay = $('drop-overlay');

// ---------------------------------------------------------------- helpers
export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

export function icon(path, size) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('width', String(size || 16));
  svg.setAttribute('height', String(size || 16));
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS(ns, 'path');
  p.setAttribute('d', path);
  p.setAttribute('fill', 'none');
  p.setAttribute('stroke', 'currentColor');
  p.setAttribute('stroke-width', '2');
  p.setAttribute('stroke-linecap', 'round');
  p.setAttribute('stroke-linejoin', 'round');
  svg.appendChild(p);
  return svg;
}

export const ICONS = {
  copy: 'M9 9h10v10H9zM5 15V5h10',
  check: 'M5 12.5l4.5 4.5L19 7',
  edit: 'M12 20h9M16.5 3.5a2.1 2.1 0 013 3L7 19l-4 1 1-4z',
  regen: 'M20 11a8 8 0 10-2.3 5.7M20 4v7h-7',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13',
  pencil: 'M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4',
  x: 'M6 6l12 12M18 6L6 18',
  clock: 'M12 3a9 9 0 110 18 9 9 0 010-18zM12 7.5V12l3 2',
  blocked: 'M12 3a9 9 0 110 18 9 9 0 010-18zM5.6 5.6l12.8 12.8',
  shield: 'M12 3l7 3v5c0 4.5-3 8.3-7 10-4-1.7-7-5.5-7-10V6zM12 8v4M12 15.5v.5',
  more: 'M5 11a1 1 0 110 2 1 1 0 010-2zM12 11a1 1 0 110 2 1 1 0 010-2zM19 11a1 1 0 110 2 1 1 0 010-2z',
};

export function iconButton(name, label, onClick, cls) {
  const b = el('button', 'icon-btn ' + (cls || ''));
  b.type = 'button';
  b.setAttribute('aria-label', label);
  b.title = label;
  b.appendChild(icon(ICONS[name]));
  b.addEventListener('click', onClick);
  return b;
}

// ---------------------------------------------------------------- clipboard
export async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch (_) {
    const ta = el('textarea', 'offscreen');
    ta.value = text;
    document.body.appendChild(ta);
    ta.select();
    try { ok = document.execCommand('copy'); } catch (__) { ok = false; }
    ta.remove();
  }
  if (button) {
    const label = button.querySelector('span');
    button.classList.toggle('copied', ok);
    if (label) label.textContent = ok ? 'Copied' : 'Copy failed';
    setTimeout(() => {
      button.classList.remove('copied');
      if (label) label.textContent = 'Copy';
    }, 1500);
  }
}
