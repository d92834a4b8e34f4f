//! Talking to the Hermes Agent API Server: one place that builds the upstream request (the real API
//! key, the session headers, the client address), sends it over the pooled connection, retries a
//! `429` within a bounded budget, and turns every kind of trouble into an `UpstreamError` whose
//! message says what to do about it.
//!
//! Requests go over the client connection's own upstream connection (`conn`, hyper's client
//! connection) or hyper's shared client pool; an answer's body is hyper's own `Incoming`, so
//! dropping it before its end (the browser went away) closes that upstream connection, which stops
//! the agent.
//! `relay` is the streaming body that carries Hermes' SSE events to the client as they arrive.
//! The routes that use it live elsewhere: `chat` (the web chat, its stored conversations and
//! `/v1/*` for API clients) and `dashboard` (the proxy to Hermes' own web dashboard).

pub(crate) mod conn;
pub(crate) mod relay;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::Request as HyperRequest;
use hyper_util::client::legacy::{connect::HttpConnector, Client as Pool};

use crate::config::ChatConfig;
use crate::response::{self, Resp};

/// What went wrong between the edge and Hermes, each with a message a person can act on.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("hermes-edge has no API key for the Hermes API Server. Set HERMES_EDGE_API_KEY (or API_SERVER_KEY) in the environment of hermes-edge, or `api_key` / `api_key_file` under [chat] in the config file, to the same value as Hermes' API_SERVER_KEY (or run hermes-edge as Hermes' user, with API_SERVER_KEY in Hermes' .env), then restart hermes-edge.")]
    NoKey,
    #[error("Cannot reach the Hermes API Server at {url}. Start Hermes with its API server enabled (API_SERVER_ENABLED=true, and API_SERVER_KEY set to the key hermes-edge uses), for example with `hermes gateway run`.")]
    Unreachable { url: String },
    #[error("The Hermes API Server refused hermes-edge's API key: the API key does not match API_SERVER_KEY. Set HERMES_EDGE_API_KEY to the same value as Hermes' API_SERVER_KEY.")]
    Auth,
    #[error("Hermes is busy or its model provider is rate limiting; try again in {retry_after} seconds.")]
    RateLimited { retry_after: u64 },
    #[error("Hermes sent nothing for {secs} seconds, so the answer was abandoned. Check that Hermes and its model provider are working, then try again.")]
    Stalled { secs: u64 },
    #[error("The Hermes API Server answered with an error{}", detail_suffix(.0))]
    Failed(String),
    #[error("The connection to Hermes broke before the answer was complete{}; the partial answer was kept.", detail_suffix(.0))]
    Broken(String),
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl UpstreamError {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            UpstreamError::NoKey => "api_key_missing",
            UpstreamError::Unreachable { .. } => "upstream_unreachable",
            UpstreamError::Auth => "upstream_auth",
            UpstreamError::RateLimited { .. } => "rate_limited",
            UpstreamError::Stalled { .. } => "upstream_stalled",
            UpstreamError::Failed(_) => "upstream_error",
            UpstreamError::Broken(_) => "stream_broken",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            UpstreamError::NoKey | UpstreamError::Unreachable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamError::Auth | UpstreamError::Failed(_) | UpstreamError::Broken(_) => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            UpstreamError::Stalled { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// `{"code","message"}` (plus `retry_after` for a rate limit), as stored and as sent.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"code": self.code(), "message": self.to_string()});
        if let UpstreamError::RateLimited { retry_after } = self {
            v["retry_after"] = serde_json::json!(retry_after);
        }
        v
    }

    /// This error, counted in the metrics (`hermes_edge_upstream_errors_total`) by its kind.
    pub(crate) fn counted(self) -> Self {
        crate::metrics::COUNTERS.upstream_error(self.code());
        self
    }

    /// The JSON error answer used before a stream has started.
    pub(crate) fn response(&self) -> Resp {
        if let UpstreamError::RateLimited { retry_after } = self {
            return response::too_many(*retry_after, &self.to_string());
        }
        response::json(self.status(), &serde_json::json!({"error": self.to_json()}))
    }

    /// The `edge.error` SSE event used once a stream has started.
    pub(crate) fn event(&self) -> Bytes {
        Bytes::from(format!("event: edge.error\ndata: {}\n\n", self.to_json()))
    }
}

pub(crate) const X_HERMES_SESSION_ID: header::HeaderName =
    header::HeaderName::from_static("x-hermes-session-id");
const X_HERMES_SESSION_KEY: header::HeaderName =
    header::HeaderName::from_static("x-hermes-session-key");

/// The headers of the upstream answer that a `/v1` client gets, besides the security headers.
pub(crate) const PASSED: [header::HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    X_HERMES_SESSION_ID,
];

/// The security headers with a slot for each subset of `PASSED` (index bit `i` set: a slot, an
/// empty value, for `PASSED[i]`), from which `chat::openai::forward` takes the one whose slots the upstream
/// answer fills, so no slot ever leaves the edge empty.
///
/// Why: a cloned map has no room to spare, so the first header added to a copy of the six grew
/// it (a `realloc` and its copy on every proxied request; measured, see bench/README.md).
/// Setting a name the map holds replaces the value in place. Nine entries at most also stay
/// within glibc's per-thread cache of small blocks.
///
/// Made once into `App::v1_headers`, so it lives here rather than with the `/v1` routes.
pub(crate) fn answer_headers(security: &crate::security::SecurityHeaders) -> [http::HeaderMap; 8] {
    std::array::from_fn(|set| {
        let mut map = security.map();
        for (i, name) in PASSED.iter().enumerate() {
            if set & (1 << i) != 0 {
                map.insert(name.clone(), HeaderValue::from_static(""));
            }
        }
        map
    })
}

/// The shared pool of connections to Hermes (hyper's client).
pub(crate) type UpstreamClient = Pool<HttpConnector, crate::response::Body>;

/// What talking to Hermes needs of the edge's state, lent by `App::hermes` for each exchange,
/// so that this client does not depend on the `App` of the route handlers.
pub(crate) struct Hermes<'a> {
    /// The fixed parts of every request to Hermes.
    pub target: Option<&'a Target>,
    pub pool: &'a UpstreamClient,
    /// The API key, the retry budget, the idle timeout.
    pub chat: &'a ChatConfig,
    /// The upstream URL, as configured, for the messages that name it.
    pub upstream: &'a str,
}

/// Who a request to Hermes is sent for (`app::Ctx`): the client's address and its connection.
pub(crate) trait Client {
    fn client_ip(&self) -> IpAddr;
    fn conn(&self) -> Option<Arc<dyn ClientConn>>;
}

/// What a client connection lends to the requests sent to Hermes on its behalf (`app::Conn`).
pub(crate) trait ClientConn: Send + Sync {
    /// Its own connection to Hermes (see `conn`).
    fn upstream(&self) -> &conn::OwnUpstream;
    /// The peer's address and its text as a header value.
    fn peer_ip(&self) -> &(IpAddr, HeaderValue);
}

/// One request to Hermes, kept as bytes so it can be sent again after a `429`.
pub(crate) struct Outgoing {
    pub method: Method,
    /// Path on the API server, e.g. `/v1/chat/completions` (owned for a path with an id in it).
    pub path: Cow<'static, str>,
    pub body: Option<Bytes>,
    pub session_id: Option<String>,
    /// `X-Hermes-Session-Key`, see [`session_key`].
    pub session_key: Option<HeaderValue>,
    pub client_ip: IpAddr,
    pub stream: bool,
    /// The client connection: its own upstream connection is tried before the shared pool, and
    /// its address header is formatted once for all its requests.
    pub conn: Option<Arc<dyn ClientConn>>,
}

/// What every request to Hermes carries that never changes, prepared once (formatting the URL and
/// the key on every request showed in profiles).
pub(crate) struct Target {
    authority: http::uri::Authority,
    /// `Host` for requests sent in origin form over a client connection's own connection.
    host: HeaderValue,
    /// `Bearer <key>`, marked sensitive; `None` without a key or when the key cannot be a header.
    bearer: Option<HeaderValue>,
}

impl Target {
    /// `None` when `upstream` has no host (config validation refuses such a URL).
    ///
    /// The three values are static text (made once per process, which has one `App`): every
    /// proxied request copies them, and copying shared bytes would move one reference count's
    /// cache line between the two worker threads on each request.
    pub(crate) fn new(upstream: &str, key: Option<&str>) -> Option<Target> {
        let parsed = upstream.parse::<http::Uri>().ok()?.authority()?.clone();
        let text = static_bytes(parsed.as_str().to_string());
        let authority = http::uri::Authority::from_maybe_shared(text.clone()).ok()?;
        let host = HeaderValue::from_maybe_shared(text).ok()?;
        let bearer = key
            .and_then(|k| HeaderValue::from_maybe_shared(static_bytes(format!("Bearer {k}"))).ok())
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Some(Target {
            authority,
            host,
            bearer,
        })
    }
}

/// `text` kept for the life of the process, as bytes whose copies share no reference count.
fn static_bytes(text: String) -> bytes::Bytes {
    bytes::Bytes::from_static(Box::leak(text.into_boxed_str()).as_bytes())
}

impl Outgoing {
    /// A request without body or session headers from the client of `ctx`; the routes that need
    /// more set those fields on top.
    pub(crate) fn new(
        method: Method,
        path: impl Into<Cow<'static, str>>,
        ctx: &impl Client,
    ) -> Outgoing {
        Outgoing {
            method,
            path: path.into(),
            body: None,
            session_id: None,
            session_key: None,
            client_ip: ctx.client_ip(),
            stream: false,
            conn: ctx.conn(),
        }
    }

    /// Each header of the request but `Host` and `Content-Length`, which depend on how it is sent.
    /// The error text of a bad header value never includes the value, so the key stays private.
    fn each_header(
        &self,
        bearer: &HeaderValue,
        mut add: impl FnMut(header::HeaderName, HeaderValue),
    ) -> Result<(), String> {
        add(header::AUTHORIZATION, bearer.clone());
        let ip = match &self.conn {
            Some(c) if c.peer_ip().0 == self.client_ip => c.peer_ip().1.clone(),
            _ => crate::forwarded::ip_header(self.client_ip),
        };
        crate::forwarded::headers(ip, None, &mut add);
        if self.stream {
            add(
                header::ACCEPT,
                HeaderValue::from_static("text/event-stream"),
            );
        }
        if let Some(id) = &self.session_id {
            add(
                X_HERMES_SESSION_ID,
                HeaderValue::from_str(id).map_err(|e| e.to_string())?,
            );
        }
        if let Some(k) = &self.session_key {
            add(X_HERMES_SESSION_KEY, k.clone());
        }
        if self.body.is_some() {
            add(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Ok(())
    }

    /// The request in origin form with `Host`, for a client connection's own connection; the
    /// shared pool takes it after [`absolute`] (hyper's pool wants the whole URL).
    fn build(&self, hermes: &Hermes<'_>) -> Result<HyperRequest<crate::response::Body>, String> {
        let (target, bearer) = target(hermes)?;
        let path = match &self.path {
            Cow::Borrowed(p) => http::uri::PathAndQuery::from_static(p),
            Cow::Owned(p) => {
                http::uri::PathAndQuery::try_from(p.as_str()).map_err(|e| e.to_string())?
            }
        };
        // Built in place: the request builder moved the whole request through each of its steps
        // and grew the header map several times (both showed in profiles of proxied requests).
        let mut headers = http::HeaderMap::with_capacity(12);
        headers.insert(header::HOST, target.host.clone());
        self.each_header(bearer, |name, value| {
            headers.insert(name, value);
        })?;
        let body = match &self.body {
            Some(bytes) => response::full(bytes.clone()),
            None => response::empty(),
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = http::Uri::from(path);
        *req.headers_mut() = headers;
        Ok(req)
    }
}

/// `req` (origin form) with the whole URL of `target`, for the shared pool.
fn absolute(
    target: &Target,
    mut req: HyperRequest<crate::response::Body>,
) -> Result<HyperRequest<crate::response::Body>, String> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTP);
    uri.authority = Some(target.authority.clone());
    uri.path_and_query = req.uri().path_and_query().cloned();
    *req.uri_mut() = http::Uri::from_parts(uri).map_err(|e| e.to_string())?;
    Ok(req)
}

/// The fixed parts of a request to Hermes and its `Bearer` value; an error when either is missing.
fn target<'a>(hermes: &Hermes<'a>) -> Result<(&'a Target, &'a HeaderValue), String> {
    match hermes.target {
        Some(
            t @ Target {
                bearer: Some(bearer),
                ..
            },
        ) => Ok((t, bearer)),
        _ => Err("the upstream URL or the API key cannot be used in a request".into()),
    }
}

/// `X-Hermes-Session-Key: web:<scope>`, a user's own long-term memory in Hermes. The scope is the
/// account's own ([`crate::auth::User::scope`]: the id for accounts made before ids were kept
/// from coming back, a never-repeated value since), not the id, which an account removed before
/// that may have passed on.
pub(crate) fn session_key(scope: &str) -> HeaderValue {
    let mut buf = [0u8; 64];
    let Some(rest) = buf.get_mut(4..4 + scope.len()) else {
        return HeaderValue::from_str(&format!("web:{scope}"))
            .unwrap_or_else(|_| HeaderValue::from_static("web:"));
    };
    rest.copy_from_slice(scope.as_bytes());
    buf[..4].copy_from_slice(b"web:");
    HeaderValue::from_bytes(&buf[..4 + scope.len()])
        .unwrap_or_else(|_| HeaderValue::from_static("web:"))
}

/// Sends `out` to Hermes and returns its successful response head (the body still streaming).
/// A `429` is retried, honouring `Retry-After`, while the retry budget lasts.
pub(crate) async fn send(
    hermes: &Hermes<'_>,
    out: &Outgoing,
) -> Result<Response<UpBody>, UpstreamError> {
    let resp = exchange(hermes, out).await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let detail = error_detail(resp).await;
    tracing::warn!(
        status = status.as_u16(),
        "Hermes answered an error: {detail}"
    );
    Err(UpstreamError::Failed(format!("{} {}", status.as_u16(), detail)).counted())
}

/// Sends `out` to Hermes and returns whatever it answered except a `401` (an `Auth` error) and a
/// `429` (retried, honouring `Retry-After`, while the retry budget lasts); the caller judges the
/// status.
pub(crate) async fn exchange(
    hermes: &Hermes<'_>,
    out: &Outgoing,
) -> Result<Response<UpBody>, UpstreamError> {
    exchange_uncounted(hermes, out)
        .await
        .map_err(UpstreamError::counted)
}

async fn exchange_uncounted(
    hermes: &Hermes<'_>,
    out: &Outgoing,
) -> Result<Response<UpBody>, UpstreamError> {
    if hermes.chat.api_key.is_none() {
        return Err(UpstreamError::NoKey);
    }
    let budget = hermes.chat.retry_budget;
    let mut started = None;
    for attempt in 0u32..16 {
        let resp = request(hermes, out).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            tracing::error!("the Hermes API Server refused the API key (401); HERMES_EDGE_API_KEY does not match API_SERVER_KEY");
            return Err(UpstreamError::Auth);
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let wait = retry_after(resp.headers())
                .unwrap_or_else(|| Duration::from_millis(500u64 << attempt.min(4)));
            drop(resp);
            if started.get_or_insert_with(Instant::now).elapsed() + wait > budget {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                tracing::warn!(
                    attempts = attempt + 1,
                    "Hermes kept answering 429; giving up within the retry budget"
                );
                return Err(UpstreamError::RateLimited {
                    retry_after: secs.max(1),
                });
            }
            tracing::info!(
                wait_ms = wait.as_millis() as u64,
                "Hermes answered 429; retrying"
            );
            crate::metrics::COUNTERS.upstream_retry();
            tokio::time::sleep(wait).await;
            continue;
        }
        return Ok(resp);
    }
    Err(UpstreamError::RateLimited { retry_after: 1 })
}

/// One exchange with Hermes: over the client connection's own connection when it has a free one,
/// else over the shared pool. Its answer must start within the idle timeout.
async fn request(hermes: &Hermes<'_>, out: &Outgoing) -> Result<Response<UpBody>, UpstreamError> {
    let idle = hermes.chat.idle_timeout;
    let stalled = || UpstreamError::Stalled {
        secs: idle.as_secs(),
    };
    let failed = |e: &(dyn std::error::Error + 'static)| {
        let e = error_chain(e);
        tracing::warn!("request to Hermes failed: {e}");
        UpstreamError::Failed(format!("the connection failed ({e})"))
    };
    let (target, _) = target(hermes).map_err(UpstreamError::Failed)?;
    let mut req = out.build(hermes).map_err(UpstreamError::Failed)?;
    if let Some(conn) = &out.conn {
        let sent = conn.upstream().send(target.authority.as_str(), req);
        match tokio::time::timeout(idle, sent).await {
            Err(_) => return Err(stalled()),
            Ok(conn::Tried::Answered(resp)) => return Ok(resp),
            Ok(conn::Tried::NotSent(back)) => req = back,
            Ok(conn::Tried::Unreachable(e)) => return Err(unreachable(hermes, &e)),
            Ok(conn::Tried::Failed(e)) => return Err(failed(&e)),
        }
    }
    let req = absolute(target, req).map_err(UpstreamError::Failed)?;
    match tokio::time::timeout(idle, hermes.pool.request(req)).await {
        Err(_) => Err(stalled()),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) if e.is_connect() => Err(unreachable(hermes, &e)),
        Ok(Err(e)) => Err(failed(&e)),
    }
}

/// The body of an answer from Hermes, as hyper's client reads it.
pub(crate) type UpBody = Incoming;

fn unreachable(hermes: &Hermes<'_>, e: &dyn std::fmt::Display) -> UpstreamError {
    tracing::warn!(upstream = %hermes.upstream, "Hermes API Server unreachable: {e}");
    UpstreamError::Unreachable {
        url: hermes.upstream.to_string(),
    }
}

pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

/// `Retry-After` as seconds or an HTTP date, capped at an hour.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = if let Ok(secs) = text.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        Duration::from_secs_f64(secs.min(3600.0))
    } else {
        let when = httpdate::parse_http_date(text).ok()?;
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(Duration::from_secs(3600)))
}

/// The JSON body of an answer (at most `limit` bytes, read within `within`), if it is JSON.
pub(crate) async fn json_of(
    resp: Response<UpBody>,
    limit: usize,
    within: Duration,
) -> Option<serde_json::Value> {
    let body = http_body_util::Limited::new(resp.into_body(), limit).collect();
    let bytes = match tokio::time::timeout(within, body).await {
        Ok(Ok(c)) => c.to_bytes(),
        _ => return None,
    };
    serde_json::from_slice(&bytes).ok()
}

/// One `GET` of `upstream` + `path` for the commands that check on Hermes from outside the server
/// (`doctor`, `status`, `setup`): its own short-lived client, the key as a Bearer token when given,
/// the answer's status and JSON body (`Null` when it is not JSON; at most 1 MiB), all within
/// `within`. The error says why nothing usable came back.
pub(crate) async fn probe(
    upstream: &str,
    path: &str,
    key: Option<&str>,
    within: Duration,
) -> Result<(StatusCode, serde_json::Value), String> {
    let client: Pool<HttpConnector, response::Body> =
        Pool::builder(hyper_util::rt::TokioExecutor::new()).build(HttpConnector::new());
    let mut b = Request::get(format!("{upstream}{path}"));
    if let Some(k) = key {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = b
        .body(response::empty())
        .map_err(|e| format!("{upstream}{path} is not a URL hermes-edge can use ({e})"))?;
    let resp = tokio::time::timeout(within, client.request(req))
        .await
        .map_err(|_| format!("no answer within {} s", within.as_secs()))?
        .map_err(|e| error_chain(&e))?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 1 << 20).collect();
    let json = match tokio::time::timeout(within, body).await {
        Ok(Ok(c)) => serde_json::from_slice(&c.to_bytes()).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    };
    Ok((status, json))
}

/// What the web chat's runs need of Hermes (`GET /v1/capabilities`' `features`).
const RUN_FEATURES: [&str; 5] = [
    "run_submission",
    "run_events_sse",
    "run_stop",
    "run_approval_response",
    "approval_events",
];

/// The run features a capabilities answer lacks (all of them when it is not one).
pub(crate) fn missing_run_features(capabilities: &serde_json::Value) -> Vec<&'static str> {
    RUN_FEATURES
        .into_iter()
        .filter(|k| capabilities.pointer(&format!("/features/{k}")) != Some(&true.into()))
        .collect()
}

/// A short description of an error answer: the OpenAI envelope's message if there is one.
pub(crate) async fn error_detail(resp: Response<UpBody>) -> String {
    let status = resp.status();
    let message = json_of(resp, 64 * 1024, Duration::from_secs(5))
        .await
        .and_then(|v| error_message(&v));
    let text = message.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_string()
    });
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

fn error_message(v: &serde_json::Value) -> Option<String> {
    v.pointer("/error/message")
        .or_else(|| v.get("error"))
        .or_else(|| v.get("message"))
        .and_then(|m| m.as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_keys_read_as_format_would_write_them() {
        assert_eq!(session_key("42"), "web:42");
        let long = "u1-".to_string() + &"f".repeat(80);
        assert_eq!(session_key(&long), format!("web:{long}").as_str());
    }

    #[test]
    fn retry_after_reads_seconds_and_caps_them() {
        let mut h = http::HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_events_are_sse_with_code_and_message() {
        let e = UpstreamError::Stalled { secs: 2 };
        let text = String::from_utf8(e.event().to_vec()).unwrap();
        assert!(text.starts_with("event: edge.error\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n"), "{text}");
        assert!(text.contains("\"code\":\"upstream_stalled\""), "{text}");
    }
}
