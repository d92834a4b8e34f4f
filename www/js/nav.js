/*
 * The conversation list as a drawer on phones.
 */

import { $, app, scrim } from './dom.js';

// ---------------------------------------------------------------- nav drawer (phones)
export function openNav() {
  app.classList.add('nav-open');
  scrim.hidden = false;
  $('open-nav').setAttribute('aria-expanded', 'true');
}
export function closeNav() {
  app.classList.remove('nav-open');
  scrim.hidden = true;
  $('open-nav').setAttribute('aria-expanded', 'false');
}
