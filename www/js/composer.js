/*
 * The composer: the message box, the send and stop buttons, and attachments (picked, pasted or
 * dropped on the page): images go to the model with the message; other files are uploaded at once
 * (js/files.js) and the agent is told where they are.
 */

import { app, composer, input, sendBtn, stopBtn, attachBtn, fileInput, attachmentsEl, dropzone, dropOverlay, el, iconButton } from './dom.js';
import { state } from './state.js';
import { showBanner, clearBanner } from './banners.js';
import { sendChat } from './chat.js';
import { stop } from './runs.js';
import { clearDraft, draftChanged } from './drafts.js';
import { uploadFile, fileChip, humanSize } from './files.js';

const MAX_IMAGES = 4;
const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
// Images the model takes as images; anything else is a file for the agent's tools.
const MODEL_IMAGE = /^image\/(png|jpeg|gif|webp)$/;

// ---------------------------------------------------------------- composer
export function setBusy(busy) {
  sendBtn.hidden = busy;
  stopBtn.hidden = !busy;
  app.classList.toggle('is-busy', busy);
  updateSendEnabled();
}

export function updateSendEnabled() {
  const uploading = state.pendingFiles.some((f) => !f.path);
  const empty = !input.value.trim() && state.pendingImages.length === 0 && state.pendingFiles.length === 0;
  sendBtn.disabled = !!state.stream || uploading || empty;
}

export function autosize() {
  input.style.height = 'auto';
  input.style.height = Math.min(input.scrollHeight, Math.round(window.innerHeight * 0.4)) + 'px';
}

function submitComposer() {
  if (state.stream) return;
  const text = input.value.trim();
  const images = state.pendingImages.map((p) => p.dataUrl);
  if (state.pendingFiles.some((f) => !f.path)) return; // still uploading
  const files = state.pendingFiles.slice();
  if (!text && images.length === 0 && files.length === 0) return;
  const body = { message: text };
  if (images.length) body.images = images;
  if (files.length) body.files = files.map((f) => f.path);
  const userMsg = { role: 'user', index: state.messages.length, content: text, images, files: files.map(shownFile) };
  const draft = { text: input.value, images: state.pendingImages, files };
  input.value = '';
  clearDraft(state.currentId);
  state.pendingImages = [];
  state.pendingFiles = [];
  renderAttachments();
  autosize();
  sendChat(body, userMsg, draft);
}

// ---------------------------------------------------------------- attachments
function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result));
    r.onerror = () => reject(r.error);
    r.readAsDataURL(file);
  });
}

function shownFile(f) {
  return { name: f.name, type: f.type || 'application/octet-stream', size: humanSize(f.size), src: f.path };
}

async function addOther(f, problems) {
  const item = { name: f.name || 'file', size: f.size, type: f.type, path: null };
  state.pendingFiles.push(item);
  renderAttachments();
  try {
    const up = await uploadFile(f);
    item.path = up.path;
    item.name = up.name || item.name;
    item.type = up.type || item.type;
  } catch (e) {
    state.pendingFiles = state.pendingFiles.filter((x) => x !== item);
    problems.push(e.message);
  }
  renderAttachments();
}

async function addFiles(files) {
  const problems = [];
  const uploads = [];
  for (const f of files) {
    if (!f) continue;
    if (!MODEL_IMAGE.test(f.type)) { uploads.push(addOther(f, problems)); continue; }
    if (state.pendingImages.length >= MAX_IMAGES) { problems.push('at most ' + MAX_IMAGES + ' images per message'); break; }
    if (f.size > MAX_IMAGE_BYTES) { problems.push((f.name || 'image') + ' is larger than 5 MiB'); continue; }
    try {
      const dataUrl = await readAsDataUrl(f);
      if (state.pendingImages.length < MAX_IMAGES) state.pendingImages.push({ name: f.name || 'image', size: f.size, dataUrl });
    } catch (_) {
      problems.push('could not read ' + (f.name || 'image'));
    }
  }
  await Promise.all(uploads);
  if (problems.length) showBanner('attach', 'warn', 'Not attached: ' + problems.join('; ') + '.');
  else clearBanner('attach');
  renderAttachments();
}

export function renderAttachments() {
  attachmentsEl.replaceChildren();
  attachmentsEl.hidden = state.pendingImages.length === 0 && state.pendingFiles.length === 0;
  state.pendingImages.forEach((p, i) => {
    const chip = el('div', 'attachment');
    const img = el('img');
    img.src = p.dataUrl;
    img.alt = p.name;
    chip.appendChild(img);
    chip.appendChild(iconButton('x', 'Remove ' + p.name, () => {
      state.pendingImages.splice(i, 1);
      renderAttachments();
    }, 'attachment-remove'));
    attachmentsEl.appendChild(chip);
  });
  for (const f of state.pendingFiles) {
    const chip = fileChip(Object.assign(shownFile(f), { size: f.path ? humanSize(f.size) : 'uploading…' }), () => {
      state.pendingFiles = state.pendingFiles.filter((x) => x !== f);
      renderAttachments();
    });
    chip.classList.toggle('uploading', !f.path);
    attachmentsEl.appendChild(chip);
  }
  updateSendEnabled();
}

// ---------------------------------------------------------------- wiring
/** The composer's events, and images dropped anywhere on the page (main.js calls this once). */
export function wireComposer() {
  composer.addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitComposer();
    }
  });
  input.addEventListener('input', () => { autosize(); updateSendEnabled(); draftChanged(); });
  stopBtn.addEventListener('click', stop);

  attachBtn.addEventListener('click', () => fileInput.click());
  fileInput.addEventListener('change', () => {
    addFiles(Array.from(fileInput.files || []));
    fileInput.value = '';
  });
  input.addEventListener('paste', (e) => {
    const files = Array.from((e.clipboardData && e.clipboardData.files) || []).filter((f) => /^image\//.test(f.type));
    if (files.length) {
      e.preventDefault();
      addFiles(files);
    }
  });
  let dragDepth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files');
  document.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    dragDepth += 1;
    dropOverlay.hidden = false;
  });
  document.addEventListener('dragleave', (e) => {
    if (!hasFiles(e)) return;
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropOverlay.hidden = true;
  });
  document.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    dropOverlay.hidden = true;
    addFiles(Array.from(e.dataTransfer.files || []));
  });
  dropzone.addEventListener('click', (e) => { if (e.target === dropzone) input.focus(); });
}
