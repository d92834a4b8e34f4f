/*
 * Media viewer: /view?src=/media/<path>. Only same-site paths under /media/ are accepted (anything else,
 * including "..", "//host" or other schemes, is refused). Plays video and audio with the browser's own
 * controls, shows images, shows a PDF in the browser's own PDF viewer (an <iframe> of the file, which
 * the server lets only this site frame), and offers a download link for everything else. The file is
 * asked for first (HEAD): a missing one says so, with no Download button that would lead nowhere.
 */
(function () {
  'use strict';

  const VIDEO = ['mp4', 'm4v', 'webm', 'mov', 'ogv', 'mkv'];
  const IMAGE = ['png', 'jpg', 'jpeg', 'gif', 'webp', 'avif', 'bmp', 'svg', 'ico'];
  const AUDIO = ['mp3', 'm4a', 'aac', 'ogg', 'oga', 'opus', 'wav', 'flac', 'weba'];
  const PDF = ['pdf'];

  const stage = document.getElementById('stage');
  const nameEl = document.getElementById('name');
  const download = document.getElementById('download');

  /** Returns the normalised path ("/media/...") or null if `src` is not a local media path. */
  function mediaPath(src) {
    if (typeof src !== 'string' || !src.startsWith('/media/') || src.indexOf('\\') >= 0) return null;
    let url;
    try { url = new URL(src, location.origin); } catch (_) { return null; }
    if (url.origin !== location.origin || !url.pathname.startsWith('/media/')) return null;
    let decoded;
    try { decoded = decodeURIComponent(url.pathname); } catch (_) { return null; }
    if (decoded.split('/').some((seg) => seg === '..')) return null;
    return url.pathname + url.search;
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  }

  function message(title, detail, href, back) {
    const box = el('div', 'viewer-message');
    box.appendChild(el('h1', null, title));
    if (detail) box.appendChild(el('p', null, detail));
    if (href) {
      const a = el('a', 'btn btn-primary', 'Download file');
      a.href = href;
      a.setAttribute('download', '');
      box.appendChild(a);
    }
    if (back) {
      const a = el('a', 'btn', 'Back to the chat');
      a.href = '/';
      a.id = 'viewer-back';
      box.appendChild(a);
    }
    stage.replaceChildren(box);
  }

  const path = mediaPath(new URLSearchParams(location.search).get('src'));
  if (!path) {
    message('Nothing to show', 'This viewer only opens files under /media/.');
    return;
  }

  const file = decodeURIComponent(path.split('?')[0].split('/').pop() || 'file');
  const ext = (file.split('.').length > 1 ? file.split('.').pop() : '').toLowerCase();
  document.title = file + ' · Hermes';
  nameEl.textContent = file;
  // Whether the file is there at all (and still readable by this session) before offering it.
  fetch(path, { method: 'HEAD', credentials: 'same-origin', cache: 'no-store' }).then((res) => {
    if (res.status === 404) {
      message('File not found', 'There is no file at ' + path.split('?')[0] + '. It may have been moved or deleted.', null, true);
      return;
    }
    if (res.status === 401) {
      location.assign('/login?next=' + encodeURIComponent(location.pathname + location.search));
      return;
    }
    show();
  }, () => show()); // offline or refused: try to show it anyway, the element says if it cannot

  function show() {
    download.href = path;
    download.hidden = false;
    let media;
    if (VIDEO.includes(ext)) {
      media = el('video', 'viewer-media');
      media.controls = true;
      media.playsInline = true;
      media.preload = 'metadata';
    } else if (AUDIO.includes(ext)) {
      media = el('audio', 'viewer-audio');
      media.controls = true;
      media.preload = 'metadata';
    } else if (IMAGE.includes(ext)) {
      media = el('img', 'viewer-media');
      media.alt = file;
    } else if (PDF.includes(ext)) {
      // The browser's PDF viewer in a frame; a browser without one offers the Download button above.
      media = el('iframe', 'viewer-pdf');
      media.title = file;
      media.src = path;
      stage.classList.add('viewer-stage-pdf');
      stage.replaceChildren(media);
      return;
    } else {
      message(file, 'This file type cannot be shown in the browser.', path);
      return;
    }
    media.addEventListener('error', () => {
      message('Cannot play ' + file, 'The file is missing, or this browser cannot play its format.', path);
    });
    media.src = path;
    stage.replaceChildren(media);
  }
})();
