//! The streaming response body that carries Hermes' answer to an API client (`/v1/*`).
//!
//! Each frame of the upstream body is handed on the moment it arrives, unchanged, and nothing
//! waits on a task or a channel in between. It keeps OpenAI's semantics: a client that goes away
//! drops this body, which drops the upstream body and closes the connection to Hermes, which
//! interrupts the agent. Nothing from Hermes for `idle` (keepalives count), or an upstream body
//! that breaks, aborts the body. (The web chat's answers are runs the server owns instead,
//! `chat::runs`; this file also holds the SSE parser and the chat-completion watcher they use.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::UpBody;
use crate::response::BoxError;

/// Relays an upstream body; see the module documentation.
pub(crate) struct Relay {
    upstream: Option<UpBody>,
    idle: Duration,
    /// The idle deadline, set up the first time Hermes has nothing to send yet (a short JSON
    /// answer usually arrives whole, and then needs no timer at all).
    sleep: Option<Pin<Box<Sleep>>>,
    /// Held while a streaming (SSE) answer is relayed, for the count of open event streams.
    _stream: Option<crate::metrics::Open>,
}

impl Relay {
    pub(crate) fn new(upstream: UpBody, idle: Duration) -> Relay {
        Relay {
            upstream: Some(upstream),
            idle,
            sleep: None,
            _stream: None,
        }
    }

    /// Counts this answer as an open event stream until it is dropped.
    pub(crate) fn streaming(mut self) -> Relay {
        self._stream = Some(crate::metrics::COUNTERS.sse_stream());
        self
    }
}

impl Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(upstream) = this.upstream.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing to relay
                    };
                    if let Some(sleep) = this.sleep.as_mut() {
                        sleep.as_mut().reset(Instant::now() + this.idle);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!("the Hermes stream broke: {e}");
                    crate::metrics::COUNTERS.upstream_error("stream_broken");
                    this.upstream = None;
                    return Poll::Ready(Some(Err("the Hermes stream broke".into())));
                }
                Poll::Ready(None) => {
                    this.upstream = None;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    let idle = this.idle;
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        let secs = idle.as_secs().max(1);
                        tracing::warn!(secs, "no event from Hermes within the idle timeout");
                        crate::metrics::COUNTERS.upstream_error("upstream_stalled");
                        this.upstream = None;
                        return Poll::Ready(Some(Err(format!(
                            "Hermes sent nothing for {secs} seconds"
                        )
                        .into())));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.upstream.as_ref().is_none_or(|u| u.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        // A JSON answer goes out with its Content-Length.
        match &self.upstream {
            Some(up) => up.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// One step of tool activity, as the page shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ToolStep {
    pub tool: String,
    pub emoji: String,
    pub label: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub id: Option<String>,
    /// The command or argument summary Hermes shows for it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub preview: Option<String>,
    /// Seconds it took, once it has ended.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration: Option<f64>,
    /// The start of what it returned (from Hermes' transcript, once the answer has ended).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output: Option<String>,
}

const MAX_TOOL_STEPS: usize = 500;
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Splits an SSE byte stream into events (`event` name, `data` joined by newlines), across reads
/// that split lines anywhere; comments (keepalives) are skipped.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

impl SseParser {
    /// Feeds bytes; `on` gets each complete event.
    pub(crate) fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(String, String)) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.line_done(&rest[..pos], &mut on);
            } else {
                self.line.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line, &mut on);
            }
            rest = &rest[pos + 1..];
        }
        if self.line.len() + rest.len() <= MAX_LINE {
            self.line.extend_from_slice(rest);
        }
    }

    fn line_done(&mut self, line: &[u8], on: &mut impl FnMut(String, String)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if std::mem::replace(&mut self.has_data, false) {
                on(event, data);
            }
            return;
        }
        if line.starts_with(b":") {
            return; // comment (keepalive)
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }
}

/// Watches a chat-completion SSE stream: the answer text, the tool steps, `[DONE]`, an error chunk.
#[derive(Debug, Default)]
pub(crate) struct SseTap {
    parser: SseParser,
    pub content: String,
    pub tool_steps: Vec<ToolStep>,
    pub done: bool,
    /// An error Hermes reported inside the stream (`data: {"error": ...}`).
    pub error: Option<String>,
}

impl SseTap {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut events = Vec::new();
        self.parser.feed(bytes, |e, d| events.push((e, d)));
        for (event, data) in events {
            self.dispatch(&event, &data);
        }
    }

    fn dispatch(&mut self, event: &str, data: &str) {
        match event {
            "" | "message" => {
                if data.trim() == "[DONE]" {
                    self.done = true;
                    return;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    return;
                };
                if let Some(choices) = v.get("choices").and_then(|c| c.as_array()) {
                    for c in choices {
                        if let Some(t) = c.pointer("/delta/content").and_then(|t| t.as_str()) {
                            self.content.push_str(t);
                        }
                    }
                }
                if let Some(e) = v.get("error") {
                    let msg = e
                        .get("message")
                        .and_then(|m| m.as_str())
                        .or_else(|| e.as_str())
                        .unwrap_or("error");
                    self.error = Some(msg.chars().take(500).collect());
                }
            }
            "hermes.tool.progress" => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    return;
                };
                let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                let id = v
                    .get("toolCallId")
                    .and_then(|x| x.as_str())
                    .map(str::to_string);
                let step = ToolStep {
                    tool: s("tool"),
                    emoji: s("emoji"),
                    label: s("label"),
                    status: s("status"),
                    id: id.clone(),
                    preview: None,
                    duration: None,
                    output: None,
                };
                if let Some(existing) = id.as_ref().and_then(|id| {
                    self.tool_steps
                        .iter_mut()
                        .find(|t| t.id.as_ref() == Some(id))
                }) {
                    if !step.status.is_empty() {
                        existing.status = step.status;
                    }
                    if !step.label.is_empty() {
                        existing.label = step.label;
                    }
                } else if self.tool_steps.len() < MAX_TOOL_STEPS {
                    self.tool_steps.push(step);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_collects_content_tools_and_done_across_split_frames() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            ": keepalive\n\n",
            "event: hermes.tool.progress\r\n",
            "data: {\"tool\":\"terminal\",\"emoji\":\"💻\",\"label\":\"ls\",\"toolCallId\":\"c1\",\"status\":\"running\"}\r\n\r\n",
            "event: hermes.tool.progress\n",
            "data: {\"tool\":\"terminal\",\"toolCallId\":\"c1\",\"status\":\"completed\"}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: [DONE]\n\n"
        );
        let mut tap = SseTap::default();
        for chunk in stream.as_bytes().chunks(7) {
            tap.feed(chunk);
        }
        assert_eq!(tap.content, "Hello");
        assert!(tap.done);
        assert_eq!(tap.tool_steps.len(), 1);
        assert_eq!(tap.tool_steps[0].status, "completed");
        assert_eq!(tap.tool_steps[0].label, "ls");
        assert_eq!(tap.tool_steps[0].emoji, "💻");
    }
}
