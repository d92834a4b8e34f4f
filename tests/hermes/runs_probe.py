#!/usr/bin/env python3
"""tests/hermes/runs_probe.py: re-check what docs/hermes-notes.md section h says about Hermes' runs API
(/v1/runs, its SSE events, approvals, stop) and tool calls on /v1/chat/completions, against the real
Hermes API Server started by tests/hermes/start.sh with the scripted fake provider (its tool modes).

Interface
    tests/hermes/runs_probe.py WORKDIR [--always] [-v]
        WORKDIR   of a gateway started by start.sh (reads WORKDIR/env, provider.log, hermes-home/).
                  Start it with a short approval timeout so the timeout check runs, e.g.
                  HERMES_APPROVAL_TIMEOUT=5 HERMES_MAX_CONCURRENT_RUNS=2 tests/hermes/start.sh PORT WORKDIR
                  (approvals.timeout > 20 s: that check is skipped; max_concurrent_runs > 3 or unset:
                  the 429 check is skipped).
        --always  also answer one approval with "always". This CHANGES the gateway: Hermes rewrites
                  hermes-home/config.yaml with command_allowlist, so later dangerous commands of that
                  pattern are never asked again (until the next start.sh, which wipes hermes-home).
        -v        print the JSON samples (events, bodies, what the model received).
    tests/hermes/runs_probe.py --start [--always] [-v]
        picks a free loopback port, runs start.sh with HERMES_APPROVAL_TIMEOUT=5 and
        HERMES_MAX_CONCURRENT_RUNS=2 in a fresh /tmp/hermes-runs-probe-* WORKDIR, probes (with --always
        last), runs stop.sh, and removes the WORKDIR if every check passed.
    output: "ok - <fact>" / "not ok - <fact>: <observed>" / "skip - <why>" lines; exit 0 when no check
            failed, 1 otherwise, 2 on a usage error.
Loopback only; standard library only; every wait is bounded. Creates and removes directories
/tmp/hermes-probe-* (the targets of the dangerous `rm -rf` the fake model asks for).
"""

import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
VERBOSE = False
FAILED = []


def say(line):
    print(line, flush=True)


def check(cond, fact, observed=None):
    if cond:
        say("ok - " + fact)
    else:
        FAILED.append(fact)
        say("not ok - %s: %s" % (fact, json.dumps(observed, default=str)[:600]))
    return cond


def sample(label, obj):
    if VERBOSE:
        say("  # %s: %s" % (label, json.dumps(obj, ensure_ascii=False, default=str)[:1500]))


class Hermes:
    def __init__(self, work):
        self.work = work
        env = {}
        with open(os.path.join(work, "env")) as f:
            for line in f:
                if "=" in line:
                    k, v = line.strip().split("=", 1)
                    env[k] = v
        self.port = int(env["HERMES_API_PORT"])
        self.key = env["HERMES_API_KEY"]
        self.provider_log = env["FAKE_PROVIDER_LOG"]
        self.config = os.path.join(work, "hermes-home", "config.yaml")
        self.state_db = os.path.join(work, "hermes-home", "state.db")

    def req(self, method, path, body=None, headers=None, timeout=30):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Authorization": "Bearer " + self.key, "Content-Type": "application/json"}
        h.update(headers or {})
        try:
            c.request(method, path, json.dumps(body) if body is not None else None, h)
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        try:
            j = json.loads(data)
        except ValueError:
            j = data.decode("utf-8", "replace")
        return r.status, {k.lower(): v for k, v in r.getheaders()}, j

    def start_run(self, body, headers=None):
        st, h, j = self.req("POST", "/v1/runs", body, headers)
        if st != 202:
            raise RuntimeError("POST /v1/runs answered %s %s" % (st, j))
        return j["run_id"], h, j

    def status(self, rid):
        return self.req("GET", "/v1/runs/" + rid)[2]

    def events(self, rid, timeout=40, out=None, stop_after=None, on_event=None):
        """Read GET /v1/runs/{id}/events into out: [(t, event dict | comment str)]; stops at the
        ': stream closed' comment, after stop_after data events (then closes the socket), or at timeout.
        A non-200 answer is recorded as ("status", code, body)."""
        out = [] if out is None else out
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        c.request("GET", "/v1/runs/%s/events" % rid, headers={"Authorization": "Bearer " + self.key})
        r = c.getresponse()
        if r.status != 200:
            out.append(("status", r.status, r.read().decode()))
            c.close()
            return out
        n = 0
        try:
            while time.monotonic() - t0 < timeout:
                line = r.fp.readline()
                if not line:
                    break
                s = line.decode("utf-8", "replace").rstrip("\r\n")
                if s.startswith("data: "):
                    ev = json.loads(s[6:])
                    out.append((round(time.monotonic() - t0, 2), ev))
                    n += 1
                    if on_event:
                        on_event(ev)
                    if stop_after is not None and n >= stop_after:
                        c.sock.shutdown(socket.SHUT_RDWR)
                        break
                elif s.startswith(":"):
                    out.append((round(time.monotonic() - t0, 2), s))
                    if s.startswith(": stream closed"):
                        break
        except (socket.timeout, OSError):
            out.append(("timeout", round(time.monotonic() - t0, 2)))
        finally:
            c.close()
        return out

    def chat(self, text, session_id=None, timeout=60):
        """Streaming /v1/chat/completions; returns (status, headers, [(sse event name or None, data)])."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = {"Authorization": "Bearer " + self.key, "Content-Type": "application/json"}
        if session_id:
            h["X-Hermes-Session-Id"] = session_id
        body = {"model": "hermes-agent", "stream": True, "messages": [{"role": "user", "content": text}]}
        c.request("POST", "/v1/chat/completions", json.dumps(body), h)
        r = c.getresponse()
        out, name, t0 = [], None, time.monotonic()
        if r.status != 200:
            data = r.read()
            c.close()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, [(None, data.decode())]
        while time.monotonic() - t0 < timeout:
            line = r.fp.readline()
            if not line:
                break
            s = line.decode("utf-8", "replace").rstrip("\r\n")
            if s.startswith("event: "):
                name = s[7:]
            elif s.startswith("data: "):
                out.append((name, s[6:]))
                name = None
                if s[6:] == "[DONE]":
                    break
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, out

    def provider_bodies(self):
        with open(self.provider_log, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def db_messages(self, sid):
        con = sqlite3.connect("file:%s?mode=ro" % self.state_db, uri=True)
        try:
            return con.execute(
                "select role, coalesce(content,''), tool_call_id, coalesce(tool_calls,'') from messages "
                "where session_id=? order by id", (sid,)).fetchall()
        finally:
            con.close()

    def config_value(self, section, key):
        """Tiny reader for 'section:\\n  key: value' in config.yaml (enough for what start.sh writes)."""
        cur = None
        try:
            with open(self.config) as f:
                for line in f:
                    if not line.startswith(" ") and line.rstrip().endswith(":"):
                        cur = line.strip()[:-1]
                    elif cur == section and line.strip().startswith(key + ":"):
                        return line.split(":", 1)[1].strip().strip('"')
        except OSError:
            pass
        return None


def names(evs):
    """Event names, comments (': ...') and ('status'/'timeout', ...) markers of an events() list, as strings."""
    res = []
    for e in evs:
        if isinstance(e[1], dict):
            res.append(e[1].get("event"))
        elif isinstance(e[1], str):
            res.append(e[1])
        else:
            res.append("%s %s" % (e[0], e[1]))
    return res


def data_events(evs, name=None):
    return [e[1] for e in evs if isinstance(e[1], dict) and (name is None or e[1].get("event") == name)]


def victim():
    d = tempfile.mkdtemp(prefix="hermes-probe-", dir="/tmp")
    v = os.path.join(d, "victim")
    os.makedirs(os.path.join(v, "second"))
    return d, v


def brief(msgs):
    res = []
    for m in msgs:
        c = m.get("content")
        if isinstance(c, str) and len(c) > 100:
            c = c[:60] + "..." + c[-30:]
        d = {"role": m.get("role"), "content": c}
        if m.get("tool_calls"):
            d["tool_calls"] = [t["function"]["name"] + " " + t["function"]["arguments"] for t in m["tool_calls"]]
        if m.get("tool_call_id"):
            d["tool_call_id"] = m["tool_call_id"]
        res.append(d)
    return res


def wait_status(H, rid, want, timeout=30):
    deadline = time.monotonic() + timeout
    st = H.status(rid)
    while time.monotonic() < deadline and st.get("status") not in want:
        time.sleep(0.1)
        st = H.status(rid)
    return st


def run_with_approval(H, text, choice, timeout=40, every=False):
    """Start a run, read its events, answer the first approval.request (every one if every) with choice
    (None: don't answer)."""
    rid, _, _ = H.start_run({"input": text})
    answers = []

    def on_event(ev):
        if ev.get("event") == "approval.request" and choice is not None and (every or not answers):
            answers.append(H.req("POST", "/v1/runs/%s/approval" % rid, {"choice": choice}))

    evs = H.events(rid, timeout=timeout, on_event=on_event)
    return rid, evs, answers


# ---------------------------------------------------------------------------------------------------
def probe_capabilities(H):
    st, _, j = H.req("GET", "/v1/capabilities")
    sample("capabilities", j)
    feats = j.get("features", {}) if isinstance(j, dict) else {}
    check(st == 200 and j.get("object") == "hermes.api_server.capabilities",
          "GET /v1/capabilities exists (200, object hermes.api_server.capabilities)", [st, j])
    check(all(feats.get(k) is True for k in ("run_submission", "run_status", "run_events_sse", "run_stop",
                                             "run_approval_response", "approval_events",
                                             "tool_progress_events")),
          "capabilities advertise runs, run events, stop, approval_response, approval/tool events", feats)
    check(j.get("runtime", {}).get("tool_execution") == "server",
          "capabilities runtime.tool_execution is \"server\"", j.get("runtime"))
    st, _, _ = H.req("GET", "/v1/capabilities", headers={"Authorization": "Bearer not-the-key-000000"})
    check(st == 401, "capabilities need the bearer key (401 without it)", st)


def probe_toolecho_run(H):
    rid, hdrs, j = H.start_run({"input": "toolecho"})
    check(rid.startswith("run_") and len(rid) == 36 and j.get("status") == "started",
          "POST /v1/runs -> 202 {\"run_id\": \"run_<32 hex>\", \"status\": \"started\"}", j)
    evs = H.events(rid)
    sample("toolecho events", [e[1] for e in evs])
    seq = [n for n in names(evs) if n != "message.delta"]
    check(seq == ["tool.started", "tool.completed", "reasoning.available", "run.completed", ": stream closed"],
          "toolecho run events: tool.started, tool.completed, message.delta..., reasoning.available, "
          "run.completed, ': stream closed'", names(evs))
    ts = data_events(evs, "tool.started")
    tc = data_events(evs, "tool.completed")
    done = data_events(evs, "run.completed")
    check(ts and set(ts[0]) == {"event", "run_id", "timestamp", "tool", "preview"}
          and ts[0]["tool"] == "terminal" and ts[0]["preview"] == "echo hermes-tool-ok",
          "tool.started carries only tool + preview (the command), no arguments object or call id", ts)
    check(tc and set(tc[0]) == {"event", "run_id", "timestamp", "tool", "duration", "error"}
          and tc[0]["error"] is False,
          "tool.completed carries tool, duration, error (bool) and NOT the tool result", tc)
    deltas = "".join(e["delta"] for e in data_events(evs, "message.delta"))
    out = done[0]["output"] if done else ""
    check("hermes-tool-ok" in out and set(done[0]) == {"event", "run_id", "timestamp", "output", "usage"},
          "run.completed carries output (final text, quoting the tool result) and usage", done)
    check(deltas == "\n\n" + out, "message.delta texts joined == '\\n\\n' + output after a tool call",
          [deltas[:80], out[:80]])
    ra = data_events(evs, "reasoning.available")
    check(ra and ra[0]["text"] == out[:500],
          "reasoning.available.text is the assistant message content (not model reasoning)", ra)
    st = H.status(rid)
    sample("GET /v1/runs/{id}", st)
    rid_f, _, _ = H.start_run({"input": "upstream500"})
    evs_f = H.events(rid_f, timeout=60)
    fail = data_events(evs_f, "run.failed")
    sample("run.failed", fail)
    check(names(evs_f) == ["run.failed", ": stream closed"]
          and fail[0]["error"] == "HTTP 500: fake provider failure (upstream500)"
          and H.status(rid_f).get("status") == "failed",
          "provider failure (after Hermes' retries, ~8 s): run.failed {error}, status failed", names(evs_f))
    check(st.get("status") == "completed" and st.get("session_id") == rid and st.get("output") == out,
          "GET /v1/runs/{id}: status completed, session_id defaults to the run id, output kept", st)
    return rid


def probe_replay(H):
    rid, _, _ = H.start_run({"input": "late reader toolecho"})
    wait_status(H, rid, {"completed", "failed", "cancelled"})
    time.sleep(0.3)
    evs = H.events(rid, timeout=10)
    check("run.completed" in names(evs) and names(evs)[0] == "tool.started",
          "a reader arriving after the run finished gets every buffered event once", names(evs))
    t0 = time.monotonic()
    evs = H.events(rid, timeout=10)
    check(evs and evs[0][0] == "status" and evs[0][1] == 404 and "run_not_found" in evs[0][2],
          "a second reader after that gets 404 run_not_found (after ~1 s of waiting)",
          [evs, round(time.monotonic() - t0, 2)])

    rid, _, _ = H.start_run({"input": "two readers pause2"})
    a, b = [], []
    ta = threading.Thread(target=H.events, args=(rid, 25, a))
    tb = threading.Thread(target=H.events, args=(rid, 6, b))
    ta.start()
    time.sleep(0.3)
    tb.start()
    ta.join(30)
    tb.join(10)
    da, db = data_events(a), data_events(b)
    check(da and db and len(da) + len(db) == 6,
          "two readers at once split the events between them (each event goes to one reader)",
          {"A": names(a), "B": names(b)})

    rid, _, _ = H.start_run({"input": "disconnect slow"})
    evs = H.events(rid, timeout=20, stop_after=3)
    time.sleep(1.5)
    again = H.events(rid, timeout=5)
    st = H.status(rid)
    check(again and again[0][0] == "status" and again[0][1] == 404 and st.get("status") == "running",
          "after a reader disconnects mid-run, reconnecting gets 404 while the run keeps running",
          [again, st.get("status")])
    stop = H.req("POST", "/v1/runs/%s/stop" % rid)
    st = wait_status(H, rid, {"completed", "failed", "cancelled"}, timeout=15)
    check(stop[0] == 200 and stop[2] == {"run_id": rid, "status": "stopping"} and st.get("status") == "cancelled",
          "POST /stop -> 200 {run_id, status: stopping}; the run ends cancelled", [stop[0::2], st])


def probe_stop(H):
    rid, _, _ = H.start_run({"input": "stop me slow"})
    evs = []
    th = threading.Thread(target=H.events, args=(rid, 30, evs))
    th.start()
    time.sleep(2.0)
    t0 = time.monotonic()
    H.req("POST", "/v1/runs/%s/stop" % rid)
    th.join(30)
    sample("stopped run last events", [e[1] for e in evs[-3:]])
    check(names(evs)[-2:] == ["run.cancelled", ": stream closed"],
          "stop with a reader attached: run.cancelled {event, run_id, timestamp} then ': stream closed' "
          "(%.1f s after /stop)" % (time.monotonic() - t0), names(evs)[-4:])
    st = H.status(rid)
    check(st.get("status") == "cancelled" and "output" not in st,
          "a cancelled run's status has no output (the partial text only went out as message.delta)", st)
    again = H.req("POST", "/v1/runs/%s/stop" % rid)
    check(again[0] == 404, "stop on a finished run: 404 run_not_found", again[0::2])
    time.sleep(0.5)
    rows = H.db_messages(rid)
    # Seen both ways (saved as "tick 1 tick 2 tick 3 tick 4", and only the user message): reported, not checked.
    say("# info - state.db after a stopped streaming run: %s" % json.dumps([r[:2] for r in rows])[:200])

    d, v = victim()
    rid, _, _ = H.start_run({"input": "tooldanger " + v})
    evs = []

    def on_event(ev):
        if ev.get("event") == "approval.request":
            H.req("POST", "/v1/runs/%s/stop" % rid)

    H.events(rid, timeout=30, out=evs, on_event=on_event)
    tc = data_events(evs, "tool.completed")
    check(names(evs)[-3:] == ["tool.completed", "run.cancelled", ": stream closed"] and tc and tc[0]["error"]
          and os.path.exists(v),
          "stop while an approval is pending: within ~1 s the command is denied (not run), tool.completed "
          "error true, run.cancelled", [names(evs), os.path.exists(v)])
    rows = H.db_messages(rid)
    check(any(r[0] == "tool" and "denied by user" in r[1] for r in rows)
          and rows[-1][1] == "Operation interrupted.",
          "state.db then holds the tool result 'BLOCKED: Command denied by user...' and assistant "
          "'Operation interrupted.'", rows)
    shutil.rmtree(d, ignore_errors=True)


def probe_approvals(H, timeout_s):
    d, v = victim()
    rid, evs, answers = run_with_approval(H, "tooldanger " + v, "once")
    req_ev = data_events(evs, "approval.request")
    sample("approval.request", req_ev)
    sample("approval answer", answers[0][2] if answers else None)
    check(req_ev and set(req_ev[0]) == {"event", "run_id", "timestamp", "command", "pattern_key", "pattern_keys",
                                        "description", "allow_permanent", "choices"}
          and req_ev[0]["command"] == "rm -rf " + v and req_ev[0]["description"] == "delete in root path"
          and req_ev[0]["choices"] == ["once", "session", "always", "deny"],
          "approval.request {command, description, pattern_key(s), allow_permanent, choices} "
          "(no approval id: answers are per run, oldest first)", req_ev)
    check(answers and answers[0][0] == 200 and answers[0][2] == {"object": "hermes.run.approval_response",
                                                                 "run_id": rid, "choice": "once", "resolved": 1},
          "POST /approval {\"choice\": \"once\"} -> 200 {object hermes.run.approval_response, run_id, choice, "
          "resolved: 1}", answers)
    out = (data_events(evs, "run.completed") or [{}])[0].get("output", "")
    check(names(evs)[:4] == ["tool.started", "approval.request", "approval.responded", "tool.completed"]
          and not os.path.exists(v) and "approved by the user" in out,
          "once: approval.responded, the command runs, the model gets its result plus "
          "\"approval\": \"Command required approval (...) and was approved by the user.\"", [names(evs), out])
    shutil.rmtree(d, ignore_errors=True)

    d, v = victim()
    rid, evs, answers = run_with_approval(H, "tooldanger2 " + v, "once", every=True)
    n_req = len(data_events(evs, "approval.request"))
    check(n_req == 2 and os.path.exists(v) is False,
          "once approves one command: the 2nd command of the same pattern in the same run asks again",
          names(evs))
    shutil.rmtree(d, ignore_errors=True)

    d, v = victim()
    rid, evs, answers = run_with_approval(H, "tooldanger2 " + v, "session")
    n_req = len(data_events(evs, "approval.request"))
    check(n_req == 1 and not os.path.exists(v),
          "session: the 2nd command of the same pattern in the same run runs without asking", names(evs))
    shutil.rmtree(d, ignore_errors=True)
    d, v = victim()
    rid, evs, answers = run_with_approval(H, "tooldanger " + v, "deny")
    check(len(data_events(evs, "approval.request")) == 1,
          "session scope is the run (approval key = run_id): the next run asks again", names(evs))
    out = (data_events(evs, "run.completed") or [{}])[0].get("output", "")
    tc = data_events(evs, "tool.completed")
    check(os.path.exists(v) and tc and tc[0]["error"] is True and "BLOCKED: Command denied by user." in out
          and '"status": "blocked"' in out,
          "deny: command not run, tool.completed error true, the model gets {\"exit_code\": -1, \"error\": "
          "\"BLOCKED: Command denied by user. ... Do NOT retry ...\", \"status\": \"blocked\"}", out)
    sample("deny: tool result quoted by the model", out)
    shutil.rmtree(d, ignore_errors=True)

    if timeout_s is None or timeout_s > 20:
        say("skip - approval timeout is %s s (start with HERMES_APPROVAL_TIMEOUT=5 to observe it)" % timeout_s)
    else:
        d, v = victim()
        rid, _, _ = H.start_run({"input": "tooldanger " + v})
        evs = H.events(rid, timeout=timeout_s + 30)
        t_req = [e[0] for e in evs if isinstance(e[1], dict) and e[1]["event"] == "approval.request"]
        t_done = [e[0] for e in evs if isinstance(e[1], dict) and e[1]["event"] == "tool.completed"]
        out = (data_events(evs, "run.completed") or [{}])[0].get("output", "")
        waited = (t_done[0] - t_req[0]) if t_req and t_done else None
        check(waited is not None and timeout_s - 0.5 <= waited <= timeout_s + 2 and os.path.exists(v)
              and "timed out without user response" in out and "Silence is not consent." in out
              and "approval.responded" not in names(evs),
              "unanswered: after approvals.timeout (%s s; waited %s s) the command is denied with "
              "'BLOCKED: Command timed out without user response. ... Silence is not consent.', no event "
              "announces the timeout" % (timeout_s, waited), [names(evs), out[:200]])
        shutil.rmtree(d, ignore_errors=True)

    for tag, want_choices in (("smartdeny", ["once", "deny"]), ("smartapprove", None)):
        d = tempfile.mkdtemp(prefix="hermes-%s-" % tag, dir="/tmp")
        v = os.path.join(d, "victim")
        os.makedirs(v)
        mode = H.config_value("approvals", "mode") or "smart"
        rid, evs, answers = run_with_approval(H, "tooldanger " + v, "deny")
        reqs = data_events(evs, "approval.request")
        if mode != "smart":
            say("skip - approvals.mode is %s, smart review not exercised" % mode)
        elif want_choices:
            check(reqs and reqs[0]["choices"] == want_choices and reqs[0].get("smart_denied") is True
                  and reqs[0]["allow_permanent"] is False,
                  "smart mode, model says DENY: the human is still asked, choices [once, deny], "
                  "smart_denied true, allow_permanent false", reqs)
        else:
            out = (data_events(evs, "run.completed") or [{}])[0].get("output", "")
            check(not reqs and not os.path.exists(v) and "auto-approved by smart approval" in out,
                  "smart mode, model says APPROVE: no approval.request, the command runs", [names(evs), out])
        shutil.rmtree(d, ignore_errors=True)

    st = H.req("POST", "/v1/runs/%s/approval" % rid, {"choice": "maybe"})
    check(st[0] == 400 and st[2]["error"]["code"] == "invalid_approval_choice",
          "an unknown choice: 400 invalid_approval_choice", st[0::2])
    st = H.req("POST", "/v1/runs/%s/approval" % rid, {"choice": "once"})
    check(st[0] == 409 and st[2]["error"]["code"] == "approval_not_active",
          "answering a finished run: 409 approval_not_active", st[0::2])
    st = H.req("POST", "/v1/runs/run_nope/approval", {"choice": "once"})
    check(st[0] == 404 and st[2]["error"]["code"] == "run_not_found", "unknown run: 404 run_not_found", st[0::2])

    d, v = victim()
    rid, _, _ = H.start_run({"input": "tooldanger " + v})
    st = wait_status(H, rid, {"waiting_for_approval", "completed", "failed"}, timeout=20)
    check(st.get("status") == "waiting_for_approval" and st.get("last_event") == "approval.request"
          and "command" not in st,
          "with nobody reading, GET /v1/runs/{id} shows status waiting_for_approval (without the command)", st)
    a1 = H.req("POST", "/v1/runs/%s/approval" % rid, {"choice": "approve"})
    a2 = H.req("POST", "/v1/runs/%s/approval" % rid, {"choice": "deny"})
    check(a1[0] == 200 and a1[2]["choice"] == "once" and a2[0] == 409
          and a2[2]["error"]["code"] == "approval_not_pending",
          "choice aliases approve/approved/allow mean once; a second answer: 409 approval_not_pending",
          [a1[0::2], a2[0::2]])
    wait_status(H, rid, {"completed", "failed", "cancelled"})
    evs = H.events(rid, timeout=10)
    check("approval.request" in names(evs) and "run.completed" in names(evs),
          "a reader arriving after the run finished still gets the approval.request and everything else",
          names(evs))
    shutil.rmtree(d, ignore_errors=True)


def probe_chat(H):
    sid = "web-probe-" + uuid.uuid4().hex[:8]
    st, hdr, out = H.chat("toolecho", sid)
    prog = [json.loads(d) for n, d in out if n == "hermes.tool.progress"]
    sample("chat toolecho hermes.tool.progress", prog)
    check(len(prog) == 2 and prog[0]["status"] == "running" and prog[0]["label"] == "echo hermes-tool-ok"
          and prog[0]["toolCallId"] == prog[1]["toolCallId"] and prog[1]["status"] == "completed",
          "chat stream: event hermes.tool.progress {tool, emoji, label, toolCallId, status running} then "
          "{tool, toolCallId, status completed}", prog)
    d, v = victim()
    st, hdr, out = H.chat("tooldanger " + v, sid)
    text = "".join(json.loads(dd)["choices"][0]["delta"].get("content", "") for n, dd in out
                   if n is None and dd != "[DONE]" and json.loads(dd).get("choices"))
    sample("chat tooldanger text", text)
    check('"status": "pending_approval", "approval_pending": true' in text and os.path.exists(v),
          "chat: a dangerous command is not run; the model gets {\"status\": \"pending_approval\", "
          "\"approval_pending\": true, \"command\", \"description\", ...} and the turn ends normally "
          "(no approval event, nothing can approve it)", text[:300])
    shutil.rmtree(d, ignore_errors=True)


def probe_history(H):
    # (a) /v1/runs, history passed explicitly as the edge stores it (user/assistant text only)
    sa = "web-probe-" + uuid.uuid4().hex[:8]
    rid, _, _ = H.start_run({"input": "toolecho", "session_id": sa})
    evs = H.events(rid)
    out1 = (data_events(evs, "run.completed") or [{}])[0].get("output", "")
    rid, _, _ = H.start_run({"input": "second turn plain", "session_id": sa,
                             "conversation_history": [{"role": "user", "content": "toolecho"},
                                                      {"role": "assistant", "content": out1}]})
    H.events(rid)
    A = H.provider_bodies()[-1]["messages"]
    # (b) /v1/chat/completions + X-Hermes-Session-Id: Hermes loads its own transcript
    sb = "web-probe-" + uuid.uuid4().hex[:8]
    H.chat("toolecho", sb)
    H.chat("second turn plain", sb)
    B = H.provider_bodies()[-1]["messages"]
    sample("(a) model received", brief(A))
    sample("(b) model received", brief(B))
    check([m["role"] for m in A] == ["system", "user", "assistant", "user"],
          "(a) runs + conversation_history: the model gets [system, user, assistant(text), user]",
          brief(A))
    check([m["role"] for m in B] == ["system", "user", "assistant", "tool", "assistant", "user"]
          and B[2].get("tool_calls"),
          "(b) chat + session id: the model gets [system, user, assistant(tool_calls), tool, assistant, user]",
          brief(B))
    rows = H.db_messages(sa)
    check([r[0] for r in rows] == ["user", "assistant", "tool", "assistant", "user", "assistant"],
          "runs persist to state.db under body session_id (with tool calls/results); the passed "
          "conversation_history is not stored again", [r[:2] for r in rows])
    rid, _, _ = H.start_run({"input": "third turn run without history", "session_id": sb})
    H.events(rid)
    C = H.provider_bodies()[-1]["messages"]
    check([m["role"] for m in C] == ["system", "user"],
          "a run with session_id but no conversation_history does NOT load Hermes' transcript", brief(C))
    H.chat("fourth turn via chat", sa)
    D = H.provider_bodies()[-1]["messages"]
    check([m["role"] for m in D][:4] == ["system", "user", "assistant", "tool"] and len(D) == 8,
          "chat + X-Hermes-Session-Id on a session written by runs loads it (tool calls included)", brief(D))
    hist = [{"role": "user", "content": "toolecho"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "call_x", "type": "function", "function": {
                "name": "terminal", "arguments": "{\"command\": \"echo hermes-tool-ok\"}"}}]},
            {"role": "tool", "tool_call_id": "call_x", "content": "{\"output\": \"hermes-tool-ok\"}"},
            {"role": "assistant", "content": "it said hermes-tool-ok"}]
    rid, _, _ = H.start_run({"input": "tool history", "conversation_history": hist, "instructions": "EDGE-MARK"})
    H.events(rid)
    E = H.provider_bodies()[-1]["messages"]
    check([m["role"] for m in E] == ["system", "user", "assistant", "assistant", "user"]
          and not any(m.get("tool_calls") for m in E),
          "conversation_history keeps only role + str(content): tool_calls dropped, the orphan tool message "
          "removed", brief(E))
    check(E[0]["content"].rstrip().endswith("EDGE-MARK"),
          "instructions are appended to Hermes' system prompt (like a chat system message)", E[0]["content"][-60:])
    rid, _, _ = H.start_run({"input": "hdr"}, headers={"X-Hermes-Session-Id": "web-header-ignored"})
    H.events(rid)
    check(H.status(rid).get("session_id") == rid,
          "X-Hermes-Session-Id is ignored by /v1/runs (only the body's session_id counts)", H.status(rid))
    rid, hdr, _ = H.start_run({"input": "key"}, headers={"X-Hermes-Session-Key": "web:probe-scope"})
    H.events(rid)
    check(hdr.get("x-hermes-session-key") == "web:probe-scope",
          "X-Hermes-Session-Key is accepted on /v1/runs and echoed on the 202", hdr)


def probe_concurrency(H):
    cap = H.config_value("gateway", "max_concurrent_runs")
    if cap is None or not cap.isdigit() or not 1 <= int(cap) <= 3:
        say("skip - max_concurrent_runs is %s (start with HERMES_MAX_CONCURRENT_RUNS=2 for the 429 check)" % cap)
        return
    cap = int(cap)
    dirs, rids = [], []
    for _ in range(cap):
        d, v = victim()
        dirs.append(d)
        rid, _, _ = H.start_run({"input": "tooldanger " + v})
        rids.append(rid)
    for rid in rids:
        wait_status(H, rid, {"waiting_for_approval"}, timeout=20)
    st, hdr, j = H.req("POST", "/v1/runs", {"input": "one too many"})
    sample("429", [st, hdr.get("retry-after"), j])
    check(st == 429 and hdr.get("retry-after") == "1" and j["error"]["code"] == "rate_limit_exceeded",
          "runs waiting for approval hold their slot: POST /v1/runs beyond max_concurrent_runs (%d) -> 429 "
          "rate_limit_exceeded, Retry-After: 1" % cap, [st, j])
    st2, _, _ = H.chat("blocked too", None)
    check(st2 == 429, "the cap is shared with /v1/chat/completions (429 there too)", st2)
    for rid in rids:
        H.req("POST", "/v1/runs/%s/approval" % rid, {"choice": "deny"})
    for rid in rids:
        wait_status(H, rid, {"completed", "failed", "cancelled"})
    time.sleep(0.3)
    rid, _, _ = H.start_run({"input": "after the cap"})
    H.events(rid)
    check(True, "after the runs ended a new run is admitted again")
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def probe_always(H):
    d, v = victim()
    rid, evs, answers = run_with_approval(H, "tooldanger " + v, "always")
    cfg = open(H.config).read()
    check("command_allowlist:\n  - delete in root path" in cfg,
          "always: Hermes writes command_allowlist: [\"delete in root path\"] into config.yaml (global: "
          "every session, user and future run; survives restarts)", cfg[:300])
    shutil.rmtree(d, ignore_errors=True)
    d, v = victim()
    rid, evs, answers = run_with_approval(H, "tooldanger " + v, None)
    check("approval.request" not in names(evs) and not os.path.exists(v),
          "after always, a new run's rm -rf under / runs without asking", names(evs))
    shutil.rmtree(d, ignore_errors=True)


def main(argv):
    global VERBOSE
    args = [a for a in argv if not a.startswith("-")]
    opts = {a for a in argv if a.startswith("-")}
    if opts - {"--always", "-v", "--start"} or len(args) > 1 or (not args and "--start" not in opts):
        sys.stderr.write(__doc__)
        return 2
    VERBOSE = "-v" in opts
    started = None
    if "--start" in opts:
        work = tempfile.mkdtemp(prefix="hermes-runs-probe-", dir="/tmp")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = dict(os.environ, HERMES_APPROVAL_TIMEOUT="5", HERMES_MAX_CONCURRENT_RUNS="2")
        r = subprocess.run([os.path.join(HERE, "start.sh"), str(port), work], env=env,
                           stdout=subprocess.PIPE, timeout=150)
        if r.returncode != 0:
            say("not ok - start.sh failed (exit %d)" % r.returncode)
            return 1
        started = work
        opts.add("--always")
    else:
        work = args[0]
    t0 = time.monotonic()
    try:
        H = Hermes(work)
        timeout_s = H.config_value("approvals", "timeout")
        timeout_s = int(timeout_s) if timeout_s and timeout_s.isdigit() else 60
        probe_capabilities(H)
        probe_toolecho_run(H)
        probe_replay(H)
        probe_stop(H)
        probe_approvals(H, timeout_s)
        probe_chat(H)
        probe_history(H)
        probe_concurrency(H)
        if "--always" in opts:
            probe_always(H)
    except Exception as e:  # report, don't hide, an unexpected answer
        FAILED.append("exception")
        say("not ok - probe crashed: %s: %s" % (type(e).__name__, e))
    finally:
        if started:
            subprocess.run([os.path.join(HERE, "stop.sh"), started], timeout=60)
            if not FAILED:
                shutil.rmtree(started, ignore_errors=True)
            else:
                say("# kept %s for inspection" % started)
    say("# %d failed, %.0f s" % (len(FAILED), time.monotonic() - t0))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
