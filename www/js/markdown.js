/*
 * Markdown rendering of the answers with the vendored marked, DOMPurify and highlight.js (loaded by
 * index.html as classic scripts before the modules: window.marked, window.DOMPurify, window.hljs).
 * Model output is untrusted: every render goes marked -> DOMPurify -> DOM, and highlight.js output is
 * sanitised again before it replaces a code block. Maths is taken out before marked and typeset
 * after (maths.js); task-list boxes, images and tables are finished on the sanitised fragment,
 * before it is in the page.
 */

import { el, icon, ICONS, copyText } from './dom.js';
import { protectMaths, placeMaths } from './maths.js';

// ---------------------------------------------------------------- markdown
const PURIFY = {
  USE_PROFILE: { html: true },
  // `input` stays for GFM task lists; finishTaskLists keeps only disabled checkboxes. `svg` and
  // `math` go whole (content included): the model's drawings are not shown, and leave no gap.
  FORBID_TAGS: ['style', 'form', 'button', 'textarea', 'select', 'option', 'dialog', 'svg', 'math'],
  FORBID_ATTR: ['style', 'id', 'name'],
  RETURN_DOM_FRAGMENT: true,
};
const PURIFY_CODE = { ALLOWED_TAGS: ['span'], ALLOWED_ATTR: ['class'] };

/** The same-origin `/media/` path (with its query) a URL names, or null. */
function mediaPath(href) {
  let url;
  try { url = new URL(href, location.origin); } catch (_) { return null; }
  if (url.origin !== location.origin || !url.pathname.startsWith('/media/')) return null;
  return url.pathname + url.search;
}

/** Map a link to a /media/ file (same origin) onto the viewer page. */
function viewerHref(href) {
  const media = mediaPath(href);
  return media ? '/view?src=' + encodeURIComponent(media) : null;
}

let purifyReady = false;
let sanitizingCode = false; // highlight.js output keeps its `hljs-*` classes
function setupPurify() {
  if (purifyReady) return;
  purifyReady = true;
  window.DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.hasAttribute('href')) {
      const view = viewerHref(node.getAttribute('href'));
      if (view) node.setAttribute('href', view);
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
    // Model output may not pick page styles: only `language-*` on <code> survives (for highlighting).
    if (!sanitizingCode && node.hasAttribute && node.hasAttribute('class')) {
      const keep = node.tagName === 'CODE'
        ? node.getAttribute('class').split(/\s+/).filter((c) => /^language-[\w+#.-]+$/.test(c)).join(' ')
        : '';
      if (keep) node.setAttribute('class', keep);
      else node.removeAttribute('class');
    }
    if (node.tagName === 'IMG') {
      node.setAttribute('loading', 'lazy');
      node.setAttribute('referrerpolicy', 'no-referrer');
    }
  });
}

export function renderMarkdown(target, text) {
  setupPurify();
  const { text: md, maths } = protectMaths(text);
  let html;
  try {
    html = window.marked.parse(md, { gfm: true, breaks: true, async: false });
  } catch (_) {
    target.textContent = text;
    return;
  }
  // Sanitise every render: the answer is model output and may contain HTML.
  const frag = window.DOMPurify.sanitize(html, PURIFY);
  finishTaskLists(frag);
  finishImages(frag);
  wrapTables(frag);
  decorateCode(frag);
  placeMaths(frag, maths);
  target.replaceChildren(frag);
}

/** GFM task items (`- [ ]`, `- [x]`): a disabled checkbox of our own; any other input goes. */
function finishTaskLists(root) {
  for (const input of root.querySelectorAll('input')) {
    const li = input.parentElement;
    if (input.type !== 'checkbox' || !li || li.tagName !== 'LI') { input.remove(); continue; }
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.disabled = true;
    box.checked = input.hasAttribute('checked');
    box.setAttribute('aria-label', box.checked ? 'done' : 'not done');
    input.replaceWith(box);
    li.classList.add('task-item');
    if (li.parentElement) li.parentElement.classList.add('task-list');
  }
}

/**
 * Images from this site's /media/ are shown (and open in the viewer); any other source would be
 * refused by the CSP and show as a broken icon, so it becomes a link saying what it was.
 */
function finishImages(root) {
  for (const img of root.querySelectorAll('img')) {
    const src = img.getAttribute('src') || '';
    const media = mediaPath(src);
    if (media && /^(\/|https?:)/i.test(src)) {
      img.setAttribute('src', media);
      img.classList.add('md-image');
      if (!img.closest('a')) {
        const a = el('a', 'md-image-link');
        a.href = '/view?src=' + encodeURIComponent(media);
        a.target = '_blank';
        a.rel = 'noopener noreferrer';
        img.replaceWith(a);
        a.appendChild(img);
      }
      continue;
    }
    const label = '\u{1F5BC} ' + (img.getAttribute('alt') || 'image') + ' (image not shown: only this site’s own are)';
    let link;
    try {
      const url = new URL(src, location.origin);
      if (url.protocol === 'https:' || url.protocol === 'http:') {
        link = el('a', 'md-image-blocked', label);
        link.href = url.href;
        link.target = '_blank';
        link.rel = 'noopener noreferrer';
      }
    } catch (_) { /* no usable address */ }
    img.replaceWith(link || el('span', 'md-image-blocked', label));
  }
}

/** A table scrolls sideways in its own box when it is wider than the message. */
function wrapTables(root) {
  for (const table of root.querySelectorAll('table')) {
    const wrap = el('div', 'table-wrap');
    table.replaceWith(wrap);
    wrap.appendChild(table);
  }
}

function decorateCode(root) {
  for (const pre of root.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    if (!code) continue;
    const raw = code.textContent;
    const m = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className || '');
    const lang = m ? m[1].toLowerCase() : '';
    if (window.hljs) {
      try {
        const res = lang && window.hljs.getLanguage(lang)
          ? window.hljs.highlight(raw, { language: lang, ignoreIllegals: true })
          : window.hljs.highlightAuto(raw.slice(0, 20000));
        sanitizingCode = true;
        try {
          code.innerHTML = window.DOMPurify.sanitize(res.value, PURIFY_CODE);
        } finally {
          sanitizingCode = false;
        }
        code.classList.add('hljs');
      } catch (_) { /* leave the plain text */ }
    }
    const wrap = el('div', 'code-block');
    const head = el('div', 'code-head');
    head.appendChild(el('span', 'code-lang', lang || 'text'));
    const copy = el('button', 'code-copy');
    copy.type = 'button';
    copy.setAttribute('aria-label', 'Copy code');
    copy.appendChild(icon(ICONS.copy, 14));
    copy.appendChild(el('span', null, 'Copy'));
    copy.addEventListener('click', () => copyText(raw, copy));
    head.appendChild(copy);
    pre.replaceWith(wrap);
    wrap.appendChild(head);
    wrap.appendChild(pre);
  }
}
