/*
 * Search over the user's conversations (GET /api/search): the box at the top of the conversation
 * list. While it holds text, the results replace the list (title and the hit in context, the hits
 * marked); Esc or clearing it brings the list back. Choosing a result opens the conversation and
 * scrolls to the message that matched. Ctrl/Cmd+K focuses the box (opening the drawer on a phone).
 *
 * The server sends snippets as parts ({text, hit}); they become text nodes and <mark> elements,
 * never HTML.
 */

import { $, convList, scroller, el } from './dom.js';
import { state } from './state.js';
import { api } from './api.js';
import { loadConversation } from './conversations.js';
import { openNav, closeNav } from './nav.js';
import { relativeTime } from './timestamps.js';

const box = $('search');
const results = $('search-results');
const DEBOUNCE_MS = 200;
let seq = 0;
let debounce = null;

/** Whether results are shown instead of the conversation list. */
export function searching() {
  return !results.hidden;
}

function showList() {
  results.hidden = true;
  results.replaceChildren();
  convList.hidden = false;
}

/** Clears the box and brings the conversation list back. */
export function clearSearch() {
  clearTimeout(debounce);
  seq++;
  box.value = '';
  showList();
}

function marked(parts, fallback) {
  const frag = document.createDocumentFragment();
  if (!Array.isArray(parts) || parts.length === 0) {
    frag.appendChild(document.createTextNode(fallback || ''));
    return frag;
  }
  for (const p of parts) {
    if (!p || typeof p.text !== 'string') continue;
    frag.appendChild(p.hit ? el('mark', null, p.text) : document.createTextNode(p.text));
  }
  return frag;
}

function renderResults(list, q) {
  results.replaceChildren();
  if (list.length === 0) {
    results.appendChild(el('p', 'conv-empty search-none', 'No conversations match “' + q + '”.'));
    return;
  }
  const now = new Date();
  for (const r of list) {
    if (!r || typeof r.id !== 'string') continue;
    const a = el('a', 'search-hit');
    a.href = '/?c=' + encodeURIComponent(r.id);
    a.dataset.id = r.id;
    if (r.id === state.currentId) a.setAttribute('aria-current', 'page');
    const head = el('span', 'search-hit-head');
    const title = el('span', 'search-hit-title');
    title.appendChild(marked(r.title_parts, r.title || 'Untitled'));
    head.appendChild(title);
    const when = new Date(r.updated_at);
    const t = el('time', 'search-hit-time', relativeTime(when, now));
    t.dateTime = r.updated_at || '';
    head.appendChild(t);
    a.appendChild(head);
    if (Array.isArray(r.snippet) && r.snippet.length) {
      const s = el('span', 'search-hit-snippet');
      s.appendChild(marked(r.snippet, ''));
      a.appendChild(s);
    }
    a.addEventListener('click', (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      openHit(r);
    });
    results.appendChild(a);
  }
}

async function run(q) {
  const mine = ++seq;
  let body;
  try {
    body = await api('GET', '/api/search?q=' + encodeURIComponent(q));
  } catch (e) {
    if (mine !== seq) return;
    results.replaceChildren(el('p', 'conv-empty search-error', (e.info && e.info.message) || 'The search failed; try again.'));
    return;
  }
  if (mine !== seq || box.value.trim() !== q) return;
  renderResults(body && Array.isArray(body.results) ? body.results : [], q);
}

function onInput() {
  clearTimeout(debounce);
  const q = box.value.trim();
  if (!q) { showList(); return; }
  convList.hidden = true;
  if (results.hidden) {
    results.hidden = false;
    results.replaceChildren(el('p', 'conv-empty', 'Searching…'));
  }
  debounce = setTimeout(() => run(q), DEBOUNCE_MS);
}

/** Opens a result's conversation and brings its matching message into view. */
async function openHit(r) {
  results.querySelectorAll('.search-hit').forEach((a) => {
    if (a.dataset.id === r.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
  closeNav();
  if (state.currentId !== r.id) {
    history.pushState(null, '', '/?c=' + encodeURIComponent(r.id));
    await loadConversation(r.id, false);
  }
  if (state.currentId !== r.id || typeof r.message_index !== 'number') return;
  const node = document.querySelector('#messages .msg[data-index="' + r.message_index + '"]');
  if (!node) return;
  state.stickToBottom = false;
  const top = node.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
  scroller.scrollTop += top - 16;
  node.classList.remove('search-target');
  void node.offsetWidth; // restart the highlight when the same hit is chosen again
  node.classList.add('search-target');
  setTimeout(() => node.classList.remove('search-target'), 2500);
}

export function wireSearch() {
  box.addEventListener('input', onInput);
  box.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      if (box.value) clearSearch();
      else box.blur();
    }
    if (e.key === 'Enter') {
      e.preventDefault();
      const first = results.querySelector('.search-hit');
      if (first) first.click();
    }
  });
  // A search results list the reader arrived at: Esc there also brings the list back.
  results.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') { e.preventDefault(); e.stopPropagation(); clearSearch(); box.focus(); }
  });
  document.addEventListener('keydown', (e) => {
    if ((e.ctrlKey || e.metaKey) && !e.altKey && (e.key === 'k' || e.key === 'K')) {
      e.preventDefault();
      if (!window.matchMedia('(min-width: 800px)').matches) openNav();
      box.focus();
      box.select();
    }
  });
}
