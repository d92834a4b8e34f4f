//! Sign-in by a proxy in front (`auth.trusted_header`, e.g. `Remote-User` from Authelia or
//! Authentik): the header names the signed-in user, and is believed only when the request's
//! direct peer (the TCP connection, never a forwarded address) is in `limits.trusted_proxies`.
//! From anyone else a request carrying the header is refused with `403` and logged (at most one
//! line per [`LOG_EVERY_SECS`], with how many were refused in between, so a flood cannot fill
//! the log).
//!
//! Such a request is signed in for itself alone: no session cookie is made. The proxy checks
//! every request, so signing out or being removed there ends access here at the next request,
//! and there is no second session here to outlive it. No second factor is asked: the proxy is
//! where sign-in, with its own second factor, happens.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use http::{HeaderMap, StatusCode};

use super::users::{self, Role, User};
use crate::app::{App, Ctx};
use crate::response::{self, Resp};
use crate::store::now;

/// The least time between two log lines about refused headers.
const LOG_EVERY_SECS: i64 = 10;
static LAST_LOGGED: AtomicI64 = AtomicI64::new(0);
static UNLOGGED: AtomicU64 = AtomicU64::new(0);

/// `Some(403)` when the request carries the trusted header but does not come from a trusted
/// proxy. Checked before every route, so the header means nothing anywhere from anyone else.
pub(crate) fn refuse_untrusted(app: &App, ctx: &Ctx, headers: &HeaderMap) -> Option<Resp> {
    let name = app.config.auth.trusted_header.as_ref()?;
    if !headers.contains_key(name) || from_trusted_proxy(app, ctx) {
        return None;
    }
    let at = now();
    let last = LAST_LOGGED.load(Ordering::Relaxed);
    if at - last >= LOG_EVERY_SECS
        && LAST_LOGGED
            .compare_exchange(last, at, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let since = UNLOGGED.swap(0, Ordering::Relaxed);
        tracing::warn!(
            peer = %ctx.peer_ip,
            header = %name,
            refused_since_last_line = since,
            "refused a request with the trusted sign-in header from an address not in limits.trusted_proxies"
        );
    } else {
        UNLOGGED.fetch_add(1, Ordering::Relaxed);
    }
    Some(response::error(
        StatusCode::FORBIDDEN,
        "untrusted_sign_in_header",
        &format!(
            "The {name} header is accepted only from the sign-in proxy; this request did not come through it."
        ),
    ))
}

fn from_trusted_proxy(app: &App, ctx: &Ctx) -> bool {
    app.config.limits.trusted_proxies.contains(&ctx.peer_ip)
}

/// The user the trusted proxy names, when the header is configured, present and from a trusted
/// proxy: `Some(Ok(user))`, or `Some(Err(403))` for a name with no account (unless
/// `trusted_header_create`) or one that is not a valid user name. `None`: no such header here.
pub(crate) async fn user(app: &App, ctx: &Ctx, headers: &HeaderMap) -> Option<Result<User, Resp>> {
    let name = app.config.auth.trusted_header.as_ref()?;
    let value = headers.get(name)?;
    if !from_trusted_proxy(app, ctx) {
        return None;
    }
    let username = match value.to_str().map(str::trim) {
        Ok(v) if users::valid_username(v) => v.to_string(),
        _ => {
            tracing::warn!(header = %name, "the sign-in proxy sent a user name that is not valid here");
            return Some(Err(response::error(
                StatusCode::FORBIDDEN,
                "bad_trusted_user",
                "The sign-in proxy named a user that cannot be an account here (1 to 64 letters, digits, `.`, `_`, `-` or `@`).",
            )));
        }
    };
    let lookup = username.clone();
    let found = app
        .store
        .call(move |c| users::find_for_login(c, &lookup))
        .await;
    match found {
        Ok(Some((user, _))) => Some(Ok(user)),
        Ok(None) if app.config.auth.trusted_header_create => Some(create(app, username).await),
        Ok(None) => {
            tracing::info!(user = %username, "the sign-in proxy named a user with no account here");
            Some(Err(response::error(
                StatusCode::FORBIDDEN,
                "unknown_account",
                "You are signed in at the proxy, but have no account here; ask the administrator to add one.",
            )))
        }
        Err(e) => {
            tracing::error!("trusted-header user lookup failed: {e}");
            Some(Err(unavailable()))
        }
    }
}

fn unavailable() -> Resp {
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "Sign-in is unavailable right now; try again shortly.",
    )
}

/// A plain account for a name the proxy vouches for, with a random password nobody knows (it
/// signs in through the proxy; an administrator can set one).
async fn create(app: &App, username: String) -> Result<User, Resp> {
    let store = app.store.clone();
    let made = tokio::task::spawn_blocking(move || {
        let made = users::create_user(&store, &username, &users::random_password(), Role::User);
        match made {
            // Another request made it in the meantime.
            Err(users::UserError::Exists(_)) => store
                .call_blocking(|c| users::find_for_login(c, &username))
                .map_err(users::UserError::from)
                .and_then(|f| f.map(|(u, _)| u).ok_or(users::UserError::Unknown(username))),
            other => other,
        }
    })
    .await;
    match made {
        Ok(Ok(user)) => {
            tracing::info!(user = %user.username, "account created for a user the sign-in proxy named");
            Ok(user)
        }
        Ok(Err(e)) => {
            tracing::error!("cannot create the account the sign-in proxy named: {e}");
            Err(unavailable())
        }
        Err(e) => {
            tracing::error!("account creation task failed: {e}");
            Err(unavailable())
        }
    }
}
