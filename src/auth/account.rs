//! The signed-in user's own account API (`/api/account/...`, behind the login and the same-origin
//! rule), and the gate of a session that must enrol a second factor first.
//!
//! Two-factor enrolment: `POST /api/account/2fa/totp` makes a pending secret and answers it with
//! its `otpauth://` URI and QR code; `POST /api/account/2fa/totp/confirm` with a first code turns
//! it on and answers the ten recovery codes, shown once; `POST /api/account/2fa/disable` with a
//! current code or the password turns it off; `POST /api/account/2fa/recovery-codes`, with the same
//! proof, replaces the recovery codes. Confirming, disabling and renewing are guesses at a code or
//! password, so each attempt counts against the per-account sign-in limit.
//!
//! `POST /api/account/password` (your own password) is in `password.rs`; the sessions and tokens
//! sections of the account page use `/api/sessions` and `/api/tokens`.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;

use super::{second_factor, Role, User};
use crate::app::{App, Ctx};
use crate::response::{self, Resp};

/// The page a session that must enrol is sent to.
pub(crate) const ENROL_PAGE: &str = "/account?enrol=1";

/// True when this session must not go further until the account has a second factor: the policy
/// names the account, the session was signed in with the password alone, and the account has no
/// authenticator app (a session from before it enrolled one stays valid). A passkey or a single
/// sign-on provider counts for the session it signs in, not for the account: an account with a
/// passkey that signs in with its password alone is held too, or the password would pass the
/// policy by itself. Held sessions reach only enrolment, the account page and sign-out
/// ([`restricted`]).
pub(crate) async fn must_enrol(app: &App, user: &User) -> bool {
    if user.second_factor
        || !app
            .config
            .auth
            .require_second_factor
            .applies(user.role == Role::Admin)
    {
        return false;
    }
    let id = user.id;
    match app
        .store
        .call(move |c| second_factor::enrolled(c, id))
        .await
    {
        Ok(enrolled) => !enrolled,
        Err(e) => {
            // Unsure: hold the session to enrolment rather than let it past the policy.
            tracing::error!("second factor lookup failed: {e}");
            true
        }
    }
}

/// True for the routes of the account API.
pub(crate) fn is_account_api(path: &str) -> bool {
    path.starts_with("/api/account/")
}

/// The routes a session held to enrolment may use besides the account API: its passkeys, so that
/// the person can add one and sign in with it instead of setting up an authenticator app.
fn is_passkeys_api(path: &str) -> bool {
    path == "/api/passkeys" || path.starts_with("/api/passkeys/")
}

/// The routes of a session that must enrol a second factor first: the account API, the account
/// page, `GET /api/me` and sign-out; every other API answers `403 second_factor_required`, every
/// other page goes to the enrolment page. `api`: the path is not a page (an API, `/media/`, the
/// dashboard), so it is refused rather than redirected.
pub(crate) fn restricted<B>(req: &Request<B>, user: &User, api: bool) -> Option<Resp> {
    let path = req.uri().path();
    let method = req.method();
    let open = is_account_api(path)
        || is_passkeys_api(path)
        || matches!(
            (method, path),
            (&Method::POST, "/logout")
                | (&Method::GET, "/api/me")
                | (&Method::GET | &Method::HEAD, "/account")
        );
    if open {
        return None;
    }
    tracing::debug!(user = %user.username, path, "held to enrolment: no second factor yet");
    if api || *method != Method::GET {
        return Some(response::error(
            StatusCode::FORBIDDEN,
            "second_factor_required",
            "Your account must have a second factor before it can do anything else: set up \
             two-factor sign-in on the account page (/account), or sign in with a passkey.",
        ));
    }
    Some(response::redirect(StatusCode::SEE_OTHER, ENROL_PAGE))
}

/// The account API's route table.
pub(crate) async fn route(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
    method: &Method,
    path: &str,
) -> Resp {
    match (method, path) {
        (&Method::GET, "/api/account/2fa") => status(app, user).await,
        (&Method::POST, "/api/account/2fa/totp") => start(app, user).await,
        (&Method::POST, "/api/account/2fa/totp/confirm") => confirm(app, ctx, req, user).await,
        (&Method::POST, "/api/account/2fa/disable") => disable(app, ctx, req, user).await,
        (&Method::POST, "/api/account/2fa/recovery-codes") => {
            renew_codes(app, ctx, req, user).await
        }
        (&Method::GET, "/api/account/password") => super::password::status(app, user).await,
        (&Method::POST, "/api/account/password") => {
            super::password::change(app, ctx, req, user).await
        }
        (
            _,
            "/api/account/2fa"
            | "/api/account/2fa/totp"
            | "/api/account/2fa/totp/confirm"
            | "/api/account/2fa/disable"
            | "/api/account/2fa/recovery-codes"
            | "/api/account/password",
        ) => response::method_not_allowed(),
        _ => response::not_found(),
    }
}

pub(super) fn store_failed(e: crate::store::StoreError) -> Resp {
    tracing::error!("account store call failed: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "The account cannot be read or changed right now; try again shortly.",
    )
}

/// `GET /api/account/2fa`: `{"totp", "pending", "recovery_codes_left", "required"}`.
async fn status(app: &App, user: &User) -> Resp {
    let id = user.id;
    let required = app
        .config
        .auth
        .require_second_factor
        .applies(user.role == Role::Admin);
    match app.store.call(move |c| second_factor::status(c, id)).await {
        Ok(s) => response::json(
            StatusCode::OK,
            &serde_json::json!({
                "totp": s.totp,
                "pending": s.pending,
                "recovery_codes_left": s.recovery_codes_left,
                "required": required,
            }),
        ),
        Err(e) => store_failed(e),
    }
}

/// `POST /api/account/2fa/totp`: a new pending secret, `{"secret", "uri", "qr_svg"}`.
async fn start(app: &App, user: &User) -> Resp {
    let (id, name) = (user.id, user.username.clone());
    let made = app
        .store
        .call(move |c| second_factor::start_totp(c, id, &name))
        .await;
    match made {
        Ok(Some(e)) => {
            let qr = second_factor::qr_svg(&e.uri);
            let mut resp = response::json(
                StatusCode::OK,
                &serde_json::json!({"secret": e.secret, "uri": e.uri, "qr_svg": qr}),
            );
            no_store(&mut resp);
            resp
        }
        Ok(None) => response::error(
            StatusCode::CONFLICT,
            "already_enrolled",
            "Two-factor sign-in is already on; turn it off first to set up another app.",
        ),
        Err(e) => store_failed(e),
    }
}

/// Secrets in a response are never kept by a cache.
fn no_store(resp: &mut Resp) {
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
}

#[derive(Default, serde::Deserialize)]
struct CodeBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
}

async fn read_code_body(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Result<CodeBody, Resp> {
    let body =
        crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES).await?;
    response::parse_json::<CodeBody>(&body)
}

/// One guess at a code or password on this account: the per-account sign-in limit applies.
pub(super) fn guess_limited(app: &App, user: &User) -> Option<Resp> {
    let secs = app
        .login_account_limit
        .check(&user.username.to_lowercase())
        .err()?;
    Some(response::too_many(
        secs,
        &format!("Too many attempts on this account. Try again in {secs} seconds."),
    ))
}

/// `POST /api/account/2fa/totp/confirm` `{"code"}`: turns the pending secret on; answers
/// `{"recovery_codes": [...]}` (shown this once).
async fn confirm(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let body = match read_code_body(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Some(r) = guess_limited(app, user) {
        return r;
    }
    let id = user.id;
    let done = app
        .store
        .call(move |c| second_factor::confirm_totp(c, id, &body.code))
        .await;
    match done {
        Ok(Ok(codes)) => {
            tracing::info!(user = %user.username, "two-factor sign-in turned on");
            let mut resp = response::json(
                StatusCode::OK,
                &serde_json::json!({"recovery_codes": codes}),
            );
            no_store(&mut resp);
            resp
        }
        Ok(Err(second_factor::ConfirmError::NotStarted)) => response::error(
            StatusCode::CONFLICT,
            "not_started",
            "Start the set-up first (POST /api/account/2fa/totp).",
        ),
        Ok(Err(second_factor::ConfirmError::WrongCode)) => response::error(
            StatusCode::BAD_REQUEST,
            "invalid_code",
            "That code is not the one the app shows now; check the phone's clock and try the next code.",
        ),
        Err(e) => store_failed(e),
    }
}

/// Checks the proof that the person at this session owns the account: a current or recovery code,
/// or else the password. `Err` is the answer to send instead (no proof, too many tries, wrong).
async fn prove(app: &App, user: &User, body: CodeBody) -> Result<(), Resp> {
    if body.code.trim().is_empty() && body.password.is_empty() {
        return Err(response::error(
            StatusCode::BAD_REQUEST,
            "proof_required",
            "Send a current code (or a recovery code) or your password.",
        ));
    }
    if let Some(r) = guess_limited(app, user) {
        return Err(r);
    }
    let (id, name) = (user.id, user.username.clone());
    let proven = if !body.code.trim().is_empty() {
        let code = body.code;
        app.store
            .call(move |c| second_factor::verify_code(c, id, &code))
            .await
            .map(|p| p.is_some())
    } else {
        let found = app
            .store
            .call(move |c| super::users::find_for_login(c, &name))
            .await;
        match found {
            Ok(Some((_, hash))) => {
                let password = body.password;
                Ok(tokio::task::spawn_blocking(move || {
                    super::users::verify_password(&password, &hash)
                })
                .await
                .unwrap_or(false))
            }
            Ok(None) => Ok(false),
            Err(e) => Err(e),
        }
    };
    match proven {
        Ok(true) => Ok(()),
        Ok(false) => Err(response::error(
            StatusCode::FORBIDDEN,
            "invalid_proof",
            "Wrong code or password; nothing was changed.",
        )),
        Err(e) => Err(store_failed(e)),
    }
}

/// `POST /api/account/2fa/disable` `{"code"}` or `{"password"}`: removes the authenticator and
/// the recovery codes.
async fn disable(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let body = match read_code_body(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = prove(app, user, body).await {
        return r;
    }
    let id = user.id;
    match app
        .store
        .call(move |c| second_factor::remove_all(c, id, false))
        .await
    {
        Ok(_) => {
            tracing::info!(user = %user.username, "two-factor sign-in turned off");
            response::no_content()
        }
        Err(e) => store_failed(e),
    }
}

/// `POST /api/account/2fa/recovery-codes` `{"code"}` or `{"password"}`: ten new recovery codes
/// in place of the old ones, `{"recovery_codes": [...]}` (shown this once); `409` `not_enrolled`
/// without an authenticator.
async fn renew_codes(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let body = match read_code_body(app, ctx, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = prove(app, user, body).await {
        return r;
    }
    let id = user.id;
    match app
        .store
        .call(move |c| second_factor::renew_recovery_codes(c, id))
        .await
    {
        Ok(Some(codes)) => {
            tracing::info!(user = %user.username, "new recovery codes made");
            let mut resp = response::json(
                StatusCode::OK,
                &serde_json::json!({"recovery_codes": codes}),
            );
            no_store(&mut resp);
            resp
        }
        Ok(None) => response::error(
            StatusCode::CONFLICT,
            "not_enrolled",
            "Recovery codes come with an authenticator app; set one up first.",
        ),
        Err(e) => store_failed(e),
    }
}
