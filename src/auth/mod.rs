//! Who is asking: web sessions behind the `__Host-hermes_session` cookie, the same-origin rule
//! for state-changing requests, and safe `next` redirects. The handlers that take the `App` (the
//! login gate, the login and logout forms) are in `login.rs`; this file holds only what `App`
//! and the handlers share, so it never imports `App`.
//!
//! Session tokens are 256-bit random values; the database keeps only their SHA-256, so a copy of
//! the database does not let anyone sign in.
//!

pub(crate) mod account;
pub(crate) mod admin;
pub(crate) mod admin_users;
pub(crate) mod invites;
pub(crate) mod login;
pub(crate) mod oidc;
pub(crate) mod passkeys;
pub(crate) mod password;
pub(crate) mod second_factor;
pub(crate) mod token_cache;
pub(crate) mod tokens;
pub(crate) mod trusted_header;
pub(crate) mod users;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Method, Request};
use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use crate::response::{self, Resp};
use crate::store::now;
pub(crate) use users::{Role, User};

pub(crate) const COOKIE_NAME: &str = "__Host-hermes_session";

/// A new random session token (43 URL-safe characters).
pub(crate) fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    token_digest(token).to_vec()
}

/// `token_hash` without the heap copy.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The public handle of a session: the first 16 hex digits of its token hash. It names the
/// session in lists and revocations and cannot be turned back into the token.
pub(crate) fn session_id(hash: &[u8]) -> String {
    hex::encode(&hash[..hash.len().min(8)])
}

/// The session token from the `Cookie` header(s), if any.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
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

/// signed out, revoked or expired, and its account not removed).
pub(crate) async fn session_user(store: &crate::store::Store, hash: Vec<u8>) -> Option<User> {
    let result = store
        .call(move |c| {
            let now = now();
            let found = c
                .query_row(
                    "SELECT u.id, u.username, u.role, u.scope, s.last_seen, s.second_factor FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.expires_at > ?2",
                    params![hash, now],
                    |r| {
                        let mut user = User::from_row(r, 0)?;
                        user.second_factor = r.get(5)?;
                        Ok((user, r.get::<_, i64>(4)?))
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
pub(crate) const DB_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How often old sign-in audit rows are deleted (besides at start).
const AUDIT_PRUNE_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Starts the serving process's database upkeep, when there is a runtime to run it (not in the
/// command-line tools): empties the token cache whenever another connection has committed to
/// the database (SQLite's `data_version` changes only for other connections' commits, so this
/// process's own writes cost nothing), and deletes sign-in audit rows older than `audit_keep`,
/// once at start and then daily. It holds the store and the cache, not the `App`, so it never
/// keeps the `App` shared at start-up.
pub(crate) fn spawn_upkeep(
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

pub(crate) fn session_cookie_header(token: &str, max_age: Duration) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        max_age.as_secs()
    ))
    .ok()
}

pub(crate) fn clear_cookie_header() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-hermes_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
    )
}

/// A `next` target that stays on this site: a path starting with a single `/`, no scheme, no
/// backslash, no control characters, checked after percent-decoding too. Anything else is `/`.
/// The raw value must be printable ASCII (as every path a browser sends is), so it can go into a
/// `Location` header unchanged.
pub(crate) fn safe_next(raw: &str) -> String {
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
pub(crate) fn login_location(path_and_query: &str) -> String {
    let next = safe_next(path_and_query);
    let enc = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
    format!("/login?next={enc}")
}

/// The per-user chat-send limit (`auth.chat_sends_per_minute_per_user`): `Some` is the `429`
/// with `Retry-After` to send back when this user is sending too fast; `None` lets the message go.
pub(crate) fn chat_send_limited(
    limit: &crate::security::KeyedLimit<i64>,
    user: &User,
) -> Option<Resp> {
    let secs = limit.check(&user.id).err()?;
    Some(response::too_many(
        secs,
        &format!("You are sending messages too fast. Try again in {secs} seconds."),
    ))
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
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_ascii_lowercase());
    }
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.to_ascii_lowercase())
}

/// True when a state-changing request comes from this site's own pages.
pub(crate) fn same_origin<B>(req: &Request<B>) -> bool {
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

pub(crate) fn is_state_changing(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
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
