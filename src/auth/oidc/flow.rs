//! One sign-in in progress, from `GET /login/oidc/NAME` to its callback, kept in the browser that
//! started it: a cookie signed with the server's key (HMAC-SHA-256), `HttpOnly`, `Secure`, ten
//! minutes long. It carries the `state` (compared with the callback's), the `nonce` (compared
//! with the ID token's), the PKCE verifier (sent with the code, so a code stolen on its way back
//! is worth nothing elsewhere), the redirect URI used, and where to go afterwards.
//!
//! Kept in the browser rather than on the server, so that starting sign-ins costs the server no
//! memory (nothing for a flood to fill) and binds each one to the browser that began it: a
//! callback arriving in another browser (a link sent to a victim, "login CSRF") has no cookie,
//! or one whose `state` differs, and is refused. `SameSite=Lax`, because the provider sends the
//! browser back with a top-level navigation from its own site, which a `Strict` cookie would miss.

use base64::Engine;
use hmac::{Hmac, Mac};
use http::{header, HeaderMap, HeaderValue};
use sha2::Sha256;

use crate::store::now;

pub(crate) const COOKIE_NAME: &str = "__Host-hermes_oidc";
/// Long enough to type a password and a code at the provider; short enough that a forgotten tab
/// is not a standing invitation.
pub(crate) const FLOW_LIFETIME_SECS: i64 = 600;

/// What the callback needs to finish a sign-in.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub(crate) struct Flow {
    /// The provider's name; a callback for another provider is refused.
    pub provider: String,
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub redirect_uri: String,
    pub next: String,
    pub remember: bool,
    /// Unix seconds after which the flow is refused.
    pub expires: i64,
}

fn mac(key: &[u8; 32], payload: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length; a 32-byte key never fails.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(payload);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// The `Set-Cookie` value that stores `flow`.
pub(crate) fn cookie(key: &[u8; 32], flow: &Flow) -> Option<HeaderValue> {
    let payload = serde_json::to_vec(flow).ok()?;
    let value = format!(
        "{}.{}",
        b64().encode(&payload),
        b64().encode(mac(key, &payload))
    );
    HeaderValue::from_str(&format!(
        "{COOKIE_NAME}={value}; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age={FLOW_LIFETIME_SECS}"
    ))
    .ok()
}

/// The `Set-Cookie` value that removes the flow cookie (each callback ends its flow).
pub(crate) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-hermes_oidc=; Secure; HttpOnly; SameSite=Lax; Path=/; Max-Age=0",
    )
}

/// Why a callback's flow cookie is refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FlowError {
    /// No cookie: another browser, cookies blocked, or the ten minutes are over.
    Missing,
    /// Not signed by this server (or signed before its last start).
    BadSignature,
    Expired,
}

/// The flow in this request's cookie, if it is this server's and still valid.
pub(crate) fn read(key: &[u8; 32], headers: &HeaderMap) -> Result<Flow, FlowError> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, val)) = pair.trim().split_once('=') {
                if name == COOKIE_NAME && !val.is_empty() && val.len() <= 4096 {
                    found = Some(val.to_string());
                }
            }
        }
    }
    let value = found.ok_or(FlowError::Missing)?;
    let (payload, sig) = value.split_once('.').ok_or(FlowError::BadSignature)?;
    let payload = b64().decode(payload).map_err(|_| FlowError::BadSignature)?;
    let sig = b64().decode(sig).map_err(|_| FlowError::BadSignature)?;
    let mut m = Hmac::<Sha256>::new_from_slice(key).map_err(|_| FlowError::BadSignature)?;
    m.update(&payload);
    // Constant-time comparison.
    m.verify_slice(&sig).map_err(|_| FlowError::BadSignature)?;
    let flow: Flow = serde_json::from_slice(&payload).map_err(|_| FlowError::BadSignature)?;
    if flow.expires <= now() {
        return Err(FlowError::Expired);
    }
    Ok(flow)
}

/// `a == b` in time that does not depend on where they differ (a `state` guessed byte by byte).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    use sha2::Digest;
    // Equal-length digests compared whole: the time depends on neither value.
    let (x, y) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(expires: i64) -> Flow {
        Flow {
            provider: "corp".into(),
            state: "s".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            redirect_uri: "https://h/login/oidc/corp/callback".into(),
            next: "/".into(),
            remember: false,
            expires,
        }
    }

    fn headers_with(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        h
    }

    #[test]
    fn a_flow_comes_back_only_signed_by_this_key_and_in_time() {
        let key = [7u8; 32];
        let set = cookie(&key, &flow(now() + 60)).unwrap();
        assert!(set.to_str().unwrap().contains("HttpOnly; SameSite=Lax"));
        assert_eq!(read(&key, &headers_with(&set)).unwrap(), flow(now() + 60));
        assert_eq!(
            read(&[8u8; 32], &headers_with(&set)),
            Err(FlowError::BadSignature)
        );
        let old = cookie(&key, &flow(now() - 1)).unwrap();
        assert_eq!(read(&key, &headers_with(&old)), Err(FlowError::Expired));
        assert_eq!(read(&key, &HeaderMap::new()), Err(FlowError::Missing));
        // A payload changed by the browser (a longer lifetime) no longer matches its signature.
        let text = set.to_str().unwrap().split(';').next().unwrap().to_string();
        let (name_payload, sig) = text.split_once('.').unwrap();
        let payload = b64()
            .decode(name_payload.strip_prefix("__Host-hermes_oidc=").unwrap())
            .unwrap();
        let forged = String::from_utf8(payload)
            .unwrap()
            .replace("\"remember\":false", "\"remember\":true");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={}.{sig}", b64().encode(forged)))
                .unwrap(),
        );
        assert_eq!(read(&key, &h), Err(FlowError::BadSignature));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd"));
    }
}
