#!/usr/bin/env bash
# Stop the Pebble and pebble-challtestsrv processes started by tests/acme/pebble.sh WORKDIR:
# exactly the PIDs recorded in WORKDIR/pebble.pids, nothing matched by name.
set -u
if [ "$#" -ne 1 ]; then
    echo "usage: $0 WORKDIR" >&2
    exit 2
fi
pids_file="$1/pebble.pids"
[ -f "$pids_file" ] || exit 0
while read -r pid; do
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    kill "$pid" 2>/dev/null || true
done < "$pids_file"
# Bounded wait for them to go, then force.
for _ in $(seq 1 50); do
    alive=0
    while read -r pid; do
        case "$pid" in ''|*[!0-9]*) continue ;; esac
        kill -0 "$pid" 2>/dev/null && alive=1
    done < "$pids_file"
    [ "$alive" -eq 0 ] && break
    sleep 0.1
done
while read -r pid; do
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    kill -9 "$pid" 2>/dev/null || true
done < "$pids_file"
rm -f "$pids_file"
