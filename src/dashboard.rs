//! `/dashboard/`: Hermes' own web dashboard (`hermes dashboard`) behind the edge's login, for
//! administrators only (the dashboard controls the whole agent: its config, keys and tools).
//!
//! Off until `[dashboard] upstream` (or `--dashboard-upstream`) names it, e.g.
//! `http://127.0.0.1:9119`. The edge then forwards everything under `/dashboard/` with the prefix
//! removed, and tells the dashboard where it lives:
//! - `Host` is the dashboard's own loopback authority: it refuses any other (its guard against
//!   DNS rebinding), so the browser's host never reaches it.
//! - `X-Forwarded-Prefix: /dashboard` makes it write its asset links and base path under the
//!   prefix; `X-Forwarded-For`, `X-Real-IP` and `X-Forwarded-Proto` say who asked and how.
//! - The edge's session cookie and the hop-by-hop headers are dropped; bodies stream both ways.
//!
//! WebSockets (the chat tab's `/api/ws`, `/api/pty` and friends) are forwarded as upgrades and,
//! on `101`, the two upgraded connections are joined byte for byte. A WebSocket must come from
//! this site's own pages (the same `Origin` rule as every state-changing request); the dashboard
//! itself only accepts an `Origin` on its loopback name, so a same-site `Origin` is rewritten to
//! the dashboard's, and a foreign one is passed on unchanged (so it is refused twice).
//!
//! The dashboard page carries an inline `<script>` (its per-process session token and base path),
//! which the edge's Content-Security-Policy forbids. Rather than allow inline script, the edge
//! reads each HTML page the dashboard sends (they are small), hashes every inline script, and gives
//! that one response a policy that allows exactly those scripts (plus the inline styles the
//! dashboard's bundle creates at run time; see `page_policy`). No other response changes.

use std::time::Duration;

use base64::Engine;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use crate::app::{App, Ctx};
use crate::auth::{self, Role, User};
use crate::response::{self, BoxError, Resp};

/// Where the dashboard is mounted on the edge.
pub(crate) const PREFIX: &str = "/dashboard";
/// How long the dashboard may take to start answering a request.
const HEAD_TIMEOUT: Duration = Duration::from_secs(60);
/// HTML pages are read whole to hash their inline scripts; the dashboard's is under 1 KiB.
const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;
const PAGE_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The command that starts the dashboard, for the error pages.
const START_HINT: &str = "hermes dashboard --no-open --port";

/// True for the paths this module answers (`/dashboard` and everything under `/dashboard/`).
pub(crate) fn is_dashboard_path(path: &str) -> bool {
    path == PREFIX || path.starts_with("/dashboard/")
}

/// Routes `/dashboard` and `/dashboard/...` for a signed-in user.
pub(crate) async fn route(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    if req.uri().path() == PREFIX {
        let location = match req.uri().query() {
            Some(q) => format!("{PREFIX}/?{q}"),
            None => format!("{PREFIX}/"),
        };
        return response::redirect(StatusCode::PERMANENT_REDIRECT, &location);
    }
    if user.role != Role::Admin {
        return problem(
            req.headers(),
            StatusCode::FORBIDDEN,
            "admin_only",
            "Only an administrator can open Hermes' dashboard: it controls the whole agent.",
        );
    }
    let Some(base) = app.config.dashboard_upstream.as_deref() else {
        return problem(
            req.headers(),
            StatusCode::NOT_FOUND,
            "dashboard_off",
            &format!(
                "Hermes' dashboard is not enabled on this server. To enable it, run `{START_HINT} 9119` \
                 on the server, set `upstream = \"http://127.0.0.1:9119\"` under [dashboard] in \
                 hermes-edge's config file (or start hermes-edge with \
                 --dashboard-upstream http://127.0.0.1:9119), and restart hermes-edge."
            ),
        );
    };
    if is_websocket(req.headers()) {
        websocket(app, ctx, req, base).await
    } else {
        proxy(app, ctx, req, base).await
    }
}

/// An ordinary request: forwarded with the body streaming up and the answer streaming back, except
/// HTML pages, which are read whole to give them a policy for their inline scripts.
async fn proxy(app: &App, ctx: &Ctx, req: Request<Incoming>, base: &str) -> Resp {
    let limit = app.config.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return problem(
            req.headers(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("The request body is larger than {limit} bytes."),
        );
    }
    let edge_host = auth::request_host(&req);
    let origin = forwarded_origin(&req, base);
    let client_headers = req.headers().clone();
    let (parts, body) = req.into_parts();
    let out = match upstream_request(&parts, base, ctx, origin) {
        // Streamed up as it arrives (never held whole), within the body read timeout.
        Ok(b) => b.body(
            http_body_util::Limited::new(crate::body::timed(&app.config.limits, body), limit)
                .map_err(BoxError::from)
                .boxed_unsync(),
        ),
        Err(resp) => return resp,
    };
    let out = match out {
        Ok(r) => r,
        Err(e) => return bad_request(&client_headers, &e.to_string()),
    };
    let resp = match send(app, out, base, &client_headers).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (mut head, body) = resp.into_parts();
    clean_response_headers(&mut head.headers);
    let html = is_html(&head.headers) && parts.method != Method::HEAD;
    if !html {
        return Response::from_parts(head, body.map_err(BoxError::from).boxed_unsync());
    }
    if head
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity")
    {
        // Cannot be read to hash its scripts: it keeps the edge's strict policy.
        tracing::warn!(
            "the dashboard sent a compressed HTML page; its inline scripts stay blocked"
        );
        return Response::from_parts(head, body.map_err(BoxError::from).boxed_unsync());
    }
    let collected = tokio::time::timeout(
        PAGE_READ_TIMEOUT,
        http_body_util::Limited::new(body, MAX_PAGE_BYTES).collect(),
    )
    .await;
    let page = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            tracing::warn!("reading a dashboard page failed: {e}");
            return problem(
                &client_headers,
                StatusCode::BAD_GATEWAY,
                "dashboard_page_unreadable",
                &format!("Hermes' dashboard at {base} sent a page that could not be read whole (over {MAX_PAGE_BYTES} bytes, or the connection broke)."),
            );
        }
        Err(_) => {
            return problem(
                &client_headers,
                StatusCode::GATEWAY_TIMEOUT,
                "dashboard_timeout",
                &format!(
                    "Hermes' dashboard at {base} stopped sending a page for {} seconds.",
                    PAGE_READ_TIMEOUT.as_secs()
                ),
            )
        }
    };
    let text = String::from_utf8_lossy(&page);
    let csp = page_policy(&inline_hashes(&text, "script"), edge_host.as_deref());
    if let Ok(v) = HeaderValue::from_str(&csp) {
        head.headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    head.headers.remove(header::TRANSFER_ENCODING);
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
    Response::from_parts(head, response::full(page))
}

/// A WebSocket handshake: refused unless it comes from this site's pages; otherwise forwarded,
/// and on `101` the browser's and the dashboard's connections are joined until either side ends.
async fn websocket(app: &App, ctx: &Ctx, mut req: Request<Incoming>, base: &str) -> Resp {
    if !auth::same_origin(&req) {
        return response::error(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "A WebSocket to Hermes' dashboard must come from this site's own pages, so this one was refused.",
        );
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let origin = forwarded_origin(&req, base);
    let client_headers = req.headers().clone();
    let (parts, _body) = req.into_parts();
    let out = match upstream_request(&parts, base, ctx, origin) {
        Ok(b) => b
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .body(response::empty()),
        Err(resp) => return resp,
    };
    let out = match out {
        Ok(r) => r,
        Err(e) => return bad_request(&client_headers, &e.to_string()),
    };
    let mut resp = match send(app, out, base, &client_headers).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // The dashboard said no (a wrong token, a refused origin): pass its answer on.
        let (mut head, body) = resp.into_parts();
        clean_response_headers(&mut head.headers);
        return Response::from_parts(head, body.map_err(BoxError::from).boxed_unsync());
    }
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    let path = parts.uri.path().to_string();
    // The tunnel keeps the client connection's place under `max_connections` while it lasts.
    let conn = ctx.conn.clone();
    // `route` let this request in on its session cookie, so there is one.
    let session = auth::session_cookie(&client_headers).map(|t| auth::token_hash(&t));
    let store = app.store.clone();
    tokio::spawn(async move {
        let _conn = conn;
        let (client, upstream) = match tokio::join!(client_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(%path, "dashboard WebSocket upgrade did not complete: {e}");
                return;
            }
        };
        let mut client = hyper_util::rt::TokioIo::new(client);
        let mut upstream = hyper_util::rt::TokioIo::new(upstream);
        tokio::select! {
            ended = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match ended {
                Ok((up, down)) => {
                    tracing::debug!(%path, up, down, "dashboard WebSocket closed")
                }
                // A browser tab closing or the dashboard stopping ends the pipe: not an error.
                Err(e) => tracing::debug!(%path, "dashboard WebSocket ended: {e}"),
            },
            () = session_ended(&store, session) => tracing::info!(
                %path,
                "dashboard WebSocket closed: the session that opened it was signed out, revoked or \
                 expired, or its account is no longer an administrator's"
            ),
        }
    });
    let (mut head, _) = resp.into_parts();
    clean_response_headers(&mut head.headers);
    head.headers
        .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    head.headers
        .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    Response::from_parts(head, response::empty())
}

/// How often an open dashboard WebSocket checks that the session that opened it still holds.
const SESSION_RECHECK: Duration = Duration::from_secs(5);

/// Returns once the session `hash` no longer belongs to a signed-in administrator (signed out,
/// revoked, expired, account removed; the role is checked as `route` checks it). A WebSocket to
/// the dashboard (its terminal among them) outlives the request that opened it; without this, a
/// session revoked because it was stolen kept an open terminal on the host.
async fn session_ended(store: &crate::store::Store, hash: Option<Vec<u8>>) {
    let Some(hash) = hash else { return };
    loop {
        tokio::time::sleep(SESSION_RECHECK).await;
        match auth::session_user(store, hash.clone()).await {
            Some(user) if user.role == Role::Admin => {}
            _ => return,
        }
    }
}

/// Sends a request to the dashboard; a failure is the finished error answer.
async fn send(
    app: &App,
    out: Request<response::Body>,
    base: &str,
    client_headers: &HeaderMap,
) -> Result<Response<Incoming>, Resp> {
    match tokio::time::timeout(HEAD_TIMEOUT, app.upstream.request(out)).await {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) if crate::body::is_timed_out(&e) => {
            let mut r = crate::body::timed_out_response(app.config.limits.body_read_timeout);
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Err(r)
        }
        Ok(Err(e)) if e.is_connect() => {
            tracing::warn!(dashboard = %base, "Hermes' dashboard unreachable: {e}");
            let port = base.rsplit(':').next().unwrap_or("9119");
            Err(problem(
                client_headers,
                StatusCode::BAD_GATEWAY,
                "dashboard_unreachable",
                &format!(
                    "Cannot reach Hermes' dashboard at {base}. Start it on the server with \
                     `{START_HINT} {port}` (it answers after a few seconds), then reload this page."
                ),
            ))
        }
        Ok(Err(e)) => {
            tracing::warn!(dashboard = %base, "request to Hermes' dashboard failed: {e}");
            Err(problem(
                client_headers,
                StatusCode::BAD_GATEWAY,
                "dashboard_error",
                &format!(
                    "The connection to Hermes' dashboard at {base} failed ({}).",
                    crate::hermes::error_chain(&e)
                ),
            ))
        }
        Err(_) => Err(problem(
            client_headers,
            StatusCode::GATEWAY_TIMEOUT,
            "dashboard_timeout",
            &format!(
                "Hermes' dashboard at {base} did not answer within {} seconds.",
                HEAD_TIMEOUT.as_secs()
            ),
        )),
    }
}

/// The dashboard request for `parts`: its URI without the prefix, the forwarded headers, and the
/// headers that say where the dashboard is mounted and who asked.
// The error is the finished answer, built once on a cold path.
#[allow(clippy::result_large_err)]
fn upstream_request(
    parts: &http::request::Parts,
    base: &str,
    ctx: &Ctx,
    origin: Option<HeaderValue>,
) -> Result<http::request::Builder, Resp> {
    let rest = parts
        .uri
        .path()
        .strip_prefix(PREFIX)
        .filter(|r| r.starts_with('/'))
        .unwrap_or("/");
    let url = match parts.uri.query() {
        Some(q) => format!("{base}{rest}?{q}"),
        None => format!("{base}{rest}"),
    };
    let uri = match url.parse::<http::Uri>() {
        Ok(u) => u,
        Err(_) => return Err(bad_request(&parts.headers, "the address is not valid")),
    };
    let authority = base.strip_prefix("http://").unwrap_or(base);
    let mut b = Request::builder().method(parts.method.clone()).uri(uri);
    if let Some(h) = b.headers_mut() {
        forward_request_headers(&parts.headers, h);
        if let Ok(v) = HeaderValue::from_str(authority) {
            h.insert(header::HOST, v);
        }
        if let Some(o) = origin {
            h.insert(header::ORIGIN, o);
        }
        let ip = crate::forwarded::ip_header(ctx.client_ip);
        crate::forwarded::headers(ip, Some(PREFIX), |n, v| {
            h.insert(n, v);
        });
    }
    Ok(b)
}

/// The `Origin` to send: the dashboard's own for a request from this site's pages (the dashboard
/// accepts only its loopback name), the browser's unchanged otherwise, none when there was none.
fn forwarded_origin<B>(req: &Request<B>, base: &str) -> Option<HeaderValue> {
    let sent = req.headers().get(header::ORIGIN)?;
    if sent.as_bytes() != b"null" && auth::same_origin(req) {
        HeaderValue::from_str(base).ok()
    } else {
        Some(sent.clone())
    }
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the ones
/// the edge sets itself.
const DROPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "origin",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-prefix",
    "x-real-ip",
];

const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The edge's own policy (or the page's hashed one) applies instead.
    "content-security-policy",
];

/// The names listed in `Connection`, which are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Copies the browser's headers for the dashboard: without the hop-by-hop ones, the edge's own
/// forwarding headers, and the edge's session cookie (other cookies pass, in one `Cookie` header
/// as HTTP/1.1 wants even when HTTP/2 split them).
fn forward_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    let listed = connection_listed(from);
    let mut cookies: Vec<&str> = Vec::new();
    for (name, value) in from {
        if DROPPED_REQUEST_HEADERS.contains(&name.as_str()) || listed.contains(name) {
            continue;
        }
        if name == header::COOKIE {
            // A value that is not text cannot be split safely and may hide the session cookie.
            if let Ok(text) = value.to_str() {
                cookies.extend(text.split(';').map(str::trim).filter(|pair| {
                    !pair.is_empty()
                        && pair.split_once('=').map_or(*pair, |(n, _)| n.trim())
                            != auth::COOKIE_NAME
                }));
            }
            continue;
        }
        to.append(name.clone(), value.clone());
    }
    if !cookies.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cookies.join("; ")) {
            to.insert(header::COOKIE, v);
        }
    }
}

/// Removes hop-by-hop headers from a dashboard answer, rewrites a `Location` on the dashboard's
/// own address to the edge's, and drops any cookie named like the edge's session cookie.
fn clean_response_headers(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    for name in DROPPED_RESPONSE_HEADERS {
        headers.remove(*name);
    }
    if let Some(loc) = headers.get(header::LOCATION).and_then(|v| v.to_str().ok()) {
        if let Some(fixed) = edge_location(loc) {
            if let Ok(v) = HeaderValue::from_str(&fixed) {
                headers.insert(header::LOCATION, v);
            }
        }
    }
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v
                .to_str()
                .ok()
                .and_then(|t| t.split_once('='))
                .map(|(n, _)| n.trim());
            name.is_some() && name != Some(auth::COOKIE_NAME)
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for c in cookies {
        headers.append(header::SET_COOKIE, c);
    }
}

/// A dashboard redirect to one of its own paths (`/x`), which the browser must reach under the
/// prefix; `None` when it needs no change (already prefixed, relative, or another site).
fn edge_location(loc: &str) -> Option<String> {
    if loc.starts_with('/')
        && !loc.starts_with("//")
        && !is_dashboard_path(loc.split(['?', '#']).next().unwrap_or(loc))
    {
        return Some(format!("{PREFIX}{loc}"));
    }
    if let Some(rest) = loc
        .strip_prefix("http://127.0.0.1")
        .or_else(|| loc.strip_prefix("http://localhost"))
    {
        // An absolute URL on the dashboard's loopback address: keep only the path.
        let path = rest.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit());
        if path.starts_with('/') || path.is_empty() {
            let path = if path.is_empty() { "/" } else { path };
            return Some(edge_location(path).unwrap_or_else(|| path.to_string()));
        }
    }
    None
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// True for a WebSocket handshake (`Connection: upgrade` with `Upgrade: websocket`).
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    has(header::UPGRADE, "websocket") && has(header::CONNECTION, "upgrade")
}

/// `'sha256-…'` sources for the inline `<tag>` elements of `html` (`script` or `style`):
/// external scripts (`src=`) are skipped; the text is hashed as the browser sees it (line endings
/// normalised to `\n`, as the HTML parser does).
pub(crate) fn inline_hashes(html: &str, tag: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let close = format!("</{tag}");
    let mut hashes = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(&open) {
        let start = at + found + open.len();
        // `<scripts>` or `<style-x>` are other elements.
        match lower.as_bytes().get(start) {
            Some(b'>' | b'/' | b' ' | b'\t' | b'\n' | b'\r' | b'\x0c') => {}
            _ => {
                at = start;
                continue;
            }
        }
        let Some(tag_end) = end_of_tag(&lower, start) else {
            break;
        };
        let attrs = &lower[start..tag_end];
        let Some(body_len) = lower[tag_end + 1..].find(&close) else {
            break;
        };
        let body_start = tag_end + 1;
        let body_end = body_start + body_len;
        if !has_attribute(attrs, "src") {
            let text = html[body_start..body_end]
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            let digest = Sha256::digest(text.as_bytes());
            hashes.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
        }
        at = body_end + close.len();
    }
    hashes
}

/// The index of the `>` that ends a start tag whose attributes begin at `from` (quotes respected).
fn end_of_tag(lower: &str, from: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, &b) in lower.as_bytes()[from..].iter().enumerate() {
        match (quote, b) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return Some(from + i),
            _ => {}
        }
    }
    None
}

/// True when the (lower-case) attribute text of a start tag has attribute `name`.
fn has_attribute(attrs: &str, name: &str) -> bool {
    let mut rest = attrs;
    while let Some(i) = rest.find(name) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + name.len()..].trim_start().chars().next();
        let starts_word = before.is_none_or(|c| c.is_whitespace() || c == '/');
        let ends_name = matches!(after, None | Some('=' | '>' | '/')) || {
            let next = rest[i + name.len()..].chars().next();
            next.is_some_and(char::is_whitespace)
        };
        if starts_word && ends_name {
            return true;
        }
        rest = &rest[i + name.len()..];
    }
    false
}

/// The edge's policy for one dashboard page: its inline scripts allowed by hash (and nothing else
/// inline), inline styles allowed, and the page's own `wss://` origin spelled out for browsers
/// whose `'self'` does not cover WebSockets.
///
/// Styles: the dashboard's bundle builds its styles at run time (Stitches inserts rules into an
/// empty `<style>`, xterm.js writes its theme colours into one, react-remove-scroll adds one
/// with measured sizes), and the page breaks without them (`sheet` is `null` and the app throws).
/// Their text changes with the theme and the window, so no list of hashes can cover it. An inline
/// style cannot run code, and every other source stays `'self'`, so this is the narrowest policy
/// under which the page works; it applies to dashboard pages only.
pub(crate) fn page_policy(scripts: &[String], host: Option<&str>) -> String {
    let mut out = Vec::new();
    for directive in crate::security::CSP.split(';') {
        let d = directive.trim();
        let extra: Vec<String> = match d.split_whitespace().next() {
            Some("script-src") => scripts.to_vec(),
            Some("style-src") => vec!["'unsafe-inline'".to_string()],
            Some("connect-src") => host
                .filter(|h| {
                    h.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                    })
                })
                .map(|h| vec![format!("wss://{h}")])
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let mut text = d.to_string();
        for e in extra {
            text.push(' ');
            text.push_str(&e);
        }
        out.push(text);
    }
    out.join("; ")
}

fn bad_request(headers: &HeaderMap, detail: &str) -> Resp {
    problem(
        headers,
        StatusCode::BAD_REQUEST,
        "bad_request",
        &format!("This request cannot be passed to Hermes' dashboard: {detail}."),
    )
}

/// An error answer: a small HTML page for a browser navigating here, the JSON envelope otherwise.
fn problem(headers: &HeaderMap, status: StatusCode, code: &str, message: &str) -> Resp {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if !wants_html {
        return response::error(status, code, message);
    }
    let title = match status {
        StatusCode::FORBIDDEN => "Not allowed",
        StatusCode::NOT_FOUND => "Dashboard not enabled",
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => "Dashboard unavailable",
        _ => "Dashboard error",
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"/style.css\"></head>\n<body class=\"auth-page\">\
         <main class=\"auth\"><div class=\"auth-card\"><h1>{title}</h1>\n<p id=\"{code}\">{}</p>\n\
         <p><a href=\"/\">Back to the chat</a></p></div></main></body></html>\n",
        crate::html::escape_text(message)
    );
    let mut r = response::with_body(status, "text/html; charset=utf-8", page);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(text: &str) -> String {
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
        )
    }

    #[test]
    fn inline_scripts_are_hashed_and_external_ones_skipped() {
        let html =
            "<head><script type=\"module\" crossorigin src=\"/dashboard/assets/a.js\"></script>\
                    <SCRIPT>window.x=\"a>b\";</SCRIPT><scripts>no</scripts>\
                    <script data-src='x'>one()</script></head>";
        assert_eq!(
            inline_hashes(html, "script"),
            vec![sha("window.x=\"a>b\";"), sha("one()")]
        );
        assert_eq!(inline_hashes(html, "style"), Vec::<String>::new());
        assert_eq!(
            inline_hashes("<style id=\"t\">\r\n:root{}\r\n</style>", "style"),
            vec![sha("\n:root{}\n")]
        );
        // An unterminated element hashes nothing rather than guessing.
        assert_eq!(
            inline_hashes("<script>never closed", "script"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn page_policy_allows_the_hashed_scripts_inline_styles_and_the_websocket_origin() {
        let p = page_policy(&["'sha256-A'".into()], Some("edge.example:8443"));
        assert!(p.contains("; script-src 'self' 'sha256-A';"), "{p}");
        assert!(p.contains("; style-src 'self' 'unsafe-inline';"), "{p}");
        assert!(
            p.contains("; connect-src 'self' wss://edge.example:8443;"),
            "{p}"
        );
        assert_eq!(p.matches("unsafe").count(), 1, "{p}");
        assert!(
            p.contains("default-src 'self';") && p.contains("object-src 'none'"),
            "{p}"
        );
        let odd = page_policy(&[], Some("evil\"; script-src *"));
        assert!(odd.contains("; connect-src 'self';"), "{odd}");
        assert!(!odd.contains("evil"), "{odd}");
    }

    #[test]
    fn session_cookie_is_dropped_and_other_cookies_joined() {
        let forwarded = |values: &[&'static str]| {
            let mut from = HeaderMap::new();
            for v in values {
                from.append(header::COOKIE, HeaderValue::from_static(v));
            }
            let mut to = HeaderMap::new();
            forward_request_headers(&from, &mut to);
            assert!(to.get_all(header::COOKIE).iter().count() <= 1);
            to.get(header::COOKIE)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(
            forwarded(&["a=1; __Host-hermes_session=secret; b=2"]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            forwarded(&["a=1", "__Host-hermes_session=secret", "b=2"]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(forwarded(&["__Host-hermes_session=secret"]), None);
    }

    #[test]
    fn request_headers_lose_hop_by_hop_and_forwarding_headers() {
        let mut from = HeaderMap::new();
        from.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        from.insert("x-private", HeaderValue::from_static("1"));
        from.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        from.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        from.insert("host", HeaderValue::from_static("edge.example"));
        from.insert("x-hermes-session-token", HeaderValue::from_static("t"));
        from.insert("accept", HeaderValue::from_static("*/*"));
        let mut to = HeaderMap::new();
        forward_request_headers(&from, &mut to);
        let mut names: Vec<&str> = to.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept", "x-hermes-session-token"]);
    }

    #[test]
    fn redirects_to_dashboard_paths_stay_under_the_prefix() {
        assert_eq!(
            edge_location("/sessions?x=1").as_deref(),
            Some("/dashboard/sessions?x=1")
        );
        assert_eq!(edge_location("/dashboard/sessions"), None);
        assert_eq!(
            edge_location("http://127.0.0.1:9119/a").as_deref(),
            Some("/dashboard/a")
        );
        assert_eq!(
            edge_location("http://127.0.0.1:9119").as_deref(),
            Some("/dashboard/")
        );
        assert_eq!(edge_location("https://portal.example/x"), None);
        assert_eq!(edge_location("//evil.example/x"), None);
        assert_eq!(edge_location("next"), None);
    }

    #[test]
    fn websocket_handshakes_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert("upgrade", HeaderValue::from_static("WebSocket"));
        assert!(is_websocket(&h));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        assert!(!is_websocket(&h));
    }
}
