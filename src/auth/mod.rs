//! Who is asking: web sessions behind the `__Host-hermes_session` cookie, the login and logout
//! forms, the same-origin rule for state-changing requests, and safe `next` redirects.
//!
//! Session tokens are 256-bit random values; the database keeps only their SHA-256, so a copy of
//! the database does not let anyone sign in.
//!
//! Sign-in attempts are limited twice: per client address (`login_attempts_per_minute_per_ip`) and
//! per account name (`login_attempts_per_minute_per_account`), so neither one address nor many
//! addresses can guess one account's password quickly. The per-account limit could be abused to
//! keep the real person out, so it does not apply from a network the account has signed in from
//! successfully before (same IPv4 address or same IPv6 /64, within the "keep me signed in"
//! lifetime); there only the per-address limit holds. A flood from one address therefore never
//! locks out another address, and a distributed flood on one account slows only addresses that
//! account has never used.

pub mod admin;
pub mod token_cache;
pub mod tokens;
pub mod users;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::app::{App, Ctx};
use crate::response::{self, Resp};
use crate::store::now;
pub use users::{Role, User};

pub const COOKIE_NAME: &str = "__Host-hermes_session";

/// A new random session token (43 URL-safe characters).
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn token_hash(token: &str) -> Vec<u8> {
    token_digest(token).to_vec()
}

/// `token_hash` without the heap copy.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The public handle of a session: the first 16 hex digits of its token hash. It names the
/// session in lists and revocations and cannot be turned back into the token.
pub fn session_id(hash: &[u8]) -> String {
    hex::encode(&hash[..hash.len().min(8)])
}

/// The session token from the `Cookie` header(s), if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, val)) = pair.trim().split_once('=') {
                if name == COOKIE_NAME && !val.is_empty() && val.len() <= 128 {
                    return Some(val.to_string());
                }
            }
        }
    }
    None
}

/// The signed-in user for this request's cookie, if the session is valid.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Option<User> {
    let token = session_cookie(headers)?;
    session_user(&app.store, token_hash(&token)).await
}

/// The user of the session whose token hashes to `hash`, if that session is still valid (not
/// signed out, revoked or expired, and its account not removed).
pub async fn session_user(store: &crate::store::Store, hash: Vec<u8>) -> Option<User> {
    let result = store
        .call(move |c| {
            let now = now();
            let found = c
                .query_row(
                    "SELECT u.id, u.username, u.role, u.scope, s.last_seen FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                    params![hash, now],
                    |r| {
                        Ok((
                            User::from_row(r, 0)?,
                            r.get::<_, i64>(4)?,
                        ))
                    },
                )
                .optional()?;
            if let Some((_, last_seen)) = &found {
                if now - last_seen > 60 {
                    c.execute(
                        "UPDATE sessions SET last_seen = ?1 WHERE token_hash = ?2",
                        params![now, hash],
                    )?;
                }
            }
            Ok(found.map(|(u, _)| u))
        })
        .await;
    match result {
        Ok(user) => user,
        Err(e) => {
            tracing::error!("session lookup failed: {e}");
            None
        }
    }
}

/// How often the serving process asks whether another process changed the database. The `user`
/// and `token` commands write the same file from their own process; this process trusts the API
/// tokens it checked recently (`token_cache::TokenCache`), and must stop trusting them within a few
/// seconds of a revocation there. One `PRAGMA data_version` a second costs next to nothing.
pub const DB_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How often old sign-in audit rows are deleted (besides at start).
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Starts the serving process's database upkeep, when there is a runtime to run it (not in the
/// command-line tools): empties the token cache whenever another connection has committed to
/// the database (SQLite's `data_version` changes only for other connections' commits, so this
/// process's own writes cost nothing), and deletes sign-in audit rows older than `audit_keep`,
/// once at start and then daily. It holds the store and the cache, not the `App`, so it never
/// keeps the `App` shared at start-up.
pub fn spawn_upkeep(
    store: crate::store::Store,
    tokens: std::sync::Arc<token_cache::TokenCache>,
    audit_keep: Duration,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(DB_WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: Option<i64> = None;
        let mut next_prune = std::time::Instant::now();
        loop {
            tick.tick().await;
            let prune_before = (std::time::Instant::now() >= next_prune)
                .then(|| now() - i64::try_from(audit_keep.as_secs()).unwrap_or(i64::MAX));
            let result = store
                .call(move |c| {
                    let pruned = match prune_before {
                        Some(before) => Some(
                            c.execute("DELETE FROM login_audit WHERE at < ?1", params![before])?,
                        ),
                        None => None,
                    };
                    let version: i64 = c.pragma_query_value(None, "data_version", |r| r.get(0))?;
                    Ok((version, pruned))
                })
                .await;
            match result {
                Ok((version, pruned)) => {
                    if seen.is_some_and(|s| s != version) {
                        tokens.clear();
                    }
                    seen = Some(version);
                    if let Some(n) = pruned {
                        next_prune = std::time::Instant::now() + AUDIT_PRUNE_INTERVAL;
                        if n > 0 {
                            tracing::info!(
                                rows = n,
                                "deleted sign-in audit rows past auth.login_audit_days"
                            );
                        }
                    }
                }
                Err(e) => {
                    // Unsure what changed: trust nothing cached.
                    tokens.clear();
                    tracing::warn!("database upkeep failed: {e}");
                }
            }
        }
    });
}

/// Creates a session row and returns its token.
pub async fn create_session(
    app: &App,
    user_id: i64,
    lifetime: Duration,
    ip: IpAddr,
    user_agent: String,
) -> Result<String, crate::store::StoreError> {
    let token = new_token();
    let hash = token_hash(&token);
    let secs = lifetime.as_secs() as i64;
    app.store
        .call(move |c| {
            let now = now();
            c.execute(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, last_seen, ip, user_agent)
                 VALUES (?1, ?2, ?3, ?4, ?3, ?5, ?6)",
                params![hash, user_id, now, now + secs, ip.to_string(), user_agent],
            )?;
            // Expired sessions are removed as new ones are made.
            c.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now])?;
            Ok(())
        })
        .await?;
    Ok(token)
}

pub fn session_cookie_header(token: &str, max_age: Duration) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        max_age.as_secs()
    ))
    .ok()
}

pub fn clear_cookie_header() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-hermes_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
    )
}

/// A `next` target that stays on this site: a path starting with a single `/`, no scheme, no
/// backslash, no control characters, checked after percent-decoding too. Anything else is `/`.
/// The raw value must be printable ASCII (as every path a browser sends is), so it can go into a
/// `Location` header unchanged.
pub fn safe_next(raw: &str) -> String {
    let ok = |s: &str| {
        s.starts_with('/')
            && !s.starts_with("//")
            && !s.contains('\\')
            && !s.chars().any(|c| c.is_control())
            && !s.starts_with("/login")
    };
    if raw.len() > 2048 || !raw.bytes().all(|b| b.is_ascii_graphic()) || !ok(raw) {
        return "/".into();
    }
    // Decode repeatedly: `%2F%2Fevil.com` and `%252F...` must not become `//evil.com` later.
    let mut cur = raw.to_string();
    for _ in 0..3 {
        let decoded = percent_encoding::percent_decode_str(&cur)
            .decode_utf8_lossy()
            .into_owned();
        if !ok(&decoded) {
            return "/".into();
        }
        if decoded == cur {
            break;
        }
        cur = decoded;
    }
    raw.to_string()
}

/// Where an unauthenticated page request is sent: `/login?next=<the page>` (`/` when the page
/// is not a safe same-site path).
pub fn login_location(path_and_query: &str) -> String {
    let next = safe_next(path_and_query);
    let enc = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
    format!("/login?next={enc}")
}

/// `GET /login` for someone already signed in: `303` to their `next` instead of the form.
pub async fn login_page_redirect<B>(app: &App, req: &Request<B>) -> Option<Resp> {
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

/// The per-user chat-send limit (`auth.chat_sends_per_minute_per_user`): `Some` is the `429`
/// with `Retry-After` to send back when this user is sending too fast; `None` lets the message go.
pub fn chat_send_limited(app: &App, user: &User) -> Option<Resp> {
    let secs = app.chat_limit.check(&user.id).err()?;
    Some(response::too_many(
        secs,
        &format!("You are sending messages too fast. Try again in {secs} seconds."),
    ))
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

fn same_network(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V6(a), IpAddr::V6(b)) if a.to_ipv4_mapped().is_none() => {
            a.segments()[..4] == b.segments()[..4]
        }
        _ => a.to_canonical() == b.to_canonical(),
    }
}

/// The host this request was addressed to (`Host` for HTTP/1.1, `:authority` for HTTP/2).
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_ascii_lowercase());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.to_ascii_lowercase())
}

/// True when a state-changing request comes from this site's own pages.
pub fn same_origin<B>(req: &Request<B>) -> bool {
    let headers = req.headers();
    // `Origin: null` is what a browser sends when the page's Referrer-Policy is `no-referrer`:
    // it says nothing either way, so the browser's own Sec-Fetch-Site decides.
    let origin = headers
        .get(header::ORIGIN)
        .filter(|o| o.as_bytes() != b"null");
    if let Some(origin) = origin {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let Some(host) = request_host(req) else {
            return false;
        };
        return origin.eq_ignore_ascii_case(&format!("https://{host}"));
    }
    matches!(
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        Some("same-origin")
    )
}

pub fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
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
pub async fn login(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
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
    let body = match crate::body::read_body(app, ctx, req, crate::body::SMALL_BODY_BYTES).await {
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
        .call(move |c| users::find_for_login(c, &lookup_name))
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
        Some((user, hash)) => users::verify_password(&password, &hash).then_some(user),
        None => {
            users::verify_password(&password, &decoy);
            None
        }
    })
    .await
    .ok()
    .flatten();
    let ip = ctx.client_ip;
    let audit_name = username.chars().take(64).collect::<String>();
    let audit_id = user.as_ref().map(|u| u.id);
    let success = user.is_some();
    let _ = app
        .store
        .call(move |c| {
            c.execute(
                "INSERT INTO login_audit (at, username, user_id, ip, success) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![now(), audit_name, audit_id, ip.to_string(), success as i64],
            )
        })
        .await;
    let Some(user) = user else {
        tracing::info!(user = %username, ip = %ip, "sign-in refused: wrong user name or password");
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
    let lifetime = if remember_set(&form.remember) {
        app.config.auth.remember_lifetime
    } else {
        app.config.auth.session_lifetime
    };
    let token = match create_session(app, user.id, lifetime, ip, user_agent).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot create session: {e}");
            return signin_unavailable();
        }
    };
    tracing::info!(user = %user.username, ip = %ip, "signed in");
    let mut resp = if json {
        response::json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "next": next}),
        )
    } else {
        response::redirect(StatusCode::SEE_OTHER, &next)
    };
    if let Some(v) = session_cookie_header(&token, lifetime) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `POST /logout`: revokes this session and clears the cookie.
pub async fn logout(app: &App, req: Request<Incoming>) -> Resp {
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

    #[test]
    fn next_stays_on_site() {
        for bad in [
            "//evil.com",
            "https://evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "/%2Fevil.com",
            "/%252F%252Fevil.com",
            "%2F%2Fevil.com",
            "javascript:alert(1)",
            "/\tevil",
            "/%09/evil.com",
            "/ünicode",
            "/a b",
            "",
        ] {
            assert_eq!(safe_next(bad), "/", "{bad}");
        }
        assert_eq!(safe_next("/c/123?x=1"), "/c/123?x=1");
    }

    #[test]
    fn known_networks_are_the_same_ipv4_address_or_ipv6_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_network(ip("198.51.100.7"), ip("198.51.100.7")));
        assert!(!same_network(ip("198.51.100.7"), ip("198.51.100.8")));
        assert!(same_network(
            ip("2001:db8:1:2::1"),
            ip("2001:db8:1:2:aaaa::9")
        ));
        assert!(!same_network(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1")));
        assert!(same_network(ip("::ffff:198.51.100.7"), ip("198.51.100.7")));
        assert!(!same_network(
            ip("::ffff:198.51.100.7"),
            ip("::ffff:198.51.100.8")
        ));
    }

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
        };
        assert!(chat_send_limited(&app, &user(1)).is_none());
        assert!(chat_send_limited(&app, &user(1)).is_none());
        let refused = chat_send_limited(&app, &user(1)).unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = refused.headers()[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "{wait}");
        // Another user has their own allowance.
        assert!(chat_send_limited(&app, &user(2)).is_none());
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-hermes_session=tok; b=2"),
        );
        assert_eq!(session_cookie(&h).as_deref(), Some("tok"));
    }
}
