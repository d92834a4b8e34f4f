#!/usr/bin/env python3
"""A scripted, deterministic OpenAI-compatible model provider for the Hermes end-to-end tests.

Hermes (the real API Server) is configured to use this as its model, so a test can check exactly what
Hermes sent to the model (the history it loaded, the system prompt, images) without any real LLM.
Standard library only; listens on loopback only.

Interface
    python3 fake_provider.py --port PORT [--port-file FILE] --log FILE [--events FILE]
                             [--host 127.0.0.1] [--chunk-delay SECONDS]

    --port         TCP port; 0 picks a free one.
    --port-file    the bound port is written here (decimal, newline) once the socket listens, via a
                   temporary file + rename, so a reader never sees a partial write.
    --log          every POST /v1/chat/completions request body is appended as ONE JSON line (the body
                   exactly as parsed, nothing added), flushed before the answer is sent.
    --events       optional JSON-lines file of what happened besides the bodies: {"ts", "event", ...}
                   with event one of "listening" (port, pid), "request" (method, path; routes that
                   exist), "stream_start" (id, mode: normal|slow|cutoff|pause|tool_call, pause),
                   "stream_done" (chunks_sent, seconds),
                   "stream_cutoff", "client_disconnected" (chunks_sent, seconds since stream_start),
                   "not_found" (method, path: the probes Hermes makes, answered 404).
                   Also echoed to stderr.
    --chunk-delay  seconds between streamed chunks in the normal mode (default 0.02).

POST /v1/chat/completions (stream true or false). Outside the tool modes and smart reviews (below) the answer is
    echo: <text of the last user message> (history: N messages)
where N = len(messages) in the request (system messages included) and the text of a content-part array
is its text parts joined by a space, followed by " [images: K]" when it held K image_url parts.
Streaming sends the standard `chat.completion.chunk` objects: a role chunk, the text in several content
chunks (split after spaces), a final chunk with finish_reason "stop" (plus a usage chunk when
stream_options.include_usage is true), then `data: [DONE]`. It calls tools only in the tool modes below.

Special modes, chosen by a word in the last user message:
    "slow"       streams "tick 1 ", "tick 2 ", ... one chunk every 0.5 s for up to 60 s and records
                 "client_disconnected" in --events (with how long the stream ran) when the client goes away.
    "upstream500" answers HTTP 500 with an OpenAI error body.
    "cutoff"     sends two content chunks then closes the connection without finish_reason or [DONE].
    "pauseN"     (N = 1..600 seconds, e.g. "pause35") sends the role chunk, stays silent for N seconds,
                 then streams the normal echo answer: makes Hermes send its SSE keepalive comments.

Tool modes (OpenAI tool calling with Hermes' `terminal` tool; its schema is in the request's `tools`):
    "toolecho"   one call: terminal {"command": "echo hermes-tool-ok"}.
    "tooldanger" one call: terminal {"command": "rm -rf PATH"}, a command Hermes 0.19 flags as dangerous
                 ("delete in root path", tools/approval.py DANGEROUS_PATTERNS) and puts through its
                 approval gate. PATH is the first word of the user message that starts with /tmp/hermes-
                 and consists only of [A-Za-z0-9._/-] (the caller creates it), else
                 /tmp/hermes-fake-provider-victim. Nothing else is ever deleted.
    "toolcat"    one call: terminal {"command": "cat PATH"}, PATH being the file named by the first line
                 "[attached file: NAME (TYPE, SIZE) at PATH]" of the user message (hermes-edge's line for
                 an attached file; PATH only of [A-Za-z0-9._/-], without ".."), else /nonexistent.
    "tooldanger2" two calls one after the other: rm -rf PATH, then rm -rf PATH/second (to see whether an
                 approval choice covers the second command of the same pattern).
    The step is decided from the messages alone, so a request is answered the same way if Hermes
    retries it: k = the number of role "tool" messages after the last user message. While k < number
    of calls the answer is an assistant message with one `tool_calls` entry (id "call_fake_<n>", n the
    provider's request counter; finish_reason "tool_calls"; streamed as a role chunk, a tool_calls chunk
    with id/name/empty arguments, an arguments chunk, then the finish chunk). Once every call has its
    result (k >= number of calls) the answer is text:
        tool results (history: N messages): [1] <content of tool message 1> [2] ...
    each content cut to 2000 characters. So a call is never repeated forever. If the request offers no
    `terminal` tool, the answer is the text "no terminal tool offered (history: N messages)".
    --events gets "tool_call" (id, step, command) and "tool_answer" (results) records.

Smart-approval reviews: with approvals.mode "smart" (Hermes 0.19's default) Hermes first asks the
(auxiliary) model about a flagged command, a request whose last user message ends "Respond with exactly
one word: APPROVE, DENY, or ESCALATE" (tools/approval.py _smart_approve). Such a request is answered with
the single word APPROVE if the text contains "smartapprove" (e.g. in the path: /tmp/hermes-smartapprove-x),
DENY if it contains "smartdeny", else ESCALATE (Hermes then asks the human). --events gets "smart_review"
(verdict).

GET /v1/models lists the single model `fake-model`; GET /v1/models/fake-model describes it; anything else
answers 404 with an OpenAI-style JSON error.
"""

import argparse
import json
import os
import re
import select
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_ID = "fake-model"
SLOW_INTERVAL = 0.5
SLOW_MAX_SECONDS = 60.0

_write_lock = threading.Lock()


def now():
    return round(time.time(), 3)


def text_of(content):
    """Return (text, image_count) of a message content (string or list of parts)."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts = []
    images = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "input_text"):
                texts.append(str(part.get("text", "")))
            elif kind in ("image_url", "input_image"):
                images += 1
    return " ".join(texts), images


def answer_for(messages):
    last_user = None
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            last_user = msg
            break
    text, images = text_of(last_user.get("content") if last_user else None)
    answer = "echo: %s (history: %d messages)" % (text, len(messages))
    if images:
        answer += " [images: %d]" % images
    return text, answer


TOOL_RESULT_QUOTE_MAX = 2000
DANGER_DEFAULT_PATH = "/tmp/hermes-fake-provider-victim"
_DANGER_PATH_RE = re.compile(r"^/tmp/hermes-[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")


_ATTACHED_RE = re.compile(r"^\[attached file: .* at (/[A-Za-z0-9._/-]+)\]$", re.MULTILINE)


def tool_plan(user_text, words):
    """The terminal commands a tool mode asks for, in order; None when no tool mode is chosen."""
    if "toolecho" in words:
        return ["echo hermes-tool-ok"]
    if "toolcat" in words:
        m = _ATTACHED_RE.search(user_text)
        path = m.group(1) if m and ".." not in m.group(1) else "/nonexistent"
        return ["cat %s" % path]
    if "tooldanger" in words or "tooldanger2" in words:
        path = DANGER_DEFAULT_PATH
        for word in user_text.split():
            if _DANGER_PATH_RE.match(word) and ".." not in word:
                path = word
                break
        if "tooldanger2" in words:
            return ["rm -rf %s" % path, "rm -rf %s/second" % path]
        return ["rm -rf %s" % path]
    return None


def tool_results_this_turn(messages):
    """Contents (as text) of the role "tool" messages after the last user message."""
    results = []
    for msg in reversed(messages):
        if not isinstance(msg, dict):
            continue
        if msg.get("role") == "user":
            break
        if msg.get("role") == "tool":
            text, _ = text_of(msg.get("content"))
            results.append(text)
    results.reverse()
    return results


SMART_REVIEW_MARKER = "Respond with exactly one word: APPROVE, DENY, or ESCALATE"


def smart_review_verdict(user_text):
    """The verdict for a Hermes smart-approval review request, or None if this is not one."""
    if SMART_REVIEW_MARKER not in user_text:
        return None
    low = user_text.lower()
    if "smartapprove" in low:
        return "APPROVE"
    if "smartdeny" in low:
        return "DENY"
    return "ESCALATE"


def offers_tool(body, name):
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and (tool.get("function") or {}).get("name") == name:
            return True
    return False


def split_chunks(text, parts=4):
    """Split text into up to `parts` pieces at spaces (at least one piece, never empty pieces)."""
    words = text.split(" ")
    if len(words) <= 1:
        return [text]
    per = max(1, -(-len(words) // parts))
    pieces = []
    for i in range(0, len(words), per):
        piece = " ".join(words[i : i + per])
        if i + per < len(words):
            piece += " "
        pieces.append(piece)
    return pieces


class Provider:
    def __init__(self, log_path, events_path, chunk_delay):
        self.log_path = log_path
        self.events_path = events_path
        self.chunk_delay = chunk_delay
        self.counter = 0
        self.counter_lock = threading.Lock()

    def next_id(self):
        with self.counter_lock:
            self.counter += 1
            return "chatcmpl-fake-%d" % self.counter

    def record_body(self, body):
        line = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        with _write_lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()

    def event(self, name, **fields):
        rec = {"ts": now(), "event": name}
        rec.update(fields)
        line = json.dumps(rec, ensure_ascii=False, separators=(",", ":"))
        with _write_lock:
            sys.stderr.write("fake_provider: " + line + "\n")
            sys.stderr.flush()
            if self.events_path:
                with open(self.events_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
                    f.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-provider/1"
    provider = None  # set in main()

    def log_message(self, fmt, *args):  # keep stderr for our own events
        pass

    # ---- helpers -------------------------------------------------------------------------------
    def send_json(self, status, obj):
        data = json.dumps(obj).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def not_found(self):
        self.provider.event("not_found", method=self.command, path=self.path)
        self.send_json(
            404,
            {
                "error": {
                    "message": "no route for %s %s" % (self.command, self.path),
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "not_found",
                }
            },
        )

    def write_chunk(self, data):
        """Write one HTTP/1.1 chunk (transfer-encoding: chunked)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def sse(self, obj):
        payload = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        self.write_chunk(("data: %s\n\n" % payload).encode("utf-8"))

    def peer_closed_within(self, seconds):
        """Wait up to `seconds`; True as soon as the client has closed its side (EOF or reset).

        Lets the slow mode notice a disconnect within one select() wake-up instead of at the next write.
        """
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ready, _, _ = select.select([self.connection], [], [], left)
            if not ready:
                return False
            try:
                data = self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except OSError:
                return True
            if data == b"":
                return True
            # The client sent bytes mid-stream (unexpected): ignore them and keep waiting.
            time.sleep(min(0.05, max(left, 0)))

    def path_only(self):
        return self.path.split("?", 1)[0].rstrip("/") or "/"

    # ---- routes --------------------------------------------------------------------------------
    def do_GET(self):
        path = self.path_only()
        model = {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "fake-provider"}
        if path in ("/v1/models", "/v1/models/" + MODEL_ID):
            self.provider.event("request", method="GET", path=self.path)
        if path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [model]})
        elif path == "/v1/models/" + MODEL_ID:
            self.send_json(200, model)
        else:
            self.not_found()

    def do_HEAD(self):
        self.provider.event("not_found", method="HEAD", path=self.path)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        if self.path_only() != "/v1/chat/completions":
            self.not_found()
            return
        self.provider.event("request", method="POST", path=self.path)
        try:
            body = json.loads(raw.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError):
            self.send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error",
                                           "param": None, "code": "invalid_json"}})
            return
        if not isinstance(body, dict):
            self.send_json(400, {"error": {"message": "body must be a JSON object",
                                           "type": "invalid_request_error", "param": None,
                                           "code": "invalid_json"}})
            return
        self.provider.record_body(body)
        messages = body.get("messages") if isinstance(body.get("messages"), list) else []
        user_text, answer = answer_for(messages)
        words = set(user_text.lower().split())

        if "upstream500" in words:
            self.send_json(500, {"error": {"message": "fake provider failure (upstream500)",
                                           "type": "server_error", "param": None, "code": "fake_failure"}})
            return

        cid = self.provider.next_id()
        created = int(time.time())
        model = body.get("model") or MODEL_ID

        verdict = smart_review_verdict(user_text)
        if verdict is not None:
            self.provider.event("smart_review", id=cid, verdict=verdict)
            answer = verdict
            words = set()
        plan = tool_plan(user_text, words) if verdict is None else None
        if plan is not None:
            self.tool_mode(body, messages, plan, cid, created, model)
            return

        if not body.get("stream"):
            self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            })
            return
        self.stream(body, cid, created, model, answer, words)

    def tool_mode(self, body, messages, plan, cid, created, model):
        """Answer a tool-mode request: the next tool call, or the text quoting every tool result."""
        results = tool_results_this_turn(messages)
        call = None
        if not offers_tool(body, "terminal"):
            answer = "no terminal tool offered (history: %d messages)" % len(messages)
        elif len(results) < len(plan):
            step = len(results)
            call = {"id": "call_fake_%s" % cid.rsplit("-", 1)[-1], "type": "function",
                    "function": {"name": "terminal",
                                 "arguments": json.dumps({"command": plan[step]})}}
            self.provider.event("tool_call", id=call["id"], step=step + 1, command=plan[step])
        else:
            quoted = ["[%d] %s" % (i + 1, r[:TOOL_RESULT_QUOTE_MAX]) for i, r in enumerate(results)]
            answer = "tool results (history: %d messages): %s" % (len(messages), " ".join(quoted))
            self.provider.event("tool_answer", id=cid, results=len(results))

        if not body.get("stream"):
            if call is not None:
                message = {"role": "assistant", "content": None, "tool_calls": [call]}
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": answer}
                finish = "stop"
            self.send_json(200, {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            })
            return
        if call is None:
            self.stream(body, cid, created, model, answer, set())
            return

        def chunk(delta, finish=None):
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        started = time.monotonic()
        self.provider.event("stream_start", id=cid, mode="tool_call", pause=0)
        try:
            self.sse(chunk({"role": "assistant", "content": None}))
            self.sse(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                            "function": {"name": "terminal", "arguments": ""}}]}))
            time.sleep(self.provider.chunk_delay)
            self.sse(chunk({"tool_calls": [{"index": 0,
                                            "function": {"arguments": call["function"]["arguments"]}}]}))
            self.sse(chunk({}, "tool_calls"))
            opts = body.get("stream_options")
            if isinstance(opts, dict) and opts.get("include_usage"):
                self.sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}})
            self.sse("[DONE]")
            self.write_chunk(b"")
            self.provider.event("stream_done", id=cid, chunks_sent=2,
                                seconds=round(time.monotonic() - started, 3))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            self.close_connection = True
            self.provider.event("client_disconnected", id=cid, chunks_sent=0,
                                seconds=round(time.monotonic() - started, 3), error=type(e).__name__)

    def stream(self, body, cid, created, model, answer, words):
        def chunk(delta, finish=None):
            return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        started = time.monotonic()
        sent = 0
        mode = "slow" if "slow" in words else "cutoff" if "cutoff" in words else "normal"
        pause = 0
        for w in words:
            if w.startswith("pause") and w[5:].isdigit() and 1 <= int(w[5:]) <= 600:
                pause = int(w[5:])
                mode = "pause"
        self.provider.event("stream_start", id=cid, mode=mode, pause=pause)
        try:
            self.sse(chunk({"role": "assistant", "content": ""}))
            if mode == "slow":
                while time.monotonic() - started < SLOW_MAX_SECONDS:
                    sent += 1
                    self.sse(chunk({"content": "tick %d " % sent}))
                    if self.peer_closed_within(SLOW_INTERVAL):
                        raise ConnectionResetError("peer closed the connection (EOF)")
                pieces = []
            elif mode == "cutoff":
                for piece in ("partial ", "answer "):
                    sent += 1
                    self.sse(chunk({"content": piece}))
                    time.sleep(self.provider.chunk_delay)
                self.provider.event("stream_cutoff", id=cid, chunks_sent=sent)
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            else:
                if pause and self.peer_closed_within(pause):
                    raise ConnectionResetError("peer closed the connection (EOF) during pause")
                pieces = split_chunks(answer)
            for piece in pieces:
                sent += 1
                self.sse(chunk({"content": piece}))
                time.sleep(self.provider.chunk_delay)
            self.sse(chunk({}, "stop"))
            opts = body.get("stream_options")
            if isinstance(opts, dict) and opts.get("include_usage"):
                self.sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [],
                          "usage": {"prompt_tokens": 10, "completion_tokens": sent, "total_tokens": 10 + sent}})
            self.sse("[DONE]")
            self.write_chunk(b"")  # terminating zero-length chunk
            self.provider.event("stream_done", id=cid, chunks_sent=sent,
                                seconds=round(time.monotonic() - started, 3))
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError) as e:
            self.close_connection = True
            self.provider.event("client_disconnected", id=cid, chunks_sent=sent,
                                seconds=round(time.monotonic() - started, 3), error=type(e).__name__)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--port-file")
    ap.add_argument("--log", required=True)
    ap.add_argument("--events")
    ap.add_argument("--chunk-delay", type=float, default=0.02)
    args = ap.parse_args()
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        ap.error("--host must be a loopback address")

    Handler.provider = Provider(args.log, args.events, args.chunk_delay)
    ThreadingHTTPServer.daemon_threads = True
    if ":" in args.host:
        ThreadingHTTPServer.address_family = socket.AF_INET6
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    port = server.server_address[1]
    open(args.log, "a").close()  # the log exists (empty) as soon as we listen
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    Handler.provider.event("listening", host=args.host, port=port, pid=os.getpid())
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
