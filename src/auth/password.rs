//! `POST /api/account/password` `{"current","new"}`: the signed-in user changes their own
//! password. The current password is a guess like a sign-in, so each attempt counts against the
//! per-account sign-in limit and goes into the sign-in audit (method `password_change`). On
//! success every other session of the account ends and this one stays; API tokens stay too (the
//! owner changed the password, not someone else: an administrator's reset revokes them).
//! Accounts without a password (single sign-on, an invitation not used yet) are refused: they
//! have nothing to prove the change with.

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::account::{guess_limited, store_failed};
use super::login::record_attempt;
use super::users::{self, User};
use super::{session_cookie, token_hash};
use crate::app::{App, Ctx};
use crate::response::{self, Resp};

#[derive(serde::Deserialize)]
struct Change {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
}

/// `GET /api/account/password`: `{"has_password"}`; `false` for an account that signs in only
/// with single sign-on (or a passkey), which the page then does not offer to change.
pub(crate) async fn status(app: &App, user: &User) -> Resp {
    let name = user.username.clone();
    match app
        .store
        .call(move |c| users::find_for_login(c, &name))
        .await
    {
        Ok(Some((_, hash))) => response::json(
            StatusCode::OK,
            &serde_json::json!({"has_password": users::has_password(&hash)}),
        ),
        Ok(None) => response::not_found(),
        Err(e) => store_failed(e),
    }
}

pub(crate) async fn change(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let keep = session_cookie(req.headers())
        .map(|t| token_hash(&t))
        .unwrap_or_default();
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body = match response::parse_json::<Change>(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.new.chars().count() < 8 {
        return response::error(
            StatusCode::BAD_REQUEST,
            "weak_password",
            "The new password must be at least 8 characters.",
        );
    }
    let name = user.username.clone();
    let hash = match app
        .store
        .call(move |c| users::find_for_login(c, &name))
        .await
    {
        Ok(Some((_, hash))) => hash,
        Ok(None) => return response::not_found(),
        Err(e) => return store_failed(e),
    };
    if !users::has_password(&hash) {
        return response::error(
            StatusCode::CONFLICT,
            "no_password",
            "This account signs in with single sign-on and has no password here to change; \
             change it at your sign-in provider. An administrator can give the account a \
             password if you need one.",
        );
    }
    if let Some(r) = guess_limited(app, user) {
        return r;
    }
    let (current, new) = (body.current, body.new);
    let checked = tokio::task::spawn_blocking(move || {
        if !users::verify_password(&current, &hash) {
            return Ok(None);
        }
        users::hash_password(&new).map(Some)
    })
    .await;
    let ip = ctx.client_ip;
    let new_hash = match checked {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => {
            record_attempt(
                app,
                "password_change",
                &user.username,
                Some(user.id),
                ip,
                false,
                "wrong_password",
            )
            .await;
            tracing::info!(user = %user.username, ip = %ip, "password change refused: wrong current password");
            return response::error(
                StatusCode::FORBIDDEN,
                "wrong_password",
                "The current password is wrong; nothing was changed.",
            );
        }
        Ok(Err(e)) => return store_failed(crate::store::StoreError::Task(e.to_string())),
        Err(e) => return store_failed(crate::store::StoreError::Task(e.to_string())),
    };
    let id = user.id;
    match app
        .store
        .call(move |c| users::change_own_password(c, id, &new_hash, &keep))
        .await
    {
        Ok(ended) => {
            record_attempt(
                app,
                "password_change",
                &user.username,
                Some(user.id),
                ip,
                true,
                "changed",
            )
            .await;
            tracing::info!(user = %user.username, sessions_ended = ended, "password changed by its owner");
            response::json(
                StatusCode::OK,
                &serde_json::json!({"other_sessions_ended": ended}),
            )
        }
        Err(e) => store_failed(e),
    }
}
