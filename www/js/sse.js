/*
 * Server-sent events parser for fetch() bodies.
 *
 * The chat stream is a POST, so EventSource cannot be used; this reads a ReadableStream and applies the
 * WHATWG event-stream rules: lines end in CRLF, LF or CR; lines starting with ':' are comments (the
 * upstream's `: keepalive`); `event:` sets the type of the next event; `data:` lines are joined with '\n';
 * a blank line dispatches the event (only if it had data); an unfinished event at end of stream is dropped.
 * An ES module: the chat page imports it (js/chat.js), and so do the node tests (tests/browser/sse.test.mjs).
 */
export class SSEParser {
  /** @param {(ev: {type: string, data: string, id: string}) => void} onEvent */
  constructor(onEvent, onComment) {
    this.onEvent = onEvent;
    this.onComment = onComment || null;
    this.buf = '';
    this.type = '';
    this.data = [];
    this.lastId = '';
  }

  /** Feed decoded text; any split point (even inside CRLF) is fine. */
  push(text) {
    this.buf += text;
    let start = 0;
    const buf = this.buf;
    for (;;) {
      const cr = buf.indexOf('\r', start);
      const lf = buf.indexOf('\n', start);
      let eol;
      if (cr < 0 && lf < 0) break;
      if (cr < 0) eol = lf;
      else if (lf < 0) eol = cr;
      else eol = Math.min(cr, lf);
      let len = 1;
      if (buf[eol] === '\r') {
        // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
        if (eol + 1 === buf.length) break;
        if (buf[eol + 1] === '\n') len = 2;
      }
      this.line(buf.slice(start, eol));
      start = eol + len;
    }
    this.buf = buf.slice(start);
  }

  /** End of stream: a lone trailing CR still ends a line; an event without its blank line is dropped. */
  end() {
    if (this.buf.endsWith('\r')) {
      this.line(this.buf.slice(0, -1));
    }
    this.buf = '';
    this.type = '';
    this.data = [];
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line[0] === ':') {
      if (this.onComment) this.onComment(line.slice(1).trimStart());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    switch (field) {
      case 'event':
        this.type = value;
        break;
      case 'data':
        this.data.push(value);
        break;
      case 'id':
        if (value.indexOf('\0') < 0) this.lastId = value;
        break;
      default:
        // 'retry' and unknown fields are ignored.
        break;
    }
  }

  dispatch() {
    if (this.data.length === 0) {
      this.type = '';
      return;
    }
    const ev = { type: this.type || 'message', data: this.data.join('\n'), id: this.lastId };
    this.type = '';
    this.data = [];
    this.onEvent(ev);
  }
}

/**
 * Read a fetch Response body as SSE until it ends. Rejects with the reader's error (AbortError on abort).
 */
export async function readSSE(response, onEvent, onComment) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder('utf-8');
  const parser = new SSEParser(onEvent, onComment);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.end();
  } finally {
    try { reader.releaseLock(); } catch (_) { /* already released */ }
  }
}
