/*
 * Files attached to a message that are not images for the model (docs/http-api.md,
 * POST /api/attachments): uploaded as soon as they are picked, then named in POST /api/chat
 * ("files"). The server adds a line per file to the message that tells the agent its path:
 *   [attached file: report.pdf (application/pdf, 120 KB) at /srv/.../media/users/3/1f2e3d4c-report.pdf]
 * On the page those lines are shown as the attachment (a chip that opens the viewer), not as text.
 */

import { el } from './dom.js';
import { readError } from './api.js';

const NOTE = /^\[attached file: (.+) \(([^,()]+), ([^()]+)\) at .*\/users\/(\d+)\/([A-Za-z0-9._-]+)\]$/;

/** Uploads one file; resolves to {path, name, size, type}, or throws an Error with the server's reason. */
export async function uploadFile(file) {
  let res;
  try {
    res = await fetch('/api/attachments?name=' + encodeURIComponent(file.name || 'file'), {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': file.type || 'application/octet-stream', Accept: 'application/json' },
      body: file,
    });
  } catch (_) {
    throw new Error('could not reach the server to upload ' + (file.name || 'the file'));
  }
  if (!res.ok) {
    const err = await readError(res);
    const e = new Error(err.message || ('the upload of ' + (file.name || 'the file') + ' failed (HTTP ' + res.status + ')'));
    e.info = err;
    throw e;
  }
  return res.json();
}

/** A message's text without its file lines, and the files they name ({name, type, size, src}). */
export function splitNotes(content) {
  const files = [];
  const kept = [];
  for (const line of String(content || '').split('\n')) {
    const m = NOTE.exec(line);
    if (m) files.push({ name: m[1], type: m[2], size: m[3], src: '/media/users/' + m[4] + '/' + m[5] });
    else kept.push(line);
  }
  return { text: kept.join('\n').trim(), files };
}

/** A chip for an attached file: its name and size, opening the viewer. */
export function fileChip(f, onRemove) {
  const chip = el(onRemove ? 'span' : 'a', 'file-chip');
  if (!onRemove) {
    chip.href = '/view?src=' + encodeURIComponent(f.src);
    chip.target = '_blank';
    chip.rel = 'noopener';
  }
  chip.title = f.name + ' (' + f.type + ', ' + f.size + ')';
  chip.appendChild(el('span', 'file-chip-icon', '📄'));
  chip.appendChild(el('span', 'file-chip-name', f.name));
  chip.appendChild(el('span', 'file-chip-size', f.size));
  if (onRemove) {
    const x = el('button', 'file-chip-remove', '×');
    x.type = 'button';
    x.setAttribute('aria-label', 'Remove ' + f.name);
    x.addEventListener('click', onRemove);
    chip.appendChild(x);
  }
  return chip;
}

/** `120 KB`, as the server writes it. */
export function humanSize(n) {
  if (n < 1024) return n + ' bytes';
  if (n < 1024 * 1024) return Math.ceil(n / 1024) + ' KB';
  return (n / (1024 * 1024)).toFixed(1) + ' MB';
}
