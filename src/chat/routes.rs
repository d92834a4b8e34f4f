//! `POST /api/chat`: one message of the web chat, answered by the full Hermes agent and streamed.
//!
//! Hermes keeps each conversation's history itself, keyed by `X-Hermes-Session-Id`
//! (`web-<uuid>`, one per conversation, never shared between users), and scopes long-term memory by
//! `X-Hermes-Session-Key` (`web:<scope>`, the account's own, `User::scope`). So a normal message
//! sends only the new user message.
//!
//! Regenerate and edit-and-resend rewrite the past, which Hermes' stored session cannot do, and
//! Hermes 0.19 ignores a request's history whenever `X-Hermes-Session-Id` is sent, even for a new id
//! (docs/hermes-notes.md, section b). So a rewritten conversation becomes a *branch*: its stored
//! messages are truncated, and from then on every turn is sent without the session header, with
//! the whole kept history from the edge's database in `messages`, and with a system line
//! `conversation: web-<uuid>` that makes the session id Hermes derives unique to this branch (the
//! id is a hash of the system prompt and first message; pitfall 16). In the database the
//! conversation's `hermes_session` is then `history:web-<uuid>` instead of `web-<uuid>`.
//!
//! Nothing is written until Hermes has accepted the request, so a refused send (the page puts the
//! text back into the composer) leaves the conversation as it was. Once the stream runs, the answer
//! is stored however it ends, partial text included.

/// Hermes silently truncates longer text parts; refuse them instead.
const MAX_MESSAGE_CHARS: usize = 65_536;
/// Hermes refuses request bodies over 10 MB; leave room for the JSON around the images.
const MAX_IMAGES_TOTAL_BYTES: usize = 9_000_000;
const BRANCH_PREFIX: &str = "history:";

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use rusqlite::params;

use super::conversations::{self, StoredMessage};
use crate::app::{App, Ctx};
use crate::auth::User;
use crate::hermes::relay::{Ending, Relay, SseTap};
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
    if !chat.regenerate && text.trim().is_empty() && images.is_empty() {
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

    let mut system = app.memory.system_message(&app.config.chat).await;
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
    let upstream = crate::hermes::send(&app.hermes(), &out)
        .await
        .and_then(|resp| {
            let is_sse = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            if is_sse {
                Ok(resp)
            } else {
                Err(UpstreamError::Failed(
                    "it answered without an event stream".into(),
                ))
            }
        });
    let resp = match upstream {
        Ok(r) => r,
        Err(e) => {
            let mut r = e.response();
            if plan.create_title.is_none() {
                super::set_header(&mut r, "x-conversation-id", &plan.conversation);
            }
            return r;
        }
    };
    if plan.session_header.is_none() {
        plan.derived_session = resp
            .headers()
            .get(crate::hermes::X_HERMES_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|id| super::conversations::is_plain_session_id(id))
            .map(str::to_string);
    }
    // Hermes accepted: now the user message and the (empty) answer are written.
    let conversation = plan.conversation.clone();
    let answer_row = match commit(app, user, plan).await {
        Ok(row) => row,
        Err(e) => return plan_error(e),
    };

    let on_end = finisher(app, answer_row, conversation.clone(), user);
    let relay = Relay::new(
        resp.into_body(),
        app.config.chat.idle_timeout,
        true,
        Some(on_end),
    );
    let mut r = Response::new(http_body_util::BodyExt::boxed_unsync(relay));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    super::set_header(&mut r, "x-conversation-id", &conversation);
    r
}

/// Stores what the stream produced once it has ended, however it ended.
fn finisher(app: &App, row: i64, conversation: String, user: &User) -> crate::hermes::relay::OnEnd {
    let store = app.store.clone();
    let username = user.username.clone();
    Box::new(move |ending: Ending, tap: SseTap| {
        let error = match &ending {
            Ending::Complete => tap
                .error
                .as_ref()
                .map(|m| serde_json::json!({"code": "upstream_error", "message": m})),
            Ending::ClientGone => Some(serde_json::json!({
                "code": "stopped",
                "message": "Stopped before the answer was complete."
            })),
            Ending::Failed(e) => Some(e.to_json()),
        };
        match &ending {
            Ending::Complete => tracing::info!(user = %username, "chat answer complete"),
            Ending::ClientGone => tracing::info!(user = %username, "chat stopped by the client"),
            Ending::Failed(e) => {
                tracing::warn!(user = %username, code = e.code(), "chat answer failed")
            }
        }
        let SseTap {
            content,
            tool_steps,
            ..
        } = tap;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        handle.spawn(conversations::finish_message(
            store,
            row,
            conversation,
            content,
            tool_steps,
            error,
        ));
    })
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
                    history: stored.into_iter().filter(|m| m.index < cut).collect(),
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
                    history: stored,
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

/// Writes the user message and an empty answer (filled in when the stream ends); returns the
/// answer's row id.
async fn commit(app: &App, user: &User, plan: Plan) -> Result<i64, PlanError> {
    let uid = user.id;
    let result = app
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            let now = now_ms();
            let id = &plan.conversation;
            if let Some(title) = &plan.create_title {
                tx.execute(
                    "INSERT INTO conversations (id, user_id, title, hermes_session, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                    params![id, uid, title, plan.session, now],
                )?;
            } else if conversations::find(&tx, uid, id)?.is_none() {
                return Ok(Err(PlanError::NotFound)); // deleted meanwhile
            }
            let index = match plan.cut {
                Some(cut) => {
                    tx.execute(
                        "DELETE FROM messages WHERE conversation_id = ?1 AND idx >= ?2",
                        params![id, cut],
                    )?;
                    cut
                }
                None => tx.query_row(
                    "SELECT COALESCE(MAX(idx) + 1, 0) FROM messages WHERE conversation_id = ?1",
                    params![id],
                    |r| r.get(0),
                )?,
            };
            if let Some(derived) = &plan.derived_session {
                tx.execute(
                    "INSERT OR IGNORE INTO hermes_sessions (conversation_id, session_id) VALUES (?1, ?2)",
                    params![id, derived],
                )?;
            }
            conversations::insert_message(&tx, id, index, "user", &plan.text, &plan.images)?;
            let row = conversations::insert_message(&tx, id, index + 1, "assistant", "", &[])?;
            tx.execute(
                "UPDATE conversations SET updated_at = ?1, hermes_session = ?2 WHERE id = ?3",
                params![now, plan.session, id],
            )?;
            tx.commit()?;
            Ok(Ok(row))
        })
        .await;
    match result {
        Ok(r) => r,
        Err(e) => Err(PlanError::Store(e)),
    }
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
