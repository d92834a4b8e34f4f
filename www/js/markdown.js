/*
 * Markdown rendering of the answers with the vendored marked, DOMPurify and highlight.js (loaded by
 * index.html as classic scripts before the modules: window.marked, window.DOMPurify, window.hljs).
 * Model output is untrusted: every render goes marked -> DOMPurify -> DOM, and highlight.js output is
 * sanitised again before it replaces a code block.
 */

import { el, icon, ICONS, copyText } from './dom.js';

// ---------------------------------------------------------------- markdown
const PURIFY = {
  USE_PROFILE: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'option', 'dialog'],
  FORBID_ATTR: ['style', 'id', 'name'],
};
const PURIFY_CODE = { ALLOWED_TAGS: ['span'], ALLOWED_ATTR: ['class'] };

/** Map a link to a /media/ file (same origin) onto the viewer page. */
function viewerHref(href) {
  let url;
  try { url = new URL(href, location.origin); } catch (_) { return null; }
  if (url.origin !== location.origin || !url.pathname.startsWith('/media/')) return null;
  return '/view?src=' + encodeURIComponent(url.pathname + url.search);
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
  let html;
  try {
    html = window.marked.parse(text, { gfm: true, breaks: true, async: false });
  } catch (_) {
    target.textContent = text;
    return;
  }
  // Sanitise every render: the answer is model output and may contain HTML.
  target.innerHTML = window.DOMPurify.sanitize(html, PURIFY);
  decorateCode(target);
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
