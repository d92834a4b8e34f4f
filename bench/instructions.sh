#!/usr/bin/env bash
# User-space instructions per request, counted by callgrind (valgrind): the same answer on every
# run, where requests/s and CPU time on this machine move by 10-15 % from run to run. It is what
# the small cuts of the chat proxy's and the static page's own work were measured with
# (bench/README.md).
#
# Proxied (the default): starts the fake upstream of bench/chat_bench.rs, then hermes-edge under
# callgrind in front of it, then the bare hyper proxy of bench/bare_bench.rs under callgrind, and
# sends each N (default 4000) POST /v1/chat/completions over 8 HTTP/1.1 keep-alive connections
# (h2load) after 400 to warm up. With MODE=page: GET of bench/run.sh's 1 KiB file from the site
# folder, against the bare server's page. With MODE=conn: the same GET, each on a new TLS
# connection (h2load -cN -nN), so the count is per connection: handshake, request and close.
# Prints instructions per request for both, and keeps the callgrind files of both in $KEEP
# when set. EDGE_BIN=path measures another build of the edge.
# Loopback only; every run is bounded.
#
# Usage: [MODE=page|conn] bash bench/instructions.sh [requests]
# Note: valgrind's CPU has no SHA extensions, so the token check's SHA-256 counts about 3,400
# instructions here that take a few hundred cycles on a CPU with them.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${MODE:-proxy}
# New connections under valgrind are slow (about a million instructions each): fewer of them.
N=${1:-4000}; [[ $MODE == conn && -z ${1:-} ]] && N=200

source bench/lib.sh
bench_install_tools
command -v valgrind >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
}
cargo build --release -q
cargo build --release -q --example chat-bench --example bare-bench
BENCH=./target/release/examples/chat-bench

bench_workdir instructions
EDGE=${EDGE_BIN:-./target/release/hermes-edge}
KEY=bench-api-key-0123456789abcdef
if [[ $MODE == page || $MODE == conn ]]; then
  mkdir -p "$work/www"
  head -c 1024 /dev/zero | tr '\0' 'x' > "$work/www/bench.txt"
  printf 'www = "%s"\n%s\n' "$work/www" "$BENCH_LIMITS" > "$work/edge.toml"
  # Once without valgrind: the data folder and the certificate.
  start_edge
  LOAD=()
  WHAT="GET of a 1 KiB site file"
  [[ $MODE == conn ]] && WHAT="new TLS connection with one GET of a 1 KiB site file"
  PATH_ASKED=/bench.txt
  CURL=()
else
  start_fake_upstream
  # Once without valgrind: the data folder, the certificate and a token.
  HERMES_EDGE_API_KEY=$KEY start_edge --upstream "http://127.0.0.1:$UP_PORT"
  TOKEN=$("$EDGE" --data-dir "$work/data" token create --user admin --name bench 2>/dev/null)
  printf '%s' '{"model":"m","messages":[{"role":"user","content":"hi"}]}' > "$work/body.json"
  LOAD=(-H "authorization: Bearer $TOKEN" -H "content-type: application/json" -d "$work/body.json")
  WHAT="proxied request"
  PATH_ASKED=/v1/chat/completions
  CURL=(-X POST -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d @"$work/body.json")
fi
kill "$EDGE_PID"; wait "$EDGE_PID" 2>/dev/null || true

# count NAME PORT COMMAND...: instructions per request of COMMAND, serving on PORT.
count() {
  local name=$1 port=$2; shift 2
  local out="$work/cg.$name"
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" > "$work/$name.log" 2>&1 &
  local vg=$!
  pids+=($vg)
  local url="https://127.0.0.1:$port$PATH_ASKED"
  for _ in $(seq 240); do
    [[ $(curl -sk -o /dev/null -w '%{http_code}' "${CURL[@]}" "$url") == 200 ]] && break
    sleep 0.5
  done
  # Keep-alive: 8 connections share the requests. MODE=conn: one request per connection.
  local warm=(-c8 -n 400) run=(-c8 -n "$N")
  [[ $MODE == conn ]] && warm=(-c50 -n 50) run=(-c"$N" -n "$N")
  timeout 120 h2load --h1 -t1 "${warm[@]}" "${LOAD[@]}" "$url" > /dev/null
  callgrind_control -z "$vg" > /dev/null 2>&1
  local done
  done=$(timeout 300 h2load --h1 -t1 "${run[@]}" "${LOAD[@]}" "$url" | awk '/^status codes:/ {print $3}')
  [[ $done == "$N" ]] || { echo "$name: only ${done:-0} of $N requests answered 2xx"; exit 1; }
  callgrind_control -d "$vg" > /dev/null 2>&1
  kill "$vg"
  for _ in $(seq 120); do kill -0 "$vg" 2>/dev/null || break; sleep 0.5; done
  local total=0 t
  for f in "$out"*; do
    t=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
    total=$((total + ${t:-0}))
  done
  echo "$name: $((total / N)) instructions per $WHAT ($N requests)"
  if [[ -n ${KEEP:-} ]]; then mkdir -p "$KEEP"; cp "$out"* "$KEEP/"; fi
}

# (valgrind follows no child process, so the environment is set for valgrind itself.)
export HERMES_EDGE_API_KEY=$KEY RUST_LOG=warn
P=$(free_port)
count hermes-edge "$P" "$EDGE" \
  --config "$work/edge.toml" --listen "127.0.0.1:$P" --http-listen off --certs-dir "$work/certs" \
  --data-dir "$work/data" --upstream "http://127.0.0.1:${UP_PORT:-9}"
P=$(free_port)
if [[ $MODE == page || $MODE == conn ]]; then
  count bare-page "$P" ./target/release/examples/bare-bench "$P" "$work/nginx/chain.pem" \
    "$work/nginx/key.pem" page
else
  count bare-proxy "$P" ./target/release/examples/bare-bench "$P" "$work/nginx/chain.pem" \
    "$work/nginx/key.pem" proxy "127.0.0.1:$UP_PORT"
fi
