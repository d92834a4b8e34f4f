#!/usr/bin/env bash
# Page weight of the chat page (issue 7): signs in to a real hermes-edge, then fetches the chat page
# and every script, style and image it references (with the modules its scripts import), as a browser
# would (Accept-Encoding: gzip, br), and adds up the bytes on the wire. The service worker (sw.js) is
# counted with the page. KaTeX (its script, style and fonts) is reported apart: the page loads it only
# when a message has maths (www/js/maths.js); the fonts line is all of them, more than a page uses.
# Usage: bash bench/page-weight.sh [path/to/hermes-edge]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
if [[ -z $BIN ]]; then cargo build --release -q; BIN=target/release/hermes-edge; fi

work=$(mktemp -d /tmp/hermes-edge-weight.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
HERMES_EDGE_ADMIN_PASSWORD=weight-password-1 "$BIN" --listen 127.0.0.1:0 --http-listen off \
  --certs-dir "$work/certs" --data-dir "$work/data" > "$work/out" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q '^ready ' "$work/out" 2>/dev/null && break; sleep 0.1; done
addr=$(grep -o 'https_addr=[^ ]*' "$work/out" | cut -d= -f2)
base="https://localhost:${addr##*:}"
c=(curl -s --cacert "$work/certs/local-ca.crt" --resolve "localhost:${addr##*:}:127.0.0.1" -b "$work/jar" -c "$work/jar")
"${c[@]}" -o /dev/null -H "Origin: $base" -d 'username=admin&password=weight-password-1' "$base/login"

total=0
printf '| file | bytes on the wire | encoding |\n|---|---|---|\n'
fetch() {
  local path=$1 line
  line=$("${c[@]}" -H 'Accept-Encoding: gzip, br' -o /dev/null -D "$work/h" -w '%{http_code} %{size_download}' "$base$path")
  [[ ${line%% *} == 200 ]] || { echo "page-weight: $path answered ${line%% *}" >&2; exit 1; }
  local enc; enc=$(awk 'tolower($1)=="content-encoding:" {print $2}' "$work/h" | tr -d '\r')
  printf '| %s | %s | %s |\n' "$path" "${line#* }" "${enc:-identity}"
  total=$((total + ${line#* }))
}
fetch /
"${c[@]}" "$base/" > "$work/index.html"
assets=$(grep -oE '(src|href)="/[^"]+"' "$work/index.html" | sed -E 's/^(src|href)="//; s/"$//' | grep -v '^/$' | sort -u)
# The page's script is ES modules: the browser also loads every module they import (`from './x.js'`).
todo=$(grep -oE '<script type="module" src="/[^"]+"' "$work/index.html" | sed -E 's/.*src="//; s/"$//' || true)
while [[ -n $todo ]]; do
  next=
  for mod in $todo; do
    for dep in $("${c[@]}" "$base$mod" | sed -nE "s#^import .* from '\./([^']+)';\$#\1#p"); do
      dep="${mod%/*}/$dep"
      grep -qxF "$dep" <<<"$assets" || { assets+=$'\n'"$dep"; next+=" $dep"; }
    done
  done
  todo=$next
done
assets+=$'\n/sw.js'
for asset in $(sort -u <<<"$assets"); do
  fetch "$asset"
done
printf '| **total** | **%s (%s KiB)** | |\n' "$total" "$((total / 1024))"
(( total <= 300 * 1024 )) || { echo "page-weight: over the 300 KiB target" >&2; exit 1; }

# Maths: what a page adds once a message has some.
page_total=$total
total=0
printf '\nOnly when a message has maths (KaTeX):\n\n| file | bytes on the wire | encoding |\n|---|---|---|\n'
fetch /vendor/katex/katex.min.js
fetch /vendor/katex/katex.min.css
fonts=0
for f in www/vendor/katex/fonts/*.woff2; do
  before=$total
  fetch "/${f#www/}" > /dev/null
  fonts=$((fonts + total - before))
done
printf '| /vendor/katex/fonts/*.woff2 (all %s; a formula loads a few) | %s | identity |\n' "$(ls www/vendor/katex/fonts/*.woff2 | wc -l)" "$fonts"
printf '| **KaTeX total** | **%s (%s KiB)** | |\n' "$total" "$((total / 1024))"
printf '| **page with KaTeX** | **%s (%s KiB)** | |\n' "$((page_total + total))" "$(((page_total + total) / 1024))"
