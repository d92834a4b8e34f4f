#!/usr/bin/env bash
# tests/prometheus/setup.sh: the Prometheus Python client (its text-format parser) in a small
# virtualenv, for tests/metrics.rs.
#
#   usage:   tests/prometheus/setup.sh            (no arguments)
#   env:     PROMETHEUS_VENV  virtualenv path (default: <repo>/.venv-prometheus, gitignored)
#            PYTHON           interpreter used to create the venv (default: python3)
#   output:  progress on stderr prefixed "prometheus/setup.sh:"; the last stdout line is the venv's
#            python, e.g. /repo/.venv-prometheus/bin/python.
#   exit:    0 when `prometheus_client.parser` imports, non-zero otherwise.
# Idempotent: a second run only checks the import.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${PROMETHEUS_VENV:-$repo/.venv-prometheus}"
python="${PYTHON:-python3}"

say() { printf 'prometheus/setup.sh: %s\n' "$*" >&2; }

# Test binaries may run this at the same time: one installer at a time.
exec 9>"$venv.lock"
flock -w 300 9 || { say "timed out waiting for another setup.sh to finish with $venv"; exit 1; }

if ! "$venv/bin/python" -c 'import prometheus_client.parser' 2>/dev/null; then
    if [ ! -x "$venv/bin/python" ]; then
        say "creating virtualenv $venv"
        "$python" -m venv "$venv"
    fi
    say "installing prometheus_client from PyPI"
    "$venv/bin/python" -m pip install --quiet "prometheus_client>=0.20,<1" >&2
fi
"$venv/bin/python" -c 'import prometheus_client.parser' || {
    say "error: prometheus_client.parser cannot be imported from $venv"
    exit 1
}
say "ok: prometheus_client $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("prometheus_client"))') in $venv"
printf '%s\n' "$venv/bin/python"
