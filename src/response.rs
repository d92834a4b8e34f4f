//! Response bodies and the small builders every route uses, so each error looks the same:
//! `{"error": {"code": "...", "message": "..."}}` with a status a client can act on.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the server sends.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;
pub(crate) type Resp = Response<Body>;

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed_unsync()
}

/// A response with a body and content type.
pub(crate) fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Resp {
    with_body(status, "application/json", value.to_string())
}

/// The JSON error envelope of every API route.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// `429` with `Retry-After` in the header and the body.
pub(crate) fn too_many(retry_after_secs: u64, message: &str) -> Resp {
    let secs = retry_after_secs.max(1);
    let mut r = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({"error": {"code": "rate_limited", "message": message, "retry_after": secs}}),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

pub(crate) fn redirect(status: StatusCode, location: &str) -> Resp {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    match HeaderValue::from_str(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
        }
        Err(_) => *r.status_mut() = StatusCode::BAD_REQUEST,
    }
    r
}

/// `204 No Content`, with no body and no content type.
pub(crate) fn no_content() -> Resp {
    let mut r = with_body(StatusCode::NO_CONTENT, "application/json", "");
    *r.body_mut() = empty();
    r.headers_mut().remove(http::header::CONTENT_TYPE);
    r
}

pub(crate) fn not_found() -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "There is nothing at this address.",
    )
}

pub(crate) fn method_not_allowed() -> Resp {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This address does not accept that method.",
    )
}

/// Parses a JSON request body, or answers `400` saying what is wrong with it.
// The error is the finished answer, built once on a cold path.
#[allow(clippy::result_large_err)]
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Resp> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            &format!("The request body is not the expected JSON: {e}"),
        )
    })
}
