/*
 * What the account page's sections and the admin page share: a JSON request helper, element and
 * date helpers, a short "browser on OS" summary of a user agent, and an in-place confirmation
 * (buttons in the row itself, so it works by touch and with the keyboard; no window.confirm).
 */

/** A JSON request of this site; a missing session goes to the login page. Throws an Error whose
 *  message is the server's own explanation (and `status` the HTTP status). */
export async function api(method, path, body) {
  const init = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (_) {
    throw new Error('The server cannot be reached. Check the connection and try again.');
  }
  if (res.status === 401) {
    location.assign('/login?next=' + encodeURIComponent(location.pathname));
    throw new Error('Your session has ended.');
  }
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch (_) { data = null; }
  }
  if (!res.ok) {
    const message = data && data.error && data.error.message;
    const wait = res.headers.get('Retry-After');
    const err = new Error(message || ('Request failed (' + res.status + ')' + (wait ? '; try again in ' + wait + ' s' : '') + '.'));
    err.status = res.status;
    throw err;
  }
  return data;
}

export const $ = (id) => document.getElementById(id);

export function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text != null) node.textContent = text;
  return node;
}

export function button(cls, text, label) {
  const b = el('button', 'btn btn-small ' + (cls || ''), text);
  b.type = 'button';
  if (label) b.setAttribute('aria-label', label);
  return b;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

export function formatDate(text) {
  if (!text) return '';
  const d = new Date(text);
  return Number.isFinite(d.getTime()) ? dateFormat.format(d) : String(text);
}

/** A message box: shown with `text`, hidden when empty. */
export function say(box, text) {
  box.textContent = text || '';
  box.hidden = !text;
}

/** "Firefox on Linux" from a User-Agent header; the raw text when nothing is recognised. */
export function uaSummary(ua) {
  if (!ua) return 'Unknown device';
  const browser =
    /Edg\//.test(ua) ? 'Edge'
      : /OPR\/|Opera/.test(ua) ? 'Opera'
        : /Firefox\//.test(ua) ? 'Firefox'
          : /Chrom(e|ium)\//.test(ua) ? 'Chrome'
            : /Safari\//.test(ua) ? 'Safari'
              : /^curl\//.test(ua) ? 'curl'
                : null;
  const os =
    /iPhone|iPad|iPod/.test(ua) ? 'iOS'
      : /Android/.test(ua) ? 'Android'
        : /Windows/.test(ua) ? 'Windows'
          : /Mac OS X|Macintosh/.test(ua) ? 'macOS'
            : /CrOS/.test(ua) ? 'ChromeOS'
              : /Linux/.test(ua) ? 'Linux'
                : null;
  if (browser && os) return browser + ' on ' + os;
  if (browser || os) return browser || os;
  return ua.length > 60 ? ua.slice(0, 57) + '…' : ua;
}

/**
 * Asks in the row `item` before `act` runs: `text` and two buttons replace the row's actions.
 * `act` resolves when done; when it throws, its message goes to `onError` and the row stays.
 */
export function confirmInPlace(item, actions, text, yesText, act, onError) {
  if (item.classList.contains('confirming')) return;
  item.classList.add('confirming');
  actions.hidden = true;
  const box = el('div', 'token-confirm');
  const buttons = el('div', 'token-confirm-buttons');
  const no = button('confirm-no', 'Cancel');
  const yes = button('btn-danger confirm-yes', yesText);
  const close = () => {
    box.remove();
    item.classList.remove('confirming');
    actions.hidden = false;
  };
  no.addEventListener('click', () => { close(); actions.querySelector('button')?.focus(); });
  yes.addEventListener('click', async () => {
    yes.disabled = true;
    no.disabled = true;
    try {
      await act();
    } catch (e) {
      onError(e.message);
      yes.disabled = false;
      no.disabled = false;
    }
  });
  buttons.append(no, yes);
  box.append(el('span', 'token-confirm-text', text), buttons);
  item.append(box);
  no.focus();
}
