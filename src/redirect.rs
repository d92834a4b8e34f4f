//! Port 80: answers ACME HTTP-01 challenges and redirects everything else to HTTPS (`308`, so a
//! form's method and body are kept). Nothing else is served over plain HTTP.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;
use crate::conn_limits::ConnLimits;
use crate::response::{self, Resp};

/// The port-80 listener: ACME HTTP-01 answers, and `308` to HTTPS for everything else.
pub(crate) async fn accept(
    listener: TcpListener,
    https_port: u16,
    app: Arc<App>,
    limits: Arc<ConnLimits>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some((tcp, peer, place)) =
        crate::conn_limits::next_connection(&listener, &limits, &mut stop).await
    {
        let app = app.clone();
        let watcher = graceful.watcher();
        let limits = limits.clone();
        tokio::spawn(async move {
            let Some(_slot) = place.slot().await else {
                return;
            };
            // A redirect is answered at once, so a port-80 connection counts as idle throughout
            // and makes way for a new client like any idle HTTPS one.
            let mut registered = limits.register();
            let svc = service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(redirect(&app, &req, https_port)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), svc);
            tokio::select! {
                r = watcher.watch(conn) => if let Err(e) = r {
                    tracing::debug!(%peer, "http connection ended: {e}");
                },
                _ = registered.until_evicted() => {
                    tracing::debug!(%peer, "idle http connection closed for a new client");
                }
            }
        });
    }
}

fn redirect(app: &App, req: &Request<Incoming>, https_port: u16) -> Resp {
    let path = req.uri().path();
    if let Some(token) = path.strip_prefix("/.well-known/acme-challenge/") {
        if let Some(answer) = app.http01.get().and_then(|f| f(token)) {
            return response::with_body(StatusCode::OK, "application/octet-stream", answer);
        }
        return response::not_found();
    }
    let host = crate::auth::request_host(req).unwrap_or_default();
    let host = strip_port(&host);
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        let mut r = response::error(
            StatusCode::BAD_REQUEST,
            "bad_host",
            "This server only answers over HTTPS; the request had no usable Host header.",
        );
        app.headers.apply(r.headers_mut());
        return r;
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    };
    let mut r = response::redirect(StatusCode::PERMANENT_REDIRECT, &location);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
    app.headers.apply(r.headers_mut());
    r
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return match rest.find(']') {
            Some(end) => &host[..end + 2],
            None => "",
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("127.0.0.1"), "127.0.0.1");
    }
}
