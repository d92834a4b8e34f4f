/*
 * The chat page. Talks to hermes-edge as described in docs/http-api.md:
 *   GET/PATCH/DELETE /api/conversations[/{id}], GET /api/me, GET /healthz, POST /api/chat (SSE),
 *   GET/POST/DELETE /api/tokens[/{id}] (the "API tokens" dialog).
 * Model output is untrusted: every render goes marked -> DOMPurify -> DOM, and highlight.js output is
 * sanitised again before it replaces a code block. No inline script or style (the CSP forbids both).
 */
(function () {
  'use strict';

  const MAX_IMAGES = 4;
  const MAX_IMAGE_BYTES = 5 * 1024 * 1024;
  const HEALTH_RECHECK_MS = 30000;

  // ---------------------------------------------------------------- elements
  const $ = (id) => document.getElementById(id);
  const app = $('app');
  const sidebar = $('sidebar');
  const scrim = $('scrim');
  const convList = $('conv-list');
  const titleEl = $('title');
  const banners = $('banners');
  const scroller = $('scroller');
  const messagesEl = $('messages');
  const emptyEl = $('empty');
  const composer = $('composer');
  const input = $('input');
  const sendBtn = $('send');
  const stopBtn = $('stop');
  const attachBtn = $('attach');
  const fileInput = $('file');
  const attachmentsEl = $('attachments');
  const dropzone = $('dropzone');
  const dropOverlay = $('drop-overlay');

  // ---------------------------------------------------------------- state
  const state = {
    conversations: [],
    currentId: null,
    title: '',
    messages: [], // {index, role, content, images, tool_steps, error, streaming, stopped}
    controller: null, // AbortController of the running /api/chat request
    pendingImages: [], // {name, dataUrl, size}
    stickToBottom: true,
    loadSeq: 0,
  };

  // ---------------------------------------------------------------- helpers
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }

  function icon(path, size) {
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

  const ICONS = {
    copy: 'M9 9h10v10H9zM5 15V5h10',
    check: 'M5 12.5l4.5 4.5L19 7',
    edit: 'M12 20h9M16.5 3.5a2.1 2.1 0 013 3L7 19l-4 1 1-4z',
    regen: 'M20 11a8 8 0 10-2.3 5.7M20 4v7h-7',
    trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13',
    pencil: 'M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4',
    x: 'M6 6l12 12M18 6L6 18',
  };

  function iconButton(name, label, onClick, cls) {
    const b = el('button', 'icon-btn ' + (cls || ''));
    b.type = 'button';
    b.setAttribute('aria-label', label);
    b.title = label;
    b.appendChild(icon(ICONS[name]));
    b.addEventListener('click', onClick);
    return b;
  }

  function currentPath() {
    return location.pathname + location.search;
  }

  function goToLogin() {
    try { sessionStorage.setItem('hermes.draft', input.value); } catch (_) { /* storage off */ }
    location.assign('/login?next=' + encodeURIComponent(currentPath()));
  }

  async function readError(res) {
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    const err = (body && body.error) || {};
    let retry = parseInt(res.headers.get('Retry-After') || '', 10);
    if (!Number.isFinite(retry) && Number.isFinite(err.retry_after)) retry = err.retry_after;
    return { status: res.status, code: err.code || '', message: err.message || '', retryAfter: Number.isFinite(retry) ? retry : null };
  }

  /** fetch for the JSON API; a 401 sends the user to the login page and back. */
  async function api(method, url, body) {
    const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, opts);
    } catch (e) {
      showBanner('offline', 'error', 'Cannot reach hermes-edge. Check your connection; the page will keep trying.');
      throw e;
    }
    clearBanner('offline');
    if (res.status === 401) {
      sessionExpired();
      const e = new Error('Your session has expired. Taking you to the sign-in page…');
      e.info = { status: 401, code: 'login_required', message: e.message, retryAfter: null };
      throw e;
    }
    if (!res.ok) {
      const err = await readError(res);
      if (res.status === 429) rateLimited(err.retryAfter);
      const e = new Error(err.message || ('HTTP ' + res.status));
      e.info = err;
      throw e;
    }
    if (res.status === 204) return null;
    return res.json();
  }

  // ---------------------------------------------------------------- banners
  const bannerTimers = new Map();

  function showBanner(key, kind, text, action) {
    let b = banners.querySelector('[data-key="' + key + '"]');
    if (!b) {
      b = el('div', 'banner');
      b.dataset.key = key;
      b.setAttribute('role', kind === 'error' ? 'alert' : 'status');
      banners.appendChild(b);
    }
    b.className = 'banner banner-' + kind;
    b.replaceChildren();
    b.appendChild(el('span', 'banner-text', text));
    if (action) {
      const a = el('button', 'banner-action', action.label);
      a.type = 'button';
      a.addEventListener('click', action.onClick);
      b.appendChild(a);
    }
    b.appendChild(iconButton('x', 'Dismiss', () => clearBanner(key), 'banner-close'));
    return b;
  }

  function clearBanner(key) {
    const b = banners.querySelector('[data-key="' + key + '"]');
    if (b) b.remove();
    const t = bannerTimers.get(key);
    if (t) { clearInterval(t); bannerTimers.delete(key); }
  }

  function formatWait(s) {
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    const r = s % 60;
    return r ? m + ' min ' + r + ' s' : m + ' min';
  }

  function rateLimited(retryAfter) {
    clearBanner('rate');
    let left = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(Math.ceil(retryAfter), 86400) : null;
    const render = () => {
      if (left == null) {
        showBanner('rate', 'warn', 'Too many requests. Please wait a moment before sending again.');
      } else {
        showBanner('rate', 'warn', 'Rate limited. You can send again in ' + formatWait(left) + '.');
      }
    };
    render();
    if (left == null) return;
    const timer = setInterval(() => {
      left -= 1;
      if (left <= 0) { clearBanner('rate'); return; }
      render();
    }, 1000);
    bannerTimers.set('rate', timer);
  }

  function upstreamUnreachable(message) {
    showBanner('upstream', 'error', message || 'Hermes is not reachable right now. The agent may be stopped or restarting.', {
      label: 'Check again',
      onClick: () => checkHealth(true),
    });
    scheduleHealthCheck();
  }

  let sessionExpiring = false;
  function sessionExpired() {
    if (sessionExpiring) return;
    sessionExpiring = true;
    showBanner('session', 'warn', 'Your session has expired. Taking you to the sign-in page…');
    setTimeout(goToLogin, 900);
  }

  let healthTimer = null;
  function scheduleHealthCheck() {
    if (healthTimer) return;
    healthTimer = setTimeout(() => { healthTimer = null; checkHealth(false); }, HEALTH_RECHECK_MS);
  }

  async function checkHealth(manual) {
    try {
      const res = await fetch('/healthz', { credentials: 'same-origin', cache: 'no-store' });
      const body = await res.json();
      clearBanner('offline');
      if (body && body.upstream && body.upstream.reachable === false) {
        upstreamUnreachable();
      } else {
        clearBanner('upstream');
      }
    } catch (_) {
      if (manual) showBanner('offline', 'error', 'Cannot reach hermes-edge. Check your connection.');
      scheduleHealthCheck();
    }
  }

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

  function renderMarkdown(target, text) {
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

  async function copyText(text, button) {
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

  // ---------------------------------------------------------------- messages view
  function isNearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
  }

  function scrollToBottom(force) {
    if (force || state.stickToBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  scroller.addEventListener('scroll', () => { state.stickToBottom = isNearBottom(); }, { passive: true });

  function lastAssistantPos() {
    for (let i = state.messages.length - 1; i >= 0; i--) {
      if (state.messages[i].role === 'assistant') return i;
    }
    return -1;
  }

  function renderAll() {
    messagesEl.replaceChildren();
    for (let i = 0; i < state.messages.length; i++) {
      messagesEl.appendChild(renderMessage(state.messages[i], i));
    }
    emptyEl.hidden = state.messages.length > 0;
    app.classList.toggle('is-empty', state.messages.length === 0);
    titleEl.textContent = state.title || 'New chat';
    document.title = (state.title ? state.title + ' · ' : '') + 'Hermes';
  }

  function renderMessage(msg, pos) {
    const node = msg.role === 'user' ? renderUser(msg, pos) : renderAssistant(msg, pos);
    msg.node = node;
    return node;
  }

  function renderUser(msg, pos) {
    const art = el('article', 'msg msg-user');
    art.dataset.index = String(msg.index != null ? msg.index : pos);
    const body = el('div', 'msg-body');
    if (msg.images && msg.images.length) {
      const imgs = el('div', 'msg-images');
      for (const src of msg.images) {
        if (typeof src !== 'string' || !/^(data:image\/|\/|blob:)/.test(src)) continue;
        const img = el('img');
        img.src = src;
        img.alt = 'attached image';
        img.loading = 'lazy';
        imgs.appendChild(img);
      }
      body.appendChild(imgs);
    }
    if (msg.content) body.appendChild(el('div', 'bubble', msg.content));
    art.appendChild(body);
    const actions = el('div', 'msg-actions');
    actions.appendChild(iconButton('copy', 'Copy message', (e) => copyText(msg.content || '', e.currentTarget)));
    actions.appendChild(iconButton('edit', 'Edit and resend', () => startEdit(pos), 'edit-btn'));
    art.appendChild(actions);
    return art;
  }

  function renderAssistant(msg, pos) {
    const art = el('article', 'msg msg-assistant');
    art.dataset.index = String(msg.index != null ? msg.index : pos);
    art.appendChild(el('div', 'avatar avatar-bot', 'H'));
    const body = el('div', 'msg-body');
    const steps = el('ol', 'tool-steps');
    body.appendChild(steps);
    const md = el('div', 'md');
    body.appendChild(md);
    const status = el('div', 'msg-status');
    body.appendChild(status);
    const actions = el('div', 'msg-actions');
    body.appendChild(actions);
    art.appendChild(body);
    msg.parts = { art, steps, md, status, actions };
    updateAssistant(msg, pos);
    return art;
  }

  function stepStatusClass(status) {
    if (status === 'running' || status === 'started' || status === 'pending') return 'running';
    if (status === 'completed' || status === 'done' || status === 'success' || status === 'succeeded') return 'completed';
    return 'failed';
  }

  function renderSteps(msg) {
    const list = msg.parts.steps;
    const steps = msg.tool_steps || [];
    list.hidden = steps.length === 0;
    list.replaceChildren();
    for (const s of steps) {
      const kind = stepStatusClass(s.status);
      const li = el('li', 'tool-step ' + kind);
      li.dataset.status = kind;
      li.dataset.tool = s.tool || '';
      li.appendChild(el('span', 'tool-emoji', s.emoji || '🔧'));
      li.appendChild(el('span', 'tool-label', s.label || s.tool || 'tool'));
      const st = el('span', 'tool-status');
      if (kind === 'running') {
        st.appendChild(el('span', 'spinner'));
        st.appendChild(el('span', 'visually-hidden', 'running'));
      } else if (kind === 'completed') {
        st.appendChild(icon(ICONS.check, 14));
        st.appendChild(el('span', 'visually-hidden', 'done'));
      } else {
        st.textContent = String(s.status || 'failed');
      }
      li.appendChild(st);
      list.appendChild(li);
    }
  }

  function updateAssistant(msg, pos) {
    const p = msg.parts;
    if (!p) return;
    p.art.classList.toggle('streaming', !!msg.streaming);
    p.art.dataset.state = msg.streaming ? 'streaming' : (msg.error ? 'error' : (msg.stopped ? 'stopped' : 'done'));
    renderSteps(msg);
    if (msg.content) {
      renderMarkdown(p.md, msg.content);
    } else {
      p.md.replaceChildren();
      if (msg.streaming && !(msg.tool_steps && msg.tool_steps.length)) {
        const dots = el('div', 'typing');
        dots.setAttribute('aria-label', 'Hermes is thinking');
        dots.append(el('span'), el('span'), el('span'));
        p.md.appendChild(dots);
      }
    }
    p.status.replaceChildren();
    p.status.hidden = true;
    if (msg.error) {
      p.status.hidden = false;
      p.status.className = 'msg-status msg-error';
      p.status.textContent = msg.error;
    } else if (msg.stopped) {
      p.status.hidden = false;
      p.status.className = 'msg-status msg-stopped';
      p.status.textContent = 'Stopped';
    } else if (msg.pending && !msg.streaming) {
      p.status.hidden = false;
      p.status.className = 'msg-status msg-stopped';
      p.status.textContent = 'This answer is still being written. Reload to see it.';
    }
    p.actions.replaceChildren();
    if (!msg.streaming) {
      p.actions.appendChild(iconButton('copy', 'Copy answer', (e) => copyText(msg.content || '', e.currentTarget)));
      if (pos === lastAssistantPos() && !state.controller) {
        p.actions.appendChild(iconButton('regen', 'Regenerate answer', regenerate, 'regen-btn'));
      }
    }
  }

  // Stream renders are coalesced to one per animation frame.
  let renderQueued = null;
  function scheduleRender(msg) {
    if (renderQueued) return;
    renderQueued = msg;
    requestAnimationFrame(() => {
      const m = renderQueued;
      renderQueued = null;
      updateAssistant(m, state.messages.indexOf(m));
      scrollToBottom(false);
    });
  }

  // ---------------------------------------------------------------- edit and resend
  function startEdit(pos) {
    if (state.controller) return;
    const msg = state.messages[pos];
    if (!msg || !msg.node) return;
    const art = msg.node;
    art.classList.add('editing');
    const body = art.querySelector('.msg-body');
    const form = el('form', 'edit-form');
    const ta = el('textarea', 'edit-input');
    ta.value = msg.content || '';
    ta.rows = Math.min(12, Math.max(2, ta.value.split('\n').length));
    ta.setAttribute('aria-label', 'Edit message');
    const row = el('div', 'edit-row');
    const cancel = el('button', 'btn btn-ghost', 'Cancel');
    cancel.type = 'button';
    const save = el('button', 'btn btn-primary', 'Save & send');
    save.type = 'submit';
    row.append(cancel, save);
    form.append(ta, row);
    body.replaceWith(form);
    art.querySelector('.msg-actions').hidden = true;
    ta.focus();
    ta.setSelectionRange(ta.value.length, ta.value.length);
    cancel.addEventListener('click', () => renderAll());
    ta.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') renderAll();
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); form.requestSubmit(); }
    });
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = ta.value.trim();
      if (!text) return;
      const index = msg.index != null ? msg.index : pos;
      const images = msg.images || [];
      state.messages = state.messages.slice(0, pos);
      const body2 = { message: text, edit_from: index };
      if (images.length) body2.images = images;
      sendChat(body2, { role: 'user', index, content: text, images });
    });
  }

  function regenerate() {
    if (state.controller || !state.currentId) return;
    const pos = lastAssistantPos();
    if (pos < 0) return;
    let lastUser = null;
    for (let i = pos - 1; i >= 0; i--) {
      if (state.messages[i].role === 'user') { lastUser = state.messages[i]; break; }
    }
    state.messages = state.messages.slice(0, pos);
    const body = { regenerate: true };
    if (lastUser) body.message = lastUser.content || '';
    sendChat(body, null);
  }

  // ---------------------------------------------------------------- sending
  function setBusy(busy) {
    sendBtn.hidden = busy;
    stopBtn.hidden = !busy;
    app.classList.toggle('is-busy', busy);
    updateSendEnabled();
  }

  function updateSendEnabled() {
    sendBtn.disabled = !!state.controller || (!input.value.trim() && state.pendingImages.length === 0);
  }

  function autosize() {
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight, Math.round(window.innerHeight * 0.4)) + 'px';
  }

  function submitComposer() {
    if (state.controller) return;
    const text = input.value.trim();
    const images = state.pendingImages.map((p) => p.dataUrl);
    if (!text && images.length === 0) return;
    const body = { message: text };
    if (images.length) body.images = images;
    const userMsg = { role: 'user', index: state.messages.length, content: text, images };
    const draft = { text: input.value, images: state.pendingImages };
    input.value = '';
    state.pendingImages = [];
    renderAttachments();
    autosize();
    sendChat(body, userMsg, draft);
  }

  /**
   * POST /api/chat and stream the answer into a new assistant message.
   * `userMsg` is shown immediately (null for regenerate); `draft` is restored if the server refuses.
   */
  async function sendChat(body, userMsg, draft) {
    if (state.currentId) body.conversation_id = state.currentId;
    if (userMsg) state.messages.push(userMsg);
    const msg = { role: 'assistant', content: '', tool_steps: [], error: null, streaming: true };
    state.messages.push(msg);
    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    renderAll();
    state.stickToBottom = true;
    scrollToBottom(true);
    const convAtStart = state.currentId;

    let res;
    try {
      res = await fetch('/api/chat', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (e) {
      if (controller.signal.aborted) {
        msg.stopped = true;
      } else {
        msg.error = 'Could not reach hermes-edge. Check your connection and try again.';
        showBanner('offline', 'error', 'Cannot reach hermes-edge. Check your connection.');
      }
      finish(msg, controller);
      return;
    }

    if (!res.ok) {
      const err = await readError(res);
      // The server refused before starting: undo the optimistic messages and give the text back.
      state.messages.pop();
      if (userMsg) state.messages.pop();
      if (draft && !input.value) {
        input.value = draft.text;
        state.pendingImages = draft.images;
        renderAttachments();
        autosize();
      }
      handleChatError(err, !!body.conversation_id);
      finish(null, controller);
      if (!userMsg && err.status !== 401) loadConversation(state.currentId, true);
      return;
    }

    clearBanner('offline');
    clearBanner('upstream');
    clearBanner('chat');
    const cid = res.headers.get('X-Conversation-Id');
    if (cid && cid !== state.currentId) {
      state.currentId = cid;
      history.replaceState(null, '', '/?c=' + encodeURIComponent(cid));
    }
    if (!convAtStart) {
      state.title = userMsg && userMsg.content ? userMsg.content.split('\n')[0].slice(0, 80) : 'New chat';
      titleEl.textContent = state.title;
      refreshConversations();
    }

    try {
      await window.HermesSSE.readSSE(res, (ev) => onStreamEvent(msg, ev));
    } catch (e) {
      if (controller.signal.aborted) {
        msg.stopped = true;
      } else if (!msg.error) {
        msg.error = 'The connection was interrupted before the answer was complete.';
      }
    }
    finish(msg, controller);
    // Sync with the server's copy (indices, stored partial answers, titles).
    if (state.currentId) {
      const id = state.currentId;
      setTimeout(() => {
        if (!state.controller && state.currentId === id) loadConversation(id, true);
        refreshConversations();
      }, controller.signal.aborted ? 400 : 0);
    }
  }

  function finish(msg, controller) {
    if (state.controller === controller) state.controller = null;
    if (msg) msg.streaming = false;
    setBusy(false);
    renderAll();
    scrollToBottom(false);
  }

  function onStreamEvent(msg, ev) {
    if (ev.type === 'message') {
      if (ev.data === '[DONE]') return;
      let chunk;
      try { chunk = JSON.parse(ev.data); } catch (_) { return; }
      if (chunk && chunk.error) {
        msg.error = (chunk.error.message || 'The agent reported an error.');
        scheduleRender(msg);
        return;
      }
      const choice = chunk && chunk.choices && chunk.choices[0];
      const delta = choice && choice.delta && choice.delta.content;
      if (typeof delta === 'string' && delta) {
        msg.content += delta;
        scheduleRender(msg);
      }
    } else if (ev.type === 'hermes.tool.progress') {
      let p;
      try { p = JSON.parse(ev.data); } catch (_) { return; }
      if (!p || typeof p !== 'object') return;
      const key = p.toolCallId || (p.tool + '|' + p.label);
      const steps = msg.tool_steps;
      let step = steps.find((s) => s.key === key);
      if (!step) {
        step = { key, tool: p.tool, emoji: p.emoji, label: p.label, status: p.status };
        steps.push(step);
      }
      if (p.emoji) step.emoji = p.emoji;
      if (p.label) step.label = p.label;
      if (p.status) step.status = p.status;
      scheduleRender(msg);
    } else if (ev.type === 'edge.error') {
      let e;
      try { e = JSON.parse(ev.data); } catch (_) { e = {}; }
      const code = e.code || 'upstream_error';
      msg.error = e.message || 'The answer could not be completed.';
      if (code === 'upstream_unreachable') upstreamUnreachable(e.message);
      else if (code === 'rate_limited') rateLimited(e.retry_after);
      scheduleRender(msg);
    }
  }

  function handleChatError(err, hadConversation) {
    if (err.status === 401) { sessionExpired(); return; }
    if (err.status === 429) { rateLimited(err.retryAfter); return; }
    if (err.status === 502 || err.status === 503 || err.status === 504) {
      upstreamUnreachable(err.message || undefined);
      return;
    }
    if (err.status === 413) {
      showBanner('chat', 'error', err.message || 'The images are too large. Attach smaller images (5 MiB each at most).');
      return;
    }
    if (err.status === 404 && hadConversation && err.code === 'not_found') {
      showBanner('chat', 'error', 'This conversation no longer exists. Start a new one.');
      newChat();
      refreshConversations();
      return;
    }
    showBanner('chat', 'error', err.message || ('The message could not be sent (HTTP ' + err.status + ').'));
  }

  function stop() {
    if (state.controller) state.controller.abort();
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

  async function addFiles(files) {
    const problems = [];
    for (const f of files) {
      if (!f || !/^image\//.test(f.type)) { problems.push((f && f.name ? f.name : 'file') + ' is not an image'); continue; }
      if (state.pendingImages.length >= MAX_IMAGES) { problems.push('at most ' + MAX_IMAGES + ' images per message'); break; }
      if (f.size > MAX_IMAGE_BYTES) { problems.push((f.name || 'image') + ' is larger than 5 MiB'); continue; }
      try {
        const dataUrl = await readAsDataUrl(f);
        if (state.pendingImages.length < MAX_IMAGES) state.pendingImages.push({ name: f.name || 'image', size: f.size, dataUrl });
      } catch (_) {
        problems.push('could not read ' + (f.name || 'image'));
      }
    }
    if (problems.length) showBanner('attach', 'warn', 'Not attached: ' + problems.join('; ') + '.');
    else clearBanner('attach');
    renderAttachments();
  }

  function renderAttachments() {
    attachmentsEl.replaceChildren();
    attachmentsEl.hidden = state.pendingImages.length === 0;
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
    updateSendEnabled();
  }

  // ---------------------------------------------------------------- conversations
  function groupLabel(date) {
    const now = new Date();
    const startOfDay = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
    const t = date.getTime();
    if (!Number.isFinite(t)) return 'Older';
    if (t >= startOfDay) return 'Today';
    if (t >= startOfDay - 86400000) return 'Yesterday';
    if (t >= startOfDay - 7 * 86400000) return 'Previous 7 days';
    if (t >= startOfDay - 30 * 86400000) return 'Previous 30 days';
    return 'Older';
  }

  function renderConversations() {
    convList.replaceChildren();
    if (state.conversations.length === 0) {
      convList.appendChild(el('p', 'conv-empty', 'No conversations yet.'));
      return;
    }
    let group = null;
    for (const c of state.conversations) {
      const g = groupLabel(new Date(c.updated_at || c.created_at));
      if (g !== group) {
        group = g;
        convList.appendChild(el('h3', 'conv-group', g));
      }
      convList.appendChild(renderConvItem(c));
    }
  }

  function renderConvItem(c) {
    const item = el('div', 'conv-item');
    item.dataset.id = c.id;
    if (c.id === state.currentId) {
      item.classList.add('active');
    }
    const link = el('a', 'conv-link', c.title || 'Untitled');
    link.href = '/?c=' + encodeURIComponent(c.id);
    link.title = c.title || 'Untitled';
    if (c.id === state.currentId) link.setAttribute('aria-current', 'page');
    link.addEventListener('click', (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      openConversation(c.id);
    });
    item.appendChild(link);
    const tools = el('div', 'conv-tools');
    tools.appendChild(iconButton('pencil', 'Rename', () => startRename(item, c), 'rename-btn'));
    const del = iconButton('trash', 'Delete', () => {
      if (!item.classList.contains('confirm-delete')) {
        item.classList.add('confirm-delete');
        del.setAttribute('aria-label', 'Confirm delete');
        del.title = 'Click again to delete';
        setTimeout(() => {
          item.classList.remove('confirm-delete');
          del.setAttribute('aria-label', 'Delete');
          del.title = 'Delete';
        }, 3000);
        return;
      }
      deleteConversation(c.id);
    }, 'delete-btn');
    tools.appendChild(del);
    item.appendChild(tools);
    return item;
  }

  function startRename(item, c) {
    const form = el('form', 'rename-form');
    const field = el('input', 'rename-input');
    field.value = c.title || '';
    field.maxLength = 200;
    field.setAttribute('aria-label', 'Conversation title');
    form.appendChild(field);
    item.replaceChildren(form);
    item.classList.add('renaming');
    field.focus();
    field.select();
    let done = false;
    const commit = async (save) => {
      if (done) return;
      done = true;
      const title = field.value.trim();
      if (save && title && title !== c.title) {
        try {
          await api('PATCH', '/api/conversations/' + encodeURIComponent(c.id), { title });
          c.title = title;
          if (c.id === state.currentId) {
            state.title = title;
            titleEl.textContent = title;
            document.title = title + ' · Hermes';
          }
        } catch (e) {
          showBanner('conv', 'error', 'Could not rename the conversation: ' + e.message);
        }
      }
      renderConversations();
    };
    form.addEventListener('submit', (e) => { e.preventDefault(); commit(true); });
    field.addEventListener('keydown', (e) => { if (e.key === 'Escape') { e.preventDefault(); commit(false); } });
    field.addEventListener('blur', () => commit(true));
  }

  async function deleteConversation(id) {
    let result;
    try {
      result = await api('DELETE', '/api/conversations/' + encodeURIComponent(id));
    } catch (e) {
      showBanner('conv', 'error', 'Could not delete the conversation: ' + e.message);
      return;
    }
    // Deleted here either way; say so when Hermes could not delete its own copy.
    if (result && result.hermes_session === 'not_deleted') {
      showBanner('conv', 'warn', result.message || 'The conversation was deleted here, but Hermes still keeps its copy.');
    }
    state.conversations = state.conversations.filter((c) => c.id !== id);
    if (id === state.currentId) newChat();
    renderConversations();
  }

  async function refreshConversations() {
    try {
      const body = await api('GET', '/api/conversations');
      state.conversations = (body && Array.isArray(body.conversations)) ? body.conversations : [];
      const cur = state.conversations.find((c) => c.id === state.currentId);
      if (cur && cur.title && !state.controller) {
        state.title = cur.title;
        titleEl.textContent = cur.title;
      }
      renderConversations();
    } catch (_) { /* banner already shown */ }
  }

  function newChat() {
    if (state.controller) stop();
    state.currentId = null;
    state.title = '';
    state.messages = [];
    history.replaceState(null, '', '/');
    renderAll();
    renderConversations();
    closeNav();
    input.focus();
  }

  function openConversation(id) {
    if (state.controller) stop();
    history.pushState(null, '', '/?c=' + encodeURIComponent(id));
    closeNav();
    loadConversation(id, false);
  }

  async function loadConversation(id, quiet) {
    if (!id) return;
    const seq = ++state.loadSeq;
    if (!quiet) {
      state.currentId = id;
      const c = state.conversations.find((x) => x.id === id);
      state.title = c ? c.title : '';
      state.messages = [];
      renderAll();
      renderConversations();
      app.classList.add('is-loading');
    }
    let conv;
    try {
      conv = await api('GET', '/api/conversations/' + encodeURIComponent(id));
    } catch (e) {
      app.classList.remove('is-loading');
      if (e.info && e.info.status === 404) {
        showBanner('conv', 'warn', 'That conversation was not found. It may have been deleted.');
        newChat();
      }
      return;
    }
    app.classList.remove('is-loading');
    // A newer load or a stream started meanwhile: this answer is stale.
    if (seq !== state.loadSeq || state.controller) return;
    const atBottom = isNearBottom();
    const prevLast = state.messages[state.messages.length - 1];
    const wasStopped = quiet && prevLast && prevLast.role === 'assistant' && prevLast.stopped;
    state.currentId = conv.id || id;
    state.title = conv.title || '';
    state.messages = (conv.messages || []).map((m) => ({
      index: m.index,
      role: m.role === 'user' ? 'user' : 'assistant',
      content: typeof m.content === 'string' ? m.content : '',
      images: Array.isArray(m.images) ? m.images : [],
      tool_steps: Array.isArray(m.tool_steps) ? m.tool_steps.map((s) => Object.assign({}, s)) : [],
      error: storedError(m.error),
      stopped: !!(m.error && m.error.code === 'stopped'),
      pending: m.role === 'assistant' && !m.content && !m.error,
    }));
    // The server keeps a stopped answer as it was; keep showing that it was stopped.
    const last = state.messages[state.messages.length - 1];
    if (wasStopped && last && last.role === 'assistant' && !last.error) last.stopped = true;
    renderAll();
    renderConversations();
    if (!quiet || atBottom) scrollToBottom(true);
  }

  /** A stored message's `error` ({code, message} or null) as text; "stopped" is not an error. */
  function storedError(err) {
    if (!err) return null;
    if (typeof err === 'string') return err;
    if (err.code === 'stopped') return null;
    return err.message || 'The answer could not be completed.';
  }

  // ---------------------------------------------------------------- API tokens dialog
  // Personal tokens for /v1 (docs/http-api.md). The secret comes back once, from POST /api/tokens;
  // it lives only in the dialog's DOM until the dialog is closed or "I have copied it" is pressed.
  const tokensDialog = $('tokens-dialog');
  const tokenList = $('token-list');
  const tokenForm = $('token-form');
  const tokenName = $('token-name');
  const tokenCreateBtn = $('token-create');
  const tokenError = $('tokens-error');
  const tokenCreated = $('token-created');
  let createdId = null; // the token whose secret the dialog is showing
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function formatDate(text) {
    const d = new Date(text);
    return Number.isFinite(d.getTime()) ? dateFormat.format(d) : String(text || '');
  }

  function showTokenError(text) {
    tokenError.textContent = text;
    tokenError.hidden = !text;
  }

  function tokenErrorText(e, doing) {
    if (e && e.info) {
      if (e.info.status === 401 || e.info.status === 429) return e.message;
      return 'Could not ' + doing + ': ' + (e.info.message || ('HTTP ' + e.info.status)) + '.';
    }
    return 'Could not ' + doing + ': hermes-edge is not reachable. Check your connection and try again.';
  }

  function renderTokens(tokens) {
    tokenList.replaceChildren();
    if (!tokens.length) {
      tokenList.appendChild(el('li', 'token-empty', 'No tokens yet.'));
      return;
    }
    for (const t of tokens) tokenList.appendChild(renderTokenItem(t));
  }

  function renderTokenItem(t) {
    const li = el('li', 'token-item');
    li.dataset.id = String(t.id);
    const info = el('div', 'token-info');
    const head = el('div', 'token-head');
    head.appendChild(el('span', 'token-name', t.name || 'API token'));
    head.appendChild(el('code', 'token-prefix', (t.prefix || '') + '…'));
    info.appendChild(head);
    const meta = el('div', 'token-meta');
    meta.appendChild(el('span', null, 'Created ' + formatDate(t.created_at)));
    meta.appendChild(el('span', 'token-used', t.last_used_at ? 'Last used ' + formatDate(t.last_used_at) : 'Never used'));
    info.appendChild(meta);
    li.appendChild(info);

    const actions = el('div', 'token-actions');
    const revoke = el('button', 'btn btn-small revoke-btn', 'Revoke');
    revoke.type = 'button';
    revoke.setAttribute('aria-label', 'Revoke ' + (t.name || 'API token'));
    actions.appendChild(revoke);
    li.appendChild(actions);

    const confirm = el('div', 'token-confirm');
    confirm.hidden = true;
    confirm.appendChild(el('span', 'token-confirm-text', 'Revoke “' + (t.name || 'API token') + '”? Programs using it stop working at once.'));
    const cancel = el('button', 'btn btn-small btn-ghost', 'Cancel');
    cancel.type = 'button';
    const yes = el('button', 'btn btn-small btn-danger confirm-revoke-btn', 'Revoke');
    yes.type = 'button';
    const buttons = el('div', 'token-confirm-buttons');
    buttons.append(cancel, yes);
    confirm.appendChild(buttons);
    li.appendChild(confirm);

    const setConfirming = (on) => {
      li.classList.toggle('confirming', on);
      confirm.hidden = !on;
      actions.hidden = on;
      (on ? cancel : revoke).focus();
    };
    revoke.addEventListener('click', () => setConfirming(true));
    cancel.addEventListener('click', () => setConfirming(false));
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      cancel.disabled = true;
      try {
        await api('DELETE', '/api/tokens/' + encodeURIComponent(t.id));
      } catch (e) {
        // Already gone (another tab, the CLI): the list below shows what is left.
        if (!(e.info && e.info.status === 404)) {
          showTokenError(tokenErrorText(e, 'revoke the token'));
          yes.disabled = false;
          cancel.disabled = false;
          return;
        }
      }
      showTokenError('');
      if (t.id === createdId) forgetCreated();
      await loadTokens();
      tokenName.focus();
    });
    return li;
  }

  async function loadTokens() {
    try {
      const body = await api('GET', '/api/tokens');
      renderTokens(body && Array.isArray(body.tokens) ? body.tokens : []);
    } catch (e) {
      showTokenError(tokenErrorText(e, 'load your tokens'));
    }
  }

  function usageExample(token) {
    return 'curl ' + location.origin + '/v1/chat/completions \\\n' +
      '  -H "Authorization: Bearer ' + token + '" \\\n' +
      '  -H "Content-Type: application/json" \\\n' +
      '  -d \'{"model": "hermes-agent", "messages": [{"role": "user", "content": "Hello"}]}\'';
  }

  function showCreated(id, token) {
    createdId = id;
    $('token-secret').textContent = token;
    $('token-base-url').textContent = location.origin + '/v1';
    $('token-example').textContent = usageExample(token);
    tokenCreated.hidden = false;
    tokenForm.hidden = true;
    $('token-copy').focus();
  }

  function forgetCreated() {
    createdId = null;
    tokenCreated.hidden = true;
    tokenForm.hidden = false;
    $('token-secret').textContent = '';
    $('token-example').textContent = '';
  }

  async function createToken() {
    const name = tokenName.value.trim();
    tokenCreateBtn.disabled = true;
    try {
      const made = await api('POST', '/api/tokens', name ? { name } : {});
      showTokenError('');
      tokenName.value = '';
      await loadTokens();
      if (made && typeof made.token === 'string') showCreated(made.id, made.token);
    } catch (e) {
      showTokenError(tokenErrorText(e, 'create the token'));
      tokenName.focus();
    } finally {
      tokenCreateBtn.disabled = false;
    }
  }

  function openTokens() {
    closeNav();
    forgetCreated();
    showTokenError('');
    tokenList.replaceChildren(el('li', 'token-empty', 'Loading…'));
    tokensDialog.showModal();
    // Phones: no keyboard popping up at once; the close button takes the focus instead.
    if (window.matchMedia('(min-width: 800px)').matches) tokenName.focus();
    else $('tokens-close').focus();
    loadTokens();
  }

  tokenForm.addEventListener('submit', (e) => { e.preventDefault(); createToken(); });
  $('open-tokens').addEventListener('click', openTokens);
  $('tokens-close').addEventListener('click', () => tokensDialog.close());
  $('token-copy').addEventListener('click', (e) => copyText($('token-secret').textContent, e.currentTarget));
  $('token-example-copy').addEventListener('click', (e) => copyText($('token-example').textContent, e.currentTarget));
  $('token-done').addEventListener('click', () => { forgetCreated(); tokenName.focus(); });
  // A click on the backdrop (outside the dialog box) closes it too.
  tokensDialog.addEventListener('click', (e) => {
    if (e.target !== tokensDialog) return;
    const r = tokensDialog.getBoundingClientRect();
    const inside = e.clientX >= r.left && e.clientX <= r.right && e.clientY >= r.top && e.clientY <= r.bottom;
    if (!inside) tokensDialog.close();
  });
  // The browser puts the focus back where it was when the dialog opened.
  tokensDialog.addEventListener('close', forgetCreated);

  // ---------------------------------------------------------------- nav drawer (phones)
  function openNav() {
    app.classList.add('nav-open');
    scrim.hidden = false;
    $('open-nav').setAttribute('aria-expanded', 'true');
  }
  function closeNav() {
    app.classList.remove('nav-open');
    scrim.hidden = true;
    $('open-nav').setAttribute('aria-expanded', 'false');
  }

  // ---------------------------------------------------------------- wiring
  composer.addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitComposer();
    }
  });
  input.addEventListener('input', () => { autosize(); updateSendEnabled(); });
  stopBtn.addEventListener('click', stop);
  document.addEventListener('keydown', (e) => {
    if (tokensDialog.open) return; // Esc there closes the dialog (the browser's own cancel), nothing else
    if (e.key === 'Escape' && state.controller) stop();
    if (e.key === 'Escape' && app.classList.contains('nav-open')) closeNav();
  });
  $('new-chat').addEventListener('click', newChat);
  $('new-chat-top').addEventListener('click', newChat);
  $('open-nav').addEventListener('click', openNav);
  $('close-nav').addEventListener('click', closeNav);
  scrim.addEventListener('click', closeNav);

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

  window.addEventListener('popstate', () => {
    const id = new URLSearchParams(location.search).get('c');
    if (id) loadConversation(id, false);
    else newChat();
  });

  async function init() {
    try {
      const draft = sessionStorage.getItem('hermes.draft');
      if (draft) {
        input.value = draft;
        sessionStorage.removeItem('hermes.draft');
      }
    } catch (_) { /* storage off */ }
    autosize();
    updateSendEnabled();
    renderAll();
    const id = new URLSearchParams(location.search).get('c');
    api('GET', '/api/me').then((me) => {
      if (me && me.username) {
        $('me').textContent = me.username;
        $('me-avatar').textContent = me.username.slice(0, 1).toUpperCase();
      }
    }).catch(() => {});
    checkHealth(false);
    await refreshConversations();
    if (id) await loadConversation(id, false);
    if (window.matchMedia('(min-width: 800px)').matches) input.focus();
    app.classList.add('ready');
  }

  init();
})();
