#!/usr/bin/env bash
# tests/hermes/dashboard.sh: start the real Hermes dashboard (`hermes dashboard`) on loopback.
#
# Interface
#   usage:   tests/hermes/dashboard.sh PORT WORKDIR
#   args/env (an argument wins over the variable):
#            PORT    / HERMES_DASHBOARD_PORT   free TCP port on 127.0.0.1 (required)
#            WORKDIR / HERMES_WORKDIR          directory for everything this run writes (required;
#                                              created; refused if it holds a running dashboard)
#            HERMES_VENV                       virtualenv from setup.sh (default <repo>/.venv-hermes);
#                                              run setup.sh first, this script installs nothing
#            HERMES_START_TIMEOUT              seconds to wait for the page (default 90)
#   files written in WORKDIR:
#            dashboard.pid   PID of `hermes dashboard` (leads its own process group, see stop.sh)
#            dashboard.log   its stdout + stderr (prints HERMES_DASHBOARD_READY port=PORT when up)
#            dashboard_url   http://127.0.0.1:PORT
#            dashboard-home/ HERMES_HOME (a throw-away config.yaml; the model is never called)
#            dashboard-user/ HOME
#   output:  progress on stderr prefixed "dashboard.sh:"; on success the last stdout line is the URL.
#   exit:    0 once GET / answers 200 with Host 127.0.0.1:PORT; otherwise non-zero, the process
#            stopped and the log tail printed.
#   stop:    tests/hermes/stop.sh WORKDIR
# Like start.sh it runs with a minimal environment (env -i), so nothing from the caller leaks in.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${1:-${HERMES_DASHBOARD_PORT:-}}"
work="${2:-${HERMES_WORKDIR:-}}"
venv="${HERMES_VENV:-$repo/.venv-hermes}"
timeout="${HERMES_START_TIMEOUT:-90}"

say() { printf 'dashboard.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

[ -n "$port" ] || die "port missing (arg 1 or HERMES_DASHBOARD_PORT)"
[ -n "$work" ] || die "work dir missing (arg 2 or HERMES_WORKDIR)"
case "$port" in ''|*[!0-9]*) die "port must be a number, got '$port'";; esac
[ -x "$venv/bin/hermes" ] || die "$venv/bin/hermes not found: run tests/hermes/setup.sh (or set HERMES_VENV)"

mkdir -p "$work"
work="$(cd "$work" && pwd)"
if [ -f "$work/dashboard.pid" ] && kill -0 "$(cat "$work/dashboard.pid")" 2>/dev/null; then
    die "$work already has a running dashboard (PID $(cat "$work/dashboard.pid")); run stop.sh $work first"
fi
rm -f "$work/dashboard.pid" "$work/dashboard.log" "$work/dashboard_url"
hermes_home="$work/dashboard-home"
home="$work/dashboard-user"
rm -rf "$hermes_home" "$home"
mkdir -p "$hermes_home" "$home"
cat >"$hermes_home/config.yaml" <<EOF
# Written by tests/hermes/dashboard.sh: a model that is never called; nothing leaves loopback.
model:
  provider: custom
  base_url: http://127.0.0.1:9/v1
  default: fake-model
  api_key: fake-key
EOF

say "starting hermes dashboard on 127.0.0.1:$port (HERMES_HOME $hermes_home)"
started=$(date +%s.%N)
(
    cd "$work"
    exec setsid env -i PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" HOME="$home" HERMES_HOME="$hermes_home" \
        LANG=C.UTF-8 PYTHONUNBUFFERED=1 \
        "$venv/bin/hermes" dashboard --no-open --host 127.0.0.1 --port "$port" </dev/null >"$work/dashboard.log" 2>&1
) &
echo $! >"$work/dashboard.pid"
printf 'http://127.0.0.1:%s\n' "$port" >"$work/dashboard_url"

deadline=$(( $(date +%s) + timeout ))
while :; do
    if code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -H "Host: 127.0.0.1:$port" "http://127.0.0.1:$port/")" \
        && [ "$code" = 200 ]; then
        break
    fi
    if ! kill -0 "$(cat "$work/dashboard.pid")" 2>/dev/null; then
        say "the dashboard exited before it answered; last log lines:"
        tail -n 30 "$work/dashboard.log" >&2 || true
        "$here/stop.sh" "$work" >&2 || true
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "the dashboard did not answer within ${timeout} s; last log lines:"
        tail -n 30 "$work/dashboard.log" >&2 || true
        "$here/stop.sh" "$work" >&2 || true
        exit 1
    fi
    sleep 0.2
done
elapsed="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
say "ready: GET / answered after ${elapsed} s"
printf 'http://127.0.0.1:%s\n' "$port"
