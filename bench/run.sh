#!/usr/bin/env bash
# Core benchmark (issue 2): a 1 KiB file over HTTPS, hermes-edge beside nginx in the same run.
#   h1 keep-alive requests/s (wrk), h2 requests/s (h2load), new TLS connections/s with one request
#   each (h2load --h1 -c400 -n400, and the same with bench/conn_bench.rs, a rustls client that
#   takes less of the two cores than h2load's OpenSSL), server CPU per request, resident memory.
#   Same certificate, same file, same headers.
# Loopback only; every load run is bounded in time or count. Usage: bash bench/run.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-6}
ROUNDS=${2:-3}

source bench/lib.sh
bench_install_tools
cargo build --release -q --bins --example conn-bench

bench_workdir bench

mkdir -p "$work/www" "$work/nginx"
head -c 1024 /dev/zero | tr '\0' 'x' > "$work/www/bench.txt"
cat > "$work/edge.toml" <<TOML
www = "$work/www"
$BENCH_LIMITS
TOML
start_edge

# nginx with the very certificate hermes-edge serves and the same security headers. `reuseport`
# gives each worker its own listening socket, as hermes-edge gives each of its threads: with
# one shared socket nginx answered conn-bench's bursts of 400 new connections at about 2,850
# connections/s, with `reuseport` at about 3,220 (h2load and wrk measured the same either way).
cat > "$work/nginx/nginx.conf" <<NGINX
$(nginx_head)
  types { text/plain txt; }
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl reuseport;
    http2 on;
    ssl_certificate $work/nginx/chain.pem;
    ssl_certificate_key $work/nginx/key.pem;
    root $work/www;
    $(nginx_security_headers)
    add_header Cache-Control no-cache always;
  }
}
NGINX
start_nginx

# BARE=1: also a bare hyper + rustls server (bench/bare_bench.rs) answering the same bytes from
# memory with no routing, limits or timeouts: the stack's own ceiling on this machine.
if [[ ${BARE:-0} == 1 ]]; then
  cargo build --release -q --example bare-bench
  BARE_PORT=$(free_port)
  ./target/release/examples/bare-bench "$BARE_PORT" "$work/nginx/chain.pem" "$work/nginx/key.pem" page &
  pids+=($!); sleep 0.5
fi
for u in "https://127.0.0.1:$EDGE_PORT/bench.txt" "https://127.0.0.1:$NGINX_PORT/bench.txt"; do
  code=$(curl -sk -o /dev/null -w '%{http_code} %{size_download}' "$u")
  [[ $code == "200 1024" ]] || { echo "bench: $u answered $code, expected 200 1024"; exit 1; }
done

rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$1/status; }
rss_tree() { # nginx: master + workers
  local total=0; for p in $1 $(pgrep -P "$1" || true); do total=$((total + $(rss "$p"))); done; echo $total; }

h1() { wrk -t2 -c64 -d${SECS}s "$1" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}'; }
h2() { timeout $((SECS + 20)) h2load -c64 -m10 -t2 -D $SECS "$1" 2>/dev/null | awk '/^finished in/ {gsub(/,/,""); print int($4)}'; }
# One h2load run of 400 connections lasts about 0.3 s, so single runs move by ±10 %: each round
# takes the median of five back-to-back runs.
conns() {
  for _ in 1 2 3 4 5; do
    timeout 60 h2load --h1 -c400 -n400 -t2 "$1" 2>/dev/null | awk '/^finished in/ {gsub(/,/,""); print int($4)}'
  done | sort -n | sed -n 3p
}

# The same 400 connections from bench/conn_bench.rs (rustls): about 200 µs of client CPU per
# connection against h2load's 470, so more of what is measured is the server. A failed
# connection fails the run.
connr() {
  local out
  for _ in 1 2 3 4 5; do
    out=$(timeout 60 ./target/release/examples/conn-bench "$1" /bench.txt 400 2) || {
      echo "bench: conn-bench against $1 failed" >&2; exit 1; }
    awk '/^conns\/s/ {print $2}' <<< "$out"
  done | sort -n | sed -n 3p
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R
# Each workload runs on both servers back to back, first one then the other, swapping the order
# every round, and the ratio is taken per round: this machine's speed drifts by a third within
# an hour, and measuring all of one server's workloads before the other's let that drift into
# the ratio (single-round ratios of the old order ranged 0.85-1.56x for the same build).
run_one() { # workload who
  local port=$EDGE_PORT; [[ $2 == nginx ]] && port=$NGINX_PORT; [[ $2 == bare ]] && port=$BARE_PORT
  local url="https://127.0.0.1:$port/bench.txt"
  case $1 in h1) h1 "$url";; h2) h2 "$url";; conn) conns "$url";; connr) connr "127.0.0.1:$port";; esac
}
for round in $(seq "$ROUNDS"); do
  order="edge nginx"; (( round % 2 == 0 )) && order="nginx edge"
  line="round $round:"
  for k in h1 h2 conn connr; do
    declare -A got=()
    for who in $order; do got[$who]=$(run_one $k $who); R[$who.$k]+="${got[$who]} "; done
    r=$(python3 -c "print(f'{${got[edge]:-0}/${got[nginx]:-1}:.2f}' if ${got[nginx]:-0} else 0)")
    R[ratio.$k]+="$r "
    line+=" $k ${got[edge]}/${got[nginx]} (${r}x)"
    if [[ ${BARE:-0} == 1 ]]; then
      b=$(run_one $k bare); R[bare.$k]+="$b "
      rb=$(python3 -c "print(f'{$b/${got[nginx]:-1}:.2f}' if ${got[nginx]:-0} else 0)")
      R[bratio.$k]+="$rb "; line+=" bare $b (${rb}x)"
    fi
  done
  echo "$line" >&2
done
EDGE_RSS=$(rss $EDGE_PID); NGINX_RSS=$(rss_tree $NGINX_PID)

# Server CPU per request (user + system ticks of the server's processes around a fixed-count run):
# far less noisy than requests/s on a shared machine, and it leaves out the load generator.
ticks() { local t=0; for p in $1 $(pgrep -P "$1" || true); do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
cpu_us() { # pid url h2load-args...
  local pid=$1 url=$2; shift 2
  local a b n=60000; a=$(ticks "$pid")
  timeout 60 h2load "$@" -n $n "$url" >/dev/null 2>&1 || true
  b=$(ticks "$pid")
  python3 -c "import os; print(round(($b-$a)/os.sysconf('SC_CLK_TCK')*1e6/$n, 1))"
}
for who in edge nginx; do
  pid=$EDGE_PID port=$EDGE_PORT; [[ $who == nginx ]] && pid=$NGINX_PID port=$NGINX_PORT
  R[$who.cpu1]=$(cpu_us "$pid" "https://127.0.0.1:$port/bench.txt" --h1 -c16 -t1)
  R[$who.cpu2]=$(cpu_us "$pid" "https://127.0.0.1:$port/bench.txt" -c16 -m10 -t1)
done

printf '\n| workload (1 KiB file, %ss runs, %s rounds; req/s medians, ratio: median of the rounds) | hermes-edge | nginx | ratio |\n|---|---|---|---|\n' "$SECS" "$ROUNDS"
for k in h1 h2 conn connr; do
  e=$(echo ${R[edge.$k]} | tr ' ' '\n' | median); n=$(echo ${R[nginx.$k]} | tr ' ' '\n' | median)
  ratio="$(echo ${R[ratio.$k]} | tr ' ' '\n' | median)x (rounds: ${R[ratio.$k]% })"
  label=$k; [[ $k == h1 ]] && label="HTTP/1.1 keep-alive req/s (wrk -t2 -c64)"
  [[ $k == h2 ]] && label="HTTP/2 req/s (h2load -c64 -m10 -t2)"
  [[ $k == conn ]] && label="new TLS connections/s, 1 request each (h2load --h1 -c400 -n400)"
  [[ $k == connr ]] && label="the same 400 connections from conn-bench (rustls client)"
  printf '| %s | %s | %s | %s |\n' "$label" "$e" "$n" "$ratio"
done
if [[ ${BARE:-0} == 1 ]]; then
  for k in h1 h2 conn connr; do
    printf '| bare hyper + rustls, %s per second (measured right after the pair) | %s | | %sx (rounds: %s) |\n' "$k" \
      "$(echo ${R[bare.$k]} | tr ' ' '\n' | median)" "$(echo ${R[bratio.$k]} | tr ' ' '\n' | median)" "${R[bratio.$k]% }"
  done
fi
printf '| server CPU per request, HTTP/1.1 (µs, h2load --h1 -n60000 -c16) | %s | %s | |\n' "${R[edge.cpu1]}" "${R[nginx.cpu1]}"
printf '| server CPU per request, HTTP/2 (µs, h2load -n60000 -c16 -m10) | %s | %s | |\n' "${R[edge.cpu2]}" "${R[nginx.cpu2]}"
printf '| resident memory after the runs (MiB) | %s | %s | |\n' "$EDGE_RSS" "$NGINX_RSS"
