#!/usr/bin/env bash
# tests/hermes/smoke.sh: prove the Hermes test peer works on this machine (setup.sh must have run).
#
# Interface
#   usage:   tests/hermes/smoke.sh [WORKDIR]     (default: a new mktemp -d directory, removed on success)
#   env:     HERMES_VENV as for start.sh.
#   effect:  picks a free loopback port, runs start.sh, then checks against the REAL API server:
#              1. GET /health 200 without a key; POST /v1/chat/completions without / with a wrong key -> 401
#                 with the invalid_api_key body;
#              2. stream:true answers text/event-stream: role chunk, content chunks, finish "stop", [DONE];
#              3. X-Hermes-Session-Id: web-<uuid> twice: the response echoes the id and the fake provider
#                 saw [system, user] then [system, user, assistant, user] with the first exchange;
#              4. a NEW session id with a [system, user, assistant, user] body reaches the provider as
#                 [system, user]: with the header Hermes ignores the body's history (see docs/hermes-notes.md);
#              5. without the header the same body reaches the provider as [system, user, assistant, user].
#            Always runs stop.sh WORKDIR at the end.
#   output:  one "ok - ..." line per check on stdout; exit 0 when all pass, 1 otherwise.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${HERMES_VENV:-$repo/.venv-hermes}"
made_tmp=0
work="${1:-}"
if [ -z "$work" ]; then
    work="$(mktemp -d /tmp/hermes-smoke.XXXXXX)"
    made_tmp=1
fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"

status=1
finish() {
    "$here/stop.sh" "$work" || true
    if [ "$status" = 0 ] && [ "$made_tmp" = 1 ]; then rm -rf "$work"; fi
    [ "$status" = 0 ] || echo "smoke.sh: FAILED; logs kept in $work" >&2
}
trap finish EXIT

HERMES_VENV="$venv" "$here/start.sh" "$port" "$work" >/dev/null

WORK="$work" "$venv/bin/python" - <<'PYEOF'
import json, os, sys, urllib.request, urllib.error, uuid

work = os.environ["WORK"]
env = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(work, "env")) if "=" in line)
base, key = env["HERMES_API_URL"], env["HERMES_API_KEY"]
log_path = env["FAKE_PROVIDER_LOG"]


def call(body, headers=None, key_value=key, path="/v1/chat/completions", method="POST"):
    h = {"Content-Type": "application/json"}
    if key_value is not None:
        h["Authorization"] = "Bearer " + key_value
    h.update(headers or {})
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def check(cond, what, detail=""):
    if not cond:
        print("not ok - %s %s" % (what, detail))
        sys.exit(1)
    print("ok - " + what)


def provider_bodies():
    with open(log_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def roles(body):
    return [m["role"] for m in body["messages"]]


def text(msg):
    c = msg["content"]
    return c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if isinstance(p, dict))


s, h, b = call(None, key_value=None, path="/health", method="GET")
check(s == 200 and json.loads(b)["status"] == "ok", "GET /health answers 200 without a key")

invalid = {"error": {"message": "Invalid API key", "type": "invalid_request_error", "code": "invalid_api_key"}}
s, h, b = call({"messages": [{"role": "user", "content": "hi"}]}, key_value=None)
check(s == 401 and json.loads(b) == invalid, "no key -> 401 invalid_api_key", b)
s, h, b = call({"messages": [{"role": "user", "content": "hi"}]}, key_value="wrong-key-0123456789")
check(s == 401 and json.loads(b) == invalid, "wrong key -> 401 invalid_api_key", b)

s, h, b = call({"stream": True, "messages": [{"role": "user", "content": "stream me"}]})
events = [e for e in b.split("\n\n") if e.strip()]
check(s == 200 and h.get("Content-Type", "").startswith("text/event-stream"), "stream:true -> 200 text/event-stream")
check(events[-1] == "data: [DONE]", "stream ends with data: [DONE]", repr(events[-1:]))
chunks = [json.loads(e[6:]) for e in events[:-1] if e.startswith("data: ")]
check(chunks[0]["choices"][0]["delta"] == {"role": "assistant"}, "first chunk carries the role only")
content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
check(content == "echo: stream me (history: 2 messages)", "content chunks join to the provider's answer", content)
check(chunks[-1]["choices"][0]["finish_reason"] == "stop", "last chunk has finish_reason stop")

sid = "web-" + str(uuid.uuid4())
before = len(provider_bodies())
s1, h1, b1 = call({"stream": True, "messages": [{"role": "user", "content": "first question"}]},
                  {"X-Hermes-Session-Id": sid})
s2, h2, b2 = call({"stream": True, "messages": [{"role": "user", "content": "second question"}]},
                  {"X-Hermes-Session-Id": sid})
check(s1 == 200 and s2 == 200 and h1.get("X-Hermes-Session-Id") == sid == h2.get("X-Hermes-Session-Id"),
      "X-Hermes-Session-Id is echoed on both turns")
new = provider_bodies()[before:]
check(len(new) == 2, "the provider got exactly two requests for two turns", str(len(new)))
check(roles(new[0]) == ["system", "user"], "turn 1 reached the provider as [system, user]", str(roles(new[0])))
check(roles(new[1]) == ["system", "user", "assistant", "user"],
      "turn 2 reached the provider as [system, user, assistant, user]", str(roles(new[1])))
m = new[1]["messages"]
check(text(m[1]) == "first question" and text(m[2]) == "echo: first question (history: 2 messages)"
      and text(m[3]) == "second question", "turn 2 carries the first exchange restored by Hermes",
      json.dumps(m[1:])[:300])

history_body = {"messages": [
    {"role": "system", "content": "smoke system"},
    {"role": "user", "content": "kept question"},
    {"role": "assistant", "content": "kept answer"},
    {"role": "user", "content": "edited question"}]}
before = len(provider_bodies())
s, h, b = call(history_body, {"X-Hermes-Session-Id": "web-" + str(uuid.uuid4())})
new = provider_bodies()[before:]
check(s == 200 and len(new) == 1 and roles(new[0]) == ["system", "user"]
      and text(new[0]["messages"][1]) == "edited question",
      "new session id + history body: Hermes drops the body history", str([roles(x) for x in new]))
check("smoke system" in text(new[0]["messages"][0]), "the request's system message is layered into the system prompt")

before = len(provider_bodies())
s, h, b = call(history_body)
new = provider_bodies()[before:]
check(s == 200 and len(new) == 1 and roles(new[0]) == ["system", "user", "assistant", "user"]
      and text(new[0]["messages"][1]) == "kept question",
      "no session header + history body: Hermes uses the body history", str([roles(x) for x in new]))
check(h.get("X-Hermes-Session-Id", "").startswith("api-"), "no session header: Hermes names a derived api-<hash> session",
      h.get("X-Hermes-Session-Id", ""))
PYEOF
status=0
echo "smoke.sh: all checks passed"
