//! What the admin page does to accounts besides adding and removing them: the full list (role,
//! second factors, single sign-on, last sign-in), invitations, role changes, password and
//! second-factor resets. Each calls the same function as the command line (`hermes-edge user
//! role|passwd|2fa reset`), so the page and the CLI have the same effects.

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::params;

use super::users::{self, Role, UserError};
use super::{invites, second_factor};
use crate::app::{App, Ctx};
use crate::body::read_body;
use crate::response::{self, Resp};
use crate::store::{rfc3339, StoreError};

fn failed(e: UserError) -> Resp {
    match e {
        UserError::BadName(_) => {
            response::error(StatusCode::BAD_REQUEST, "bad_username", &e.to_string())
        }
        UserError::WeakPassword => {
            response::error(StatusCode::BAD_REQUEST, "weak_password", &e.to_string())
        }
        UserError::Exists(_) => {
            response::error(StatusCode::CONFLICT, "user_exists", &e.to_string())
        }
        UserError::Unknown(name) => response::error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("There is no account named `{name}`."),
        ),
        UserError::LastAdmin(_) => response::error(
            StatusCode::CONFLICT,
            "last_admin",
            "This is the only administrator; make another account an administrator first.",
        ),
        UserError::Store(e) => store_failed(e),
        UserError::Hash(e) => store_failed(StoreError::Task(e)),
    }
}

fn store_failed(e: StoreError) -> Resp {
    tracing::error!("account administration failed: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The account database is unavailable right now; try again shortly.",
    )
}

/// Runs a blocking account function off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UserError> + Send + 'static,
) -> Result<T, UserError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(UserError::Store(StoreError::Task(e.to_string()))))
}

fn no_store(mut resp: Resp) -> Resp {
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

/// `GET /api/admin/users`: every account by name, with `role`, `created_at`, `has_password`,
/// `totp`, `passkeys` (how many), `sso` (linked providers), `pending_link` (an unused invitation
/// or reset link) and `last_sign_in` (`null` when never).
pub(crate) async fn list(app: &App) -> Resp {
    let rows = app
        .store
        .call(|c| {
            let mut st = c.prepare(
                "SELECT u.username, u.role, u.created_at, u.password_hash,
                   EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL),
                   (SELECT COUNT(*) FROM passkeys p WHERE p.user_id = u.id),
                   (SELECT group_concat(provider, ', ') FROM oidc_links o WHERE o.user_id = u.id),
                   EXISTS (SELECT 1 FROM password_links l WHERE l.user_id = u.id
                           AND l.used_at IS NULL AND l.expires_at > ?1),
                   (SELECT MAX(at) FROM login_audit a WHERE a.user_id = u.id AND a.success = 1)
                 FROM users u ORDER BY u.username",
            )?;
            let rows = st.query_map(params![crate::store::now()], |r| {
                let hash: String = r.get(3)?;
                Ok(serde_json::json!({
                    "username": r.get::<_, String>(0)?,
                    "role": r.get::<_, String>(1)?,
                    "created_at": rfc3339(r.get(2)?),
                    "has_password": users::has_password(&hash),
                    "totp": r.get::<_, bool>(4)?,
                    "passkeys": r.get::<_, i64>(5)?,
                    "sso": r.get::<_, Option<String>>(6)?,
                    "pending_link": r.get::<_, bool>(7)?,
                    "last_sign_in": r.get::<_, Option<i64>>(8)?.map(rfc3339),
                }))
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await;
    match rows {
        Ok(list) => response::json(StatusCode::OK, &serde_json::json!({ "users": list })),
        Err(e) => store_failed(e),
    }
}

#[derive(serde::Deserialize)]
struct InviteBody {
    username: String,
    #[serde(default)]
    role: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct ActionBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    link: bool,
}

// An error answer, sent once per request: no hot path to keep small.
#[allow(clippy::result_large_err)]
fn parse_role(text: Option<&str>) -> Result<Role, Resp> {
    let text = text.unwrap_or("user");
    Role::parse(text).ok_or_else(|| {
        response::error(
            StatusCode::BAD_REQUEST,
            "bad_role",
            &format!("`{text}` is not a role; use `user` or `admin`."),
        )
    })
}

async fn body<T: serde::de::DeserializeOwned>(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<T, Resp> {
    let bytes = read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES).await?;
    response::parse_json::<T>(&bytes)
}

fn link_json(username: &str, url: String, expires_at: i64) -> Resp {
    no_store(response::json(
        StatusCode::OK,
        &serde_json::json!({"username": username, "url": url, "expires_at": rfc3339(expires_at)}),
    ))
}

/// `POST /api/admin/invites` `{"username","role"}`: a new account without a password and a
/// one-time link to set one, `201` `{"username","url","expires_at"}` (the link is shown once).
pub(crate) async fn invite(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let url_of = |token: &str| invites::url(&req, token);
    let base = url_of("");
    let b: InviteBody = match body(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let role = match parse_role(b.role.as_deref()) {
        Ok(r) => r,
        Err(r) => return r,
    };
    let store = app.store.clone();
    let name = b.username.clone();
    match blocking(move || invites::invite(&store, &name, role)).await {
        Ok(link) => {
            tracing::info!(user = %b.username, role = role.as_str(), "account invited");
            let mut resp = link_json(&b.username, base + &link.token, link.expires_at);
            *resp.status_mut() = StatusCode::CREATED;
            resp
        }
        Err(e) => failed(e),
    }
}

/// `POST /api/admin/users/{name}/{action}`: `role` `{"role"}`; `password` `{"password"}` or
/// `{"link":true}`; `2fa/reset`.
pub(crate) async fn action(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    name: String,
    action: &str,
) -> Resp {
    let base = invites::url(&req, "");
    let store = app.store.clone();
    match action {
        "role" => {
            let b: ActionBody = match body(app, ctx, req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(role_text) = b.role else {
                return response::error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "Send JSON with `role` (`user` or `admin`).",
                );
            };
            let role = match parse_role(Some(&role_text)) {
                Ok(r) => r,
                Err(r) => return r,
            };
            let n = name.clone();
            match blocking(move || users::set_role(&store, &n, role)).await {
                Ok(()) => {
                    tracing::info!(user = %name, role = role.as_str(), "role changed");
                    response::json(
                        StatusCode::OK,
                        &serde_json::json!({"username": name, "role": role}),
                    )
                }
                Err(e) => failed(e),
            }
        }
        "password" => {
            let b: ActionBody = match body(app, ctx, req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let n = name.clone();
            let done = match (b.password, b.link) {
                (Some(password), false) => blocking(move || {
                    users::set_password(&store, &n, &password)
                })
                .await
                .map(|tokens| {
                    response::json(
                        StatusCode::OK,
                        &serde_json::json!({"username": name.clone(), "tokens_revoked": tokens}),
                    )
                }),
                (None, true) => blocking(move || invites::reset_link(&store, &n))
                    .await
                    .map(|link| link_json(&name, base + &link.token, link.expires_at)),
                _ => return response::error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "Send JSON with either a new `password` or `\"link\": true` for a reset link.",
                ),
            };
            match done {
                Ok(resp) => {
                    forget_tokens(app, &name).await;
                    tracing::info!(user = %name, "password reset by an administrator");
                    resp
                }
                Err(e) => failed(e),
            }
        }
        "2fa/reset" => {
            let lookup = name.clone();
            let found = app
                .store
                .call(move |c| users::find_for_login(c, &lookup))
                .await;
            let id = match found {
                Ok(Some((u, _))) => u.id,
                Ok(None) => return failed(UserError::Unknown(name)),
                Err(e) => return store_failed(e),
            };
            match app
                .store
                .call(move |c| second_factor::remove_all(c, id, true))
                .await
            {
                Ok(had) => {
                    tracing::info!(user = %name, "second factor reset by an administrator");
                    response::json(
                        StatusCode::OK,
                        &serde_json::json!({"username": name, "had_totp": had}),
                    )
                }
                Err(e) => store_failed(e),
            }
        }
        _ => response::not_found(),
    }
}

/// The account's API tokens were revoked in the database; the ones checked recently must not go
/// on working from the cache.
async fn forget_tokens(app: &App, name: &str) {
    let lookup = name.to_string();
    if let Ok(Some((u, _))) = app
        .store
        .call(move |c| users::find_for_login(c, &lookup))
        .await
    {
        app.tokens.forget_user(u.id);
    }
}
