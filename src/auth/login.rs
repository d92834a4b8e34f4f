//! The handlers of sessions, which take the `App`: the login gate (`authenticate`), `GET /login`
//! for someone signed in, `POST /login` and `POST /logout`.
//!
//! Sign-in attempts are limited twice: per client address (`login_attempts_per_minute_per_ip`) and
//! per account name (`login_attempts_per_minute_per_account`), so neither one address nor many
//! addresses can guess one account's password quickly. The per-account limit could be abused to
//! keep the real person out, so it does not apply from a network the account has signed in from
//! successfully before (same IPv4 address or same IPv6 /64, within the "keep me signed in"
//! lifetime); there only the per-address limit holds. A flood from one address therefore never
//! locks out another address, and a distributed flood on one account slows only addresses that
//! account has never used.
//!
//! An account with a second factor gives a `code` after its password. Each attempt sends the
//! password again and is checked in full, so a code is never guessed without the password; every
//! attempt that carries a code also counts against the per-account limit even from a known
//! network (whoever guesses codes there already has the password), and a wrong code is a failed
//! attempt in the audit.

use std::net::IpAddr;
use std::time::Duration;

use http::{header, HeaderMap, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::params;

use super::{
    clear_cookie_header, new_token, safe_next, same_network, same_origin, session_cookie,
    session_cookie_header, session_user, token_hash, User,
};
use crate::app::{App, Ctx};
use crate::response::{self, Resp};
use crate::store::now;

/// The signed-in user for this request's cookie, if the session is valid.
pub(crate) async fn authenticate(app: &App, headers: &HeaderMap) -> Option<User> {
    let token = session_cookie(headers)?;
    session_user(&app.store, token_hash(&token)).await
}

/// Creates a session row and returns its token.
pub(crate) async fn create_session(
    app: &App,
    user_id: i64,
    lifetime: Duration,
    ip: IpAddr,
    user_agent: String,
    second_factor: bool,
) -> Result<String, crate::store::StoreError> {
    let token = new_token();
    let hash = token_hash(&token);
    let secs = lifetime.as_secs() as i64;
    app.store
        .call(move |c| {
            let now = now();
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen, ip, user_agent, second_factor)
                 VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6, ?7)",
                params![hash, user_id, now, now + secs, ip.to_string(), user_agent, second_factor],
            )?;
            // Expired sessions are removed as new ones are made.
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
            Ok(())
        })
        .await?;
    Ok(token)
}
/// `GET /login` for someone already signed in: `303` to their `next` instead of the form.
pub(crate) async fn login_page_redirect<B>(app: &App, req: &Request<B>) -> Option<Resp> {
    authenticate(app, req.headers()).await?;
    let next = req
        .uri()
        .query()
        .and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "next")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_else(|| "/".into());
    Some(response::redirect(StatusCode::SEE_OTHER, &safe_next(&next)))
}

/// True when `ip` is on a network `username` has signed in from successfully since `since`
/// (same IPv4 address, or same IPv6 /64 because IPv6 privacy addresses change daily).
fn known_network(
    c: &rusqlite::Connection,
    username: &str,
    ip: IpAddr,
    since: i64,
) -> Result<bool, rusqlite::Error> {
    let mut st = c.prepare(
        "SELECT a.ip FROM login_audit a JOIN users u ON u.id = a.user_id
         WHERE u.username = ?1 AND a.success = 1 AND a.at > ?2
         ORDER BY a.at DESC LIMIT 200",
    )?;
    let ips = st.query_map(params![username, since], |r| r.get::<_, String>(0))?;
    for text in ips {
        if let Ok(seen) = text?.parse::<IpAddr>() {
            if same_network(seen, ip) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
        || headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
}

#[derive(Default, serde::Deserialize)]
struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    remember: Option<serde_json::Value>,
    #[serde(default)]
    next: Option<String>,
    /// The second factor: six digits from the app, or a recovery code.
    #[serde(default)]
    code: Option<String>,
}

fn parse_login(headers: &HeaderMap, body: &[u8]) -> Option<LoginForm> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return serde_json::from_slice(body).ok();
    }
    let mut form = LoginForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "username" => form.username = v.into_owned(),
            "password" => form.password = v.into_owned(),
            "remember" => form.remember = Some(serde_json::Value::String(v.into_owned())),
            "next" => form.next = Some(v.into_owned()),
            "code" => form.code = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(form)
}

fn remember_set(v: &Option<serde_json::Value>) -> bool {
    match v {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => matches!(s.as_str(), "on" | "true" | "1" | "yes"),
        _ => false,
    }
}

/// The answer to a sign-in when the store cannot be read or written.
fn signin_unavailable() -> Resp {
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "Sign-in is unavailable right now; try again shortly.",
    )
}

fn login_redirect(next: &str, error: &str, retry_after: Option<u64>) -> Resp {
    let mut loc = format!("/login?error={error}");
    if let Some(s) = retry_after {
        loc.push_str(&format!("&retry_after={s}"));
    }
    if next != "/" {
        let enc = percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC);
        loc.push_str(&format!("&next={enc}"));
    }
    response::redirect(StatusCode::SEE_OTHER, &loc)
}

/// `POST /login`: checks the password (same answer and about the same time for an unknown user and
/// a wrong password), limits attempts per IP and per account, records the attempt, sets the cookie.
pub(crate) async fn login(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let json = wants_json(req.headers());
    if !same_origin(&req) {
        return response::error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "This form can only be sent from this site's own login page.",
        );
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect::<String>();
    let headers = req.headers().clone();
    // A small body within one read timeout: this route is open to anyone.
    let body = match crate::body::read_body(app.body_room(ctx), req, crate::body::SMALL_BODY_BYTES)
        .await
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let form = parse_login(&headers, &body);
    drop(body);
    let Some(form) = form else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "Send username and password as a form or JSON.",
        );
    };
    let next = safe_next(form.next.as_deref().unwrap_or("/"));
    // JSON clients get `429` + `Retry-After`; a browser form gets `303` back to the login page,
    // which says how long to wait (a `429` would leave the browser on a blank page).
    let limited = |secs: u64| {
        crate::metrics::COUNTERS.login_failure(crate::metrics::LoginFailure::RateLimited);
        let secs = secs.max(1);
        if json {
            response::too_many(
                secs,
                &format!("Too many sign-in attempts. Try again in {secs} seconds."),
            )
        } else {
            login_redirect(&next, "rate_limited", Some(secs))
        }
    };
    if let Err(secs) = app.login_ip_limit.check(&ctx.client_ip) {
        tracing::info!(ip = %ctx.client_ip, "sign-in refused: too many attempts from this address");
        return limited(secs);
    }
    let username = form.username.trim().to_string();
    let since = now() - app.config.auth.remember_lifetime.as_secs() as i64;
    let (known_name, ip) = (username.clone(), ctx.client_ip);
    let known = app
        .store
        .call(move |c| known_network(c, &known_name, ip, since))
        .await
        .unwrap_or(false);
    if !known {
        let key = username.to_lowercase().chars().take(64).collect::<String>();
        if let Err(secs) = app.login_account_limit.check(&key) {
            tracing::info!(user = %key, ip = %ip, "sign-in refused: too many attempts on this account");
            return limited(secs);
        }
    }
    let lookup_name = username.clone();
    let found = app
        .store
        .call(move |c| super::users::find_for_login(c, &lookup_name))
        .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            tracing::error!("login lookup failed: {e}");
            return signin_unavailable();
        }
    };
    let decoy = app.decoy_hash.clone();
    let password = form.password;
    let user = tokio::task::spawn_blocking(move || match found {
        Some((user, hash)) => super::users::verify_password(&password, &hash).then_some(user),
        None => {
            super::users::verify_password(&password, &decoy);
            None
        }
    })
    .await
    .ok()
    .flatten();
    let ip = ctx.client_ip;
    let audit_name = username.chars().take(64).collect::<String>();
    let audit = |user_id, success, detail| {
        record_attempt(app, "password", &audit_name, user_id, ip, success, detail)
    };
    let Some(user) = user else {
        audit(None, false, "wrong_password").await;
        tracing::info!(user = %username, ip = %ip, "sign-in refused: wrong user name or password");
        crate::metrics::COUNTERS.login_failure(crate::metrics::LoginFailure::Invalid);
        return if json {
            response::error(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "Wrong user name or password.",
            )
        } else {
            login_redirect(&next, "invalid", None)
        };
    };
    // The password was right: the second factor, when the account has one.
    let detail = match second_factor_step(app, &user, form.code.as_deref(), known).await {
        Ok(detail) => detail,
        Err(refusal) => {
            let (detail, error, text) = match refusal {
                Refusal::CodeRequired => (
                    "code_required",
                    "code_required",
                    "Enter the code from your authenticator app (or a recovery code).",
                ),
                Refusal::WrongCode => ("wrong_code", "invalid_code", "Wrong or already used code."),
                Refusal::Limited(secs) => {
                    tracing::info!(user = %user.username, ip = %ip, "sign-in refused: too many codes tried on this account");
                    return limited(secs);
                }
                Refusal::Store => return signin_unavailable(),
            };
            audit(Some(user.id), false, detail).await;
            tracing::info!(user = %user.username, ip = %ip, "sign-in needs a second factor: {detail}");
            return if json {
                response::error(StatusCode::UNAUTHORIZED, error, text)
            } else {
                login_redirect(&next, error, None)
            };
        }
    };
    audit(Some(user.id), true, detail).await;
    // Someone who must have a second factor and has none goes to enrolment first.
    let must_enrol = detail == "password"
        && app
            .config
            .auth
            .require_second_factor
            .applies(user.role == super::Role::Admin);
    let next = if must_enrol {
        "/account?enrol=1".to_string()
    } else {
        next
    };
    let lifetime = if remember_set(&form.remember) {
        app.config.auth.remember_lifetime
    } else {
        app.config.auth.session_lifetime
    };
    // A code (one-time or recovery) was given: more than the password.
    let second_factor = detail != "password";
    let token = match create_session(app, user.id, lifetime, ip, user_agent, second_factor).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot create session: {e}");
            return signin_unavailable();
        }
    };
    tracing::info!(user = %user.username, ip = %ip, how = detail, "signed in");
    let mut resp = if json {
        // `enrol` only when the session is held to enrolment (earlier clients saw two keys).
        let mut body = serde_json::json!({"ok": true, "next": next});
        if must_enrol {
            body["enrol"] = serde_json::Value::Bool(true);
        }
        response::json(StatusCode::OK, &body)
    } else {
        response::redirect(StatusCode::SEE_OTHER, &next)
    };
    if let Some(v) = session_cookie_header(&token, lifetime) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// One row of the sign-in audit: who, from where, whether it passed, by which way in (`method`:
/// `password`, `passkey`, `oidc`) and, for passwords, how or why not (`detail`). Every way in
/// writes its rows here. A name longer than a user name can be is cut.
pub(crate) async fn record_attempt(
    app: &App,
    method: &'static str,
    username: &str,
    user_id: Option<i64>,
    ip: IpAddr,
    success: bool,
    detail: &'static str,
) {
    let name: String = username.chars().take(64).collect();
    let result = app
        .store
        .call(move |c| {
            c.execute(
                "INSERT INTO login_audit (at, username, user_id, ip, success, method, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    now(),
                    name,
                    user_id,
                    ip.to_string(),
                    success,
                    method,
                    detail
                ],
            )
        })
        .await;
    if let Err(e) = result {
        tracing::warn!("cannot record a sign-in attempt in the audit: {e}");
    }
}

/// Why the second-factor step did not let a sign-in through.
enum Refusal {
    /// The account has a second factor and no code came.
    CodeRequired,
    WrongCode,
    /// Too many codes tried on this account: seconds to wait.
    Limited(u64),
    Store,
}

/// The second factor of a sign-in whose password was right: `Ok` with how it passed (`password`
/// when the account has none, `totp`, `recovery_code`), or why not. A code attempt counts against
/// the per-account limit also from a known network (`known`: the caller did not count it yet).
async fn second_factor_step(
    app: &App,
    user: &User,
    code: Option<&str>,
    known: bool,
) -> Result<&'static str, Refusal> {
    let id = user.id;
    let enrolled = app
        .store
        .call(move |c| super::second_factor::enrolled(c, id))
        .await
        .map_err(|e| {
            tracing::error!("second factor lookup failed: {e}");
            Refusal::Store
        })?;
    if !enrolled {
        return Ok("password");
    }
    let code = code.map(str::trim).filter(|c| !c.is_empty());
    let Some(code) = code else {
        return Err(Refusal::CodeRequired);
    };
    if known {
        let key = user.username.to_lowercase();
        app.login_account_limit
            .check(&key)
            .map_err(Refusal::Limited)?;
    }
    let code = code.to_string();
    let proof = app
        .store
        .call(move |c| super::second_factor::verify_code(c, id, &code))
        .await
        .map_err(|e| {
            tracing::error!("second factor check failed: {e}");
            Refusal::Store
        })?;
    proof.map(|p| p.as_str()).ok_or(Refusal::WrongCode)
}

/// `POST /logout`: revokes this session and clears the cookie.
pub(crate) async fn logout(app: &App, req: Request<Incoming>) -> Resp {
    if !same_origin(&req) {
        return response::error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Sign-out must come from this site's own pages.",
        );
    }
    let json = wants_json(req.headers());
    if let Some(token) = session_cookie(req.headers()) {
        let hash = token_hash(&token);
        if let Err(e) = app
            .store
            .call(move |c| c.execute("DELETE FROM sessions WHERE token_hash = ?1", params![hash]))
            .await
        {
            tracing::error!("cannot revoke session: {e}");
        }
    }
    let mut resp = if json {
        let mut r = response::with_body(StatusCode::NO_CONTENT, "application/json", "");
        *r.body_mut() = response::empty();
        r
    } else {
        response::redirect(StatusCode::SEE_OTHER, "/login")
    };
    resp.headers_mut()
        .insert(header::SET_COOKIE, clear_cookie_header());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{chat_send_limited, Role};

    #[tokio::test]
    async fn chat_sends_past_the_per_user_limit_get_429_with_retry_after() {
        use crate::config::{CliOverrides, Config};
        let dir = tempfile::tempdir().unwrap();
        let file = Config::parse_str(
            "[auth]\nchat_sends_per_minute_per_user = 2",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let config = Config::resolve(file, None, &CliOverrides::default()).unwrap();
        let app = App::new(config, crate::store::Store::open(dir.path()).unwrap(), None);
        let user = |id| User {
            id,
            username: format!("u{id}"),
            role: Role::User,
            scope: id.to_string().into(),
            second_factor: false,
        };
        assert!(chat_send_limited(&app.chat_limit, &user(1)).is_none());
        assert!(chat_send_limited(&app.chat_limit, &user(1)).is_none());
        let refused = chat_send_limited(&app.chat_limit, &user(1)).unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        // Another user has their own allowance.
        assert!(chat_send_limited(&app.chat_limit, &user(2)).is_none());
    }
}
