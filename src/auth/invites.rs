//! One-time password links: an administrator's invitation to a new account, or a password reset
//! of an existing one. The link carries a 256-bit random token; the database keeps only its
//! SHA-256 (`password_links`), so a copy of the database opens no account. A link works once,
//! for [`LINK_LIFETIME`], and a newer link of the same account (or any new password) voids it.
//!
//! `GET /invite/{token}` is the page where the person sets a password (`www/invite.html`, open to
//! anyone: the token is the credential); it asks `GET /api/invite/{token}` whom the link is for
//! and sends `POST /api/invite/{token}` `{"password"}`, which sets it with the same effects as
//! every password reset ([`users::replace_password`]). Then the person signs in as usual.

use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension};

use super::users::{self, Role, UserError};
use super::{new_token, token_hash};
use crate::app::{App, Ctx};
use crate::response::{self, Resp};
use crate::store::{now, rfc3339, Store};

/// How long a link works: long enough to reach someone over a weekend, short enough that a link
/// forgotten in a mailbox does not stay a way in.
pub(crate) const LINK_LIFETIME: Duration = Duration::from_secs(72 * 3600);

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Invite,
    Reset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Invite => "invite",
            Purpose::Reset => "reset",
        }
    }
}

/// A new link's token and when it stops working.
pub(crate) struct Link {
    pub token: String,
    pub expires_at: i64,
}

/// A new link for the account `user_id`, voiding its older unused ones.
fn issue(c: &mut rusqlite::Connection, user_id: i64, purpose: Purpose) -> rusqlite::Result<Link> {
    let token = new_token();
    let at = now();
    let expires_at = at + LINK_LIFETIME.as_secs() as i64;
    let tx = c.transaction()?;
    tx.execute(
        "DELETE FROM password_links WHERE user_id = ?1 AND used_at IS NULL",
        params![user_id],
    )?;
    tx.execute(
        "INSERT INTO password_links (token_hash, user_id, purpose, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            token_hash(&token),
            user_id,
            purpose.as_str(),
            at,
            expires_at
        ],
    )?;
    tx.commit()?;
    Ok(Link { token, expires_at })
}

/// Invites a new account: it is made without a password (nobody can sign in to it until the link
/// is used) and gets a link to set one.
pub(crate) fn invite(store: &Store, username: &str, role: Role) -> Result<Link, UserError> {
    let user = users::insert_user(store, username, users::NO_PASSWORD, role)?;
    Ok(store.call_blocking(|c| issue(c, user.id, Purpose::Invite))?)
}

/// Resets an account's password to a link: the old password stops working at once, the account
/// is signed out everywhere and its API tokens revoked (as with `hermes-edge user passwd`), and
/// the link sets the next password.
pub(crate) fn reset_link(store: &Store, username: &str) -> Result<Link, UserError> {
    users::reset_password_hash(store, username, users::NO_PASSWORD)?;
    let name = username.to_string();
    let id: Option<i64> = store.call_blocking(|c| {
        c.query_row(
            "SELECT id FROM users WHERE username = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()
    })?;
    let id = id.ok_or_else(|| UserError::Unknown(username.to_string()))?;
    Ok(store.call_blocking(|c| issue(c, id, Purpose::Reset))?)
}

/// What a token names.
enum State {
    Valid {
        user_id: i64,
        username: String,
        purpose: String,
        expires_at: i64,
    },
    Expired,
    Used,
    Unknown,
}

fn state(c: &rusqlite::Connection, token: &str) -> rusqlite::Result<State> {
    let found = c
        .query_row(
            "SELECT l.user_id, u.username, l.purpose, l.expires_at, l.used_at
             FROM password_links l JOIN users u ON u.id = l.user_id WHERE l.token_hash = ?1",
            params![token_hash(token)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            },
        )
        .optional()?;
    Ok(match found {
        None => State::Unknown,
        Some((_, _, _, _, Some(_))) => State::Used,
        Some((_, _, _, expires_at, None)) if expires_at <= now() => State::Expired,
        Some((user_id, username, purpose, expires_at, None)) => State::Valid {
            user_id,
            username,
            purpose,
            expires_at,
        },
    })
}

/// The answer for a link that does not work, saying why.
fn refused(s: &State) -> Resp {
    let (status, code, text) = match s {
        State::Expired => (
            StatusCode::GONE,
            "link_expired",
            "This link has expired. Ask your administrator for a new one.",
        ),
        State::Used => (
            StatusCode::GONE,
            "link_used",
            "This link has been used already: each link sets a password once. Sign in with the \
             password that was set, or ask your administrator for a new link.",
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "link_unknown",
            "This link is not valid (it may have been replaced by a newer one, or mistyped). Ask \
             your administrator for a new one.",
        ),
    };
    response::error(status, code, text)
}

fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!("password link lookup failed: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The account database is unavailable right now; try again shortly.",
    )
}

/// A token as it may appear in a path: 43 URL-safe base64 characters. Anything else is not
/// looked up.
fn plausible(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /api/invite/{token}`: `{"username","purpose","expires_at"}`, or why the link does not work.
pub(crate) async fn info(app: &App, token: &str) -> Resp {
    if !plausible(token) {
        return refused(&State::Unknown);
    }
    let token = token.to_string();
    match app.store.call(move |c| state(c, &token)).await {
        Ok(State::Valid {
            username,
            purpose,
            expires_at,
            ..
        }) => {
            let mut resp = response::json(
                StatusCode::OK,
                &serde_json::json!({
                    "username": username,
                    "purpose": purpose,
                    "expires_at": rfc3339(expires_at),
                }),
            );
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            resp
        }
        Ok(other) => refused(&other),
        Err(e) => store_failed(e),
    }
}

#[derive(serde::Deserialize)]
struct SetPassword {
    password: String,
}

/// `POST /api/invite/{token}` `{"password"}`: sets the account's password and uses the link up;
/// `204`. From this site's pages only, and counted against the per-address sign-in limit (a
/// token is not guessable, but trying costs the guesser like a password would).
pub(crate) async fn redeem(app: &App, ctx: &Ctx, req: Request<Incoming>, token: &str) -> Resp {
    if !super::same_origin(&req) {
        return response::error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "This request did not come from this site's own pages, so it was refused.",
        );
    }
    if let Err(secs) = app.login_ip_limit.check(&ctx.client_ip) {
        return response::too_many(
            secs,
            &format!("Too many attempts from this address. Try again in {secs} seconds."),
        );
    }
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body = match response::parse_json::<SetPassword>(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !plausible(token) {
        return refused(&State::Unknown);
    }
    if body.password.chars().count() < 8 {
        return response::error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            &UserError::WeakPassword.to_string(),
        );
    }
    let hash = match tokio::task::spawn_blocking(move || users::hash_password(&body.password)).await
    {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return store_failed(e),
        Err(e) => return store_failed(e),
    };
    let token = token.to_string();
    let done = app
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            let s = state(&tx, &token)?;
            let State::Valid {
                user_id, username, ..
            } = s
            else {
                return Ok(Err(s));
            };
            // Used up in the same transaction that sets the password: a second use finds it used.
            tx.execute(
                "UPDATE password_links SET used_at = ?1 WHERE token_hash = ?2",
                params![now(), token_hash(&token)],
            )?;
            users::replace_password(&tx, user_id, &hash)?;
            tx.commit()?;
            Ok(Ok((user_id, username)))
        })
        .await;
    match done {
        Ok(Ok((user_id, username))) => {
            app.tokens.forget_user(user_id);
            tracing::info!(user = %username, ip = %ctx.client_ip, "password set with a one-time link");
            response::json(StatusCode::OK, &serde_json::json!({"username": username}))
        }
        Ok(Err(s)) => refused(&s),
        Err(e) => store_failed(e),
    }
}

/// The link's full address, on the host this request came to.
pub(crate) fn url<B>(req: &Request<B>, token: &str) -> String {
    let host = super::request_host(req).unwrap_or_else(|| "localhost".into());
    format!("https://{host}/invite/{token}")
}
