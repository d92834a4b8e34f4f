//! Personal API tokens: a user's key for `https://host/v1/...` from any OpenAI-compatible client.
//!
//! A token is `hek_` plus 256 random bits; it is shown once when created and the database keeps
//! only its SHA-256, like session tokens. Tokens act as their user (same rate limit, same
//! session scoping), never as the edge's Hermes API key, which stays on the server.

use http::{header, HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension};

use crate::app::{App, Ctx};
use crate::auth::{self, User};
use crate::response::{self, Resp};
use crate::store::{now_ms, rfc3339_ms, Store, StoreError};

pub(crate) const PREFIX: &str = "hek_";
const MAX_TOKENS_PER_USER: i64 = 50;

/// A token as listed (never the secret itself).
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

impl TokenInfo {
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": rfc3339_ms(self.created_at),
            "last_used_at": self.last_used_at.map(rfc3339_ms),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("no user named `{0}`")]
    UnknownUser(String),
    #[error("a token name is 1 to 64 characters without line breaks")]
    BadName,
    #[error("this account already has {MAX_TOKENS_PER_USER} tokens; delete one first")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 64 && !name.chars().any(char::is_control)
}

/// Creates a token for `user_id`; returns the secret (to show once) and its listing.
pub(crate) fn create(
    c: &rusqlite::Connection,
    user_id: i64,
    name: &str,
) -> Result<Result<(String, TokenInfo), TokenError>, rusqlite::Error> {
    let name = name.trim();
    if !valid_name(name) {
        return Ok(Err(TokenError::BadName));
    }
    let count: i64 = c.query_row(
        "SELECT COUNT(*) FROM api_tokens WHERE user_id = ?1",
        params![user_id],
        |r| r.get(0),
    )?;
    if count >= MAX_TOKENS_PER_USER {
        return Ok(Err(TokenError::TooMany));
    }
    let secret = format!("{PREFIX}{}", auth::new_token());
    let prefix: String = secret.chars().take(12).collect();
    let now = now_ms();
    c.execute(
        "INSERT INTO api_tokens (user_id, name, token_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![user_id, name, auth::token_hash(&secret), prefix, now],
    )?;
    Ok(Ok((
        secret,
        TokenInfo {
            id: c.last_insert_rowid(),
            name: name.to_string(),
            prefix,
            created_at: now,
            last_used_at: None,
        },
    )))
}

pub(crate) fn list_for(
    c: &rusqlite::Connection,
    user_id: i64,
) -> Result<Vec<TokenInfo>, rusqlite::Error> {
    let mut st = c.prepare(
        "SELECT id, name, prefix, created_at, last_used_at FROM api_tokens WHERE user_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map(params![user_id], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            prefix: r.get(2)?,
            created_at: r.get(3)?,
            last_used_at: r.get(4)?,
        })
    })?;
    rows.collect()
}

fn user_id_by_name(c: &rusqlite::Connection, name: &str) -> Result<Option<i64>, rusqlite::Error> {
    c.query_row(
        "SELECT id FROM users WHERE username = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()
}

/// `hermes-edge token create --user NAME [--name LABEL]`: the secret, to print once.
pub(crate) fn cli_create(store: &Store, username: &str, name: &str) -> Result<String, TokenError> {
    store.call_blocking(|c| {
        let Some(uid) = user_id_by_name(c, username)? else {
            return Ok(Err(TokenError::UnknownUser(username.to_string())));
        };
        Ok(create(c, uid, name)?.map(|(secret, _)| secret))
    })?
}

/// `hermes-edge token list --user NAME`.
pub(crate) fn cli_list(store: &Store, username: &str) -> Result<Vec<TokenInfo>, TokenError> {
    store.call_blocking(|c| {
        let Some(uid) = user_id_by_name(c, username)? else {
            return Ok(Err(TokenError::UnknownUser(username.to_string())));
        };
        Ok(Ok(list_for(c, uid)?))
    })?
}

/// `hermes-edge token revoke --user NAME ID`: true when a token was deleted.
pub(crate) fn cli_revoke(store: &Store, username: &str, id: i64) -> Result<bool, TokenError> {
    store.call_blocking(|c| {
        let Some(uid) = user_id_by_name(c, username)? else {
            return Ok(Err(TokenError::UnknownUser(username.to_string())));
        };
        let n = c.execute(
            "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
            params![id, uid],
        )?;
        Ok(Ok(n > 0))
    })?
}

/// The user of `Authorization: Bearer hek_...`, if the token is valid.
pub(crate) async fn authenticate(app: &App, headers: &HeaderMap) -> Option<User> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    if !token.starts_with(PREFIX) || token.len() > 128 {
        return None;
    }
    let key = auth::token_digest(token);
    if let Some(user) = app.tokens.get(&key) {
        return Some(user);
    }
    let hash = key.to_vec();
    let generation = app.tokens.generation();
    let result = app
        .store
        .call(move |c| {
            let found = c
                .query_row(
                    "SELECT u.id, u.username, u.role, u.scope, t.id, t.last_used_at FROM api_tokens t
                     JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1",
                    params![hash],
                    |r| {
                        Ok((
                            User::from_row(r, 0)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                        ))
                    },
                )
                .optional()?;
            if let Some((_, id, last)) = &found {
                let now = now_ms();
                if last.is_none_or(|l| now - l > 60_000) {
                    c.execute(
                        "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                        params![now, id],
                    )?;
                }
            }
            Ok(found.map(|(u, id, _)| (u, id)))
        })
        .await;
    match result {
        Ok(Some((user, id))) => {
            app.tokens.put(key, user.clone(), id, generation);
            Some(user)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!("token lookup failed: {e}");
            None
        }
    }
}

/// `GET /api/tokens`: `{"tokens":[{"id","name","prefix","created_at","last_used_at"}]}`.
pub(crate) async fn list(app: &App, user: &User) -> Resp {
    let uid = user.id;
    match app.store.call(move |c| list_for(c, uid)).await {
        Ok(tokens) => response::json(
            StatusCode::OK,
            &serde_json::json!({"tokens": tokens.iter().map(TokenInfo::to_json).collect::<Vec<_>>()}),
        ),
        Err(e) => store_failed(e),
    }
}

#[derive(serde::Deserialize)]
struct NewToken {
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/tokens` with `{"name": "..."}`: `201` with the listing plus `"token"` (shown once).
pub(crate) async fn post(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let new: NewToken = if body.is_empty() {
        NewToken { name: None }
    } else {
        match response::parse_json(&body) {
            Ok(n) => n,
            Err(r) => return r,
        }
    };
    let name = new.name.unwrap_or_else(|| "API token".into());
    let uid = user.id;
    match app.store.call(move |c| create(c, uid, &name)).await {
        Ok(Ok((secret, info))) => {
            let mut v = info.to_json();
            v["token"] = serde_json::Value::String(secret);
            let mut r = response::json(StatusCode::CREATED, &v);
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Ok(Err(e)) => response::error(StatusCode::BAD_REQUEST, "bad_token_request", &e.to_string()),
        Err(e) => store_failed(e),
    }
}

/// `DELETE /api/tokens/{id}`: `204`, or `404` for a token that is not the user's.
pub(crate) async fn delete(app: &App, user: &User, id: &str) -> Resp {
    let Ok(id) = id.parse::<i64>() else {
        return response::not_found();
    };
    let uid = user.id;
    match app
        .store
        .call(move |c| {
            c.execute(
                "DELETE FROM api_tokens WHERE id = ?1 AND user_id = ?2",
                params![id, uid],
            )
        })
        .await
    {
        Ok(0) => response::not_found(),
        Ok(_) => {
            app.tokens.forget(id);
            let mut r = response::with_body(StatusCode::NO_CONTENT, "application/json", "");
            *r.body_mut() = response::empty();
            r.headers_mut().remove(header::CONTENT_TYPE);
            r
        }
        Err(e) => store_failed(e),
    }
}

fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!("token store: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The token store is unavailable right now; try again shortly.",
    )
}
