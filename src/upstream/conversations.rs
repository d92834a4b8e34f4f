//! Stored chat history, per user: conversations and their messages (user text and images, the
//! final assistant text, tool steps, the error if an answer failed).
//!
//! Every query is scoped by the signed-in user's id, and another user's conversation answers
//! `404` exactly like a missing one, so ids cannot be probed.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension, Transaction};

use super::relay::ToolStep;
use crate::app::App;
use crate::auth::User;
use crate::response::{self, Resp};
use crate::store::{now_ms, rfc3339_ms};

/// One stored message.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub index: i64,
    pub role: String,
    pub content: String,
    pub images: Vec<String>,
    pub tool_steps: Vec<ToolStep>,
    pub error: Option<serde_json::Value>,
    pub created_at: i64,
}

impl StoredMessage {
    fn to_json(&self) -> serde_json::Value {
        let steps: Vec<serde_json::Value> = self
            .tool_steps
            .iter()
            .map(|t| {
                serde_json::json!({"tool": t.tool, "emoji": t.emoji, "label": t.label, "status": t.status})
            })
            .collect();
        serde_json::json!({
            "index": self.index,
            "role": self.role,
            "content": self.content,
            "images": self.images,
            "tool_steps": steps,
            "error": self.error,
            "created_at": rfc3339_ms(self.created_at),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Summary {
    pub id: String,
    pub title: String,
    pub hermes_session: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Summary {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "title": self.title,
            "created_at": rfc3339_ms(self.created_at),
            "updated_at": rfc3339_ms(self.updated_at),
        })
    }
}

/// The conversation `id` if it belongs to `user_id`.
pub fn find(
    c: &rusqlite::Connection,
    user_id: i64,
    id: &str,
) -> Result<Option<Summary>, rusqlite::Error> {
    c.query_row(
        "SELECT id, title, hermes_session, created_at, updated_at FROM conversations
         WHERE id = ?1 AND user_id = ?2",
        params![id, user_id],
        |r| {
            Ok(Summary {
                id: r.get(0)?,
                title: r.get(1)?,
                hermes_session: r.get(2)?,
                created_at: r.get(3)?,
                updated_at: r.get(4)?,
            })
        },
    )
    .optional()
}

/// The messages of a conversation in order (the caller has checked the owner).
pub fn messages(
    c: &rusqlite::Connection,
    conversation: &str,
) -> Result<Vec<StoredMessage>, rusqlite::Error> {
    let mut st = c.prepare(
        "SELECT idx, role, content, images, tool_steps, error, created_at FROM messages
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
        })
    })?;
    rows.collect()
}

/// Inserts a message and returns its row id.
pub fn insert_message(
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

/// Fills in an assistant message when its answer has ended (completely or not).
pub async fn finish_message(
    store: crate::store::Store,
    row: i64,
    conversation: String,
    content: String,
    tool_steps: Vec<ToolStep>,
    error: Option<serde_json::Value>,
) {
    let steps = serde_json::to_string(&tool_steps).unwrap_or_else(|_| "[]".into());
    let error = error.map(|e| e.to_string());
    let result = store
        .call(move |c| {
            c.execute(
                "UPDATE messages SET content = ?1, tool_steps = ?2, error = ?3 WHERE id = ?4",
                params![content, steps, error, row],
            )?;
            c.execute(
                "UPDATE conversations SET updated_at = ?1 WHERE id = ?2",
                params![now_ms(), conversation],
            )?;
            Ok(())
        })
        .await;
    if let Err(e) = result {
        tracing::error!("cannot store the assistant's answer: {e}");
    }
}

fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!("conversation store: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The conversation store is unavailable right now; try again shortly.",
    )
}

fn not_found() -> Resp {
    response::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such conversation.",
    )
}

/// `GET /api/conversations`: the user's conversations, newest first.
pub async fn list(app: &App, user: &User) -> Resp {
    let uid = user.id;
    let result = app
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT id, title, hermes_session, created_at, updated_at FROM conversations
                 WHERE user_id = ?1 ORDER BY updated_at DESC, rowid DESC LIMIT 1000",
            )?;
            let rows = st.query_map(params![uid], |r| {
                Ok(Summary {
                    id: r.get(0)?,
                    title: r.get(1)?,
                    hermes_session: r.get(2)?,
                    created_at: r.get(3)?,
                    updated_at: r.get(4)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await;
    match result {
        Ok(list) => response::json(
            StatusCode::OK,
            &serde_json::json!({"conversations": list.iter().map(Summary::to_json).collect::<Vec<_>>()}),
        ),
        Err(e) => store_failed(e),
    }
}

/// `GET /api/conversations/{id}`: the conversation with its messages.
pub async fn get(app: &App, user: &User, id: &str) -> Resp {
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
pub async fn patch(app: &App, req: Request<Incoming>, user: &User, id: &str) -> Resp {
    let body = match crate::auth::read_body(req, 16 * 1024).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let rename: Rename = match super::parse_json(&body) {
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

/// `DELETE /api/conversations/{id}`: deletes it with its messages.
pub async fn delete(app: &App, user: &User, id: &str) -> Resp {
    let uid = user.id;
    let id = id.to_string();
    let result = app
        .store
        .call(move |c| {
            c.execute(
                "DELETE FROM conversations WHERE id = ?1 AND user_id = ?2",
                params![id, uid],
            )
        })
        .await;
    match result {
        Ok(0) => not_found(),
        Ok(_) => {
            let mut r = response::with_body(StatusCode::NO_CONTENT, "application/json", "");
            *r.body_mut() = response::empty();
            r.headers_mut().remove(http::header::CONTENT_TYPE);
            r
        }
        Err(e) => store_failed(e),
    }
}
