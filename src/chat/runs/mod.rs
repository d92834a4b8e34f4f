//! Runs: the answers the server owns.
//!
//! An answer of the web chat is a run that belongs to the server, not to the tab that asked for
//! it: closing or reloading the page, or a phone going to sleep, does not stop the agent, and
//! every tab of the user on that conversation sees the same run. One task per run
//! (`driver.rs`) is the only reader of Hermes' events (Hermes hands each event to one reader
//! only, docs/hermes-notes.md section h), keeps what the run produced so far, stores the answer
//! about once a second, and passes each event on to the tabs that are attached.
//!
//! - `mod.rs` (this file): the registry `App` holds, a run's state, what a tab receives (a
//!   snapshot of the run so far, then the live events, as SSE).
//! - `driver.rs`: starting a run and the task that follows it to its end, with either of Hermes'
//!   ways to answer (its runs API, with approvals and stop; or a chat completion stream, for a
//!   message with images or a Hermes without runs).
//! - `routes.rs`: attach, answer an approval, stop.
//!
//! A tab attaches under the run's lock: the snapshot it gets and the first live event it gets
//! follow each other with nothing missed or repeated. A tab that falls behind the short event
//! buffer gets a fresh snapshot instead of the events it missed.

pub(crate) mod driver;
pub(crate) mod routes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::hermes::relay::ToolStep;

/// Events a tab may fall behind by before it is sent a fresh snapshot instead.
const EVENT_BUFFER: usize = 256;
/// The most text a run keeps (and stores); beyond it the answer is cut with a note.
pub(crate) const MAX_TEXT_BYTES: usize = 4 * 1024 * 1024;
/// A comment sent to an attached tab after this much silence, so that proxies and phones keep
/// the stream open and a tab that went away is noticed.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The runs going on now, by conversation.
#[derive(Default)]
pub(crate) struct Runs {
    by_conversation: Mutex<HashMap<String, Arc<Run>>>,
    /// Whether Hermes has runs with approvals, and when that was found (`driver::hermes_has_runs`).
    pub caps: Mutex<Option<(bool, std::time::Instant)>>,
}

/// Why a run could not start.
pub(crate) enum Busy {
    /// The conversation has a run going already.
    Conversation,
    /// The user has `chat.max_runs_per_user` going.
    User(usize),
    /// The server has `chat.max_runs` going.
    Server,
}

impl Runs {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Run>>> {
        self.by_conversation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new run for `conversation`, within the limits.
    pub(crate) fn start(
        &self,
        conversation: &str,
        user_id: i64,
        message_index: i64,
        per_user: usize,
        total: usize,
    ) -> Result<Arc<Run>, Busy> {
        let mut runs = self.lock();
        if runs.contains_key(conversation) {
            return Err(Busy::Conversation);
        }
        if runs.len() >= total {
            return Err(Busy::Server);
        }
        if runs.values().filter(|r| r.user_id == user_id).count() >= per_user {
            return Err(Busy::User(per_user));
        }
        let run = Arc::new(Run::new(conversation.to_string(), user_id, message_index));
        runs.insert(conversation.to_string(), run.clone());
        Ok(run)
    }

    /// The run of `conversation`, if one is going.
    pub(crate) fn get(&self, conversation: &str) -> Option<Arc<Run>> {
        self.lock().get(conversation).cloned()
    }

    /// What the conversation list shows for each of `user_id`'s conversations with a run.
    pub(crate) fn statuses(&self, user_id: i64) -> HashMap<String, &'static str> {
        self.lock()
            .values()
            .filter(|r| r.user_id == user_id)
            .map(|r| (r.conversation.clone(), r.state().status()))
            .collect()
    }

    /// How many runs are going now.
    pub(crate) fn count(&self) -> usize {
        self.lock().len()
    }

    /// Every run going now.
    pub(crate) fn all(&self) -> Vec<Arc<Run>> {
        self.lock().values().cloned().collect()
    }

    fn remove(&self, run: &Arc<Run>) {
        let mut runs = self.lock();
        if runs
            .get(&run.conversation)
            .is_some_and(|r| Arc::ptr_eq(r, run))
        {
            runs.remove(&run.conversation);
        }
    }
}

/// One run: whose it is, and what it produced so far.
pub(crate) struct Run {
    pub conversation: String,
    pub user_id: i64,
    state: Mutex<RunState>,
    /// Set by `stop`: the task ends the run (in Hermes too) and says it was stopped.
    pub stop: tokio::sync::Notify,
}

/// A command the agent waits to run until the person answers.
#[derive(Clone, serde::Serialize)]
pub(crate) struct Approval {
    pub command: String,
    pub description: String,
    pub choices: Vec<&'static str>,
    pub timeout_secs: u64,
    /// Milliseconds since the Unix epoch.
    pub requested_at: i64,
}

pub(crate) struct RunState {
    pub message_index: i64,
    /// The answer's row in `messages`.
    pub row: i64,
    pub text: String,
    pub steps: Vec<ToolStep>,
    pub approval: Option<Approval>,
    pub started_at: i64,
    /// Hermes' id of the run (`None` for a chat completion stream).
    pub hermes_run: Option<String>,
    /// Set once the run has ended: the events that end a tab's stream.
    ended: Option<Bytes>,
    tx: Option<broadcast::Sender<Bytes>>,
    /// Whether `text` or `steps` changed since they were last stored.
    pub dirty: bool,
    /// Whether `text` reached `MAX_TEXT_BYTES`.
    pub cut: bool,
}

impl RunState {
    fn status(&self) -> &'static str {
        if self.approval.is_some() {
            "waiting_approval"
        } else {
            "running"
        }
    }

    fn snapshot(&self, conversation: &str) -> Bytes {
        let data = serde_json::json!({
            "conversation_id": conversation,
            "message_index": self.message_index,
            "status": self.status(),
            "text": self.text,
            "steps": self.steps.iter().map(step_json).collect::<Vec<_>>(),
            "approval": self.approval,
            "started_at": crate::store::rfc3339_ms(self.started_at),
        });
        sse(Some("edge.run"), &data.to_string())
    }

    /// How many tabs are attached to the run now (reading its stream); a push is sent only when
    /// none is (`crate::push::notify`).
    pub(crate) fn tabs_attached(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.receiver_count())
    }

    /// Sends `event` to every attached tab.
    pub(crate) fn send(&self, event: Bytes) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }

    /// Appends answer text (within `MAX_TEXT_BYTES`) and sends it as a chat-completion chunk.
    pub(crate) fn push_text(&mut self, delta: &str) {
        if delta.is_empty() || self.cut {
            return;
        }
        let room = MAX_TEXT_BYTES.saturating_sub(self.text.len());
        let delta = if delta.len() > room {
            self.cut = true;
            let mut end = room;
            while !delta.is_char_boundary(end) {
                end -= 1;
            }
            &delta[..end]
        } else {
            delta
        };
        self.text.push_str(delta);
        self.dirty = true;
        self.send(text_event(delta));
    }

    /// Adds or updates a step and sends it.
    pub(crate) fn put_step(&mut self, step: ToolStep) {
        let event = sse(Some("hermes.tool.progress"), &step_json(&step).to_string());
        let at = self
            .steps
            .iter()
            .position(|s| s.id.is_some() && s.id == step.id);
        match at {
            Some(i) => self.steps[i] = step,
            None if self.steps.len() < 500 => self.steps.push(step),
            None => return,
        }
        self.dirty = true;
        self.send(event);
    }
}

/// A step as the page receives it.
pub(crate) fn step_json(s: &ToolStep) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "tool": s.tool, "emoji": s.emoji, "label": s.label, "status": s.status,
        "preview": s.preview, "duration": s.duration, "output": s.output,
    })
}

/// One SSE event.
pub(crate) fn sse(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(e) = event {
        out.push_str("event: ");
        out.push_str(e);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

/// Answer text as an OpenAI chat-completion chunk, which the page (and any SSE client of
/// `/api/chat` from before runs) appends.
pub(crate) fn text_event(delta: &str) -> Bytes {
    let data = serde_json::json!({"choices": [{"index": 0, "delta": {"content": delta}}]});
    sse(None, &data.to_string())
}

impl Run {
    fn new(conversation: String, user_id: i64, message_index: i64) -> Run {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        Run {
            conversation,
            user_id,
            state: Mutex::new(RunState {
                message_index,
                row: 0,
                text: String::new(),
                steps: Vec::new(),
                approval: None,
                started_at: crate::store::now_ms(),
                hermes_run: None,
                ended: None,
                tx: Some(tx),
                dirty: false,
                cut: false,
            }),
            stop: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, RunState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends the run for its tabs: `last` (an error event, or nothing) and `[DONE]` close each
    /// stream; the run leaves the registry, so a tab that attaches later reads the stored answer.
    pub(crate) fn end(self: &Arc<Self>, runs: &Runs, last: Option<Bytes>) {
        let mut state = self.state();
        let mut tail = Vec::new();
        if let Some(last) = last {
            tail.extend_from_slice(&last);
        }
        tail.extend_from_slice(b"data: [DONE]\n\n");
        let tail = Bytes::from(tail);
        state.send(tail.clone());
        state.ended = Some(tail);
        state.approval = None;
        // Dropping the sender lets each tab's stream end once it has read what was sent.
        state.tx = None;
        drop(state);
        runs.remove(self);
    }

    /// A tab's stream of this run: the snapshot, then the live events (see the module notes).
    pub(crate) fn attach(self: &Arc<Self>) -> crate::response::Body {
        let state = self.state();
        let snapshot = state.snapshot(&self.conversation);
        let first = match &state.ended {
            Some(tail) => {
                let mut b = Vec::from(&snapshot[..]);
                b.extend_from_slice(tail);
                return crate::response::full(b);
            }
            None => snapshot,
        };
        let Some(rx) = state.tx.as_ref().map(|tx| tx.subscribe()) else {
            return crate::response::full(first);
        };
        drop(state);
        // Counted as an open event stream for as long as the tab reads it.
        let run = (self.clone(), crate::metrics::COUNTERS.sse_stream());
        let stream = futures_util::stream::unfold(
            (Some(first), rx, run),
            |(first, mut rx, run)| async move {
                if let Some(first) = first {
                    return Some((Ok(http_body::Frame::data(first)), (None, rx, run)));
                }
                let next = match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
                    Err(_) => Bytes::from_static(b": keepalive\n\n"),
                    Ok(Ok(event)) => event,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                        // Behind the buffer: start again from what the run has now.
                        let state = run.0.state();
                        rx = match state.tx.as_ref() {
                            Some(tx) => tx.subscribe(),
                            None => return None,
                        };
                        state.snapshot(&run.0.conversation)
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                };
                Some((Ok(http_body::Frame::data(next)), (None, rx, run)))
            },
        );
        http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream))
    }
}

/// The error an answer cut by the server stopping is stored with.
fn interrupted_error() -> String {
    serde_json::json!({
        "code": "interrupted",
        "message": "The server stopped while this answer was being written; what it had written is kept. Send a message to continue, or regenerate the answer."
    })
    .to_string()
}

/// At shutdown, once the grace period is over: the answers still being written keep their text
/// and are marked interrupted now, as the next start would (`close_interrupted`).
pub(crate) fn interrupt_all(runs: &Runs, c: &rusqlite::Connection) -> rusqlite::Result<usize> {
    let mut n = 0;
    for run in runs.all() {
        let (row, text, steps) = {
            let s = run.state();
            (
                s.row,
                s.text.clone(),
                serde_json::to_string(&s.steps).unwrap_or_default(),
            )
        };
        n += c.execute(
            "UPDATE messages SET content = ?1, tool_steps = ?2, error = ?3, state = 'done'
             WHERE id = ?4 AND state = 'running'",
            rusqlite::params![text, steps, interrupted_error(), row],
        )?;
    }
    Ok(n)
}

/// Closes the answers a previous process left running (it crashed or was killed): their text
/// so far is kept and they are marked interrupted, so the page offers to continue or regenerate.
pub(crate) fn close_interrupted(c: &rusqlite::Connection) -> rusqlite::Result<usize> {
    c.execute(
        "UPDATE messages SET state = 'done', error = ?1 WHERE state = 'running'",
        rusqlite::params![interrupted_error()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_conversation_user_and_server() {
        let runs = Runs::default();
        let a = runs.start("c1", 1, 1, 2, 3).ok().unwrap();
        assert!(matches!(
            runs.start("c1", 1, 1, 2, 3),
            Err(Busy::Conversation)
        ));
        let _b = runs.start("c2", 1, 1, 2, 3).ok().unwrap();
        assert!(matches!(runs.start("c3", 1, 1, 2, 3), Err(Busy::User(2))));
        let _c = runs.start("c4", 2, 1, 2, 3).ok().unwrap();
        assert!(matches!(runs.start("c5", 3, 1, 2, 3), Err(Busy::Server)));
        a.end(&runs, None);
        assert!(runs.get("c1").is_none());
        assert!(runs.start("c5", 3, 1, 2, 3).is_ok());
    }

    #[test]
    fn text_is_cut_at_the_limit_on_a_character_boundary() {
        let runs = Runs::default();
        let run = runs.start("c", 1, 1, 1, 1).ok().unwrap();
        let mut s = run.state();
        s.push_text(&"é".repeat(MAX_TEXT_BYTES));
        assert!(s.cut);
        assert!(s.text.len() <= MAX_TEXT_BYTES);
        s.push_text("more");
        assert!(!s.text.ends_with("more"));
    }

    #[test]
    fn sse_events_split_data_lines() {
        assert_eq!(
            &sse(Some("x"), "a\nb")[..],
            b"event: x\ndata: a\ndata: b\n\n"
        );
    }
}
