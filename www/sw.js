/*
 * The service worker. Here it only loads the Web Push handlers (push-sw.js); the app-shell cache
 * lives in the same file where both are merged, which keeps the importScripts line below.
 */
'use strict';
importScripts('/push-sw.js');
