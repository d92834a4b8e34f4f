#!/usr/bin/env bash
# Start a private Pebble ACME server (Let's Encrypt's test CA) on loopback for the ACME integration test.
#
# Usage: tests/acme/pebble.sh WORKDIR HTTP_PORT TLS_PORT
#   WORKDIR   scratch directory (created); certificates, config, logs, PIDs and pebble.env go here.
#   HTTP_PORT port Pebble's validator connects to for HTTP-01 (hermes-edge's HTTP listener).
#   TLS_PORT  port Pebble's validator connects to for TLS-ALPN-01 (hermes-edge's HTTPS listener).
# Optional environment: PEBBLE_CERT_VALIDITY_SECONDS sets the lifetime of issued certificates (Pebble 2.4's
#   config key certificateValidityPeriod; default 5 years), so renewal can be exercised for real.
#
# Everything listens on 127.0.0.1 only. Names are resolved by pebble-challtestsrv to 127.0.0.1 (no AAAA, so
# the validator never tries [::1]). Validation is real: PEBBLE_VA_ALWAYS_VALID is never set.
# On success prints the path of WORKDIR/pebble.env, which holds:
#   PEBBLE_DIRECTORY_URL, PEBBLE_LISTENER_CA (PEM that signs Pebble's HTTPS listener),
#   PEBBLE_MANAGEMENT_URL (GET $PEBBLE_MANAGEMENT_URL/roots/0 is the issuing root), PEBBLE_LOG.
# Stop with tests/acme/pebble-stop.sh WORKDIR (kills exactly the PIDs recorded in WORKDIR/pebble.pids).
set -euo pipefail

if [ "$#" -ne 3 ]; then
    echo "usage: $0 WORKDIR HTTP_PORT TLS_PORT" >&2
    exit 2
fi
workdir=$1
http_port=$2
tls_port=$3
case "$http_port$tls_port${PEBBLE_CERT_VALIDITY_SECONDS:-0}" in
    *[!0-9]*) echo "pebble.sh: ports and PEBBLE_CERT_VALIDITY_SECONDS must be numbers" >&2; exit 2 ;;
esac
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

install_pebble() {
    # Tests run in parallel: one installer at a time (apt holds the dpkg lock), then re-check.
    (
        flock -w 600 9 || { echo "pebble.sh: timed out waiting for another install" >&2; exit 1; }
        command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 && exit 0
        echo "pebble.sh: installing the Debian package pebble" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y pebble >&2 || { apt-get update >&2 && apt-get install -y pebble >&2; }
    ) 9>"${TMPDIR:-/tmp}/hermes-edge-pebble-install.lock"
}
if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then
    install_pebble
fi
for tool in openssl curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "pebble.sh: $tool is required" >&2; exit 1; }
done

# A loopback port nobody listens on (TCP and UDP), tried a bounded number of times.
taken=" $http_port $tls_port "
free_port() {
    local p _
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        case "$taken" in *" $p "*) continue ;; esac
        if command -v ss >/dev/null 2>&1; then
            [ -n "$(ss -Htuln "sport = :$p" 2>/dev/null)" ] && continue
        elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            continue # something accepts TCP there (without ss, UDP can't be checked)
        fi
        taken="$taken$p "
        echo "$p"
        return 0
    done
    echo "pebble.sh: no free port found" >&2
    return 1
}

# Pebble's own HTTPS listener certificate: a throw-away CA and a leaf for localhost / 127.0.0.1.
certs="$workdir/listener"
mkdir -p "$certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=pebble listener test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$certs/ca.key" -out "$certs/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
    -keyout "$certs/key.pem" -out "$certs/leaf.csr" 2>/dev/null
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$certs/leaf.ext"
openssl x509 -req -in "$certs/leaf.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" -CAcreateserial \
    -days 2 -extfile "$certs/leaf.ext" -out "$certs/cert.pem" 2>/dev/null
chmod 600 "$certs/ca.key" "$certs/key.pem"

acme_port=$(free_port)
mgmt_port=$(free_port)
dns_port=$(free_port)
cts_mgmt_port=$(free_port)

cat > "$workdir/pebble-config.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$acme_port",
    "managementListenAddress": "127.0.0.1:$mgmt_port",
    "certificate": "$certs/cert.pem",
    "privateKey": "$certs/key.pem",
    "httpPort": $http_port,
    "tlsPort": $tls_port,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "certificateValidityPeriod": ${PEBBLE_CERT_VALIDITY_SECONDS:-0}
  }
}
JSON

: > "$workdir/pebble.pids"
pebble-challtestsrv -dns01 "127.0.0.1:$dns_port" -http01 "" -https01 "" -tlsalpn01 "" \
    -management "127.0.0.1:$cts_mgmt_port" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    > "$workdir/challtestsrv.log" 2>&1 &
echo $! >> "$workdir/pebble.pids"

# NOSLEEP: no random validation delay. NONCEREJECT=0: no deliberately rejected nonces (client-retry noise
# that this test is not about). Validation itself stays real.
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 \
    pebble -config "$workdir/pebble-config.json" -dnsserver "127.0.0.1:$dns_port" \
    > "$workdir/pebble.log" 2>&1 &
echo $! >> "$workdir/pebble.pids"

directory="https://127.0.0.1:$acme_port/dir"
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -fsS --max-time 2 --cacert "$certs/ca.pem" "$directory" >/dev/null 2>&1 \
        && curl -fsS --max-time 2 --cacert "$certs/ca.pem" "https://127.0.0.1:$mgmt_port/roots/0" >/dev/null 2>&1; then
        cat > "$workdir/pebble.env" <<ENV
PEBBLE_DIRECTORY_URL=$directory
PEBBLE_LISTENER_CA=$certs/ca.pem
PEBBLE_MANAGEMENT_URL=https://127.0.0.1:$mgmt_port
PEBBLE_DNS=127.0.0.1:$dns_port
PEBBLE_LOG=$workdir/pebble.log
ENV
        echo "$workdir/pebble.env"
        exit 0
    fi
    sleep 0.1
done

echo "pebble.sh: Pebble did not answer at $directory within 60 s; its log:" >&2
tail -n 20 "$workdir/pebble.log" >&2 || true
tail -n 20 "$workdir/challtestsrv.log" >&2 || true
"$(dirname "$0")/pebble-stop.sh" "$workdir" || true
exit 1
