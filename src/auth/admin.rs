//! Account administration over JSON: admins list, create and remove accounts, see and revoke
//! anyone's sessions and read the sign-in audit; every user sees and revokes their own sessions.
//!
//! A session is named by a short public handle ([`super::session_id`]), never by its token, so
//! these lists can be shown without handing out anything that signs in.

use http::{HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::params;

use super::users::{self, Role, User, UserError};
use super::{session_cookie, session_id, token_hash};
use crate::app::{App, Ctx};
use crate::body::read_body;
use crate::response::{self, Resp};
use crate::store::{now, rfc3339, StoreError};

/// `403` for a signed-in `user` on an `/api/admin/` route.
pub(crate) fn admin_only() -> Resp {
    response::error(
        StatusCode::FORBIDDEN,
        "admin_only",
        "Only an administrator can do this.",
    )
}

fn store_failed(e: StoreError) -> Resp {
    tracing::error!("account administration failed: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The account database is unavailable right now; try again shortly.",
    )
}

fn no_such_user(name: &str) -> Resp {
    response::error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("There is no account named `{name}`."),
    )
}

fn no_such_session() -> Resp {
    response::error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is no such session (it may have expired or been revoked already).",
    )
}

/// The value of `name` in the request's query string.
fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A path segment as the client meant it (`%40` is `@`).
pub(crate) fn decode_segment(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

fn user_json(user: &User, created_at: i64) -> serde_json::Value {
    serde_json::json!({
        "username": user.username,
        "role": user.role,
        "created_at": rfc3339(created_at),
    })
}

#[derive(serde::Deserialize)]
struct NewUser {
    username: String,
    password: String,
    #[serde(default)]
    role: Option<String>,
}

/// `POST /api/admin/users` with `{"username","password","role":"user"|"admin"}`: `201` and the
/// account; `400` for a bad name, role or password, `409` when the name is taken.
pub(crate) async fn create_user(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let body = match read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(new) = serde_json::from_slice::<NewUser>(&body) else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "Send JSON with `username`, `password` and optionally `role` (`user` or `admin`).",
        );
    };
    let role_text = new.role.as_deref().unwrap_or("user");
    let Some(role) = Role::parse(role_text) else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_role",
            &format!("`{role_text}` is not a role; use `user` or `admin`."),
        );
    };
    let store = app.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        users::create_user(&store, &new.username, &new.password, role)
    })
    .await;
    match result {
        Ok(Ok(user)) => {
            tracing::info!(user = %user.username, role = role.as_str(), "account created");
            response::json(StatusCode::CREATED, &user_json(&user, now()))
        }
        Ok(Err(e @ UserError::BadName(_))) => {
            response::error(StatusCode::BAD_REQUEST, "bad_username", &e.to_string())
        }
        Ok(Err(e @ UserError::WeakPassword)) => {
            response::error(StatusCode::BAD_REQUEST, "weak_password", &e.to_string())
        }
        Ok(Err(e @ UserError::Exists(_))) => {
            response::error(StatusCode::CONFLICT, "user_exists", &e.to_string())
        }
        Ok(Err(UserError::Store(e))) => store_failed(e),
        Ok(Err(e)) => store_failed(StoreError::Task(e.to_string())),
        Err(e) => store_failed(StoreError::Task(e.to_string())),
    }
}

/// `DELETE /api/admin/users/{name}`: `204`; the account's sessions and API tokens go with it, at
/// once. The last admin cannot be removed this way (`409 last_admin`), so the site always keeps
/// someone who can manage it.
pub(crate) async fn remove_user(app: &App, segment: &str) -> Resp {
    let name = decode_segment(segment);
    let store = app.store.clone();
    let lookup = name.clone();
    let result = tokio::task::spawn_blocking(move || users::remove_user(&store, &lookup)).await;
    match result {
        Ok(Ok(id)) => {
            // Its tokens went with it in the database; the ones checked recently must not go on
            // working from the cache.
            app.tokens.forget_user(id);
            tracing::info!(user = %name, "account removed");
            response::no_content()
        }
        Ok(Err(UserError::Unknown(_))) => no_such_user(&name),
        Ok(Err(UserError::LastAdmin(_))) => response::error(
            StatusCode::CONFLICT,
            "last_admin",
            "This is the only administrator; make another account an administrator first.",
        ),
        Ok(Err(UserError::Store(e))) => store_failed(e),
        Ok(Err(e)) => store_failed(StoreError::Task(e.to_string())),
        Err(e) => store_failed(StoreError::Task(e.to_string())),
    }
}

#[derive(Debug)]
struct SessionRow {
    hash: Vec<u8>,
    username: String,
    created_at: i64,
    last_seen: i64,
    expires_at: i64,
    ip: String,
    user_agent: String,
}

/// Unexpired sessions, newest first; of one user when `user_id` is given.
async fn sessions(app: &App, user_id: Option<i64>) -> Result<Vec<SessionRow>, StoreError> {
    app.store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT s.token_hash, u.username, s.created_at, s.last_seen, s.expires_at, s.ip, s.user_agent
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.expires_at > ?1 AND (?2 IS NULL OR s.user_id = ?2)
                 ORDER BY s.created_at DESC, s.rowid DESC",
            )?;
            let rows = st.query_map(params![now(), user_id], |r| {
                Ok(SessionRow {
                    hash: r.get(0)?,
                    username: r.get(1)?,
                    created_at: r.get(2)?,
                    last_seen: r.get(3)?,
                    expires_at: r.get(4)?,
                    ip: r.get(5)?,
                    user_agent: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
}

fn sessions_json(rows: &[SessionRow], headers: &HeaderMap) -> Resp {
    let current = session_cookie(headers).map(|t| token_hash(&t));
    let list: Vec<_> = rows
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": session_id(&s.hash),
                "username": s.username,
                "created_at": rfc3339(s.created_at),
                "last_seen": rfc3339(s.last_seen),
                "expires_at": rfc3339(s.expires_at),
                "ip": s.ip,
                "user_agent": s.user_agent,
                "current": current.as_deref() == Some(&s.hash[..]),
            })
        })
        .collect();
    response::json(StatusCode::OK, &serde_json::json!({ "sessions": list }))
}

/// `GET /api/admin/sessions[?user=NAME]`: every live session, or one account's.
pub(crate) async fn list_sessions(app: &App, req: &Request<Incoming>) -> Resp {
    let user_id = match query_param(req, "user") {
        None => None,
        Some(name) => {
            let lookup = name.clone();
            let found = app
                .store
                .call(move |c| users::find_for_login(c, &lookup))
                .await;
            match found {
                Ok(Some((u, _))) => Some(u.id),
                Ok(None) => return no_such_user(&name),
                Err(e) => return store_failed(e),
            }
        }
    };
    match sessions(app, user_id).await {
        Ok(rows) => sessions_json(&rows, req.headers()),
        Err(e) => store_failed(e),
    }
}

/// `GET /api/sessions`: the signed-in user's own sessions (`current` marks this one).
pub(crate) async fn own_sessions(app: &App, req: &Request<Incoming>, user: &User) -> Resp {
    match sessions(app, Some(user.id)).await {
        Ok(rows) => sessions_json(&rows, req.headers()),
        Err(e) => store_failed(e),
    }
}

/// Deletes the session with this handle (of `user_id` only, when given). `true` if one went.
async fn revoke(app: &App, id: &str, user_id: Option<i64>) -> Result<bool, StoreError> {
    if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(false);
    }
    let prefix = id.to_ascii_uppercase();
    app.store
        .call(move |c| {
            let n = c.execute(
                "DELETE FROM sessions WHERE substr(hex(token_hash), 1, 16) = ?1
                 AND (?2 IS NULL OR user_id = ?2)",
                params![prefix, user_id],
            )?;
            Ok(n > 0)
        })
        .await
}

/// `DELETE /api/admin/sessions/{id}`: revokes anyone's session; `204` or `404`.
pub(crate) async fn revoke_session(app: &App, id: &str) -> Resp {
    match revoke(app, id, None).await {
        Ok(true) => {
            tracing::info!(session = %id, "session revoked by an administrator");
            response::no_content()
        }
        Ok(false) => no_such_session(),
        Err(e) => store_failed(e),
    }
}

/// `DELETE /api/sessions/{id}`: revokes one of the user's own sessions; another user's session
/// answers `404` like a missing one, so handles cannot be probed.
pub(crate) async fn revoke_own_session(app: &App, user: &User, id: &str) -> Resp {
    match revoke(app, id, Some(user.id)).await {
        Ok(true) => response::no_content(),
        Ok(false) => no_such_session(),
        Err(e) => store_failed(e),
    }
}

/// `GET /api/admin/audit`: sign-in attempts, newest first
/// (`{"entries":[{"id","at","username","ip","success","method","detail"}],"more"}`). Filters, all
/// optional: `user` (exact name, any case), `success` (`true`/`false`), `method`, `from` and `to`
/// (Unix seconds, `to` exclusive); paging: `limit` (1 to 1000, default 100) and `before` (the
/// `id` of the last entry seen: the page after it). `more` says whether older entries match.
pub(crate) async fn audit(app: &App, req: &Request<Incoming>) -> Resp {
    let bad = |what: &str| response::error(StatusCode::BAD_REQUEST, "bad_filter", what);
    let limit = match query_param(req, "limit") {
        None => 100,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return response::error(
                    StatusCode::BAD_REQUEST,
                    "bad_limit",
                    "`limit` must be a whole number from 1 to 1000.",
                )
            }
        },
    };
    // An error answer, sent once per request: no hot path to keep small.
    #[allow(clippy::result_large_err)]
    let number = |name: &str| -> Result<Option<i64>, Resp> {
        match query_param(req, name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                bad(&format!(
                    "`{name}` must be a whole number (Unix seconds, or an entry id for `before`)."
                ))
            }),
        }
    };
    let (from, to, before) = match (number("from"), number("to"), number("before")) {
        (Ok(f), Ok(t), Ok(b)) => (f, t, b),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r,
    };
    let success = match query_param(req, "success").as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return bad("`success` must be `true` or `false`."),
    };
    let user = query_param(req, "user").filter(|v| !v.is_empty());
    let method = query_param(req, "method").filter(|v| !v.is_empty());
    let rows = app
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT id, at, username, ip, success, method, detail FROM login_audit
                 WHERE (?2 IS NULL OR username = ?2 COLLATE NOCASE)
                   AND (?3 IS NULL OR success = ?3)
                   AND (?4 IS NULL OR method = ?4)
                   AND (?5 IS NULL OR at >= ?5)
                   AND (?6 IS NULL OR at < ?6)
                   AND (?7 IS NULL OR id < ?7)
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = st.query_map(
                params![limit + 1, user, success, method, from, to, before],
                |r| {
                    Ok(serde_json::json!({
                        "id": r.get::<_, i64>(0)?,
                        "at": rfc3339(r.get(1)?),
                        "username": r.get::<_, String>(2)?,
                        "ip": r.get::<_, String>(3)?,
                        "success": r.get::<_, i64>(4)? != 0,
                        "method": r.get::<_, String>(5)?,
                        "detail": r.get::<_, String>(6)?,
                    }))
                },
            )?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await;
    match rows {
        Ok(mut entries) => {
            let more = entries.len() > limit as usize;
            entries.truncate(limit as usize);
            response::json(
                StatusCode::OK,
                &serde_json::json!({ "entries": entries, "more": more }),
            )
        }
        Err(e) => store_failed(e),
    }
}
