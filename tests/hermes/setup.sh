#!/usr/bin/env bash
# tests/hermes/setup.sh: install the real Hermes Agent (API Server) into a virtualenv for the e2e tests.
#
# Interface
#   usage:   tests/hermes/setup.sh            (no arguments)
#   env:     HERMES_VENV     virtualenv path (default: <repo>/.venv-hermes, gitignored)
#            HERMES_VERSION  hermes-agent version (default: 0.19.0, the version docs/hermes-notes.md describes)
#            PYTHON          interpreter used to create the venv (default: python3, needs >= 3.11)
#   effect:  creates $HERMES_VENV if missing and installs "hermes-agent[messaging]==$HERMES_VERSION" there
#            unless that exact version is already installed. The `messaging` extra brings aiohttp; without
#            it the gateway silently does not start the API server.
#   output:  progress lines on stderr prefixed "setup.sh:"; on success the last line on stdout is the path
#            of the `hermes` executable, e.g. /repo/.venv-hermes/bin/hermes.
#   exit:    0 when hermes is installed and importable (API server and dashboard), non-zero otherwise.
# Idempotent: a second run only checks the installed version (well under a second).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${HERMES_VENV:-$repo/.venv-hermes}"
version="${HERMES_VERSION:-0.19.0}"
python="${PYTHON:-python3}"

say() { printf 'setup.sh: %s\n' "$*" >&2; }

# Tests run in parallel and each may call this script: one installer per virtualenv at a time (two
# `pip install`s into one fresh venv break each other); the others wait, then find it installed.
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock -w 900 9 || { say "timed out waiting for another setup.sh to finish with $venv"; exit 1; }

installed_version() {
    # Prints the installed hermes-agent version, or nothing.
    "$venv/bin/python" - <<'EOF' 2>/dev/null || true
from importlib import metadata
try:
    print(metadata.version("hermes-agent"))
except metadata.PackageNotFoundError:
    pass
EOF
}

has_aiohttp() {
    "$venv/bin/python" -c 'import aiohttp' 2>/dev/null
}

if [ ! -x "$venv/bin/python" ]; then
    say "creating virtualenv $venv with $("$python" --version 2>&1)"
    "$python" -m venv "$venv"
else
    say "virtualenv $venv exists"
fi

current="$(installed_version)"
if [ "$current" = "$version" ] && has_aiohttp && [ -x "$venv/bin/hermes" ]; then
    say "hermes-agent $version already installed (with aiohttp), nothing to do"
else
    if [ -n "$current" ]; then
        say "hermes-agent $current installed, want $version"
    fi
    say "installing hermes-agent[messaging]==$version from PyPI (about 35 s, 230 MB)"
    start=$(date +%s)
    "$venv/bin/python" -m pip install --quiet "hermes-agent[messaging]==$version" >&2
    say "installed in $(( $(date +%s) - start )) s"
fi

if [ ! -x "$venv/bin/hermes" ]; then
    say "error: $venv/bin/hermes missing after install"
    exit 1
fi
"$venv/bin/python" -c 'import gateway.platforms.api_server, aiohttp' || {
    say "error: gateway.platforms.api_server or aiohttp cannot be imported"
    exit 1
}
# `hermes dashboard` (tests/dashboard.rs) needs FastAPI, uvicorn and the built page, all part of
# the base package; checked so a broken install fails here rather than as a dashboard timeout.
"$venv/bin/python" - <<'EOF' || { say "error: the dashboard (hermes_cli.web_server) cannot run: fastapi, uvicorn or web_dist/index.html missing"; exit 1; }
import pathlib
import fastapi, uvicorn, hermes_cli
assert (pathlib.Path(hermes_cli.__file__).parent / "web_dist" / "index.html").is_file()
EOF
say "ok: hermes-agent $(installed_version) in $venv"
printf '%s\n' "$venv/bin/hermes"
