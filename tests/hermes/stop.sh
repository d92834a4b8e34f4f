#!/usr/bin/env bash
# tests/hermes/stop.sh: stop what tests/hermes/start.sh started in WORKDIR, and nothing else.
#
# Interface
#   usage:   tests/hermes/stop.sh WORKDIR      (or HERMES_WORKDIR)
#   effect:  for hermes.pid, provider.pid and dashboard.pid in WORKDIR: if that PID is alive AND its
#            command line is the one start.sh / dashboard.sh launched (hermes gateway run /
#            fake_provider.py / hermes dashboard; guards against PID reuse), send
#            SIGTERM to the process group start.sh created for it with setsid (its PGID equals that PID, so
#            only that process and its own children are hit), wait up to 10 s, then SIGKILL. Removes the
#            pid file afterwards. Leaves logs, provider.log and hermes-home in place for inspection.
#   exit:    0 (also when nothing was running); 2 on a usage error.
set -uo pipefail

work="${1:-${HERMES_WORKDIR:-}}"
say() { printf 'stop.sh: %s\n' "$*" >&2; }
[ -n "$work" ] || { say "usage: stop.sh WORKDIR"; exit 2; }

stop_one() {
    local file="$1" expect="$2" pid cmd
    [ -f "$file" ] || return 0
    pid="$(cat "$file")"
    case "$pid" in ''|*[!0-9]*) say "ignoring $file: not a PID"; rm -f "$file"; return 0;; esac
    if ! kill -0 "$pid" 2>/dev/null; then
        say "$(basename "$file"): PID $pid already gone"
        rm -f "$file"
        return 0
    fi
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$cmd" in
        *"$expect"*) ;;
        *) say "PID $pid from $file is not '$expect' (it is '$cmd'): leaving it alone"; rm -f "$file"; return 0;;
    esac
    # start.sh ran it under setsid, so it leads its own process group (PGID == PID).
    local target="$pid"
    if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ]; then
        target="-$pid"
    fi
    say "stopping $(basename "$file" .pid) (PID $pid)"
    kill -TERM -- "$target" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "PID $pid ignored SIGTERM for 10 s: SIGKILL"
        kill -KILL -- "$target" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$file"
}

stop_one "$work/hermes.pid" "gateway run"
stop_one "$work/provider.pid" "fake_provider.py"
stop_one "$work/dashboard.pid" "dashboard --no-open"
exit 0
