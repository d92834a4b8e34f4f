// Unit tests of www/js/sse.js, the SSE parser the chat page uses on fetch() bodies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SSEParser, readSSE } from '../../www/js/sse.js';

function parse(chunks) {
  const events = [];
  const comments = [];
  const p = new SSEParser((e) => events.push({ type: e.type, data: e.data }), (c) => comments.push(c));
  for (const c of chunks) p.push(c);
  p.end();
  return { events, comments };
}

test('data lines, event lines and comments', () => {
  const { events, comments } = parse([
    ': keepalive\n\n',
    'data: {"a":1}\n\n',
    'event: hermes.tool.progress\ndata: {"tool":"x"}\n\n',
    'data: [DONE]\n\n',
  ]);
  assert.deepEqual(events, [
    { type: 'message', data: '{"a":1}' },
    { type: 'hermes.tool.progress', data: '{"tool":"x"}' },
    { type: 'message', data: '[DONE]' },
  ]);
  assert.deepEqual(comments, ['keepalive']);
});

test('multi-line data is joined with a newline', () => {
  const { events } = parse(['data: line one\ndata: line two\ndata:\ndata:  indented\n\n']);
  assert.deepEqual(events, [{ type: 'message', data: 'line one\nline two\n\n indented' }]);
});

test('CRLF and CR line ends, split at every possible point', () => {
  const stream = 'event: a\r\ndata: x\r\n\r\ndata: y\r\rdata:z\n\n';
  const want = [{ type: 'a', data: 'x' }, { type: 'message', data: 'y' }, { type: 'message', data: 'z' }];
  assert.deepEqual(parse([stream]).events, want);
  for (let i = 1; i < stream.length; i++) {
    assert.deepEqual(parse([stream.slice(0, i), stream.slice(i)]).events, want, 'split at ' + i);
  }
  assert.deepEqual(parse(stream.split('')).events, want);
});

test('the event type resets after each event and blocks without data dispatch nothing', () => {
  const { events } = parse(['event: first\n\nevent: second\ndata: 1\n\ndata: 2\n\n']);
  assert.deepEqual(events, [{ type: 'second', data: '1' }, { type: 'message', data: '2' }]);
});

test('field without colon, unknown fields, id and retry', () => {
  const { events } = parse(['id: 7\nretry: 1000\nfoo: bar\ndata\n\n']);
  assert.deepEqual(events, [{ type: 'message', data: '' }]);
});

test('an unterminated event at end of stream is dropped', () => {
  assert.deepEqual(parse(['data: complete\n\ndata: partial']).events, [{ type: 'message', data: 'complete' }]);
});

test('readSSE decodes UTF-8 split across chunks', async () => {
  const bytes = new TextEncoder().encode('data: {"emoji":"🔍"}\n\ndata: héllo\n\n');
  const body = new ReadableStream({
    start(ctrl) {
      for (let i = 0; i < bytes.length; i += 3) ctrl.enqueue(bytes.slice(i, i + 3));
      ctrl.close();
    },
  });
  const events = [];
  await readSSE(new Response(body), (e) => events.push(e.data));
  assert.deepEqual(events, ['{"emoji":"🔍"}', 'héllo']);
});
