# Shared by the bench scripts (sourced, not run): the load tools and a free loopback port.

# Installs nginx, wrk and h2load (Debian packages) when missing.
bench_install_tools() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  command -v wrk >/dev/null || need+=(wrk)
  command -v h2load >/dev/null || need+=(nghttp2-client)
  if ((${#need[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# A loopback port that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The [limits] of a benchmark config: the per-IP limits protect the public site; one load
# generator on one IP (400 connections at once) would only measure them.
BENCH_LIMITS='[limits]
requests_per_second_per_ip = 100000000
request_burst_per_ip = 100000000
max_connections = 100000
max_connections_per_ip = 100000'

# The Content-Security-Policy hermes-edge sends, for nginx to send the same.
BENCH_CSP="default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

# The add_header lines for the security headers hermes-edge puts on every response, so nginx
# sends (and encrypts) the same bytes.
nginx_security_headers() {
  cat <<NGINX
add_header Strict-Transport-Security "max-age=86400" always;
add_header Content-Security-Policy "$BENCH_CSP" always;
add_header X-Frame-Options DENY always;
add_header X-Content-Type-Options nosniff always;
add_header Referrer-Policy no-referrer always;
add_header Cross-Origin-Opener-Policy same-origin always;
NGINX
}

# Starts the fake OpenAI-compatible upstream of bench/chat_bench.rs ($BENCH) on a free loopback
# port, sets UP_PORT and adds it to pids; then writes $work/edge.toml for an edge in front of it
# (the benchmark limits, and no per-user chat limit to speak of).
start_fake_upstream() {
  $BENCH upstream --port-file "$work/up.port" --interval-ms 10 --events 100 &
  pids+=($!)
  for _ in $(seq 50); do [[ -s $work/up.port ]] && break; sleep 0.1; done
  UP_PORT=$(cat "$work/up.port")
  cat > "$work/edge.toml" <<TOML
$BENCH_LIMITS
[auth]
chat_sends_per_minute_per_user = 100000000
[chat]
max_runs = 100000
max_runs_per_user = 100000
TOML
}

# Starts the release hermes-edge with $work/edge.toml on 127.0.0.1:$EDGE_PORT (extra arguments are
# passed on), waits for its ready line, sets EDGE_PID and adds it to pids. Then copies the
# certificate it made to $work/nginx/chain.pem and key.pem, so nginx serves the very same chain:
# the leaf alone, as hermes-edge sends it in local-CA mode.
start_edge() {
  HERMES_EDGE_ADMIN_PASSWORD=${PASSWORD:-bench-password-1} RUST_LOG=warn "${EDGE_BIN:-./target/release/hermes-edge}" \
    --config "$work/edge.toml" --listen 127.0.0.1:$EDGE_PORT --http-listen off \
    --certs-dir "$work/certs" --data-dir "$work/data" "$@" > "$work/edge.out" 2>&1 &
  pids+=($!); EDGE_PID=$!
  for _ in $(seq 100); do grep -q '^ready ' "$work/edge.out" 2>/dev/null && break; sleep 0.1; done
  grep -q '^ready ' "$work/edge.out" || { cat "$work/edge.out"; exit 1; }
  mkdir -p "$work/nginx"
  cp "$work/certs/local-leaf.crt" "$work/nginx/chain.pem"
  cp "$work/certs/local-leaf.key" "$work/nginx/key.pem"
}

# A throw-away folder $work (removed on exit, with every process in pids), and two free ports.
bench_workdir() {
  work=$(mktemp -d "/tmp/hermes-edge-$1.XXXXXX")
  chmod 755 "$work"  # nginx workers run as another user
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
  EDGE_PORT=$(free_port); NGINX_PORT=$(free_port)
}

# The first lines of every benchmark nginx.conf, up to the opening of the http block.
nginx_head() {
  cat <<NGINX
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
NGINX
}

# Starts nginx with $work/nginx/nginx.conf (Debian's nginx 1.22 wants "listen ... ssl http2"
# instead of "http2 on"); sets NGINX_PID and adds it to pids.
start_nginx() {
  if ! nginx -t -c "$work/nginx/nginx.conf" -p "$work/nginx" >/dev/null 2>&1; then
    sed -i "s/listen 127.0.0.1:$NGINX_PORT ssl\([^;]*\);/listen 127.0.0.1:$NGINX_PORT ssl\1 http2;/; /http2 on;/d" "$work/nginx/nginx.conf"
  fi
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
  pids+=($!); NGINX_PID=$!
  sleep 0.5
}
