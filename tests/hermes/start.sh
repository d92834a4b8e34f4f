#!/usr/bin/env bash
# tests/hermes/start.sh: start the real Hermes API Server on loopback against the scripted fake provider.
#
# Interface
#   usage:   tests/hermes/start.sh [API_PORT [WORKDIR [API_KEY]]]
#   args/env (an argument wins over the variable):
#            API_PORT  / HERMES_API_PORT   free TCP port for the API server on 127.0.0.1 (required)
#            WORKDIR   / HERMES_WORKDIR    directory for everything this run writes (required; created;
#                                          must not hold a running instance: refused if hermes.pid is alive)
#            API_KEY   / HERMES_API_KEY    API_SERVER_KEY, >= 16 chars and not placeholder-like
#                                          (default: 64 random hex chars)
#            HERMES_VENV                   virtualenv from setup.sh (default <repo>/.venv-hermes); run setup.sh
#                                          first, start.sh does not install anything
#            FAKE_PROVIDER_PORT            port of the fake model provider (default 0 = any free port)
#            HERMES_START_TIMEOUT          seconds to wait for /health (default 90)
#            HERMES_SUPPORTS_VISION        "true" (default) or "false": model.supports_vision in config.yaml.
#                                          true: image parts reach the fake provider as they were sent;
#                                          false: Hermes first asks the model to describe the image (an
#                                          extra provider request) and sends the description as text.
#            HERMES_MAX_CONCURRENT_RUNS    optional: gateway.api_server.max_concurrent_runs in config.yaml
#                                          (Hermes' default is 10; 0 disables the cap). Small values let a
#                                          test provoke the real 429 + Retry-After: 1.
#            HERMES_APPROVAL_MODE          optional: approvals.mode in config.yaml: manual, smart (Hermes'
#                                          default: the model is asked first, see fake_provider.py) or off
#            HERMES_APPROVAL_TIMEOUT       optional: approvals.timeout in seconds (Hermes' default 60): how
#                                          long a dangerous command waits for an answer before it is denied
#            HERMES_ENV_FILE               optional: a Hermes .env copied (mode kept) into the fresh HERMES_HOME;
#                                          API_SERVER_ENABLED and API_SERVER_KEY then come from it alone (not
#                                          passed in the environment), as for a Hermes set up by hand, and
#                                          api_key holds the key that file sets
#   files written in WORKDIR:
#            api_key            the API key (mode 600)          api_port        the API server port
#            api_url            http://127.0.0.1:<port>         env             sourceable: HERMES_API_URL,
#                                                               HERMES_API_KEY, HERMES_API_PORT, FAKE_PROVIDER_*
#            hermes.pid         PID of `hermes gateway run`     hermes.log      its stdout + stderr
#            provider.pid       PID of fake_provider.py         provider.port   the fake provider's port
#            provider.log       one JSON line per request body Hermes sent to the model (what tests assert on)
#            provider.events    JSON lines: requests, stream start/done, client_disconnected, 404 probes
#            provider.stderr    the fake provider's stderr
#            home/              HOME of the gateway             hermes-home/    HERMES_HOME (config.yaml,
#                                                                               state.db, logs/)
#   output:  progress on stderr prefixed "start.sh:"; on success the last stdout line is the API base URL.
#   exit:    0 once GET /health answers 200; otherwise non-zero, both processes stopped, log tail printed.
#   stop:    tests/hermes/stop.sh WORKDIR
# The gateway runs with a minimal environment (env -i): only PATH, HOME, HERMES_HOME, LANG and the
# API_SERVER_* variables, so no provider key or messaging-platform token from the caller leaks in.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
port="${1:-${HERMES_API_PORT:-}}"
work="${2:-${HERMES_WORKDIR:-}}"
key="${3:-${HERMES_API_KEY:-}}"
venv="${HERMES_VENV:-$repo/.venv-hermes}"
provider_port="${FAKE_PROVIDER_PORT:-0}"
timeout="${HERMES_START_TIMEOUT:-90}"
vision="${HERMES_SUPPORTS_VISION:-true}"

say() { printf 'start.sh: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 2; }

[ -n "$port" ] || die "API port missing (arg 1 or HERMES_API_PORT)"
[ -n "$work" ] || die "work dir missing (arg 2 or HERMES_WORKDIR)"
case "$port" in ''|*[!0-9]*) die "API port must be a number, got '$port'";; esac
[ -x "$venv/bin/hermes" ] || die "$venv/bin/hermes not found: run tests/hermes/setup.sh (or set HERMES_VENV)"
if [ -z "$key" ]; then
    key="$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(32))')"
fi
case "$vision" in true|false) ;; *) die "HERMES_SUPPORTS_VISION must be true or false";; esac
case "${HERMES_APPROVAL_MODE:-}" in ''|manual|smart|off) ;; *) die "HERMES_APPROVAL_MODE must be manual, smart or off";; esac
case "${HERMES_APPROVAL_TIMEOUT:-}" in *[!0-9]*) die "HERMES_APPROVAL_TIMEOUT must be a number";; esac
[ "${#key}" -ge 16 ] || die "API key must be at least 16 characters (Hermes refuses shorter ones)"

mkdir -p "$work"
work="$(cd "$work" && pwd)"
if [ -f "$work/hermes.pid" ] && kill -0 "$(cat "$work/hermes.pid")" 2>/dev/null; then
    die "$work already has a running gateway (PID $(cat "$work/hermes.pid")); run stop.sh $work first"
fi
rm -f "$work"/{hermes,provider}.pid "$work"/provider.{port,log,events,stderr} "$work"/hermes.log

hermes_home="$work/hermes-home"
home="$work/home"
rm -rf "$hermes_home" "$home"   # throw-away: every start begins with an empty state.db
mkdir -p "$hermes_home" "$home"

# ---- fake model provider -----------------------------------------------------------------------
say "starting fake provider (port ${provider_port}, log $work/provider.log)"
setsid "$venv/bin/python" "$here/fake_provider.py" --host 127.0.0.1 --port "$provider_port" \
    --port-file "$work/provider.port" --log "$work/provider.log" --events "$work/provider.events" \
    </dev/null >"$work/provider.stderr" 2>&1 &
echo $! >"$work/provider.pid"

cleanup_on_failure() {
    "$here/stop.sh" "$work" >&2 || true
}

for _ in $(seq 1 100); do   # up to 10 s
    [ -s "$work/provider.port" ] && break
    kill -0 "$(cat "$work/provider.pid")" 2>/dev/null || { cat "$work/provider.stderr" >&2; cleanup_on_failure; die "fake provider exited"; }
    sleep 0.1
done
[ -s "$work/provider.port" ] || { cleanup_on_failure; die "fake provider did not report its port within 10 s"; }
provider_port="$(cat "$work/provider.port")"
say "fake provider listening on 127.0.0.1:$provider_port (PID $(cat "$work/provider.pid"))"

# ---- throw-away HERMES_HOME --------------------------------------------------------------------
cat >"$hermes_home/config.yaml" <<EOF
# Written by tests/hermes/start.sh: the model is the local fake provider, nothing leaves loopback.
model:
  provider: custom
  base_url: http://127.0.0.1:$provider_port/v1
  default: fake-model
  api_key: fake-key
  supports_vision: $vision
EOF
if [ -n "${HERMES_MAX_CONCURRENT_RUNS:-}" ]; then
    case "$HERMES_MAX_CONCURRENT_RUNS" in *[!0-9]*) die "HERMES_MAX_CONCURRENT_RUNS must be a number";; esac
    printf 'gateway:\n  api_server:\n    max_concurrent_runs: %s\n' "$HERMES_MAX_CONCURRENT_RUNS" >>"$hermes_home/config.yaml"
fi
if [ -n "${HERMES_APPROVAL_MODE:-}${HERMES_APPROVAL_TIMEOUT:-}" ]; then
    printf 'approvals:\n' >>"$hermes_home/config.yaml"
    if [ -n "${HERMES_APPROVAL_MODE:-}" ]; then
        printf '  mode: "%s"\n' "$HERMES_APPROVAL_MODE" >>"$hermes_home/config.yaml"
    fi
    if [ -n "${HERMES_APPROVAL_TIMEOUT:-}" ]; then
        printf '  timeout: %s\n' "$HERMES_APPROVAL_TIMEOUT" >>"$hermes_home/config.yaml"
    fi
fi
enabled_env=(API_SERVER_ENABLED=true API_SERVER_KEY="$key")
if [ -n "${HERMES_ENV_FILE:-}" ]; then
    [ -f "$HERMES_ENV_FILE" ] || die "HERMES_ENV_FILE $HERMES_ENV_FILE is not a file"
    cp -p "$HERMES_ENV_FILE" "$hermes_home/.env"
    enabled_env=()
    # The key the file sets (its last unquoted API_SERVER_KEY line), for api_key and env below.
    key="$(sed -n 's/^[[:space:]]*\(export[[:space:]]\+\)\?API_SERVER_KEY=\([^[:space:]#]*\).*/\2/p' "$HERMES_ENV_FILE" | tail -n 1)"
fi
umask_old="$(umask)"; umask 077
printf '%s\n' "$key" >"$work/api_key"
umask "$umask_old"
printf '%s\n' "$port" >"$work/api_port"
printf 'http://127.0.0.1:%s\n' "$port" >"$work/api_url"
cat >"$work/env" <<EOF
HERMES_API_URL=http://127.0.0.1:$port
HERMES_API_PORT=$port
HERMES_API_KEY=$key
FAKE_PROVIDER_PORT=$provider_port
FAKE_PROVIDER_LOG=$work/provider.log
FAKE_PROVIDER_EVENTS=$work/provider.events
EOF
chmod 600 "$work/env"

# ---- the gateway with the API server ------------------------------------------------------------
say "starting hermes gateway (API server on 127.0.0.1:$port, HERMES_HOME $hermes_home)"
started=$(date +%s.%N)
(
    cd "$work"
    exec setsid env -i PATH="$venv/bin:/usr/local/bin:/usr/bin:/bin" HOME="$home" HERMES_HOME="$hermes_home" \
        LANG=C.UTF-8 PYTHONUNBUFFERED=1 \
        ${enabled_env[@]+"${enabled_env[@]}"} API_SERVER_HOST=127.0.0.1 API_SERVER_PORT="$port" \
        "$venv/bin/hermes" gateway run --accept-hooks </dev/null >"$work/hermes.log" 2>&1
) &
echo $! >"$work/hermes.pid"
say "gateway PID $(cat "$work/hermes.pid"); waiting up to ${timeout} s for /health"

deadline=$(( $(date +%s) + timeout ))
while :; do
    if code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health")" \
        && [ "$code" = 200 ]; then
        break
    fi
    if ! kill -0 "$(cat "$work/hermes.pid")" 2>/dev/null; then
        say "gateway exited before /health answered; last log lines:"
        tail -n 30 "$work/hermes.log" >&2 || true
        cleanup_on_failure
        exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "/health did not answer within ${timeout} s; last log lines:"
        tail -n 30 "$work/hermes.log" >&2 || true
        cleanup_on_failure
        exit 1
    fi
    sleep 0.2
done
elapsed="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
say "ready: /health answered after ${elapsed} s"
printf 'http://127.0.0.1:%s\n' "$port"
