//! Where a request goes. The whole route table is the `route` function below, read top to bottom:
//! open routes first, then the login gate, then everything that needs a signed-in user.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderValue, Method, Request, StatusCode, Version};
use hyper::body::Incoming;

use crate::app::{App, Ctx};
use crate::auth::users::{with_user, LogUser};
use crate::auth::{
    self, account, admin, admin_users, invites, login, oidc, passkeys, trusted_header, Role, User,
};
use crate::dashboard;
use crate::response::{self, Resp};
use crate::security;
use crate::static_files;

/// Entry point for every HTTPS request: rate limit, route, security headers, access log.
pub(crate) async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    conn: Option<Arc<crate::app::Conn>>,
) -> Result<Resp, Infallible> {
    // The clock and the route group, for the metrics (a few atomic adds at the end); what else
    // the access log needs is only gathered when it is written (`RUST_LOG=warn` turns it off,
    // and copying the path for nothing showed in profiles).
    let started = Instant::now();
    let group = crate::metrics::group(req.uri().path());
    let logged = tracing::enabled!(target: "access", tracing::Level::INFO)
        .then(|| (req.method().clone(), req.uri().clone()));
    let client_ip =
        security::client_ip(peer.ip(), req.headers(), &app.config.limits.trusted_proxies);
    // The connection's own bucket unless the address came from a trusted proxy's header.
    let limited = match &conn {
        Some(c) if c.peer_ip.0 == client_ip => c.ip_limit.check(),
        _ => app.ip_limit.check(client_ip),
    };
    let ctx = Ctx {
        client_ip,
        peer_ip: peer.ip(),
        conn,
    };
    let mut resp = if let Some(refused) = bad_http1_head(&req, app.config.limits.max_header_bytes) {
        refused
    } else {
        match limited {
            Ok(()) => route(&app, &ctx, req).await,
            Err(secs) => {
                response::too_many(secs, "Too many requests from your address; slow down.")
            }
        }
    };
    app.headers.apply(resp.headers_mut());
    crate::metrics::COUNTERS.request(group, resp.status().as_u16(), started.elapsed());
    if let Some((method, uri)) = logged {
        access_log(&resp, started, &method, uri.path(), client_ip);
    }
    Ok(resp)
}

/// The refusal of an HTTP/1.x request head that hyper lets through: one larger than
/// `max_header_bytes` (`431`; hyper's `max_buf_size` bounds its read buffer, and a head that
/// arrives in the right pieces passes it by up to half again), or an HTTP/1.1 request without
/// exactly one `Host` (`400`, RFC 9112 §3.2). The connection is closed after either. HTTP/2 bounds
/// its header list itself (`max_header_list_size`) and names the host in `:authority`.
fn bad_http1_head<B>(req: &Request<B>, max_header_bytes: usize) -> Option<Resp> {
    let version = req.version();
    if version >= Version::HTTP_2 {
        return None;
    }
    // As sent: `METHOD target HTTP/1.1\r\n`, each `name: value\r\n`, and the blank line.
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri
            .authority()
            .map_or(0, |a| a.as_str().len() + "https://".len());
    let mut size = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len() + 2;
    for (name, value) in req.headers() {
        size += name.as_str().len() + 2 + value.len() + 2;
    }
    let mut refused = if size > max_header_bytes {
        response::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!("The request head is larger than {max_header_bytes} bytes."),
        )
    } else {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let one_host = match (hosts.next(), hosts.next()) {
            (Some(host), None) => valid_host(host.as_bytes()),
            (None, None) => version < Version::HTTP_11,
            _ => false,
        };
        if one_host {
            return None;
        }
        response::error(
            StatusCode::BAD_REQUEST,
            "bad_host",
            "An HTTP/1.1 request needs exactly one Host header with a host name.",
        )
    };
    refused
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(refused)
}

/// A `Host` value is `host[:port]`: an authority without user information.
fn valid_host(value: &[u8]) -> bool {
    !value.is_empty() && !value.contains(&b'@') && http::uri::Authority::try_from(value).is_ok()
}

/// One line per request: method, path, status, bytes, duration, user, client address.
fn access_log(resp: &Resp, started: Instant, method: &Method, path: &str, client_ip: IpAddr) {
    let status = resp.status().as_u16();
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let user = resp
        .extensions()
        .get::<LogUser>()
        .map_or("-", |u| u.0.as_str());
    tracing::info!(
        target: "access",
        method = %method,
        path = %path,
        status,
        bytes,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        user = %user,
        ip = %client_ip,
    );
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/v1/") || path.starts_with("/dashboard/api/")
}

/// The route table.
///
/// The large handlers (the `/v1` proxy, sign-in, everything behind the login) are boxed: an async
/// function's future is as large as its largest branch, and hyper moves the whole future of every
/// request into place. Unboxed, that future was over 5 KiB, past the size where glibc's `memcpy`
/// switches to `rep movsb`, and the copy showed in profiles of proxied requests.
async fn route(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    // The trusted sign-in header means nothing from anyone but a trusted proxy: refused anywhere.
    if let Some(refused) = trusted_header::refuse_untrusted(app, ctx, req.headers()) {
        return refused;
    }
    // The OpenAI-compatible API for personal tokens: token auth instead of the cookie (so no
    // cross-origin check applies). First, so that its requests (the busiest route) copy nothing
    // here; no other route below starts with `/v1/`, and a site folder of that name is not
    // served.
    if req.uri().path().starts_with("/v1/") {
        return Box::pin(crate::chat::openai::route(app, ctx, req)).await;
    }
    // A clone of the URI shares its bytes; the request itself moves into the handler below.
    let uri = req.uri().clone();
    let path = uri.path();
    let method = req.method().clone();

    // Open routes: no login.
    match (&method, path) {
        (&Method::GET | &Method::HEAD, "/healthz") => return healthz(app).await,
        (&Method::GET | &Method::HEAD, "/ca.crt") => return ca_cert(app),
        // An admin's session or the metrics token, else 404 (see metrics::listener).
        (&Method::GET | &Method::HEAD, "/metrics") => {
            return crate::metrics::listener::https_metrics(app, &req).await
        }
        (&Method::GET | &Method::HEAD, "/login") => {
            return match login::login_page_redirect(app, &req).await {
                Some(already_signed_in) => already_signed_in,
                None => page(app, &req, "login.html").await,
            }
        }
        (&Method::POST, "/login") => return Box::pin(login::login(app, ctx, req)).await,
        (&Method::POST, "/login/passkey") => {
            return Box::pin(passkeys::signin_start(app, ctx, req)).await
        }
        (&Method::POST, "/login/passkey/finish") => {
            return Box::pin(passkeys::signin_finish(app, ctx, req)).await
        }
        // One-time password links: the token in the path is the credential.
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/invite/") => {
            return page(app, &req, "invite.html").await
        }
        (&Method::GET, p) if p.starts_with("/api/invite/") => {
            return invites::info(app, tail(p, "/api/invite/")).await
        }
        (&Method::POST, p) if p.starts_with("/api/invite/") => {
            let token = tail(p, "/api/invite/").to_string();
            return Box::pin(invites::redeem(app, ctx, req, &token)).await;
        }
        (_, p) if oidc::routes::is_oidc_path(p) => {
            return Box::pin(oidc::routes::route(app, ctx, req)).await
        }
        (_, "/healthz" | "/ca.crt" | "/login") => return response::method_not_allowed(),
        _ => {}
    }
    // `/media/` comes before everything else that could match it; open to anyone when public,
    // except the accounts' own files (`media/users/<id>/`), which always need their owner.
    if app.config.media.public
        && static_files::is_media(path)
        && static_files::media_owner(path).is_none()
    {
        return static_files::routes::media(app, &req, false).await;
    }
    // Scripts, styles and images of the site are public (the login page needs them); pages are not.
    if let Some(resp) = public_asset(app, &req, path).await {
        return resp;
    }

    // The login gate: a trusted proxy's header, else the session cookie.
    let (user, via_proxy) = match trusted_header::user(app, ctx, req.headers()).await {
        Some(Ok(user)) => (Some(user), true),
        Some(Err(refused)) => return refused,
        None => (login::authenticate(app, req.headers()).await, false),
    };
    // The header is the edge's own credential, like its cookie: never passed on (the dashboard).
    let mut req = req;
    if let Some(name) = &app.config.auth.trusted_header {
        req.headers_mut().remove(name);
    }
    let Some(user) = user else {
        if is_api(path) || method != Method::GET {
            return response::error(
                StatusCode::UNAUTHORIZED,
                "login_required",
                "Sign in first: your session is missing or has expired.",
            );
        }
        let next = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        return response::redirect(StatusCode::SEE_OTHER, &auth::login_location(next));
    };
    if auth::is_state_changing(&method) && !auth::same_origin(&req) {
        return with_user(
            response::error(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "This request did not come from this site's own pages, so it was refused.",
            ),
            &user,
        );
    }
    // A session that must enrol a second factor first reaches only enrolment (not one the proxy
    // signed in: the proxy did the sign-in, second factor included).
    if !via_proxy && account::must_enrol(app, &user).await {
        let not_a_page =
            is_api(path) || static_files::is_media(path) || dashboard::is_dashboard_path(path);
        if let Some(held) = account::restricted(&req, &user, not_a_page) {
            return with_user(held, &user);
        }
    }
    let resp = Box::pin(signed_in(app, ctx, req, &user, &method, path)).await;
    with_user(resp, &user)
}

/// Routes for a signed-in user.
async fn signed_in(
    app: &App,
    ctx: &Ctx,
    req: Request<Incoming>,
    user: &User,
    method: &Method,
    path: &str,
) -> Resp {
    if path.starts_with("/api/admin/") && user.role != Role::Admin {
        return admin::admin_only();
    }
    // `/media/` behind the login, before the chat routes. An account's own files only to it and
    // to administrators; to anyone else they do not exist.
    if static_files::is_media(path) {
        let owner = static_files::media_owner(path);
        if let Some(owner) = &owner {
            let mine = owner.as_deref() == Some(user.id.to_string().as_str());
            if !mine && user.role != Role::Admin {
                return response::not_found();
            }
        }
        return static_files::routes::media(app, &req, owner.is_some()).await;
    }
    match (method, path) {
        (&Method::POST, "/logout") => return login::logout(app, req).await,
        (&Method::GET, "/api/me") => {
            return response::json(
                StatusCode::OK,
                &serde_json::json!({
                    "username": user.username,
                    "role": user.role,
                    // Where the user menu links to Hermes' dashboard (admins only, when set).
                    "dashboard": user.role == Role::Admin && app.config.dashboard_upstream.is_some(),
                }),
            );
        }
        (&Method::GET, "/api/sessions") => return admin::own_sessions(app, &req, user).await,
        (&Method::DELETE, p) if p.starts_with("/api/sessions/") => {
            return admin::revoke_own_session(app, user, tail(p, "/api/sessions/")).await
        }
        (&Method::GET, "/api/passkeys") => return passkeys::list(app, &req, user).await,
        (&Method::POST, "/api/passkeys/register") => {
            return passkeys::register_start(app, ctx, req, user).await
        }
        (&Method::POST, "/api/passkeys/register/finish") => {
            return passkeys::register_finish(app, ctx, req, user).await
        }
        (&Method::DELETE, p) if p.starts_with("/api/passkeys/") => {
            return passkeys::remove(app, user, tail(p, "/api/passkeys/")).await
        }
        (&Method::GET, "/api/push/key") => return crate::push::routes::key(app),
        (&Method::POST, "/api/push/subscriptions") => {
            return crate::push::routes::subscribe(app, ctx, req, user).await
        }
        (&Method::DELETE, "/api/push/subscriptions") => {
            return crate::push::routes::unsubscribe(app, ctx, req, user).await
        }
        (_, "/api/push/key" | "/api/push/subscriptions") => return response::method_not_allowed(),
        (&Method::GET, "/api/admin/users") => return admin_users::list(app).await,
        (&Method::POST, "/api/admin/users") => return admin::create_user(app, ctx, req).await,
        (&Method::POST, "/api/admin/invites") => return admin_users::invite(app, ctx, req).await,
        (&Method::POST, p) if p.starts_with("/api/admin/users/") => {
            let rest = tail(p, "/api/admin/users/");
            let Some((name, action)) = rest.split_once('/') else {
                return response::method_not_allowed();
            };
            let (name, action) = (admin::decode_segment(name), action.to_string());
            return admin_users::action(app, ctx, req, name, &action).await;
        }
        // The admin page: for anyone else there is no such page.
        (&Method::GET | &Method::HEAD, "/admin") => {
            return if user.role == Role::Admin {
                page(app, &req, "admin.html").await
            } else {
                response::not_found()
            };
        }
        (&Method::DELETE, p) if p.starts_with("/api/admin/users/") => {
            return admin::remove_user(app, tail(p, "/api/admin/users/")).await
        }
        (&Method::GET, "/api/admin/sessions") => return admin::list_sessions(app, &req).await,
        (&Method::DELETE, p) if p.starts_with("/api/admin/sessions/") => {
            return admin::revoke_session(app, tail(p, "/api/admin/sessions/")).await
        }
        (&Method::GET, "/api/admin/audit") => return admin::audit(app, &req).await,
        (&Method::GET | &Method::HEAD, "/account") => return page(app, &req, "account.html").await,
        (_, p) if account::is_account_api(p) => {
            return account::route(app, ctx, req, user, method, path).await
        }
        _ => {}
    }
    if crate::chat::is_chat_path(path) {
        return crate::chat::route(app, ctx, req, user, method, path).await;
    }
    // Hermes' own dashboard (admins only), proxied with its WebSockets.
    if dashboard::is_dashboard_path(path) {
        return dashboard::route(app, ctx, req, user).await;
    }
    // Custom pages (`[[routes]]`), before the chat page fallback.
    if let Some(route) = app.config.routes.iter().find(|r| r.path == path) {
        return match static_files::route_file(&req, &route.file).await {
            Ok(resp) => resp,
            Err(e) => {
                tracing::error!(file = %route.file.display(), "custom route file cannot be read: {e}");
                response::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "route_file_unreadable",
                    "The page configured for this address cannot be read on the server; the administrator should check the [[routes]] file path.",
                )
            }
        };
    }
    if is_api(path) {
        return response::not_found();
    }
    if *method != Method::GET && *method != Method::HEAD {
        return response::method_not_allowed();
    }
    if path == "/view" {
        return page(app, &req, "view.html").await;
    }
    if path == "/" || !path.rsplit('/').next().unwrap_or("").contains('.') {
        // Any extension-less path is the chat page (client-side routes such as /c/<id>).
        return page(app, &req, "index.html").await;
    }
    response::not_found()
}

/// The part of `path` after `prefix` (a path parameter such as an id).
fn tail<'a>(path: &'a str, prefix: &str) -> &'a str {
    path.strip_prefix(prefix).unwrap_or("")
}

/// An HTML page of the site (`no-cache`: revalidated with its `ETag` on every visit).
async fn page(app: &App, req: &Request<Incoming>, name: &str) -> Resp {
    match static_files::routes::site(app, req, name).await {
        Ok(resp) => resp,
        Err(_) => response::error(
            StatusCode::NOT_FOUND,
            "page_missing",
            &format!("The page {name} is missing from the site files."),
        ),
    }
}

/// A public site asset (not an HTML page) by its path from the site root (`/js/main.js`,
/// `/vendor/marked.min.js`), served by the static file engine (ETag, ranges, cache lifetimes).
async fn public_asset(app: &App, req: &Request<Incoming>, path: &str) -> Option<Resp> {
    if *req.method() != Method::GET && *req.method() != Method::HEAD {
        return None;
    }
    let rel = path.strip_prefix('/')?;
    if rel.is_empty()
        || rel.ends_with(".html")
        || static_files::is_media(path)
        || dashboard::is_dashboard_path(path)
    {
        return None;
    }
    // A refused or missing name is not an asset: the routes below (and the login gate) decide.
    let mut resp = static_files::routes::site(app, req, rel).await.ok()?;
    if rel == "sw.js" {
        // The service worker's scope is the whole site (it sits at the root, so this only says
        // so); it is `no-cache` like every unhashed name, so a deploy reaches it at once.
        resp.headers_mut().insert(
            http::HeaderName::from_static("service-worker-allowed"),
            HeaderValue::from_static("/"),
        );
    }
    Some(resp)
}

fn ca_cert(app: &App) -> Resp {
    match &app.ca_pem {
        Some(pem) => {
            let mut r = response::with_body(StatusCode::OK, "application/x-x509-ca-cert", pem.clone());
            r.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"hermes-edge-ca.crt\""),
            );
            r
        }
        None => response::error(
            StatusCode::NOT_FOUND,
            "no_local_ca",
            "This server does not use its local CA (it has a certificate from files or ACME), so there is nothing to trust.",
        ),
    }
}

/// `GET /healthz`: the version and whether the Hermes API Server answers its `/health`.
async fn healthz(app: &App) -> Resp {
    let url = format!("{}/health", app.config.upstream);
    let reachable = match url.parse::<http::Uri>() {
        Ok(uri) => {
            let req = Request::get(uri).body(response::empty());
            match req {
                Ok(req) => matches!(
                    tokio::time::timeout(Duration::from_secs(2), app.upstream.request(req)).await,
                    Ok(Ok(r)) if r.status().is_success()
                ),
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    response::json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "upstream": {"url": app.config.upstream, "reachable": reachable},
        }),
    )
}
