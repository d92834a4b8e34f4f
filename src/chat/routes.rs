//! `POST /api/chat`: one message of the web chat. Its answer is a run the server owns
//! (`chat::runs`): this handler stores the message, starts the run and streams it to the tab that
//! asked; the run goes on if that tab goes away.
//!
//! The message and an empty answer (`state = 'running'`) are stored before anything is sent to
//! Hermes: if they cannot be stored, nothing is sent (the agent never runs for a message the
//! person is told to send again). If Hermes then refuses the message, they are taken back out,
//! so the conversation is as it was and the page puts the text back in the composer.
//!
//! Which of Hermes' ways to answer (`runs::driver`): its runs API, with the conversation's history
//! from the edge's store (`conversation_history`) and `session_id: web-<uuid>` naming it in
//! Hermes' own store, for every text message when Hermes has runs with approvals; a chat
//! completion stream otherwise (a message with images, which runs do not take, or an older
//! Hermes). For those, Hermes keeps each conversation's history itself, keyed by
//! `X-Hermes-Session-Id` (`web-<uuid>`), so a normal message sends only the new user message.
//! Regenerate and edit-and-resend rewrite the past, which Hermes' stored session cannot do, and
//! Hermes 0.19 ignores a request's history whenever `X-Hermes-Session-Id` is sent (docs/hermes-notes.md,
//! section b). So a rewritten conversation becomes a *branch*: its stored messages are
//! truncated, and from then on every completion turn is sent without the session header, with the
//! whole kept history in `messages`, and with a system line `conversation: web-<uuid>` that makes
//! the session id Hermes derives unique to this branch (pitfall 16). In the database the
//! conversation's `hermes_session` is then `history:web-<uuid>` instead of `web-<uuid>`.
//!
//! Either way long-term memory is scoped by `X-Hermes-Session-Key` (`web:<scope>`, the account's
//! own, `User::scope`).

/// Hermes silently truncates longer text parts; refuse them instead.
const MAX_MESSAGE_CHARS: usize = 65_536;
/// Hermes refuses request bodies over 10 MB; leave room for the JSON around the images.
const MAX_IMAGES_TOTAL_BYTES: usize = 9_000_000;
const BRANCH_PREFIX: &str = "history:";

use base64::Engine;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::params;

use super::conversations::{self, StoredMessage};
use super::runs::driver::{self, Job};
use super::runs::Busy;
use crate::app::{App, Ctx};
use crate::auth::User;
use crate::hermes::{Outgoing, UpstreamError};
use crate::response::{self, Resp};
use crate::store::now_ms;

#[derive(serde::Deserialize)]
struct ChatRequest {
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    images: Option<Vec<String>>,
    /// Files uploaded with `POST /api/attachments`, by their `/media/users/...` path.
    #[serde(default)]
    files: Option<Vec<String>>,
    #[serde(default)]
    regenerate: bool,
    #[serde(default)]
    edit_from: Option<i64>,
}

/// What to send to Hermes and what to write once it accepts.
struct Plan {
    conversation: String,
    /// The title of a conversation this send creates.
    create_title: Option<String>,
    /// Index from which stored messages are replaced (regenerate, edit).
    cut: Option<i64>,
    /// The conversation's `hermes_session` after this send.
    session: String,
    /// `X-Hermes-Session-Id`, or `None` for a branch (history sent explicitly).
    session_header: Option<String>,
    /// The session id Hermes derived for a branch turn (its `X-Hermes-Session-Id` answer), kept so
    /// deleting the conversation deletes it in Hermes too.
    derived_session: Option<String>,
    history: Vec<StoredMessage>,
    /// The conversation's messages before this one, whichever way it is sent (runs take the
    /// history explicitly every time).
    kept: Vec<StoredMessage>,
    text: String,
    images: Vec<String>,
}

enum PlanError {
    NotFound,
    Bad(&'static str, &'static str),
    Store(crate::store::StoreError),
}

fn plan_error(e: PlanError) -> Resp {
    match e {
        PlanError::NotFound => response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            "There is no such conversation.",
        ),
        PlanError::Bad(code, message) => bad(code, message),
        PlanError::Store(e) => {
            tracing::error!("conversation store: {e}");
            response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "The conversation store is unavailable right now; try again shortly.",
            )
        }
    }
}

fn bad(code: &str, message: &str) -> Resp {
    response::error(StatusCode::BAD_REQUEST, code, message)
}

pub(crate) async fn post(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let body =
        match crate::body::read_body(app.body_room(ctx), req, app.config.limits.max_body_bytes)
            .await
        {
            Ok(b) => b,
            Err(r) => return r,
        };
    let chat: ChatRequest = match response::parse_json(&body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    drop(body);
    if chat.regenerate && chat.edit_from.is_some() {
        return bad(
            "bad_body",
            "Send either \"regenerate\" or \"edit_from\", not both.",
        );
    }
    let text = chat.message.unwrap_or_default();
    let images = chat.images.unwrap_or_default();
    let files = chat.files.unwrap_or_default();
    if !chat.regenerate && text.trim().is_empty() && images.is_empty() && files.is_empty() {
        return bad("empty_message", "The message is empty.");
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        return bad(
            "message_too_long",
            &format!("A message can be at most {MAX_MESSAGE_CHARS} characters; split it up."),
        );
    }
    if let Err(r) = check_images(app, &images) {
        return r;
    }
    // Each file becomes a line of the message that tells the agent where it is.
    let text = match super::attachments::resolve(app, user, &files).await {
        Ok(found) => super::attachments::with_notes(&text, &found),
        Err(r) => return r,
    };
    if (chat.regenerate || chat.edit_from.is_some()) && chat.conversation_id.is_none() {
        return bad(
            "bad_body",
            "Regenerate and edit need the \"conversation_id\" they apply to.",
        );
    }
    if app.config.chat.api_key.is_none() {
        return UpstreamError::NoKey.response();
    }
    if let Some(refused) = crate::auth::chat_send_limited(&app.chat_limit, user) {
        return refused;
    }

    let request = Requested {
        conversation_id: chat.conversation_id,
        text,
        images,
        regenerate: chat.regenerate,
        edit_from: chat.edit_from,
    };
    let mut plan = match plan(app, user, request).await {
        Ok(p) => p,
        Err(e) => return plan_error(e),
    };
    let Some(me) = app.arc() else {
        return plan_error(PlanError::Bad("shutting_down", "The server is stopping."));
    };
    let use_runs = plan.images.is_empty() && driver::hermes_has_runs(app, ctx).await;

    // The run's place first: nothing is stored or sent when the user has too many going.
    let c = &app.config.chat;
    let run = match app.runs.start(
        &plan.conversation,
        user.id,
        0,
        c.max_runs_per_user,
        c.max_runs,
    ) {
        Ok(run) => run,
        Err(busy) => return busy_answer(busy),
    };
    // Then the message, stored before Hermes hears of it.
    let committed = match commit(app, user, &plan).await {
        Ok(c) => c,
        Err(e) => {
            run.end(&app.runs, None);
            return plan_error(e);
        }
    };
    {
        let mut state = run.state();
        state.message_index = committed.answer_index;
        state.row = committed.answer_row;
    }

    let system = app.memory.system_message(&app.config.chat).await;
    let accepted = if use_runs {
        start_hermes_run(app, ctx, user, &mut plan, system).await
    } else {
        start_completion(app, ctx, user, &mut plan, system).await
    };
    let source = match accepted {
        Ok(source) => source,
        Err(e) => {
            undo(app, committed.undo).await;
            run.end(&app.runs, None);
            let mut r = e.response();
            if plan.create_title.is_none() {
                super::set_header(&mut r, "x-conversation-id", &plan.conversation);
            }
            return r;
        }
    };
    if let Some(derived) = plan.derived_session.take() {
        remember_session(app, &plan.conversation, derived).await;
    }
    let mut job = Job {
        app: me,
        run: run.clone(),
        row: committed.answer_row,
        username: user.username.clone(),
        client_ip: ctx.client_ip,
        session: None,
    };
    match source {
        Source::Run(id) => {
            run.state().hermes_run = Some(id.clone());
            job.session = Some(run_session(&plan));
            tokio::spawn(driver::follow_run(job, id));
        }
        Source::Completion(body) => {
            tokio::spawn(driver::follow_completion(job, body));
        }
    }
    super::runs::routes::stream(&run)
}

/// What Hermes accepted.
enum Source {
    /// A run of its runs API, by id.
    Run(String),
    /// A chat completion stream.
    Completion(crate::hermes::UpBody),
}

fn busy_answer(busy: Busy) -> Resp {
    match busy {
        Busy::Conversation => response::error(
            StatusCode::CONFLICT,
            "run_in_progress",
            "This conversation has an answer being written; wait for it or stop it first.",
        ),
        Busy::User(n) => response::error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_runs",
            &format!(
                "You have {n} answers being written already; wait for one to finish or stop one."
            ),
        ),
        Busy::Server => response::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_busy",
            "The server is writing as many answers as it can at once; try again shortly.",
        ),
    }
}

/// The `session_id` a run of this conversation is kept under in Hermes.
fn run_session(plan: &Plan) -> String {
    plan.session
        .strip_prefix(BRANCH_PREFIX)
        .unwrap_or(&plan.session)
        .to_string()
}

/// `POST /v1/runs` with the conversation's stored history.
async fn start_hermes_run(
    app: &App,
    ctx: &Ctx,
    user: &User,
    plan: &mut Plan,
    system: Option<String>,
) -> Result<Source, UpstreamError> {
    let session = run_session(plan);
    if session != format!("web-{}", plan.conversation) {
        // A branch: Hermes keeps this turn under the branch's own session id, which deleting
        // the conversation must delete too.
        plan.derived_session = Some(session.clone());
    }
    let mut body = serde_json::json!({
        "model": "hermes-agent",
        "input": plan.text,
        "conversation_history": history_messages(&plan.kept),
        "session_id": session,
    });
    if let Some(system) = system {
        body["instructions"] = serde_json::Value::String(system);
    }
    let out = Outgoing {
        body: Some(Bytes::from(body.to_string())),
        session_key: Some(crate::hermes::session_key(&user.scope)),
        ..Outgoing::new(Method::POST, "/v1/runs", ctx)
    };
    let resp = crate::hermes::send(&app.hermes(), &out).await?;
    let v = crate::hermes::json_of(resp, 64 * 1024, std::time::Duration::from_secs(10))
        .await
        .unwrap_or_default();
    match v.get("run_id").and_then(|id| id.as_str()) {
        Some(id) if conversations::is_plain_session_id(id) => Ok(Source::Run(id.to_string())),
        _ => Err(UpstreamError::Failed(
            "it accepted the run without a usable run id".into(),
        )),
    }
}

/// `POST /v1/chat/completions`, streaming.
async fn start_completion(
    app: &App,
    ctx: &Ctx,
    user: &User,
    plan: &mut Plan,
    mut system: Option<String>,
) -> Result<Source, UpstreamError> {
    if let Some(branch) = plan.session.strip_prefix(BRANCH_PREFIX) {
        let line = format!("conversation: {branch}");
        system = Some(match system {
            Some(s) => format!("{s}\n\n{line}"),
            None => line,
        });
    }
    let messages = hermes_messages(system, &plan.history, &plan.text, &plan.images);
    let hermes_body = serde_json::json!({
        "model": "hermes-agent",
        "stream": true,
        "messages": messages,
    });
    let out = Outgoing {
        body: Some(Bytes::from(hermes_body.to_string())),
        session_id: plan.session_header.clone(),
        session_key: Some(crate::hermes::session_key(&user.scope)),
        stream: true,
        ..Outgoing::new(Method::POST, "/v1/chat/completions", ctx)
    };
    let resp = crate::hermes::send(&app.hermes(), &out).await?;
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_sse {
        return Err(UpstreamError::Failed(
            "it answered without an event stream".into(),
        ));
    }
    if plan.session_header.is_none() {
        plan.derived_session = resp
            .headers()
            .get(crate::hermes::X_HERMES_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| super::conversations::is_plain_session_id(id))
            .map(str::to_string);
    }
    Ok(Source::Completion(resp.into_body()))
}

/// Keeps a session id Hermes holds for this conversation, so deleting it deletes that too.
async fn remember_session(app: &App, conversation: &str, session: String) {
    let id = conversation.to_string();
    let r = app
        .store
        .call(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO hermes_sessions (conversation_id, session_id) VALUES (?1, ?2)",
                params![id, session],
            )
        })
        .await;
    if let Err(e) = r {
        tracing::warn!("cannot remember a Hermes session of a conversation: {e}");
    }
}

/// Validates image data URLs: `data:image/(png|jpeg|gif|webp);base64,...`, each at most
/// `max_image_bytes` decoded, at most `max_images` of them.
// The error is the finished answer, built once on a cold path.
#[allow(clippy::result_large_err)]
fn check_images(app: &App, images: &[String]) -> Result<(), Resp> {
    let c = &app.config.chat;
    if images.len() > c.max_images {
        return Err(bad(
            "too_many_images",
            &format!(
                "At most {} images can be sent with one message.",
                c.max_images
            ),
        ));
    }
    if images.iter().map(String::len).sum::<usize>() > MAX_IMAGES_TOTAL_BYTES {
        return Err(response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
            "The images of one message are together too large (Hermes accepts about 9 MB); send fewer or smaller ones.",
        ));
    }
    for (i, url) in images.iter().enumerate() {
        let Some(rest) = url.strip_prefix("data:") else {
            return Err(bad("bad_image", "Images must be data: URLs."));
        };
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(bad("bad_image", "An image data URL has no data."));
        };
        let ok_type = matches!(
            meta,
            "image/png;base64" | "image/jpeg;base64" | "image/gif;base64" | "image/webp;base64"
        );
        if !ok_type {
            return Err(bad(
                "bad_image",
                "Images must be PNG, JPEG, GIF or WebP, base64-encoded (data:image/png;base64,...).",
            ));
        }
        // Decoded size from the encoded length, before spending time decoding a huge one.
        let approx = data.len() / 4 * 3;
        if approx > c.max_image_bytes + 3 {
            return Err(image_too_large(i, c.max_image_bytes));
        }
        match base64::engine::general_purpose::STANDARD.decode(data) {
            Ok(bytes) if bytes.len() > c.max_image_bytes => {
                return Err(image_too_large(i, c.max_image_bytes))
            }
            Ok(bytes) if bytes.is_empty() => {
                return Err(bad("bad_image", "An image is empty."));
            }
            Ok(_) => {}
            Err(_) => return Err(bad("bad_image", "An image is not valid base64.")),
        }
    }
    Ok(())
}

fn image_too_large(i: usize, max: usize) -> Resp {
    response::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "image_too_large",
        &format!(
            "Image {} is larger than {} KiB; send a smaller one.",
            i + 1,
            max / 1024
        ),
    )
}

/// A title from the first message: its first line, at most 60 characters.
fn title_from(text: &str) -> String {
    let line = text.trim().lines().next().unwrap_or("").trim();
    let line = super::attachments::noted_name(line).unwrap_or(line);
    let mut title: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        title.push('…');
    }
    if title.is_empty() {
        "New chat".into()
    } else {
        title
    }
}

struct Requested {
    conversation_id: Option<String>,
    text: String,
    images: Vec<String>,
    regenerate: bool,
    edit_from: Option<i64>,
}

/// Reads the conversation and decides what to send; writes nothing.
async fn plan(app: &App, user: &User, r: Requested) -> Result<Plan, PlanError> {
    let uid = user.id;
    let result = app
        .store
        .call(move |c| {
            let Some(id) = r.conversation_id else {
                let id = uuid::Uuid::new_v4().to_string();
                let session = format!("web-{id}");
                return Ok(Ok(Plan {
                    create_title: Some(title_from(&r.text)),
                    cut: None,
                    session_header: Some(session.clone()),
                    derived_session: None,
                    session,
                    history: Vec::new(),
                    kept: Vec::new(),
                    text: r.text,
                    images: r.images,
                    conversation: id,
                }));
            };
            let Some(conv) = conversations::find(c, uid, &id)? else {
                return Ok(Err(PlanError::NotFound));
            };
            let stored = conversations::messages(c, &id)?;
            let (cut, text, images) = if r.regenerate {
                let Some(last_user) = stored.iter().rev().find(|m| m.role == "user") else {
                    return Ok(Err(PlanError::Bad(
                        "nothing_to_regenerate",
                        "This conversation has no message to answer again.",
                    )));
                };
                (
                    Some(last_user.index),
                    last_user.content.clone(),
                    last_user.images.clone(),
                )
            } else if let Some(from) = r.edit_from {
                if !stored.iter().any(|m| m.index == from && m.role == "user") {
                    return Ok(Err(PlanError::Bad(
                        "bad_edit_from",
                        "\"edit_from\" must be the index of a user message of this conversation.",
                    )));
                }
                (Some(from), r.text, r.images)
            } else {
                (None, r.text, r.images)
            };
            let plan = match cut {
                // Rewriting the past: a new branch that carries its history explicitly.
                Some(cut) => Plan {
                    create_title: None,
                    cut: Some(cut),
                    session: format!("{BRANCH_PREFIX}web-{}", uuid::Uuid::new_v4()),
                    session_header: None,
                    derived_session: None,
                    history: stored.iter().filter(|m| m.index < cut).cloned().collect(),
                    kept: stored.into_iter().filter(|m| m.index < cut).collect(),
                    text,
                    images,
                    conversation: id,
                },
                None if conv.hermes_session.starts_with(BRANCH_PREFIX) => Plan {
                    create_title: None,
                    cut: None,
                    session: conv.hermes_session,
                    session_header: None,
                    derived_session: None,
                    history: stored.clone(),
                    kept: stored,
                    text,
                    images,
                    conversation: id,
                },
                None => Plan {
                    create_title: None,
                    cut: None,
                    session_header: Some(conv.hermes_session.clone()),
                    derived_session: None,
                    session: conv.hermes_session,
                    history: Vec::new(),
                    kept: stored,
                    text,
                    images,
                    conversation: id,
                },
            };
            Ok(Ok(plan))
        })
        .await;
    match result {
        Ok(r) => r,
        Err(e) => Err(PlanError::Store(e)),
    }
}

/// What `commit` wrote, and how to take it back if Hermes refuses the message.
struct Committed {
    answer_row: i64,
    answer_index: i64,
    undo: Undo,
}

struct Undo {
    conversation: String,
    /// The conversation was created by this send.
    created: bool,
    /// The index of the new user message: it and everything after it are this send's.
    from: i64,
    /// Messages a regenerate or edit replaced, put back on undo.
    removed: Vec<StoredMessage>,
    old_session: Option<String>,
}

/// Writes the user message and an answer being written (`state = 'running'`), before anything
/// is sent to Hermes.
async fn commit(app: &App, user: &User, plan: &Plan) -> Result<Committed, PlanError> {
    let uid = user.id;
    let id = plan.conversation.clone();
    let create_title = plan.create_title.clone();
    let session = plan.session.clone();
    let cut = plan.cut;
    let text = plan.text.clone();
    let images = plan.images.clone();
    let result = app
        .store
        .call(move |c| {
            // Immediate: a writer outside the server (the command line) makes it wait out the busy
            // timeout instead of failing at the first write of a read transaction.
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now = now_ms();
            let old_session = match &create_title {
                Some(title) => {
                    tx.execute(
                        "INSERT INTO conversations (id, user_id, title, hermes_session, created_at, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![id, uid, title, session, now],
                    )?;
                    None
                }
                None => match conversations::find(&tx, uid, &id)? {
                    Some(conv) => Some(conv.hermes_session),
                    None => return Ok(Err(PlanError::NotFound)), // deleted meanwhile
                },
            };
            let (index, removed) = match cut {
                Some(cut) => {
                    let removed: Vec<StoredMessage> = conversations::messages(&tx, &id)?
                        .into_iter()
                        .filter(|m| m.index >= cut)
                        .collect();
                    tx.execute(
                        "DELETE FROM messages WHERE conversation_id = ?1 AND idx >= ?2",
                        params![id, cut],
                    )?;
                    (cut, removed)
                }
                None => (
                    tx.query_row(
                        "SELECT COALESCE(MAX(idx) + 1, 0) FROM messages WHERE conversation_id = ?1",
                        params![id],
                        |r| r.get(0),
                    )?,
                    Vec::new(),
                ),
            };
            conversations::insert_message(&tx, &id, index, "user", &text, &images)?;
            let row = conversations::insert_message(&tx, &id, index + 1, "assistant", "", &[])?;
            tx.execute("UPDATE messages SET state = 'running' WHERE id = ?1", params![row])?;
            tx.execute(
                "UPDATE conversations SET updated_at = ?1, hermes_session = ?2 WHERE id = ?3",
                params![now, session, id],
            )?;
            tx.commit()?;
            Ok(Ok(Committed {
                answer_row: row,
                answer_index: index + 1,
                undo: Undo {
                    conversation: id,
                    created: create_title.is_some(),
                    from: index,
                    removed,
                    old_session,
                },
            }))
        })
        .await;
    match result {
        Ok(r) => r,
        Err(e) => Err(PlanError::Store(e)),
    }
}

/// Takes a refused send back out: the conversation is as it was before it.
async fn undo(app: &App, u: Undo) {
    let result = app
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            if u.created {
                tx.execute("DELETE FROM conversations WHERE id = ?1", params![u.conversation])?;
            } else {
                tx.execute(
                    "DELETE FROM messages WHERE conversation_id = ?1 AND idx >= ?2",
                    params![u.conversation, u.from],
                )?;
                for m in &u.removed {
                    tx.execute(
                        "INSERT INTO messages (conversation_id, idx, role, content, images, tool_steps, error, created_at, state)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'done')",
                        params![
                            u.conversation,
                            m.index,
                            m.role,
                            m.content,
                            serde_json::to_string(&m.images).unwrap_or_else(|_| "[]".into()),
                            serde_json::to_string(&m.tool_steps).unwrap_or_else(|_| "[]".into()),
                            m.error.as_ref().map(|e| e.to_string()),
                            m.created_at,
                        ],
                    )?;
                }
                if let Some(s) = &u.old_session {
                    tx.execute(
                        "UPDATE conversations SET hermes_session = ?1 WHERE id = ?2",
                        params![s, u.conversation],
                    )?;
                }
            }
            tx.commit()
        })
        .await;
    if let Err(e) = result {
        tracing::error!("cannot take back a message Hermes refused: {e}");
    }
}

/// The kept history as runs take it: `{role, content}` text, without answers that have none.
fn history_messages(history: &[StoredMessage]) -> Vec<serde_json::Value> {
    history
        .iter()
        .filter(|m| !(m.role == "assistant" && m.content.is_empty()))
        .map(|m| {
            let text = if m.images.is_empty() {
                m.content.clone()
            } else {
                format!("{}\n[screenshot]", m.content)
            };
            serde_json::json!({"role": m.role, "content": text})
        })
        .collect()
}

/// The `messages` array for Hermes: the memory system message, explicit history (only for a new
/// session after regenerate/edit), then the new user message.
fn hermes_messages(
    system: Option<String>,
    history: &[StoredMessage],
    text: &str,
    images: &[String],
) -> Vec<serde_json::Value> {
    let mut out = Vec::with_capacity(history.len() + 2);
    if let Some(s) = system {
        out.push(serde_json::json!({"role": "system", "content": s}));
    }
    for m in history {
        if m.role == "assistant" && m.content.is_empty() {
            continue; // an answer that failed before any text: nothing to remember
        }
        // Earlier images are not sent again (Hermes itself keeps them as `[screenshot]`).
        let text = if m.images.is_empty() {
            m.content.clone()
        } else {
            format!("{}\n[screenshot]", m.content)
        };
        out.push(serde_json::json!({"role": m.role, "content": text}));
    }
    out.push(serde_json::json!({"role": "user", "content": content(text, images)}));
    out
}

/// A plain string, or OpenAI content parts when there are images.
fn content(text: &str, images: &[String]) -> serde_json::Value {
    if images.is_empty() {
        return serde_json::Value::String(text.to_string());
    }
    let mut parts = Vec::with_capacity(images.len() + 1);
    if !text.is_empty() {
        parts.push(serde_json::json!({"type": "text", "text": text}));
    }
    for url in images {
        parts.push(serde_json::json!({"type": "image_url", "image_url": {"url": url}}));
    }
    serde_json::Value::Array(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line() {
        assert_eq!(title_from("  hello\nworld"), "hello");
        assert_eq!(title_from(""), "New chat");
        let long = "x".repeat(80);
        assert_eq!(title_from(&long).chars().count(), 61);
    }

    #[test]
    fn images_become_content_parts() {
        let v = content("look", &["data:image/png;base64,AAAA".to_string()]);
        assert_eq!(
            v,
            serde_json::json!([
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
            ])
        );
        assert_eq!(content("hi", &[]), serde_json::json!("hi"));
    }
}
