//! The push API of a signed-in user and its tables: `GET /api/push/key` (the VAPID public key a
//! page subscribes with), `POST /api/push/subscriptions` (store this device's subscription),
//! `DELETE /api/push/subscriptions` (forget it, by endpoint). The state-changing two pass the
//! router's same-origin check like every other.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use http::{header, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, Connection, OptionalExtension};

use super::crypto::Vapid;
use crate::app::{App, Ctx};
use crate::auth::User;
use crate::response::{self, Resp};

/// One device's subscription, as the sender needs it.
pub(crate) struct Subscription {
    pub id: i64,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
    pub include_text: bool,
}

/// The stored VAPID key, or a new one stored now (the database file is readable by the service
/// only); its private half never leaves the database.
pub(crate) fn load_or_make_key(c: &mut Connection) -> rusqlite::Result<Result<Vapid, String>> {
    let stored: Option<Vec<u8>> = c
        .query_row("SELECT pkcs8 FROM push_vapid WHERE id = 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let pkcs8 = match stored {
        Some(k) => k,
        None => {
            let k = match Vapid::generate_pkcs8() {
                Ok(k) => k,
                Err(e) => return Ok(Err(e)),
            };
            c.execute(
                "INSERT INTO push_vapid (id, pkcs8, created_at) VALUES (1, ?1, ?2)",
                params![k, crate::store::now_ms()],
            )?;
            tracing::info!("made the VAPID key pair for push notifications");
            k
        }
    };
    Ok(Vapid::from_pkcs8(&pkcs8))
}

pub(crate) fn subscriptions_of(
    c: &mut Connection,
    user_id: i64,
) -> rusqlite::Result<Vec<Subscription>> {
    let mut q = c.prepare(
        "SELECT id, endpoint, p256dh, auth, include_text FROM push_subscriptions WHERE user_id = ?1",
    )?;
    let rows = q.query_map([user_id], |r| {
        Ok(Subscription {
            id: r.get(0)?,
            endpoint: r.get(1)?,
            p256dh: r.get(2)?,
            auth: r.get(3)?,
            include_text: r.get(4)?,
        })
    })?;
    rows.collect()
}

pub(crate) fn delete_by_id(c: &mut Connection, id: i64) -> rusqlite::Result<usize> {
    c.execute("DELETE FROM push_subscriptions WHERE id = ?1", [id])
}

fn push_off() -> Resp {
    response::error(
        StatusCode::NOT_FOUND,
        "push_off",
        "Notifications are off on this server ([push] enabled = false, or its key could not be made: see the server log).",
    )
}

fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!("push subscriptions: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The database is unavailable right now; try again shortly.",
    )
}

/// `GET /api/push/key`: the VAPID public key (uncompressed P-256 point, base64url), the
/// `applicationServerKey` of `PushManager.subscribe`.
pub(crate) fn key(app: &App) -> Resp {
    match &app.push.vapid {
        Some(v) => response::json(
            StatusCode::OK,
            &serde_json::json!({"public_key": v.public_b64}),
        ),
        None => push_off(),
    }
}

/// What the page posts: `PushSubscription.toJSON()` and this device's text setting.
#[derive(serde::Deserialize)]
struct NewSubscription {
    endpoint: String,
    keys: Keys,
    /// Absent: unchanged for a known endpoint, off for a new one (the page posts its
    /// subscription again at each visit without touching the setting).
    include_text: Option<bool>,
}

#[derive(serde::Deserialize)]
struct Keys {
    p256dh: String,
    auth: String,
}

#[derive(serde::Deserialize)]
struct Gone {
    endpoint: String,
}

fn bad(message: &str) -> Resp {
    response::error(StatusCode::BAD_REQUEST, "bad_subscription", message)
}

/// `POST /api/push/subscriptions`: stores (or updates) this device's subscription. An endpoint
/// is one browser profile: posted again (by another account signed in there) it moves to that
/// account. Beyond `push.max_subscriptions_per_user` the oldest of the account's goes.
pub(crate) async fn subscribe(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    if app.push.vapid.is_none() {
        return push_off();
    }
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let new: NewSubscription = match response::parse_json(&body) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(e) = super::endpoint::check(&new.endpoint, app.config.push.allow_private_endpoints) {
        return bad(&format!("{e}."));
    }
    let p256dh = B64.decode(new.keys.p256dh.trim_end_matches('='));
    let auth = B64.decode(new.keys.auth.trim_end_matches('='));
    let (Ok(p256dh), Ok(auth)) = (p256dh, auth) else {
        return bad(
            "keys.p256dh and keys.auth must be base64url, as PushSubscription.toJSON() gives them.",
        );
    };
    // Refused now rather than at every push: a key that cannot encrypt (not on the curve, a
    // wrong length) makes a subscription that never delivers.
    if let Err(e) = super::crypto::encrypt(b"{}", &p256dh, &auth) {
        return bad(&format!("{e}."));
    }
    let uid = user.id;
    let max = app.config.push.max_subscriptions_per_user as i64;
    let (endpoint, include_text) = (new.endpoint, new.include_text);
    let stored = app
        .store
        .call(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO push_subscriptions (user_id, endpoint, p256dh, auth, include_text, created_at)
                 VALUES (?1, ?2, ?3, ?4, coalesce(?5, 0), ?6)
                 ON CONFLICT(endpoint) DO UPDATE SET
                     include_text = CASE WHEN user_id = ?1 THEN coalesce(?5, include_text)
                                         ELSE coalesce(?5, 0) END,
                     user_id = ?1, p256dh = ?3, auth = ?4, created_at = ?6",
                params![uid, endpoint, p256dh, auth, include_text, crate::store::now_ms()],
            )?;
            let include_text: bool = tx.query_row(
                "SELECT include_text FROM push_subscriptions WHERE endpoint = ?1",
                [&endpoint],
                |r| r.get(0),
            )?;
            tx.execute(
                "DELETE FROM push_subscriptions WHERE user_id = ?1 AND id NOT IN
                     (SELECT id FROM push_subscriptions WHERE user_id = ?1
                      ORDER BY created_at DESC, id DESC LIMIT ?2)",
                params![uid, max],
            )?;
            tx.commit()?;
            Ok(include_text)
        })
        .await;
    match stored {
        Ok(include_text) => {
            let mut r = response::json(
                StatusCode::CREATED,
                &serde_json::json!({"subscribed": true, "include_text": include_text}),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => store_failed(e),
    }
}

/// `DELETE /api/push/subscriptions` with `{"endpoint": ...}`: this device gets no more pushes.
/// Only the account's own subscription is deleted; an unknown endpoint is no error (204 either way).
pub(crate) async fn unsubscribe(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let gone: Gone = match response::parse_json(&body) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let uid = user.id;
    match app
        .store
        .call(move |c| {
            c.execute(
                "DELETE FROM push_subscriptions WHERE user_id = ?1 AND endpoint = ?2",
                params![uid, gone.endpoint],
            )
        })
        .await
    {
        Ok(_) => response::no_content(),
        Err(e) => store_failed(e),
    }
}
