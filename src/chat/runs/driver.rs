//! Starting a run, and the task that follows it to its end.
//!
//! Two ways to get an answer from Hermes, chosen per message:
//! - its runs API (`POST /v1/runs`, then `GET /v1/runs/{id}/events`): approvals, stop, tool steps
//!   with their commands; the history goes with the request (`conversation_history`, the
//!   edge's stored text), and `session_id` names the conversation in Hermes' own store.
//! - a chat completion stream (`POST /v1/chat/completions`), for a message with images (runs take
//!   text only) or a Hermes whose `GET /v1/capabilities` lacks runs or approvals.
//!
//! Either way the task, not a tab, reads Hermes' answer: a tab that goes away changes nothing.
//! Only `stop` (`Run::stop`) ends a run early, in Hermes too. The answer's text and steps are
//! stored about once a second while it streams, and in full when it ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use rusqlite::params;

use super::{sse, Approval, Run};
use crate::app::App;
use crate::hermes::relay::{SseParser, SseTap, ToolStep};
use crate::hermes::{Outgoing, UpBody, UpstreamError};

/// How often a running answer's text is stored.
const SAVE_EVERY: Duration = Duration::from_secs(1);
/// After `stop`, how long Hermes has to end the run before the task gives up on it.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// When Hermes' event stream breaks, how often and how long its status is asked for instead.
const POLL_EVERY: Duration = Duration::from_secs(2);
const POLL_FOR: Duration = Duration::from_secs(3600);
/// How long a look at `GET /v1/capabilities` is trusted when it found no runs.
const CAPS_RECHECK: Duration = Duration::from_secs(60);

/// Whether the running Hermes has what runs need (runs, their events, approvals, stop), from
/// `GET /v1/capabilities`. A Hermes without them (older than 0.19, or unreachable) gets chat
/// completion streams; that is said once in the log.
pub(crate) async fn hermes_has_runs(app: &App, ctx: &impl crate::hermes::Client) -> bool {
    static SAID: AtomicBool = AtomicBool::new(false);
    if let Some((has, at)) = *app.runs.caps.lock().unwrap_or_else(|e| e.into_inner()) {
        if has || at.elapsed() < CAPS_RECHECK {
            return has;
        }
    }
    // On the asking client's own connection, which its message then uses too.
    let out = Outgoing::new(Method::GET, "/v1/capabilities", ctx);
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        crate::hermes::exchange(&app.hermes(), &out),
    )
    .await;
    let has = match answer {
        Ok(Ok(resp)) if resp.status() == StatusCode::OK => {
            let v = crate::hermes::json_of(resp, 256 * 1024, Duration::from_secs(5))
                .await
                .unwrap_or_default();
            let has = crate::hermes::missing_run_features(&v).is_empty();
            if !has && !SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!("this Hermes has no runs API with approvals (GET /v1/capabilities); answers use chat completions, and the agent's dangerous commands cannot be approved from the web. Hermes 0.19 or newer has it.");
            }
            has
        }
        Ok(Ok(resp)) => {
            if !SAID.swap(true, Ordering::Relaxed) {
                tracing::warn!(status = resp.status().as_u16(), "this Hermes has no GET /v1/capabilities; answers use chat completions, and the agent's dangerous commands cannot be approved from the web. Hermes 0.19 or newer has runs with approvals.");
            }
            false
        }
        // Unreachable or refused: the send that follows reports it; look again next time.
        _ => return false,
    };
    *app.runs.caps.lock().unwrap_or_else(|e| e.into_inner()) = Some((has, Instant::now()));
    has
}

/// At start: whether this Hermes has runs with approvals, said in the log when it has not (and
/// remembered for the first messages).
pub(crate) async fn probe_at_start(app: Arc<App>) {
    if app.config.chat.api_key.is_some() && hermes_has_runs(&app, &NoClient).await {
        tracing::info!("Hermes has runs with approvals: answers outlive the tab, and the agent's dangerous commands are asked in the page");
    }
}

/// A request for a run, on behalf of the client that asked for it (its address goes in the
/// forwarded headers) but on no client connection: the run outlives it.
fn for_job(job: &Job, method: Method, path: String) -> Outgoing {
    Outgoing {
        client_ip: job.client_ip,
        ..Outgoing::new(method, path, &NoClient)
    }
}

/// A request sent for the server itself (no client connection).
struct NoClient;

impl crate::hermes::Client for NoClient {
    fn client_ip(&self) -> std::net::IpAddr {
        std::net::Ipv4Addr::LOCALHOST.into()
    }
    fn conn(&self) -> Option<Arc<dyn crate::hermes::ClientConn>> {
        None
    }
}

/// What a run task needs to know besides the run.
pub(crate) struct Job {
    pub app: Arc<App>,
    pub run: Arc<Run>,
    /// The answer's row in `messages`.
    pub row: i64,
    pub username: String,
    pub client_ip: std::net::IpAddr,
    /// Hermes' session of a run (`session_id`), whose transcript holds what each tool returned.
    pub session: Option<String>,
}

/// How a run ended.
enum Outcome {
    Completed {
        output: Option<String>,
    },
    Failed(UpstreamError),
    /// Hermes reported an error inside a chat completion stream.
    UpstreamSaid(String),
    Stopped,
}

/// Follows a Hermes run (already accepted, id in the run's state) to its end.
pub(crate) async fn follow_run(job: Job, hermes_run: String) {
    let outcome = read_run_events(&job, &hermes_run).await;
    add_tool_outputs(&job).await;
    finish(job, outcome).await;
}

/// The most of a tool's output a step keeps.
const OUTPUT_EXCERPT_CHARS: usize = 2000;

/// Hermes' run events say that a tool ran, not what it returned; its transcript of the session
/// does. Once the run has ended, the tool results of this turn (after its last user message) are
/// matched to the steps in order, and the start of each is kept with its step.
async fn add_tool_outputs(job: &Job) {
    let Some(session) = &job.session else {
        return;
    };
    if job.run.state().steps.is_empty() {
        return;
    }
    let out = for_job(
        job,
        Method::GET,
        format!("/api/sessions/{session}/messages"),
    );
    let Ok(resp) = crate::hermes::exchange(&job.app.hermes(), &out).await else {
        return;
    };
    if !resp.status().is_success() {
        return;
    }
    let Some(v) = whole_json(resp).await else {
        return;
    };
    let Some(messages) = v.get("data").and_then(|d| d.as_array()) else {
        return;
    };
    let turn = messages
        .iter()
        .rposition(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .map_or(&messages[..], |i| &messages[i + 1..]);
    let outputs: Vec<String> = turn
        .iter()
        .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("tool"))
        .map(|m| excerpt(m.get("content").and_then(|c| c.as_str()).unwrap_or("")))
        .collect();
    let mut state = job.run.state();
    let steps: Vec<ToolStep> = state.steps.clone();
    for (mut step, output) in steps.into_iter().zip(outputs) {
        step.output = Some(output);
        state.put_step(step);
    }
}

/// What a person wants to see of a tool result: a terminal's output (and its error), or the
/// result as Hermes stored it; its start only.
fn excerpt(content: &str) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(content) {
        Ok(v) if v.get("output").is_some() => {
            let mut t = v["output"].as_str().unwrap_or("").to_string();
            if let Some(e) = v
                .get("error")
                .and_then(|e| e.as_str())
                .filter(|e| !e.is_empty())
            {
                if !t.is_empty() {
                    t.push('\n');
                }
                t.push_str(e);
            }
            t
        }
        _ => content.to_string(),
    };
    let mut cut: String = text.chars().take(OUTPUT_EXCERPT_CHARS).collect();
    if text.chars().count() > OUTPUT_EXCERPT_CHARS {
        cut.push('…');
    }
    cut
}

async fn read_run_events(job: &Job, id: &str) -> Outcome {
    let app = &job.app;
    let out = Outgoing {
        stream: true,
        ..for_job(job, Method::GET, format!("/v1/runs/{id}/events"))
    };
    let mut body = match crate::hermes::send(&app.hermes(), &out).await {
        Ok(resp) => Some(resp.into_body()),
        Err(e) => {
            tracing::warn!("cannot read the events of Hermes run {id}: {e}");
            None
        }
    };
    let mut parser = SseParser::default();
    let mut steps = StepTracker::default();
    let mut save = tokio::time::interval(SAVE_EVERY);
    let mut stopped_at: Option<Instant> = None;
    let idle = app.config.chat.idle_timeout;
    // Moved on by every piece of the stream (Hermes sends a keepalive every 30 s), not by the
    // other branches: silence for the idle timeout means the stream is gone.
    let silence = tokio::time::sleep(idle);
    tokio::pin!(silence);
    loop {
        let Some(events) = body.as_mut() else {
            return poll_status(job, id, stopped_at.is_some()).await;
        };
        tokio::select! {
            frame = events.frame() => {
                silence.as_mut().reset(tokio::time::Instant::now() + idle);
                let bytes = match frame {
                    Some(Ok(f)) => match f.into_data() {
                        Ok(b) => b,
                        Err(_) => continue,
                    },
                    None => {
                        tracing::warn!("Hermes' event stream of run {id} ended without its end");
                        body = None;
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!("Hermes' event stream of run {id} broke: {e}");
                        body = None;
                        continue;
                    }
                };
                let mut parsed = Vec::new();
                parser.feed(&bytes, |_, data| parsed.push(data));
                for data in parsed {
                    let Ok(ev) = serde_json::from_str::<serde_json::Value>(&data) else {
                        continue;
                    };
                    if let Some(outcome) = on_run_event(job, &mut steps, &ev, stopped_at.is_some()) {
                        return outcome;
                    }
                }
            }
            _ = &mut silence => {
                // Its status says what became of the run.
                tracing::warn!("nothing from Hermes' event stream of run {id} for the idle timeout");
                body = None;
            }
            _ = save.tick() => save_progress(job).await,
            _ = job.run.stop.notified(), if stopped_at.is_none() => {
                stopped_at = Some(Instant::now());
                stop_hermes_run(job, id).await;
            }
            _ = tokio::time::sleep(STOP_WAIT), if stopped_at.is_some() => {
                return Outcome::Stopped;
            }
        }
    }
}

/// Asks Hermes to stop a run (a waiting approval counts as denied there).
async fn stop_hermes_run(job: &Job, id: &str) {
    let out = Outgoing {
        body: Some(Bytes::from_static(b"{}")),
        ..for_job(job, Method::POST, format!("/v1/runs/{id}/stop"))
    };
    match crate::hermes::exchange(&job.app.hermes(), &out).await {
        Ok(r) if r.status().is_success() => {
            tracing::info!(user = %job.username, "run stopped by its user")
        }
        Ok(r) => tracing::warn!(status = r.status().as_u16(), "Hermes did not stop run {id}"),
        Err(e) => tracing::warn!("cannot ask Hermes to stop run {id}: {e}"),
    }
}

/// When Hermes' event stream is lost, its status of the run says how it ended.
async fn poll_status(job: &Job, id: &str, stopped: bool) -> Outcome {
    let started = Instant::now();
    let mut save = tokio::time::interval(SAVE_EVERY);
    let mut stop_sent = stopped;
    while started.elapsed() < POLL_FOR {
        let out = for_job(job, Method::GET, format!("/v1/runs/{id}"));
        if let Ok(resp) = crate::hermes::exchange(&job.app.hermes(), &out).await {
            if resp.status() == StatusCode::NOT_FOUND {
                return Outcome::Failed(
                    UpstreamError::Broken(
                        "Hermes no longer knows this run (was it restarted?)".into(),
                    )
                    .counted(),
                );
            }
            let v = whole_json(resp).await.unwrap_or_default();
            match v.get("status").and_then(|s| s.as_str()).unwrap_or("") {
                "completed" => {
                    let output = v.get("output").and_then(|o| o.as_str()).map(str::to_string);
                    return Outcome::Completed { output };
                }
                "failed" => {
                    let e = v.get("error").and_then(|o| o.as_str()).unwrap_or("failed");
                    return Outcome::Failed(
                        UpstreamError::Failed(e.chars().take(500).collect()).counted(),
                    );
                }
                "cancelled" => return Outcome::Stopped,
                _ => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = save.tick() => save_progress(job).await,
            _ = job.run.stop.notified(), if !stop_sent => {
                stop_sent = true;
                stop_hermes_run(job, id).await;
            }
        }
    }
    Outcome::Failed(UpstreamError::Broken("the run did not end within an hour".into()).counted())
}

/// A larger answer of Hermes (a run's status, a session's transcript).
async fn whole_json(resp: http::Response<UpBody>) -> Option<serde_json::Value> {
    crate::hermes::json_of(resp, 8 * 1024 * 1024, Duration::from_secs(10)).await
}

/// Pairs Hermes' `tool.started` / `tool.completed` (which carry no call id: they come in order)
/// and remembers how the last approval was answered.
#[derive(Default)]
struct StepTracker {
    next: usize,
    /// The last approval's answer, until the step it was for completes.
    answered: Option<String>,
}

/// Applies one of Hermes' run events; `Some` once the run has ended.
fn on_run_event(
    job: &Job,
    steps: &mut StepTracker,
    ev: &serde_json::Value,
    stopping: bool,
) -> Option<Outcome> {
    let s = |k: &str| ev.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let mut state = job.run.state();
    match s("event").as_str() {
        "message.delta" => state.push_text(&s("delta")),
        "tool.started" => {
            steps.next += 1;
            let tool = s("tool");
            let preview = s("preview");
            state.put_step(ToolStep {
                emoji: tool_emoji(&tool).into(),
                label: preview.chars().take(200).collect(),
                preview: Some(preview.chars().take(4000).collect()),
                tool,
                status: "running".into(),
                id: Some(format!("s{}", steps.next)),
                duration: None,
                output: None,
            });
        }
        "approval.request" => {
            let choices: Vec<&'static str> = ev
                .get("choices")
                .and_then(|c| c.as_array())
                .map(|c| {
                    c.iter()
                        .filter_map(|x| match x.as_str() {
                            Some("once") => Some("once"),
                            Some("session") => Some("session"),
                            Some("deny") => Some("deny"),
                            // `always` rewrites Hermes' config for every user; never offered.
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_else(|| vec!["once", "deny"]);
            let approval = Approval {
                command: s("command").chars().take(8000).collect(),
                description: s("description").chars().take(1000).collect(),
                choices,
                timeout_secs: job.app.config.chat.approval_timeout.as_secs(),
                requested_at: crate::store::now_ms(),
            };
            steps.answered = None;
            if let Some(mut step) = last_open_step(&state.steps) {
                step.status = "waiting_approval".into();
                state.put_step(step);
            }
            let data = serde_json::to_string(&approval).unwrap_or_default();
            let excerpt = if approval.description.is_empty() {
                approval.command.clone()
            } else {
                approval.description.clone()
            };
            state.approval = Some(approval);
            state.send(sse(Some("edge.approval"), &data));
            crate::push::notify(
                &job.app,
                job.run.user_id,
                &job.run.conversation,
                crate::push::Kind::Approval,
                state.tabs_attached(),
                &excerpt,
            );
            tracing::info!(user = %job.username, "the agent waits for an approval");
        }
        "approval.responded" => {
            let choice = match s("choice").as_str() {
                "deny" => "deny",
                "session" => "session",
                _ => "once",
            };
            steps.answered = Some(choice.to_string());
            state.approval = None;
            if choice == "deny" {
                if let Some(mut step) = last_open_step(&state.steps) {
                    step.status = "denied".into();
                    state.put_step(step);
                }
            } else if let Some(mut step) = last_open_step(&state.steps) {
                step.status = "running".into();
                state.put_step(step);
            }
            state.send(sse(
                Some("edge.approval.done"),
                &serde_json::json!({ "choice": choice }).to_string(),
            ));
        }
        "tool.completed" => {
            let waiting = state.approval.take().is_some();
            if waiting {
                // Hermes denies a command nobody answered (approvals.timeout) without an event.
                steps.answered = Some("timeout".into());
                state.send(sse(
                    Some("edge.approval.done"),
                    &serde_json::json!({ "choice": if stopping { "deny" } else { "timeout" } })
                        .to_string(),
                ));
            }
            let tool = s("tool");
            let error = ev.get("error").and_then(|e| e.as_bool()).unwrap_or(false);
            let duration = ev.get("duration").and_then(|d| d.as_f64());
            if let Some(mut step) = state
                .steps
                .iter()
                .find(|st| {
                    st.tool == tool
                        && matches!(
                            st.status.as_str(),
                            "running" | "waiting_approval" | "denied"
                        )
                        && st.duration.is_none()
                })
                .cloned()
            {
                let denied = matches!(steps.answered.as_deref(), Some("deny" | "timeout"))
                    || step.status == "denied";
                step.status = if denied {
                    "denied"
                } else if error {
                    "failed"
                } else {
                    "completed"
                }
                .into();
                step.duration = duration;
                state.put_step(step);
            }
            steps.answered = None;
        }
        "run.completed" => {
            let output = ev
                .get("output")
                .and_then(|o| o.as_str())
                .map(str::to_string);
            return Some(Outcome::Completed { output });
        }
        "run.failed" => {
            return Some(Outcome::Failed(
                UpstreamError::Failed(s("error").chars().take(500).collect()).counted(),
            ))
        }
        "run.cancelled" => return Some(Outcome::Stopped),
        // `reasoning.available` repeats the answer's own text (docs/hermes-notes.md, section h).
        _ => {}
    }
    None
}

/// The step an approval or its answer is about: the last one not ended.
fn last_open_step(steps: &[ToolStep]) -> Option<ToolStep> {
    steps
        .iter()
        .rev()
        .find(|s| {
            s.duration.is_none() && matches!(s.status.as_str(), "running" | "waiting_approval")
        })
        .cloned()
}

fn tool_emoji(tool: &str) -> &'static str {
    match tool {
        "terminal" | "process" => "💻",
        "execute_code" => "🐍",
        "read_file" | "write_file" | "patch" | "search_files" => "📄",
        "web_search" | "web_extract" | "browser_navigate" => "🌐",
        _ => "🔧",
    }
}

/// Follows a chat completion stream that Hermes has accepted.
pub(crate) async fn follow_completion(job: Job, body: UpBody) {
    let outcome = read_completion(&job, body).await;
    finish(job, outcome).await;
}

async fn read_completion(job: &Job, mut body: UpBody) -> Outcome {
    let mut tap = SseTap::default();
    let mut save = tokio::time::interval(SAVE_EVERY);
    let idle = job.app.config.chat.idle_timeout;
    let silence = tokio::time::sleep(idle);
    tokio::pin!(silence);
    loop {
        tokio::select! {
            frame = body.frame() => {
                silence.as_mut().reset(tokio::time::Instant::now() + idle);
                let bytes = match frame {
                    Some(Ok(f)) => match f.into_data() {
                        Ok(b) => b,
                        Err(_) => continue,
                    },
                    None => {
                        return match tap.error.take() {
                            Some(e) => Outcome::UpstreamSaid(e),
                            None if tap.done => Outcome::Completed { output: None },
                            None => {
                                tracing::warn!("the Hermes stream ended without [DONE]");
                                Outcome::Failed(UpstreamError::Broken("it ended without [DONE]".into()).counted())
                            }
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!("the Hermes stream broke: {e}");
                        return Outcome::Failed(UpstreamError::Broken(String::new()).counted());
                    }
                };
                let before = tap.content.len();
                tap.feed(&bytes);
                let mut state = job.run.state();
                if let Some(new) = tap.content.get(before..) {
                    state.push_text(new);
                }
                for (i, step) in tap.tool_steps.iter().enumerate() {
                    let mut step = step.clone();
                    if step.id.is_none() {
                        step.id = Some(format!("p{i}"));
                    }
                    if state.steps.get(i) != Some(&step) {
                        state.put_step(step);
                    }
                }
            }
            _ = &mut silence => {
                tracing::warn!(secs = idle.as_secs(), "no event from Hermes within the idle timeout");
                return Outcome::Failed(UpstreamError::Stalled { secs: idle.as_secs() }.counted());
            }
            _ = save.tick() => save_progress(job).await,
            // Dropping the stream closes the connection, which interrupts the agent in Hermes.
            _ = job.run.stop.notified() => return Outcome::Stopped,
        }
    }
}

/// Stores the text and steps so far, if they changed.
async fn save_progress(job: &Job) {
    let (text, steps) = {
        let mut state = job.run.state();
        if !state.dirty {
            return;
        }
        state.dirty = false;
        (
            state.text.clone(),
            serde_json::to_string(&state.steps).unwrap_or_default(),
        )
    };
    let row = job.row;
    let result = job
        .app
        .store
        .call(move |c| {
            c.execute(
                "UPDATE messages SET content = ?1, tool_steps = ?2 WHERE id = ?3 AND state = 'running'",
                params![text, steps, row],
            )
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("cannot store an answer being written (will try again): {e}");
        job.run.state().dirty = true;
    }
}

/// Stores the whole answer, tells the tabs, and leaves the registry.
async fn finish(job: Job, outcome: Outcome) {
    // A stop is asked from a tab, so its person knows; anything else is worth a push.
    let tell = !matches!(outcome, Outcome::Stopped);
    let (error, last) = match outcome {
        Outcome::Completed { output } => {
            let mut state = job.run.state();
            // Hermes' own final text, when it has one, is the answer (the deltas carry the same
            // text after a leading break, docs/hermes-notes.md section h).
            if let Some(out) = output.filter(|o| !o.trim().is_empty()) {
                if !state.cut && out.len() <= super::MAX_TEXT_BYTES {
                    state.text = out;
                }
            }
            tracing::info!(user = %job.username, "chat answer complete");
            (None, None)
        }
        Outcome::UpstreamSaid(message) => {
            let v = serde_json::json!({"code": "upstream_error", "message": message});
            let event = sse(Some("edge.error"), &v.to_string());
            (Some(v), Some(event))
        }
        Outcome::Failed(e) => {
            tracing::warn!(user = %job.username, code = e.code(), "chat answer failed");
            (Some(e.to_json()), Some(e.event()))
        }
        Outcome::Stopped => {
            tracing::info!(user = %job.username, "chat answer stopped");
            let v = serde_json::json!({"code": "stopped", "message": "Stopped before the answer was complete."});
            let event = sse(Some("edge.error"), &v.to_string());
            (Some(v), Some(event))
        }
    };
    let (text, steps, conversation, tabs) = {
        let mut state = job.run.state();
        // A step still open when the run ended did not finish.
        let open: Vec<ToolStep> = state
            .steps
            .iter()
            .filter(|s| {
                s.duration.is_none() && matches!(s.status.as_str(), "running" | "waiting_approval")
            })
            .cloned()
            .collect();
        for mut s in open {
            s.status = if s.status == "waiting_approval" {
                "denied"
            } else {
                "failed"
            }
            .into();
            state.put_step(s);
        }
        (
            state.text.clone(),
            serde_json::to_string(&state.steps).unwrap_or_default(),
            job.run.conversation.clone(),
            state.tabs_attached(),
        )
    };
    let excerpt: String = text.chars().take(400).collect();
    let row = job.row;
    let error = error.map(|e| e.to_string());
    let stored = job
        .app
        .store
        .call(move |c| {
            c.execute(
                "UPDATE messages SET content = ?1, tool_steps = ?2, error = ?3, state = 'done' WHERE id = ?4",
                params![text, steps, error, row],
            )?;
            c.execute(
                "UPDATE conversations SET updated_at = ?1 WHERE id = ?2",
                params![crate::store::now_ms(), conversation],
            )
        })
        .await;
    if let Err(e) = stored {
        // Left 'running': the next start closes it as interrupted with the text stored last.
        tracing::error!("cannot store the assistant's answer: {e}");
    }
    job.run.end(&job.app.runs, last);
    // After the answer is stored, so the conversation a notification opens shows it.
    if tell {
        crate::push::notify(
            &job.app,
            job.run.user_id,
            &job.run.conversation,
            crate::push::Kind::Done,
            tabs,
            &excerpt,
        );
    }
}

/// At shutdown, after the grace period: each run still going is stopped in Hermes (nobody could
/// read the rest of it: Hermes gives a run's events to one reader only) and stored as interrupted
/// with its text so far.
pub(crate) async fn interrupt_all(app: &App) {
    let runs = app.runs.all();
    if runs.is_empty() {
        return;
    }
    for run in &runs {
        let id = run.state().hermes_run.clone();
        if let Some(id) = id {
            let out = Outgoing {
                body: Some(Bytes::from_static(b"{}")),
                ..Outgoing::new(Method::POST, format!("/v1/runs/{id}/stop"), &NoClient)
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                crate::hermes::exchange(&app.hermes(), &out),
            )
            .await;
        }
    }
    let app_runs = app.arc();
    let stored = app
        .store
        .call(move |c| match &app_runs {
            Some(app) => super::interrupt_all(&app.runs, c),
            None => Ok(0),
        })
        .await;
    match stored {
        Ok(n) => tracing::info!("{n} answer(s) still being written were stored as interrupted"),
        Err(e) => tracing::error!("cannot store the answers being written: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::excerpt;

    #[test]
    fn a_terminal_result_shows_its_output_and_error_and_is_cut() {
        assert_eq!(
            excerpt(r#"{"output": "ok", "exit_code": 0, "error": null}"#),
            "ok"
        );
        assert_eq!(
            excerpt(r#"{"output": "", "exit_code": -1, "error": "BLOCKED: denied"}"#),
            "BLOCKED: denied"
        );
        assert_eq!(excerpt("plain text"), "plain text");
        let long = excerpt(&"x".repeat(5000));
        assert_eq!(long.chars().count(), 2001);
        assert!(long.ends_with('…'));
    }
}
