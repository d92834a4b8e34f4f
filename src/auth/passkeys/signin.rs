//! Signing in with a passkey alone: `POST /login/passkey` starts a username-less ceremony (the
//! browser offers the discoverable passkeys it holds for this name), `POST /login/passkey/finish`
//! checks the answer and makes the same session the password form makes.

use http::{header, HeaderValue, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension};
use webauthn_rs::prelude::{Passkey, PublicKeyCredential};

use super::pending::{Owner, State};
use super::{
    cross_origin, full, party, read_json, store_failed, unavailable, webauthn_for, SIGNIN_COOKIE,
};
use crate::app::{App, Ctx};
use crate::auth::{safe_next, same_origin, session_cookie_header, User};
use crate::response::{self, Resp};
use crate::store::now;

/// `POST /login/passkey`: the options for `navigator.credentials.get` (no credentials listed:
/// any passkey of this site will do), and the cookie that binds the ceremony to this browser.
pub(crate) async fn signin_start(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    if !same_origin(&req) {
        return cross_origin();
    }
    let rp = match party(app, &req) {
        Ok(rp) => rp,
        Err(why) => return unavailable(&why),
    };
    let (options, state) =
        match webauthn_for(&rp).and_then(|w| w.start_discoverable_authentication()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("passkeys: cannot start a sign-in: {e}");
                return response::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "passkey_error",
                    "The server could not start a passkey sign-in; use your password.",
                );
            }
        };
    // A new ceremony from the same browser (the page reloaded, or the button pressed while the
    // autofill request waits) replaces its last one rather than piling up.
    if let Some(old) = ceremony_cookie(req.headers()) {
        app.passkeys.pending.take(&old);
    }
    let owner = Owner::network(ctx.client_ip);
    let token = match app
        .passkeys
        .pending
        .insert(owner, rp.id, State::SignIn(state))
    {
        Ok(t) => t,
        Err(why) => return full(why),
    };
    let mut resp = response::json(StatusCode::OK, &serde_json::json!({ "options": options }));
    let cookie = format!(
        "{SIGNIN_COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        super::pending::CEREMONY_LIFETIME.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The sign-in ceremony's token from its cookie.
fn ceremony_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, v)| *name == SIGNIN_COOKIE && !v.is_empty() && v.len() <= 128)
        .map(|(_, v)| v.to_string())
}

#[derive(serde::Deserialize)]
struct FinishSignIn {
    credential: PublicKeyCredential,
    #[serde(default)]
    remember: bool,
    #[serde(default)]
    next: Option<String>,
}

/// A failed sign-in: counted, logged, recorded in the audit, and one answer for every cause.
async fn failed(app: &App, ctx: &Ctx, user: Option<(i64, String)>, why: &str) -> Resp {
    let ip = ctx.client_ip;
    tracing::info!(ip = %ip, user = ?user.as_ref().map(|u| &u.1), "passkey sign-in refused: {why}");
    crate::metrics::COUNTERS.login_failure(crate::metrics::LoginFailure::Invalid);
    let (id, name) = match user {
        Some((id, name)) => (Some(id), name),
        None => (None, String::new()),
    };
    audit(app, ip, id, name, false).await;
    response::error(
        StatusCode::UNAUTHORIZED,
        "passkey_refused",
        "That passkey was not accepted here. Try again, or sign in with your password.",
    )
}

async fn audit(app: &App, ip: std::net::IpAddr, user_id: Option<i64>, name: String, ok: bool) {
    crate::auth::login::record_attempt(app, "passkey", &name, user_id, ip, ok, "").await;
}

/// The passkey `cred_id` of the account whose user handle is `handle`, with that account.
fn find(
    c: &rusqlite::Connection,
    cred_id: &[u8],
    handle: &str,
) -> Result<Option<(i64, String, User)>, rusqlite::Error> {
    c.query_row(
        "SELECT p.id, p.passkey, u.id, u.username, u.role, u.scope
         FROM passkeys p
         JOIN passkey_handles h ON h.user_id = p.user_id
         JOIN users u ON u.id = p.user_id
         WHERE p.cred_id = ?1 AND h.handle = ?2",
        params![cred_id, handle],
        |r| Ok((r.get(0)?, r.get(1)?, User::from_row(r, 2)?)),
    )
    .optional()
}

/// `POST /login/passkey/finish`: checks the signed answer against the stored passkey and signs
/// in. Every attempt counts against `auth.login_attempts_per_minute_per_ip`, as passwords do.
pub(crate) async fn signin_finish(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    if !same_origin(&req) {
        return cross_origin();
    }
    if let Err(secs) = app.login_ip_limit.check(&ctx.client_ip) {
        crate::metrics::COUNTERS.login_failure(crate::metrics::LoginFailure::RateLimited);
        let secs = secs.max(1);
        return response::too_many(
            secs,
            &format!("Too many sign-in attempts. Try again in {secs} seconds."),
        );
    }
    let rp = match party(app, &req) {
        Ok(rp) => rp,
        Err(why) => return unavailable(&why),
    };
    let user_agent: String = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect();
    let token = ceremony_cookie(req.headers());
    let body: FinishSignIn = match read_json(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let ceremony = token.and_then(|t| app.passkeys.pending.take(&t));
    let Some(ceremony) = ceremony else {
        return failed(
            app,
            ctx,
            None,
            "no ceremony (expired, used, or another browser)",
        )
        .await;
    };
    let State::SignIn(state) = ceremony.state else {
        return failed(app, ctx, None, "not a sign-in ceremony").await;
    };
    if ceremony.owner != Owner::network(ctx.client_ip) || ceremony.rp_id != rp.id {
        return failed(
            app,
            ctx,
            None,
            "ceremony started at another address or name",
        )
        .await;
    }
    let Ok(webauthn) = webauthn_for(&rp) else {
        return failed(app, ctx, None, "no relying party").await;
    };
    let Ok((handle, cred_id)) = webauthn.identify_discoverable_authentication(&body.credential)
    else {
        return failed(app, ctx, None, "the answer names no account").await;
    };
    let (cred_id, handle) = (cred_id.to_vec(), handle.to_string());
    let found = match app.store.call(move |c| find(c, &cred_id, &handle)).await {
        Ok(f) => f,
        Err(e) => return store_failed(e),
    };
    let Some((passkey_id, json, user)) = found else {
        return failed(app, ctx, None, "unknown passkey").await;
    };
    let who = Some((user.id, user.username.clone()));
    let Ok(mut passkey) = serde_json::from_str::<Passkey>(&json) else {
        return failed(app, ctx, who, "stored passkey unreadable").await;
    };
    let result =
        match webauthn.finish_discoverable_authentication_v2(&body.credential, state, &passkey) {
            Ok(r) => r,
            Err(e) => return failed(app, ctx, who, &e.to_string()).await,
        };
    // The signature counter (and backup state) move on with each use; a counter that went
    // backwards was refused above as a possible clone.
    let updated = passkey
        .update_credential(&result)
        .unwrap_or(false)
        .then(|| serde_json::to_string(&passkey).ok())
        .flatten();
    let saved = app
        .store
        .call(move |c| {
            c.execute(
                "UPDATE passkeys SET last_used_at = ?1, passkey = COALESCE(?2, passkey) WHERE id = ?3",
                params![now(), updated, passkey_id],
            )
        })
        .await;
    if let Err(e) = saved {
        return store_failed(e);
    }
    audit(
        app,
        ctx.client_ip,
        Some(user.id),
        user.username.clone(),
        true,
    )
    .await;
    let lifetime = if body.remember {
        app.config.auth.remember_lifetime
    } else {
        app.config.auth.session_lifetime
    };
    let session =
        crate::auth::login::create_session(app, user.id, lifetime, ctx.client_ip, user_agent, true)
            .await;
    let session = match session {
        Ok(s) => s,
        Err(e) => return store_failed(e),
    };
    tracing::info!(user = %user.username, ip = %ctx.client_ip, "signed in with a passkey");
    let next = safe_next(body.next.as_deref().unwrap_or("/"));
    let mut resp = response::json(
        StatusCode::OK,
        &serde_json::json!({"ok": true, "next": next}),
    );
    if let Some(v) = session_cookie_header(&session, lifetime) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-hermes_passkey=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
        ),
    );
    resp
}
