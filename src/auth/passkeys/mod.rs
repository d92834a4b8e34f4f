//! Passkeys (WebAuthn): registering them from the account page and signing in with one alone. A
//! session a passkey signs in counts as signed in with a second factor (`User::second_factor`).
//!
//! `webauthn-rs` does the WebAuthn work (its high-level `Passkey` type: user verification
//! required, the signed origin and RP id checked, the signature counter kept); this module binds
//! it to hermes-edge: which name a ceremony is for (`rp.rs`), where a ceremony's state waits
//! between its two requests (`pending.rs`, in memory), and the `passkeys` table.
//!
//! A registration is bound to the session that started it; a sign-in to a short-lived
//! `__Host-hermes_passkey` cookie. Signing in is username-less: passkeys are created as
//! discoverable credentials, and the browser offers the ones it holds for this name. A passkey
//! sign-in makes the same session as the password form (cookie, lifetime, audit row with method
//! `passkey`, the per-network limit on attempts).

mod pending;
pub(crate) mod rp;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension};
use webauthn_rs::prelude::{
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};

use self::pending::{Full, Owner, Pending, State};
use self::rp::{RelyingParty, Unavailable};
use super::{session_cookie, token_digest, User};
use crate::app::{App, Ctx};
use crate::response::{self, Resp};
use crate::store::{now, rfc3339, StoreError};

/// Ceremonies in progress at once, everyone together. Each holds a few hundred bytes; the limit
/// only stops a flood of anonymous sign-in starts from using memory without end.
const MAX_CEREMONIES: usize = 1000;
/// Passkeys one account may hold: plenty for every device a person owns.
const MAX_PER_USER: i64 = 20;
/// The longest passkey name, in characters.
const MAX_NAME_CHARS: usize = 64;
/// The cookie that binds a sign-in ceremony to the browser that started it.
const SIGNIN_COOKIE: &str = "__Host-hermes_passkey";

/// What `App` holds for passkeys: the names ceremonies may be for, and the ceremonies open now.
pub(crate) struct Passkeys {
    names: Vec<String>,
    pending: Pending,
}

impl Passkeys {
    pub(crate) fn new(config: &crate::config::Config) -> Passkeys {
        Passkeys {
            names: rp::served_names(
                &config.tls,
                &config.extra_names,
                rp::machine_hostname().as_deref(),
            ),
            pending: Pending::new(MAX_CEREMONIES),
        }
    }
}

/// The `webauthn-rs` instance for one relying party.
pub(crate) fn webauthn_for(rp: &RelyingParty) -> Result<Webauthn, WebauthnError> {
    let origin = Url::parse(&rp.origin).map_err(|_| WebauthnError::Configuration)?;
    WebauthnBuilder::new(&rp.id, &origin)?
        .rp_name("Hermes")
        .build()
}

/// The relying party for this request: one of the served names, at the listener's port.
fn party<B>(app: &App, req: &Request<B>) -> Result<RelyingParty, Unavailable> {
    let port = app
        .ops
        .get()
        .map_or(app.config.listen.port(), |o| o.listening.https.port());
    let host = super::request_host(req).ok_or(Unavailable::BadHost)?;
    rp::relying_party(&app.passkeys.names, &host, port)
}

fn unavailable(why: &Unavailable) -> Resp {
    response::error(StatusCode::BAD_REQUEST, why.code(), &why.message())
}

fn store_failed(e: StoreError) -> Resp {
    tracing::error!("passkeys: database error: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "Passkeys are unavailable right now; try again shortly. Your password still works.",
    )
}

fn full(why: Full) -> Resp {
    let message = match why {
        Full::Owner => "Too many passkey ceremonies are open for you; finish or wait a few minutes.",
        Full::Everyone => "Too many passkey ceremonies are open on this server; try again in a few minutes or use your password.",
    };
    response::too_many(60, message)
}

fn cross_origin() -> Resp {
    response::error(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "This request did not come from this site's own pages, so it was refused.",
    )
}

async fn read_json<T: serde::de::DeserializeOwned>(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
) -> Result<T, Resp> {
    let body =
        crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES).await?;
    response::parse_json(&body)
}

/// One passkey as the account page lists it.
fn listed(r: &rusqlite::Row<'_>) -> Result<serde_json::Value, rusqlite::Error> {
    Ok(serde_json::json!({
        "id": r.get::<_, i64>(0)?,
        "name": r.get::<_, String>(1)?,
        "rp_id": r.get::<_, String>(2)?,
        "created_at": rfc3339(r.get(3)?),
        "last_used_at": r.get::<_, Option<i64>>(4)?.map(rfc3339),
    }))
}

/// `GET /api/passkeys`: whether passkeys work at this address (and why not), and the account's
/// passkeys.
pub(crate) async fn list<B>(app: &App, req: &Request<B>, user: &User) -> Resp {
    let user_id = user.id;
    let rows = app
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT id, name, rp_id, created_at, last_used_at FROM passkeys
                 WHERE user_id = ?1 ORDER BY created_at, id",
            )?;
            let rows = st.query_map(params![user_id], listed)?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .await;
    let passkeys = match rows {
        Ok(r) => r,
        Err(e) => return store_failed(e),
    };
    let (available, rp_id, reason, message) = match party(app, req) {
        Ok(rp) => (true, Some(rp.id), None, None),
        Err(why) => (false, None, Some(why.code()), Some(why.message())),
    };
    response::json(
        StatusCode::OK,
        &serde_json::json!({
            "available": available,
            "rp_id": rp_id,
            "reason": reason,
            "message": message,
            "passkeys": passkeys,
        }),
    )
}

/// The account's WebAuthn user handle, made on its first passkey. It is random, so it says
/// nothing about the account to whoever reads an authenticator.
fn user_handle(c: &rusqlite::Connection, user_id: i64) -> Result<Uuid, rusqlite::Error> {
    let found: Option<String> = c
        .query_row(
            "SELECT handle FROM passkey_handles WHERE user_id = ?1",
            params![user_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(uuid) = found.and_then(|h| Uuid::parse_str(&h).ok()) {
        return Ok(uuid);
    }
    let uuid = Uuid::new_v4();
    c.execute(
        "INSERT OR REPLACE INTO passkey_handles (user_id, handle) VALUES (?1, ?2)",
        params![user_id, uuid.to_string()],
    )?;
    Ok(uuid)
}

#[derive(serde::Deserialize)]
struct StartRegistration {
    #[serde(default)]
    name: String,
}

/// A passkey's name as given, when it is one: 1 to [`MAX_NAME_CHARS`] characters, no control
/// characters.
fn check_name(raw: &str) -> Option<String> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.chars().any(char::is_control);
    ok.then(|| name.to_string())
}

/// `POST /api/passkeys/register`: starts registering a passkey for the signed-in account; the
/// answer holds the options for `navigator.credentials.create` and the ceremony's token.
pub(crate) async fn register_start(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
) -> Resp {
    let rp = match party(app, &req) {
        Ok(rp) => rp,
        Err(why) => return unavailable(&why),
    };
    let Some(session) = session_cookie(req.headers()).map(|t| token_digest(&t)) else {
        return response::error(StatusCode::UNAUTHORIZED, "login_required", "Sign in first.");
    };
    let body: StartRegistration = match read_json(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = check_name(&body.name) else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_name",
            &format!(
                "Give the passkey a name of 1 to {MAX_NAME_CHARS} characters, such as the device it is on."
            ),
        );
    };
    let user_id = user.id;
    let known = app
        .store
        .call(move |c| {
            let handle = user_handle(c, user_id)?;
            let mut st = c.prepare("SELECT cred_id FROM passkeys WHERE user_id = ?1")?;
            let ids = st
                .query_map(params![user_id], |r| r.get::<_, Vec<u8>>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok((handle, ids))
        })
        .await;
    let (handle, existing) = match known {
        Ok(k) => k,
        Err(e) => return store_failed(e),
    };
    if existing.len() as i64 >= MAX_PER_USER {
        return response::error(
            StatusCode::CONFLICT,
            "too_many_passkeys",
            &format!("An account holds at most {MAX_PER_USER} passkeys; remove one first."),
        );
    }
    let exclude = existing.into_iter().collect();
    let started = webauthn_for(&rp).and_then(|w| {
        w.start_passkey_registration(handle, &user.username, &user.username, Some(exclude))
    });
    let (options, state) = match started {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("passkeys: cannot start a registration: {e}");
            return response::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "passkey_error",
                "The server could not start a passkey registration.",
            );
        }
    };
    // Discoverable ("resident") credentials, so that signing in needs no user name: the
    // authenticator keeps the account's handle with the key. `webauthn-rs` does not check this
    // option on the answer; it only asks the browser.
    let mut options = serde_json::to_value(&options).unwrap_or_default();
    if let Some(sel) = options
        .pointer_mut("/publicKey/authenticatorSelection")
        .and_then(|s| s.as_object_mut())
    {
        sel.insert("residentKey".into(), "required".into());
        sel.insert("requireResidentKey".into(), true.into());
    }
    let state = State::Register {
        state,
        session,
        name,
    };
    match app
        .passkeys
        .pending
        .insert(Owner::User(user.id), rp.id, state)
    {
        Ok(token) => response::json(
            StatusCode::OK,
            &serde_json::json!({"ceremony": token, "options": options}),
        ),
        Err(why) => full(why),
    }
}

#[derive(serde::Deserialize)]
struct FinishRegistration {
    ceremony: String,
    credential: RegisterPublicKeyCredential,
}

fn refused(code: &str, message: &str) -> Resp {
    response::error(StatusCode::BAD_REQUEST, code, message)
}

/// `POST /api/passkeys/register/finish`: checks the browser's answer and stores the passkey.
pub(crate) async fn register_finish(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
) -> Resp {
    let rp = match party(app, &req) {
        Ok(rp) => rp,
        Err(why) => return unavailable(&why),
    };
    let session = session_cookie(req.headers()).map(|t| token_digest(&t));
    let body: FinishRegistration = match read_json(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(ceremony) = app.passkeys.pending.take(&body.ceremony) else {
        return refused(
            "ceremony_expired",
            "This passkey registration has expired or was already used; start again.",
        );
    };
    let State::Register {
        state,
        session: started_by,
        name,
    } = ceremony.state
    else {
        return refused("ceremony_mismatch", "This is not a passkey registration.");
    };
    if ceremony.owner != Owner::User(user.id)
        || session != Some(started_by)
        || ceremony.rp_id != rp.id
    {
        return refused(
            "ceremony_mismatch",
            "This passkey registration was started elsewhere; start again on this page.",
        );
    }
    let passkey = match webauthn_for(&rp)
        .and_then(|w| w.finish_passkey_registration(&body.credential, &state))
    {
        Ok(p) => p,
        Err(e) => {
            tracing::info!(user = %user.username, "passkey registration refused: {e}");
            return refused(
                "passkey_refused",
                "The browser's answer was not accepted (wrong site, expired, or no user verification); try again.",
            );
        }
    };
    let json = match serde_json::to_string(&passkey) {
        Ok(j) => j,
        Err(e) => {
            tracing::error!("passkeys: cannot serialise a passkey: {e}");
            return refused("passkey_error", "The passkey could not be stored.");
        }
    };
    let cred_id = passkey.cred_id().to_vec();
    let (user_id, rp_id) = (user.id, rp.id);
    let stored = app
        .store
        .call(move |c| {
            let taken: bool = c.query_row(
                "SELECT EXISTS (SELECT 1 FROM passkeys WHERE cred_id = ?1)",
                params![cred_id],
                |r| r.get(0),
            )?;
            if taken {
                return Ok(None);
            }
            c.execute(
                "INSERT INTO passkeys (user_id, name, cred_id, rp_id, passkey, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![user_id, name, cred_id, rp_id, json, now()],
            )?;
            let id = c.last_insert_rowid();
            c.query_row(
                "SELECT id, name, rp_id, created_at, last_used_at FROM passkeys WHERE id = ?1",
                params![id],
                listed,
            )
            .map(Some)
        })
        .await;
    match stored {
        Ok(Some(row)) => {
            tracing::info!(user = %user.username, "passkey registered");
            response::json(StatusCode::CREATED, &row)
        }
        Ok(None) => response::error(
            StatusCode::CONFLICT,
            "passkey_exists",
            "This passkey is already registered.",
        ),
        Err(e) => store_failed(e),
    }
}

/// `DELETE /api/passkeys/{id}`: removes one of the account's passkeys.
pub(crate) async fn remove(app: &App, user: &User, id: &str) -> Resp {
    let Ok(id) = id.parse::<i64>() else {
        return response::not_found();
    };
    let user_id = user.id;
    let removed = app
        .store
        .call(move |c| {
            c.execute(
                "DELETE FROM passkeys WHERE id = ?1 AND user_id = ?2",
                params![id, user_id],
            )
        })
        .await;
    match removed {
        Ok(0) => response::error(StatusCode::NOT_FOUND, "not_found", "No such passkey."),
        Ok(_) => {
            tracing::info!(user = %user.username, passkey = id, "passkey removed");
            let mut r = response::with_body(StatusCode::NO_CONTENT, "application/json", "");
            *r.body_mut() = response::empty();
            r
        }
        Err(e) => store_failed(e),
    }
}

mod signin;
pub(crate) use signin::{signin_finish, signin_start};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::users::{create_user, remove_user, Role};

    #[test]
    fn names_are_short_printable_text() {
        assert_eq!(check_name("  Laptop  ").as_deref(), Some("Laptop"));
        assert_eq!(check_name(&"é".repeat(64)).map(|n| n.len()), Some(128));
        assert_eq!(check_name(&"x".repeat(65)), None);
        assert_eq!(check_name("   "), None);
        assert_eq!(check_name("a\u{7}b"), None);
    }

    #[tokio::test]
    async fn passkeys_count_as_a_second_factor_and_go_with_the_account() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        create_user(&store, "ann", "a long enough password", Role::User).unwrap();
        let id: i64 = store
            .call_blocking(|c| {
                c.query_row("SELECT id FROM users WHERE username = 'ann'", [], |r| {
                    r.get(0)
                })
            })
            .unwrap();
        let has_passkey = |store: &crate::store::Store| {
            store
                .call_blocking(move |c| {
                    c.query_row(
                        "SELECT EXISTS (SELECT 1 FROM passkeys WHERE user_id = ?1)",
                        params![id],
                        |r| r.get::<_, bool>(0),
                    )
                })
                .unwrap()
        };
        assert!(!has_passkey(&store));
        store
            .call_blocking(|c| {
                user_handle(c, id)?;
                c.execute(
                    "INSERT INTO passkeys (user_id, name, cred_id, rp_id, passkey, created_at)
                     VALUES (?1, 'Laptop', x'0102', 'localhost', '{}', 0)",
                    params![id],
                )
            })
            .unwrap();
        // The handle is made once and kept.
        let handle = store.call_blocking(|c| user_handle(c, id)).unwrap();
        assert_eq!(store.call_blocking(|c| user_handle(c, id)).unwrap(), handle);
        assert!(has_passkey(&store));
        remove_user(&store, "ann").unwrap();
        let left: (i64, i64) = store
            .call_blocking(|c| {
                c.query_row(
                    "SELECT (SELECT COUNT(*) FROM passkeys), (SELECT COUNT(*) FROM passkey_handles)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .unwrap();
        assert_eq!(left, (0, 0));
    }
}
