/*
 * Single sign-on buttons on the login page: one link per `[[auth.oidc]]` provider, from
 * `GET /login/oidc`. Each is a plain link to `/login/oidc/NAME`, carrying the page's `next` and
 * the "keep me signed in" box; the sign-in itself happens at the provider and comes back to the
 * server, with no script involved. Without providers (or without this script) nothing is shown.
 */
(function () {
  'use strict';

  const box = document.getElementById('sso');
  if (!box) return;

  function safeNext(value) {
    if (typeof value !== 'string' || value[0] !== '/' || value[1] === '/' || value[1] === '\\') return '/';
    if (/[\u0000-\u001f\\]/.test(value)) return '/';
    return value;
  }

  const next = safeNext(new URLSearchParams(location.search).get('next') || '/');
  const remember = document.getElementById('remember');
  const links = [];

  function href(url) {
    const q = new URLSearchParams();
    if (next !== '/') q.set('next', next);
    if (remember && remember.checked) q.set('remember', '1');
    const query = q.toString();
    return query ? url + '?' + query : url;
  }

  fetch('/login/oidc', { headers: { accept: 'application/json' }, credentials: 'same-origin' })
    .then((r) => (r.ok ? r.json() : { providers: [] }))
    .then((data) => {
      const providers = Array.isArray(data.providers) ? data.providers : [];
      if (!providers.length) return;
      const or = document.createElement('p');
      or.className = 'sso-or';
      or.textContent = 'or';
      box.appendChild(or);
      for (const p of providers) {
        if (typeof p.url !== 'string' || !p.url.startsWith('/login/oidc/')) continue;
        const a = document.createElement('a');
        a.className = 'btn btn-block';
        a.textContent = String(p.label || p.name);
        a.dataset.url = p.url;
        a.href = href(p.url);
        box.appendChild(a);
        links.push(a);
      }
      box.hidden = false;
    })
    .catch(() => {});

  if (remember) {
    remember.addEventListener('change', () => {
      for (const a of links) a.href = href(a.dataset.url);
    });
  }
})();
