//! `/v1/chat/completions` and `/v1/models` for OpenAI-compatible clients, behind personal API
//! tokens instead of the login cookie (so no cookie, no CSRF origin check).
//!
//! The edge checks the token, applies the user's chat rate limit, forces session scoping and
//! forwards with the real Hermes API key, streaming the answer back untouched:
//! - `X-Hermes-Session-Key` is always `web:<scope>` (the user's own long-term memory);
//! - a client's `X-Hermes-Session-Id: X` becomes `api-<scope>-X`, so one user can never name
//!   another user's session (Hermes then loads that session's history itself);
//! - without one, Hermes uses the request's own history (as OpenAI clients send it) and derives a
//!   session id from the system prompt and first message; a system line `api user: <scope>` is
//!   added so that derived id differs between users (pitfall 16).
//!
//! `<scope>` is the account's [`User::scope`], never reused by another account (not even after
//! this one is removed): the user id for accounts made before migration 5, `u<id>-<random>` since.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::{App, Ctx};
use crate::auth::User;
use crate::hermes::relay::Relay;
use crate::hermes::{Outgoing, UpstreamError, PASSED};
use crate::response::{self, Resp};

/// Every `/v1/...` request.
pub(crate) async fn route(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    if !req.headers().contains_key(header::AUTHORIZATION) {
        // Like every other API route without credentials (docs/http-api.md).
        return response::error(
            StatusCode::UNAUTHORIZED,
            "login_required",
            "Sign in first: your session is missing or has expired.",
        );
    }
    let Some(user) = crate::auth::tokens::authenticate(app, req.headers()).await else {
        let mut r = response::error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "Send a personal API token as `Authorization: Bearer hek_...`; create one in the chat page or with `hermes-edge token create --user NAME`.",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return r;
    };
    let path = req.uri().path().to_string();
    let resp = match (req.method().clone(), path.as_str()) {
        (Method::POST, "/v1/chat/completions") => completions(app, ctx, req, &user).await,
        (Method::GET, "/v1/models") => models(app, ctx).await,
        (_, "/v1/chat/completions" | "/v1/models") => response::method_not_allowed(),
        _ => response::not_found(),
    };
    crate::auth::users::with_user(resp, &user)
}

/// A client session id is kept only if it is short, printable and not path-like.
fn valid_client_session(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && !id.contains("..")
}

async fn completions(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let client_session = req
        .headers()
        .get("x-hermes-session-id")
        .map(|v| v.to_str().map(str::to_string));
    let session = match client_session {
        None => None,
        Some(Ok(id)) if valid_client_session(&id) => Some(format!("api-{}-{id}", user.scope)),
        Some(_) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "bad_session_id",
                "X-Hermes-Session-Id must be 1 to 128 letters, digits, `-`, `_`, `.` or `:`.",
            )
        }
    };
    // Counted under the memory budgets until the answer has begun (`body` shares its bytes).
    let held =
        match crate::body::read_body(app.body_room(ctx), req, app.config.limits.max_body_bytes)
            .await
        {
            Ok(b) => b,
            Err(r) => return r,
        };
    let Some(probe) = Probe::of(&held) else {
        return response::error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "The request body must be a JSON object (an OpenAI chat completion request).",
        );
    };
    let stream = probe.stream.is_some_and(|s| s.get() == "true");
    let body = if session.is_none() {
        match with_user_line(&held, probe.messages, &user.scope) {
            Some(b) => b,
            None => {
                return response::error(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    "The request needs a \"messages\" array.",
                )
            }
        }
    } else {
        held.bytes.clone()
    };
    if app.config.chat.api_key.is_none() {
        return UpstreamError::NoKey.response();
    }
    if let Some(refused) = crate::auth::chat_send_limited(&app.chat_limit, user) {
        return refused;
    }
    let out = Outgoing {
        body: Some(body),
        session_id: session,
        session_key: Some(crate::hermes::session_key(&user.scope)),
        stream,
        ..Outgoing::new(Method::POST, "/v1/chat/completions", ctx)
    };
    forward(app, &out).await
}

/// The two fields of a chat completion request the edge looks at, borrowed from the body (the
/// rest is checked to be JSON and passed on byte for byte, never re-serialised).
#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    messages: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow)]
    stream: Option<&'a serde_json::value::RawValue>,
}

impl<'a> Probe<'a> {
    /// `None` unless `body` is one JSON object.
    fn of(body: &'a [u8]) -> Option<Probe<'a>> {
        // serde also reads a struct from an array; only an object is a request.
        if body.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice(body).ok()
    }
}

/// `body` with `{"role":"system","content":"api user: <scope>"}` as the first message, spliced
/// into the bytes of the `messages` array. `None` when there is no such array.
fn with_user_line(
    body: &bytes::Bytes,
    messages: Option<&serde_json::value::RawValue>,
    scope: &str,
) -> Option<bytes::Bytes> {
    let raw = messages?.get();
    let inner = raw.strip_prefix('[')?;
    // Where the array's contents start: the `messages` text lies inside `body`.
    let at = (inner.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    if at > body.len() {
        return None;
    }
    // A scope is letters, digits and `-` (`users::new_scope`): no JSON escaping needed. Anything
    // else (never written by this program) would be refused rather than spliced in.
    if !scope
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() + 64 + scope.len());
    out.extend_from_slice(&body[..at]);
    out.extend_from_slice(br#"{"role":"system","content":"api user: "#);
    out.extend_from_slice(scope.as_bytes());
    out.extend_from_slice(br#""}"#);
    if !inner.trim_start().starts_with(']') {
        out.push(b',');
    }
    out.extend_from_slice(&body[at..]);
    Some(bytes::Bytes::from(out))
}

async fn models(app: &App, ctx: &Ctx) -> Resp {
    let out = Outgoing::new(Method::GET, "/v1/models", ctx);
    forward(app, &out).await
}

/// Sends and relays the answer as it arrives, with the headers a client needs.
async fn forward(app: &App, out: &Outgoing) -> Resp {
    let upstream = match crate::hermes::send(&app.hermes(), out).await {
        Ok(r) => r,
        Err(e) => return e.response(),
    };
    let (parts, body) = upstream.into_parts();
    let mut relay = Relay::new(body, app.config.chat.idle_timeout);
    if out.stream && parts.status.is_success() {
        relay = relay.streaming();
    }
    let mut r = Response::new(http_body_util::BodyExt::boxed_unsync(relay));
    *r.status_mut() = parts.status;
    // The security headers are in it already.
    let passed = PASSED.map(|name| parts.headers.get(&name));
    // Which of them Hermes sent, as the index of the prepared map with exactly those slots.
    let mut set = 0;
    for (i, value) in passed.iter().enumerate() {
        if value.is_some() {
            set |= 1 << i;
        }
    }
    let mut headers = app.v1_headers[set].clone();
    for (name, value) in PASSED.into_iter().zip(passed) {
        if let Some(v) = value {
            headers.insert(name, v.clone());
        }
    }
    if out.stream {
        headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests {
    use super::{valid_client_session, with_user_line, Probe};

    fn spliced(body: &str) -> Option<serde_json::Value> {
        let bytes = bytes::Bytes::from(body.to_string());
        let probe = Probe::of(&bytes)?;
        let out = with_user_line(&bytes, probe.messages, "7")?;
        Some(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn the_user_line_is_spliced_in_as_the_first_message() {
        let line = serde_json::json!({"role": "system", "content": "api user: 7"});
        assert_eq!(
            spliced(r#"{"model":"m","messages":[{"role":"user","content":"hi ]"}],"stream":true}"#),
            Some(
                serde_json::json!({"model": "m", "messages": [line, {"role": "user", "content": "hi ]"}], "stream": true})
            )
        );
        assert_eq!(
            spliced(r#" { "messages" : [ ] } "#),
            Some(serde_json::json!({"messages": [line]}))
        );
        assert_eq!(spliced(r#"{"messages":"no"}"#), None);
        assert_eq!(spliced(r#"{"model":"m"}"#), None);
        assert_eq!(spliced(r#"[{"messages":[]}]"#), None);
        assert_eq!(spliced(r#"{"messages":[}"#), None);
        assert_eq!(spliced(r#"{"messages":[],"messages":[]}"#), None);
    }

    #[test]
    fn client_session_ids_cannot_be_path_like_or_odd() {
        assert!(valid_client_session("my-chat_1"));
        assert!(!valid_client_session("../x"));
        assert!(!valid_client_session("a/b"));
        assert!(!valid_client_session("a\nb"));
        assert!(!valid_client_session(""));
    }
}
