#!/usr/bin/env bash
# Static files benchmark (issue 5): hermes-edge (release build) beside nginx in the same run.
#   1. download throughput of a 20 MiB file from /media/ (wrk, 1 connection and 8 connections)
#   2. requests/s for a 100 KiB asset from /media/ (wrk HTTP/1.1 keep-alive, h2load HTTP/2)
# Same certificate, same files, same headers (security headers, ETag, Last-Modified, Accept-Ranges,
# Cache-Control, Access-Control-Allow-Origin). Loopback only; every run is bounded in time.
# Targets: throughput >= 0.9x nginx, requests/s >= nginx.
# Usage: bash bench/static.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-6}
ROUNDS=${2:-3}

source bench/lib.sh
bench_install_tools
cargo build --release -q

bench_workdir static-bench

mkdir -p "$work/media" "$work/nginx"
# nginx workers run as an unprivileged user: let them read the files.
chmod 755 "$work" "$work/media"
head -c $((20 * 1024 * 1024)) /dev/urandom > "$work/media/big.mp4"
head -c $((100 * 1024)) /dev/urandom > "$work/media/asset.js"
chmod 644 "$work/media/"*
cat > "$work/edge.toml" <<TOML
[media]
dir = "$work/media"
public = true
$BENCH_LIMITS
TOML
start_edge

# nginx with the very certificate hermes-edge serves, the same files and the same headers.
cat > "$work/nginx/nginx.conf" <<NGINX
$(nginx_head)
  types { video/mp4 mp4; text/javascript js; }
  charset utf-8;
  charset_types text/javascript;
  sendfile on;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  ssl_session_tickets on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT ssl;
    http2 on;
    ssl_certificate $work/nginx/chain.pem;
    ssl_certificate_key $work/nginx/key.pem;
    location /media/ {
      alias $work/media/;
      $(nginx_security_headers)
      add_header Cache-Control "public, max-age=0, must-revalidate" always;
      add_header Access-Control-Allow-Origin "*" always;
    }
  }
}
NGINX
start_nginx

# Both answer the same bytes with the same kind of headers before anything is measured.
for port in $EDGE_PORT $NGINX_PORT; do
  for f in big.mp4:$((20 * 1024 * 1024)) asset.js:$((100 * 1024)); do
    u="https://127.0.0.1:$port/media/${f%%:*}"
    got=$(curl -sk -o /dev/null -w '%{http_code} %{size_download}' "$u")
    [[ $got == "200 ${f##*:}" ]] || { echo "bench: $u answered $got, expected 200 ${f##*:}"; exit 1; }
  done
  heads=$(curl -sk -D - -o /dev/null "https://127.0.0.1:$port/media/asset.js" | tr -d '\r' | tr 'A-Z' 'a-z')
  for h in etag last-modified accept-ranges cache-control access-control-allow-origin content-security-policy; do
    grep -q "^$h:" <<<"$heads" || { echo "bench: port $port lacks $h"; echo "$heads"; exit 1; }
  done
done
cmp <(curl -sk "https://127.0.0.1:$EDGE_PORT/media/big.mp4") "$work/media/big.mp4"

# wrk prints "Transfer/sec: 1.23GB"; convert to MiB/s.
mibs() { awk '/Transfer\/sec/ {v=$2; u=v; gsub(/[0-9.]/,"",u); sub(/[A-Za-z]+$/,"",v);
  m=(u=="GB")?1024:(u=="MB")?1:(u=="KB")?1/1024:1/1048576; printf "%d\n", v*m}'; }
tput1() { wrk -t1 -c1 -d${SECS}s "$1" 2>/dev/null | mibs; }
tput8() { wrk -t2 -c8 -d${SECS}s "$1" 2>/dev/null | mibs; }
h1() { wrk -t2 -c64 -d${SECS}s "$1" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}'; }
h2() { timeout $((SECS + 20)) h2load -c64 -m10 -t2 -D $SECS "$1" 2>/dev/null | awk '/^finished in/ {gsub(/,/,""); print int($4)}'; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R
for round in $(seq "$ROUNDS"); do
  for who in edge nginx; do
    port=$EDGE_PORT; [[ $who == nginx ]] && port=$NGINX_PORT
    R[$who.t1]+="$(tput1 "https://127.0.0.1:$port/media/big.mp4") "
    R[$who.t8]+="$(tput8 "https://127.0.0.1:$port/media/big.mp4") "
    R[$who.h1]+="$(h1 "https://127.0.0.1:$port/media/asset.js") "
    R[$who.h2]+="$(h2 "https://127.0.0.1:$port/media/asset.js") "
  done
  echo "round $round: edge ${R[edge.t1]}/${R[edge.t8]} MiB/s, ${R[edge.h1]}/${R[edge.h2]} req/s | nginx ${R[nginx.t1]}/${R[nginx.t8]} MiB/s, ${R[nginx.h1]}/${R[nginx.h2]} req/s" >&2
done

printf '\n| workload (%ss runs, median of %s rounds) | hermes-edge | nginx | ratio | target |\n|---|---|---|---|---|\n' "$SECS" "$ROUNDS"
for k in t1 t8 h1 h2; do
  e=$(echo ${R[edge.$k]} | tr ' ' '\n' | median); n=$(echo ${R[nginx.$k]} | tr ' ' '\n' | median)
  case $k in
    t1) label="20 MiB download, MiB/s, 1 connection (wrk -t1 -c1)"; target="≥ 0.9x" ;;
    t8) label="20 MiB download, MiB/s, 8 connections (wrk -t2 -c8)"; target="≥ 0.9x" ;;
    h1) label="100 KiB asset, HTTP/1.1 keep-alive req/s (wrk -t2 -c64)"; target="≥ 1.0x" ;;
    h2) label="100 KiB asset, HTTP/2 req/s (h2load -c64 -m10 -t2)"; target="≥ 1.0x" ;;
  esac
  ratio=$(python3 -c "print(f'{$e/$n:.2f}x' if $n else 'n/a')")
  printf '| %s | %s | %s | %s | %s |\n' "$label" "$e" "$n" "$ratio" "$target"
done
