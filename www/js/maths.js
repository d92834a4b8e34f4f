/*
 * Maths in answers, typeset with the vendored KaTeX (www/vendor/katex/), which is only fetched when a
 * message has maths: $$…$$ and \[…\] (display), \(…\) and $…$ (inline).
 *
 * The TeX is taken out of the text before marked sees it (markdown would eat `\,` and read `_x_` as
 * emphasis) and put back, as a span, after DOMPurify; code blocks and code spans are left alone.
 * `$…$` follows pandoc's rule so prices are not maths: the opening `$` has a non-space right after
 * it, the closing one a non-space right before it and no digit after it ("$5 and $10" stays text).
 *
 * KaTeX builds its DOM nodes itself and sets their sizes through `element.style` (CSSOM), which the
 * page's CSP (`style-src 'self'`, no 'unsafe-inline') allows (see withStyleAttributesAsCssom for the
 * few places it does not); it never evaluates code. Its input is
 * model output, so it runs with `trust: false` (no \href, \url, \includegraphics, \htmlClass…) and
 * limits on size and macro expansion.
 */

const OPEN = '\uE000';
const CLOSE = '\uE001';
const PLACEHOLDER = /\uE000(\d+)\uE001/g;

// One pass over the text: code (kept as it is), an escaped dollar, or maths.
const TOKENS = new RegExp([
  // 1-3: a fenced code block, to its closing fence or the end of the text (still streaming)
  '(^|\\n)( {0,3})(`{3,}|~{3,})[\\s\\S]*?(?:\\n {0,3}\\3[`~]*[ \\t]*(?=\\n|$)|$)',
  // 4: a code span
  '(`+)[\\s\\S]*?[^`]\\4(?!`)',
  // an escaped dollar
  '\\\\\\$',
  // 5: $$display$$
  '\\$\\$([\\s\\S]+?)\\$\\$',
  // 6: \[display\]
  '\\\\\\[([\\s\\S]+?)\\\\\\]',
  // 7: \(inline\)
  '\\\\\\(([\\s\\S]+?)\\\\\\)',
  // 8: $inline$ (one line; pandoc's rule)
  '\\$(?=[^\\s$])((?:\\\\.|[^$\\\\\\n])*?[^\\s\\\\])\\$(?!\\d)',
].join('|'), 'g');

/**
 * The text with each piece of maths replaced by a placeholder that markdown leaves alone, and the
 * pieces: [{ tex, display, source }].
 */
export function protectMaths(text) {
  const maths = [];
  const clean = text.replace(/[\uE000\uE001]/g, '');
  const out = clean.replace(TOKENS, (whole, _nl, _ind, fence, tick, dd, brk, par, dol) => {
    let tex;
    let display = false;
    if (dd !== undefined) { tex = dd; display = true; }
    else if (brk !== undefined) { tex = brk; display = true; }
    else if (par !== undefined) tex = par;
    else if (dol !== undefined) tex = dol;
    else return whole; // code, or an escaped dollar
    if (!tex.trim()) return whole;
    maths.push({ tex: tex.trim(), display, source: whole });
    return OPEN + (maths.length - 1) + CLOSE;
  });
  return { text: out, maths };
}

/**
 * Replace the placeholders under `root` with spans holding the TeX (shown as written until KaTeX
 * has loaded), then typeset them. Returns whether there was any maths.
 */
export function placeMaths(root, maths) {
  if (!maths.length) return false;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const hits = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.nodeValue.includes(OPEN)) hits.push(n);
  }
  for (const node of hits) {
    const frag = document.createDocumentFragment();
    let last = 0;
    const value = node.nodeValue;
    for (const m of value.matchAll(PLACEHOLDER)) {
      if (m.index > last) frag.appendChild(document.createTextNode(value.slice(last, m.index)));
      const item = maths[Number(m[1])];
      if (item) frag.appendChild(mathSpan(item));
      last = m.index + m[0].length;
    }
    if (last < value.length) frag.appendChild(document.createTextNode(value.slice(last)));
    node.replaceWith(frag);
  }
  // A display formula alone in its paragraph is a block of its own.
  for (const p of root.querySelectorAll('p')) {
    if (p.childNodes.length === 1 && p.firstChild.classList && p.firstChild.classList.contains('math-display')) {
      p.classList.add('math-para');
    }
  }
  typesetPending(root);
  return true;
}

function mathSpan(item) {
  const span = document.createElement('span');
  span.className = item.display ? 'math math-display' : 'math math-inline';
  span.dataset.tex = item.tex;
  span.dataset.pending = '';
  span.textContent = item.source;
  return span;
}

const OPTIONS = { throwOnError: false, trust: false, strict: 'ignore', maxSize: 20, maxExpand: 500, output: 'htmlAndMathml' };

/**
 * KaTeX sizes its HTML through `element.style`, but a few rare pieces (\boldsymbol's shadow, array
 * rules, the colour of an error) go through `setAttribute('style', …)`, which the CSP refuses as an
 * inline style attribute. For the length of one synchronous render, such a call is made through
 * CSSOM instead (`style.cssText`), which the CSP allows; nothing else in the page runs meanwhile.
 */
function withStyleAttributesAsCssom(fn) {
  const proto = Element.prototype;
  const original = proto.setAttribute;
  proto.setAttribute = function (name, value) {
    if (String(name).toLowerCase() === 'style' && this.style) {
      this.style.cssText = String(value);
      return undefined;
    }
    return original.call(this, name, value);
  };
  try {
    return fn();
  } finally {
    proto.setAttribute = original;
  }
}

function typeset(katex, span) {
  if (!span.hasAttribute('data-pending')) return;
  span.removeAttribute('data-pending');
  try {
    const options = Object.assign({ displayMode: span.classList.contains('math-display') }, OPTIONS);
    withStyleAttributesAsCssom(() => katex.render(span.dataset.tex, span, options));
  } catch (_) {
    span.classList.add('math-error'); // left as the TeX it was written in
  }
}

let loading = null;

/** KaTeX's script and style, added to the page once, on the first maths. */
export function loadKatex() {
  if (window.katex) return Promise.resolve(window.katex);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const css = document.createElement('link');
      css.rel = 'stylesheet';
      css.href = '/vendor/katex/katex.min.css';
      document.head.appendChild(css);
      const script = document.createElement('script');
      script.src = '/vendor/katex/katex.min.js';
      script.onload = () => (window.katex ? resolve(window.katex) : reject(new Error('no katex')));
      script.onerror = () => { script.remove(); loading = null; reject(new Error('KaTeX did not load')); };
      document.head.appendChild(script);
    });
  }
  return loading;
}

function typesetPending(root) {
  const spans = root.querySelectorAll('.math[data-pending]');
  if (!spans.length) return;
  if (window.katex) {
    for (const s of spans) typeset(window.katex, s);
    return;
  }
  // Not in the page yet: every span still waiting (this render's, and any other message's) once it is.
  loadKatex().then((katex) => {
    for (const s of document.querySelectorAll('.math[data-pending]')) typeset(katex, s);
  }, () => { /* offline: the TeX stays readable as written */ });
}
