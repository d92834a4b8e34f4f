//! The streaming response body that carries Hermes' answer to the client.
//!
//! Each frame of the upstream body is handed on the moment it arrives, unchanged (content deltas,
//! `hermes.tool.progress` events and `: keepalive` comments byte for byte), and nothing waits on a
//! task or a channel in between. A side parser (`SseTap`) watches the same bytes to remember the
//! answer text and tool steps for the conversation history.
//!
//! Three ways it ends besides `[DONE]`:
//! - nothing from Hermes for `idle` (the idle timeout; keepalives count) → an `edge.error` event
//!   `upstream_stalled`, and the upstream request is dropped;
//! - the upstream body breaks → an `edge.error` event `stream_broken`;
//! - the client goes away → hyper drops this body, which drops the upstream body, which closes
//!   the upstream connection at once, so Hermes interrupts the agent. That is not an error.
//!
//! In every case `on_end` runs exactly once with what was seen, so the partial answer is kept.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::{UpBody, UpstreamError};
use crate::response::BoxError;

/// How a relayed stream ended.
#[derive(Debug)]
pub(crate) enum Ending {
    /// Hermes finished (`data: [DONE]`, or the end of a non-SSE body).
    Complete,
    /// The client went away first.
    ClientGone,
    /// The edge ended the stream with this error.
    Failed(UpstreamError),
}

pub(crate) type OnEnd = Box<dyn FnOnce(Ending, SseTap) + Send>;

/// Relays an upstream body; see the module documentation.
pub(crate) struct Relay {
    upstream: Option<UpBody>,
    idle: Duration,
    /// The idle deadline, set up the first time Hermes has nothing to send yet (a short JSON
    /// answer usually arrives whole, and then needs no timer at all).
    sleep: Option<Pin<Box<Sleep>>>,
    tap: Option<SseTap>,
    /// SSE mode: errors become `edge.error` events; otherwise they abort the body.
    sse_errors: bool,
    tail: Option<Bytes>,
    finished: bool,
    on_end: Option<OnEnd>,
}

impl Relay {
    /// `tap`: parse the stream as SSE and report errors as `edge.error` events (the web chat).
    /// Without it the body is passed through untouched and an error aborts it (API clients).
    pub(crate) fn new(upstream: UpBody, idle: Duration, tap: bool, on_end: Option<OnEnd>) -> Relay {
        Relay {
            upstream: Some(upstream),
            idle,
            sleep: None,
            tap: tap.then(SseTap::default),
            sse_errors: tap,
            tail: None,
            finished: false,
            on_end,
        }
    }

    fn end(&mut self, ending: Ending) {
        self.upstream = None;
        self.finished = true;
        if let Some(f) = self.on_end.take() {
            f(ending, self.tap.take().unwrap_or_default());
        }
    }

    /// Ends the stream with `err`: an `edge.error` event (SSE) or an aborted body.
    fn fail(&mut self, err: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let event = err.event();
        let mid_event = self.tap.as_ref().is_some_and(|t| t.mid_event());
        let message = err.to_string();
        self.end(Ending::Failed(err));
        if self.sse_errors {
            let bytes = if mid_event {
                let mut b = b"\n\n".to_vec();
                b.extend_from_slice(&event);
                Bytes::from(b)
            } else {
                event
            };
            Poll::Ready(Some(Ok(Frame::data(bytes))))
        } else {
            Poll::Ready(Some(Err(message.into())))
        }
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
        if let Some(tail) = this.tail.take() {
            return Poll::Ready(Some(Ok(Frame::data(tail))));
        }
        loop {
            let Some(upstream) = this.upstream.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers: nothing to relay
                    };
                    if let Some(tap) = this.tap.as_mut() {
                        tap.feed(&data);
                    }
                    if let Some(sleep) = this.sleep.as_mut() {
                        sleep.as_mut().reset(Instant::now() + this.idle);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!("the Hermes stream broke: {e}");
                    return this.fail(UpstreamError::Broken(String::new()));
                }
                Poll::Ready(None) => {
                    let complete = this.tap.as_ref().is_none_or(|t| t.done);
                    if complete {
                        this.end(Ending::Complete);
                        return Poll::Ready(None);
                    }
                    tracing::warn!("the Hermes stream ended without [DONE]");
                    return this.fail(UpstreamError::Broken("it ended without [DONE]".to_string()));
                }
                Poll::Pending => {
                    let idle = this.idle;
                    let sleep = this
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                    if sleep.as_mut().poll(cx).is_ready() {
                        let secs = this.idle.as_secs().max(1);
                        tracing::warn!(secs, "no event from Hermes within the idle timeout");
                        return this.fail(UpstreamError::Stalled { secs });
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        (self.finished && self.tail.is_none())
            || (!self.sse_errors && self.upstream.as_ref().is_some_and(|u| u.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        // Pass-through bodies keep their length (a JSON answer goes out with Content-Length);
        // SSE bodies may gain an `edge.error` event, so their length is never promised.
        match (&self.upstream, self.sse_errors) {
            (Some(up), false) => up.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.on_end.is_some() {
            // Dropped before the end: the client went away (tab closed, Stop pressed). Dropping
            // the upstream body here closes the connection to Hermes, which stops the agent.
            self.upstream = None;
            tracing::info!("client went away; the request to Hermes was dropped");
            self.end(Ending::ClientGone);
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
}

const MAX_TOOL_STEPS: usize = 500;
const MAX_LINE: usize = 4 * 1024 * 1024;

/// Watches an SSE stream: the answer text, the tool steps, `[DONE]`, an error chunk.
#[derive(Debug, Default)]
pub(crate) struct SseTap {
    line: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    pub content: String,
    pub tool_steps: Vec<ToolStep>,
    pub done: bool,
    /// An error Hermes reported inside the stream (`data: {"error": ...}`).
    pub error: Option<String>,
}

impl SseTap {
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            if self.line.is_empty() {
                self.line_done(&rest[..pos]);
            } else {
                self.line.extend_from_slice(&rest[..pos]);
                let line = std::mem::take(&mut self.line);
                self.line_done(&line);
            }
            rest = &rest[pos + 1..];
        }
        if self.line.len() + rest.len() <= MAX_LINE {
            self.line.extend_from_slice(rest);
        }
    }

    /// True when the bytes so far stop inside an event (a later event needs a blank line first).
    pub(crate) fn mid_event(&self) -> bool {
        !self.line.is_empty() || self.has_data || !self.event.is_empty()
    }

    fn line_done(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.dispatch();
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

    fn dispatch(&mut self) {
        let event = std::mem::take(&mut self.event);
        let data = std::mem::take(&mut self.data);
        let had_data = std::mem::replace(&mut self.has_data, false);
        if !had_data {
            return;
        }
        match event.as_str() {
            "" | "message" => {
                if data.trim() == "[DONE]" {
                    self.done = true;
                    return;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else {
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
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) else {
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
        assert!(!tap.mid_event());
    }

    #[test]
    fn tap_knows_when_it_stopped_inside_an_event() {
        let mut tap = SseTap::default();
        tap.feed(b"data: {\"choices\"");
        assert!(tap.mid_event());
    }
}
