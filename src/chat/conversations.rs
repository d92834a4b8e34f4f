//! Stored chat history, per user: conversations and their messages (user text and images, the
//! final assistant text, tool steps, the error if an answer failed).
//!
//! Every query is scoped by the signed-in user's id, and another user's conversation answers
//! `404` exactly like a missing one, so ids cannot be probed.

use std::time::Duration;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension, Transaction};

use crate::app::{App, Ctx};
use crate::auth::User;
use crate::hermes::relay::ToolStep;
use crate::hermes::{Outgoing, UpstreamError};
use crate::response::{self, Resp};
use crate::store::{now_ms, rfc3339_ms};

/// One stored message.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub index: i64,
    pub role: String,
    pub content: String,
    pub images: Vec<String>,
    pub tool_steps: Vec<ToolStep>,
    pub error: Option<serde_json::Value>,
    pub created_at: i64,
    /// `running` while a run writes it (`chat::runs`), else `done`.
    pub state: String,
}

impl StoredMessage {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .tool_steps
            .iter()
            .map(crate::chat::runs::step_json)
            .collect();
        serde_json::json!({
            "index": self.index,
            "role": self.role,
            "content": self.content,
            "images": self.images,
            "tool_steps": steps,
            "error": self.error,
            "created_at": rfc3339_ms(self.created_at),
            "state": self.state,
        })
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub id: String,
    pub title: String,
    pub hermes_session: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Summary {
    /// A row of `SELECT id, title, hermes_session, created_at, updated_at`.
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
        Ok(Summary {
            id: r.get(0)?,
            title: r.get(1)?,
            hermes_session: r.get(2)?,
            created_at: r.get(3)?,
            updated_at: r.get(4)?,
        })
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "created_at": rfc3339_ms(self.created_at),
            "updated_at": rfc3339_ms(self.updated_at),
        })
    }
}

/// The conversation `id` if it belongs to `user_id`.
pub(crate) fn find(
    c: &rusqlite::Connection,
    user_id: i64,
    id: &str,
) -> Result<Option<Summary>, rusqlite::Error> {
    c.query_row(
        "SELECT id, title, hermes_session, created_at, updated_at FROM conversations
         WHERE id = ?1 AND user_id = ?2",
        params![id, user_id],
        Summary::from_row,
    )
    .optional()
}

/// The messages of a conversation in order (the caller has checked the owner).
pub(crate) fn messages(
    c: &rusqlite::Connection,
    conversation: &str,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut st = c.prepare(
        "SELECT idx, role, content, images, tool_steps, error, created_at, state FROM messages
         WHERE conversation_id = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map(params![conversation], |r| {
        let images: String = r.get(3)?;
        let steps: String = r.get(4)?;
        let error: Option<String> = r.get(5)?;
        Ok(StoredMessage {
            index: r.get(0)?,
            role: r.get(1)?,
            content: r.get(2)?,
            images: serde_json::from_str(&images).unwrap_or_default(),
            tool_steps: serde_json::from_str(&steps).unwrap_or_default(),
            error: error.and_then(|e| serde_json::from_str(&e).ok()),
            created_at: r.get(6)?,
            state: r.get(7)?,
        })
    })?;
    rows.collect()
}

/// Inserts a message and returns its row id.
pub(crate) fn insert_message(
    tx: &Transaction<'_>,
    conversation: &str,
    index: i64,
    role: &str,
    content: &str,
    images: &[String],
) -> Result<i64, rusqlite::Error> {
    let images = serde_json::to_string(images).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT INTO messages (conversation_id, idx, role, content, images, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![conversation, index, role, content, images, now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!("conversation store: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The conversation store is unavailable right now; try again shortly.",
    )
}

pub(crate) fn not_found() -> Resp {
    response::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such conversation.",
    )
}

/// Whether `id` is a conversation of `user` (an error answer when the store fails).
pub(crate) async fn owned(app: &App, user: &User, id: &str) -> Result<bool, Resp> {
    let uid = user.id;
    let id = id.to_string();
    match app
        .store
        .call(move |c| Ok(find(c, uid, &id)?.is_some()))
        .await
    {
        Ok(b) => Ok(b),
        Err(e) => Err(store_failed(e)),
    }
}

/// `GET /api/conversations`: the user's conversations, newest first.
pub(crate) async fn list(app: &App, user: &User) -> Resp {
    let uid = user.id;
    let result = app
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT id, title, hermes_session, created_at, updated_at FROM conversations
                 WHERE user_id = ?1 ORDER BY updated_at DESC, rowid DESC LIMIT 1000",
            )?;
            let rows = st.query_map(params![uid], Summary::from_row)?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await;
    let runs = app.runs.statuses(user.id);
    match result {
        Ok(list) => {
            let items: Vec<serde_json::Value> = list
                .iter()
                .map(|c| {
                    let mut v = c.to_json();
                    v["run"] = match runs.get(&c.id) {
                        Some(status) => serde_json::json!({ "status": status }),
                        None => serde_json::Value::Null,
                    };
                    v
                })
                .collect();
            response::json(
                StatusCode::OK,
                &serde_json::json!({ "conversations": items }),
            )
        }
        Err(e) => store_failed(e),
    }
}

/// `GET /api/conversations/{id}`: the conversation with its messages.
pub(crate) async fn get(app: &App, user: &User, id: &str) -> Resp {
    let uid = user.id;
    let id = id.to_string();
    let result = app
        .store
        .call(move |c| {
            let Some(conv) = find(c, uid, &id)? else {
                return Ok(None);
            };
            let msgs = messages(c, &conv.id)?;
            Ok(Some((conv, msgs)))
        })
        .await;
    match result {
        Ok(Some((conv, msgs))) => {
            let mut v = conv.to_json();
            v["messages"] = msgs.iter().map(StoredMessage::to_json).collect();
            response::json(StatusCode::OK, &v)
        }
        Ok(None) => not_found(),
        Err(e) => store_failed(e),
    }
}

#[derive(serde::Deserialize)]
struct Rename {
    title: String,
}

/// `PATCH /api/conversations/{id}` with `{"title": "..."}`: renames it.
pub(crate) async fn patch(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
    id: &str,
) -> Resp {
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rename: Rename = match response::parse_json(&body) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let title = rename.title.trim().to_string();
    if title.is_empty() || title.chars().count() > 200 || title.chars().any(char::is_control) {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_title",
            "A title is 1 to 200 characters without line breaks.",
        );
    }
    let uid = user.id;
    let id = id.to_string();
    let result = app
        .store
        .call(move |c| {
            let n = c.execute(
                "UPDATE conversations SET title = ?1 WHERE id = ?2 AND user_id = ?3",
                params![title, id, uid],
            )?;
            if n == 0 {
                return Ok(None);
            }
            find(c, uid, &id)
        })
        .await;
    match result {
        Ok(Some(conv)) => response::json(StatusCode::OK, &conv.to_json()),
        Ok(None) => not_found(),
        Err(e) => store_failed(e),
    }
}

/// How long deleting a conversation waits for Hermes to delete its sessions, in all.
const HERMES_DELETE_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of Hermes' own copy of a deleted conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HermesCopy {
    Deleted,
    NotFound,
    NotDeleted,
}

impl HermesCopy {
    fn as_str(self) -> &'static str {
        match self {
            HermesCopy::Deleted => "deleted",
            HermesCopy::NotFound => "not_found",
            HermesCopy::NotDeleted => "not_deleted",
        }
    }
}

/// True for a session id that can go into a path on Hermes as it is: `web-<uuid>`, `api-<hex>`.
pub(crate) fn is_plain_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `DELETE /api/conversations/{id}`: deletes it with its messages and the attached files no
/// other conversation names (`attachments`), then asks Hermes to delete its own copy (the session `web-<id>` and any session Hermes derived for a branch turn).
///
/// The edge's delete never depends on Hermes: the answer is `200`
/// `{"deleted": true, "hermes_session": "deleted" | "not_found" | "not_deleted"}`, with a
/// `message` when Hermes' copy could not be deleted.
pub(crate) async fn delete(app: &App, ctx: &Ctx, user: &User, id: &str) -> Resp {
    // An answer being written into it stops (in Hermes too).
    if let Some(run) = app.runs.get(id).filter(|r| r.user_id == user.id) {
        run.stop.notify_one();
    }
    let uid = user.id;
    let id = id.to_string();
    let result = app
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            let Some(conv) = find(&tx, uid, &id)? else {
                return Ok(None);
            };
            let mut sessions = vec![format!("web-{}", conv.id)];
            {
                let mut st = tx.prepare(
                    "SELECT session_id FROM hermes_sessions WHERE conversation_id = ?1
                     ORDER BY session_id",
                )?;
                for s in st.query_map(params![conv.id], |r| r.get::<_, String>(0))? {
                    let s = s?;
                    if !sessions.contains(&s) {
                        sessions.push(s);
                    }
                }
            }
            let mut files = Vec::new();
            {
                let mut st = tx.prepare(
                    "SELECT content FROM messages WHERE conversation_id = ?1 AND role = 'user'
                     AND instr(content, ?2) > 0",
                )?;
                let notes = st
                    .query_map(params![conv.id, super::attachments::NOTE_PREFIX], |r| {
                        r.get::<_, String>(0)
                    })?;
                for content in notes {
                    files.extend(super::attachments::noted_files(&content?, uid));
                }
            }
            tx.execute(
                "DELETE FROM conversations WHERE id = ?1 AND user_id = ?2",
                params![conv.id, uid],
            )?;
            tx.commit()?;
            Ok(Some((sessions, files)))
        })
        .await;
    let sessions = match result {
        Ok(Some((s, files))) => {
            super::attachments::remove_unreferenced(app, uid, files).await;
            s
        }
        Ok(None) => return not_found(),
        Err(e) => return store_failed(e),
    };
    let work = delete_in_hermes(app, ctx, user, &sessions);
    let (copy, problem) = match tokio::time::timeout(HERMES_DELETE_TIMEOUT, work).await {
        Ok(done) => done,
        Err(_) => {
            tracing::warn!(
                user = %user.username,
                sessions = %sessions.join(","),
                "Hermes did not delete the conversation's sessions within {} seconds",
                HERMES_DELETE_TIMEOUT.as_secs()
            );
            (
                HermesCopy::NotDeleted,
                Some(format!(
                    "Hermes did not answer within {} seconds",
                    HERMES_DELETE_TIMEOUT.as_secs()
                )),
            )
        }
    };
    let mut body = serde_json::json!({"deleted": true, "hermes_session": copy.as_str()});
    if let Some(problem) = problem {
        body["message"] = serde_json::Value::String(format!(
            "The conversation was deleted here, but Hermes still keeps its copy ({}): {problem}",
            sessions.join(", ")
        ));
    }
    response::json(StatusCode::OK, &body)
}

/// The JSON body of a small answer. No timer of its own: the caller's time limit for the whole
/// delete governs (a second, equal timer here raced it and could turn "no answer" into "deleted").
async fn whole_json(resp: http::Response<crate::hermes::UpBody>) -> Option<serde_json::Value> {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .ok()?;
    serde_json::from_slice(&body.to_bytes()).ok()
}

/// Deletes `sessions` in Hermes one after the other; a `404` is fine (never created, or gone).
/// Returns the overall outcome and, when one could not be deleted, why.
async fn delete_in_hermes(
    app: &App,
    ctx: &Ctx,
    user: &User,
    sessions: &[String],
) -> (HermesCopy, Option<String>) {
    let mut any_deleted = false;
    for session in sessions {
        if !is_plain_session_id(session) {
            continue;
        }
        let out = Outgoing::new(Method::DELETE, format!("/api/sessions/{session}"), ctx);
        let problem = match crate::hermes::exchange(&app.hermes(), &out).await {
            // Hermes' own 404 (the session was never created, or is gone already) is fine; a
            // 404 without its code means this Hermes has no such route.
            Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                let body = whole_json(resp).await;
                let code = body.as_ref().and_then(|v| v.pointer("/error/code"));
                if code.and_then(|c| c.as_str()) == Some("session_not_found") {
                    None
                } else {
                    Some(UpstreamError::Failed(
                        "404: this Hermes API Server has no DELETE /api/sessions/{id} (Hermes 0.19 has it)"
                            .into(),
                    ))
                }
            }
            // `{"object":"hermes.session.deleted","id":...,"deleted":false}` means it went
            // meanwhile.
            Ok(resp) if resp.status().is_success() => match whole_json(resp).await {
                Some(body) => {
                    if body.get("deleted") != Some(&serde_json::Value::Bool(false)) {
                        any_deleted = true;
                    }
                    None
                }
                None => Some(UpstreamError::Failed(
                    "its 200 answer was cut short or not the JSON Hermes sends".into(),
                )),
            },
            Ok(resp) => Some(UpstreamError::Failed(format!(
                "{} {}",
                resp.status().as_u16(),
                crate::hermes::error_detail(resp).await
            ))),
            Err(e) => Some(e),
        };
        if let Some(e) = problem {
            tracing::warn!(
                user = %user.username,
                session = %session,
                code = e.code(),
                "Hermes could not delete the session of a deleted conversation: {e}"
            );
            return (HermesCopy::NotDeleted, Some(e.to_string()));
        }
    }
    if any_deleted {
        (HermesCopy::Deleted, None)
    } else {
        (HermesCopy::NotFound, None)
    }
}

#[cfg(test)]
mod tests {
    use super::is_plain_session_id;

    #[test]
    fn only_plain_session_ids_go_into_a_hermes_path() {
        assert!(is_plain_session_id(
            "web-0f8fad5b-d9cb-469f-a165-70867728950e"
        ));
        assert!(is_plain_session_id("api-0123456789abcdef"));
        for bad in [
            "",
            "api-..%2Fetc",
            "a/b",
            "web-x?y",
            "web x",
            &"a".repeat(257),
        ] {
            assert!(!is_plain_session_id(bad), "{bad}");
        }
    }
}
