#!/usr/bin/env bash
# Browser tests of the chat page against a hermes-edge binary:
#   bash tests/browser/run.sh target/debug/hermes-edge
# Installs what is missing (Debian chromium + chromium-driver, ffmpeg, an emoji font for the
# screenshots, and playwright-core via `npm ci`), then runs the node test runner.
# Writes target/screenshots/screenshot-{desktop-light,desktop-dark,mobile,tokens-desktop,tokens-mobile,tokens-mobile-dark,approval-desktop,approval-mobile,approval-denied-mobile,login-code,account-desktop,account-mobile,account-security-desktop,account-security-mobile,account-security-mobile-dark,admin-desktop,admin-mobile,admin-mobile-dark,admin-invite-mobile}.png
# (two-factor.test.mjs signs in with a password and a code and enrols on the account page;
# passkeys.test.mjs drives Chromium's virtual WebAuthn authenticator at https://localhost:PORT;
# history.test.mjs adds screenshot-{search-desktop,search-mobile,export-mobile,file-mobile}.png;
# app.test.mjs adds screenshot-{rendering-desktop,rendering-mobile,conversation-menu-mobile,delete-confirm-mobile,unreachable-mobile}.png
#   and covers the installable app, rendering, the viewer, sign-in, the outage banner and the phone menu;
# admin.test.mjs drives the account page's password/sessions/tokens sections and the admin page;
# push.test.mjs (the notifications bell, PushManager stubbed) adds screenshot-push-{desktop,mobile}.png and screenshot-push-account-{desktop,mobile}.png;
# runs.test.mjs drives the page against mock-edge.mjs, not the binary; crash.test.mjs kills the binary
# with SIGKILL mid-answer and starts it again on the same data dir)
# (SCREENSHOT_DIR=docs refreshes the README's copies).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:?usage: run.sh path/to/hermes-edge}"
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
[ -x "$bin" ] || { echo "run.sh: $bin is not an executable" >&2; exit 2; }

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
if [ "${#need[@]}" -gt 0 ]; then
  echo "run.sh: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${need[@]}" || { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }
fi
command -v node >/dev/null 2>&1 || { echo "run.sh: node is required (apt-get install -y nodejs npm)" >&2; exit 2; }
# sse.test.mjs imports www/js/sse.js, an ES module with no package.json saying so: node recognises it
# by its syntax from 20.19 and 22.7 on; older ones read it as CommonJS and fail on `export`.
node --input-type=module -e "await import('$here/../../www/js/sse.js')" 2>/dev/null \
  || { echo "run.sh: node $(node --version) cannot import www/js/sse.js (node 20.19, 22.7 or later can)" >&2; exit 2; }

cd "$here"
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
HERMES_EDGE_BIN="$bin" node --test --test-concurrency=1 sse.test.mjs chat.test.mjs crash.test.mjs runs.test.mjs two-factor.test.mjs passkeys.test.mjs history.test.mjs app.test.mjs admin.test.mjs push.test.mjs
