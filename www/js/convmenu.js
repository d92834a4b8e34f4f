/*
 * The menu of one conversation in the list (Rename, Delete with a confirm step), opened with its ⋯
 * button (always shown on phones), by a long press on the row (touch) or a right click. It opens in
 * place under the row, so it is never clipped by the list and needs no hover: the confirm is two
 * real buttons, not a tooltip, so it works by touch.
 */

import { el, icon, ICONS } from './dom.js';

const LONG_PRESS_MS = 550;
const MOVE_TOLERANCE_PX = 10;

let open = null; // { item, menu, close }

/** Close the open menu, if any. */
export function closeConvMenu() {
  if (open) open.close();
}

function menuButton(name, label, cls, onClick) {
  const b = el('button', 'conv-menu-btn ' + (cls || ''));
  b.type = 'button';
  b.setAttribute('role', 'menuitem');
  if (name) b.appendChild(icon(ICONS[name], 18));
  b.appendChild(el('span', null, label));
  b.addEventListener('click', (e) => { e.stopPropagation(); onClick(); });
  return b;
}

/**
 * Open the menu of `item` (a `.conv-item`) for conversation `c`. `actions.rename()` and
 * `actions.remove()` do the work; the menu closes first.
 */
export function openConvMenu(item, c, actions, trigger) {
  if (open && open.item === item) return;
  closeConvMenu();
  const menu = el('div', 'conv-menu');
  menu.setAttribute('role', 'menu');
  menu.setAttribute('aria-label', 'Conversation actions');
  const title = c.title || 'Untitled';

  const showActions = () => {
    menu.replaceChildren(
      menuButton('pencil', 'Rename', 'conv-menu-rename', () => { close(); actions.rename(); }),
      menuButton('trash', 'Delete', 'conv-menu-delete', showConfirm),
    );
    menu.firstChild.focus();
  };
  const showConfirm = () => {
    const text = el('p', 'conv-menu-confirm-text', 'Delete “' + title + '”? This cannot be undone.');
    const row = el('div', 'conv-menu-confirm-row');
    row.appendChild(menuButton(null, 'Cancel', 'conv-menu-cancel', showActions));
    row.appendChild(menuButton('trash', 'Delete', 'conv-menu-confirm', () => { close(); actions.remove(); }));
    menu.replaceChildren(text, row);
    item.classList.add('confirm-delete');
    row.lastChild.focus();
  };

  const onOutside = (e) => { if (!item.contains(e.target)) close(); };
  const onKey = (e) => { if (e.key === 'Escape') { e.stopPropagation(); close(); } };
  function close() {
    if (!open || open.menu !== menu) return;
    open = null;
    menu.remove();
    item.classList.remove('menu-open', 'confirm-delete');
    if (trigger) trigger.setAttribute('aria-expanded', 'false');
    document.removeEventListener('pointerdown', onOutside, true);
    document.removeEventListener('keydown', onKey, true);
  }
  open = { item, menu, close };
  item.classList.add('menu-open');
  item.appendChild(menu);
  if (trigger) trigger.setAttribute('aria-expanded', 'true');
  document.addEventListener('pointerdown', onOutside, true);
  document.addEventListener('keydown', onKey, true);
  showActions();
}

/**
 * A long press (touch or pen) or a right click on `item` opens its menu. The click that ends a long
 * press does not also open the conversation.
 */
export function wireLongPress(item, openMenu) {
  let timer = null;
  let start = null;
  let fired = false;
  const cancel = () => { clearTimeout(timer); timer = null; };
  item.addEventListener('pointerdown', (e) => {
    if (e.pointerType === 'mouse') return;
    fired = false;
    start = [e.clientX, e.clientY];
    cancel();
    timer = setTimeout(() => { timer = null; fired = true; openMenu(); }, LONG_PRESS_MS);
  });
  item.addEventListener('pointermove', (e) => {
    if (timer && start && Math.hypot(e.clientX - start[0], e.clientY - start[1]) > MOVE_TOLERANCE_PX) cancel();
  });
  for (const type of ['pointerup', 'pointercancel', 'pointerleave']) item.addEventListener(type, cancel);
  item.addEventListener('click', (e) => {
    if (fired) { fired = false; e.preventDefault(); e.stopPropagation(); }
  }, true);
  item.addEventListener('contextmenu', (e) => {
    if (e.target.closest('.conv-menu, .rename-form')) return;
    e.preventDefault();
    cancel();
    openMenu();
  });
}
