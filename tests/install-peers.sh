#!/usr/bin/env bash
# Installs the real peers the tests run against, if missing. Idempotent; needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
# The build itself: aws-lc and SQLite are compiled from C.
command -v cc >/dev/null || apt_packages+=(build-essential)
command -v openssl >/dev/null || apt_packages+=(openssl)
# Pebble (Let's Encrypt's test CA) and pebble-challtestsrv for tests/acme.rs.
command -v pebble >/dev/null || apt_packages+=(pebble)
command -v curl >/dev/null || apt_packages+=(curl)
# systemd-analyze (checks the unit setup writes) and systemd-sysusers (makes its system user
# under --root) for tests/setup.rs; unshare and mount (util-linux) run the check in a private mount
# namespace.
command -v systemd-analyze >/dev/null || apt_packages+=(systemd)
command -v systemd-sysusers >/dev/null || apt_packages+=(systemd)
command -v unshare >/dev/null || apt_packages+=(util-linux)
command -v mount >/dev/null || apt_packages+=(mount)
# Headless Chromium, ffmpeg (test video) and an emoji font for tests/browser.rs.
command -v chromium >/dev/null || apt_packages+=(chromium)
command -v chromedriver >/dev/null || apt_packages+=(chromium-driver)
command -v ffmpeg >/dev/null || apt_packages+=(ffmpeg)
[[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]] || apt_packages+=(fonts-noto-color-emoji)
command -v node >/dev/null || apt_packages+=(nodejs npm)
if ((${#apt_packages[@]})); then
  echo "install-peers: apt-get install ${apt_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_packages[@]}"
fi

# The real Hermes API Server (PyPI) in a virtualenv, for tests/hermes_e2e.rs.
bash tests/hermes/setup.sh

# The Prometheus Python client's text parser, for tests/metrics.rs.
bash tests/prometheus/setup.sh >/dev/null

# playwright-core for the browser tests (drives Debian's Chromium; downloads no browser).
if [[ ! -d tests/browser/node_modules/playwright-core ]]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

# panva's oidc-provider (a certified OpenID provider) for tests/oidc.rs, pinned by its lock file.
if [[ ! -d tests/oidc/node_modules/oidc-provider ]]; then
  (cd tests/oidc && npm ci --no-audit --no-fund)
fi
