//! The plain-HTTP listener of `/metrics` and `/status`, and who may read them.
//!
//! Rules (docs/security.md, "Metrics"):
//! - The listener is on loopback unless a token is configured (`config/metrics.rs` refuses the
//!   start otherwise). With a token, every request on it needs `Authorization: Bearer <token>`.
//! - On loopback it answers only requests whose `Host` is `localhost` or an IP address, so a web
//!   page whose DNS name was pointed at 127.0.0.1 (DNS rebinding) cannot read it from a browser
//!   on this machine.
//! - On the HTTPS port, `/metrics` answers an admin's session or the Bearer token, and is `404`
//!   otherwise. The client's address never opens it: behind a trusted proxy every client comes
//!   from loopback, and X-Forwarded-For is the client's word.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::{render, Live};
use crate::app::App;
use crate::config::MetricsConfig;
use crate::response::{self, Resp};
use crate::server::StartError;

/// Connections served at once: a scraper and a person running `status` need a few, and a local
/// program opening many must not take memory from the real server.
const MAX_CONNECTIONS: usize = 16;

/// The listener, or `None` when it is off. The default address that cannot be bound (another
/// program has the port) only logs a warning: metrics are not worth a failed start. An address
/// the operator chose stops the start with the reason.
pub(crate) async fn bind(config: &MetricsConfig) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = config.listen else {
        return Ok(None);
    };
    match crate::server::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(e) if !config.explicit => {
            tracing::warn!(
                "metrics listener not started: {e}. The server runs without /metrics and \
                 `hermes-edge status`; set [metrics] listen to a free address, or \"off\""
            );
            Ok(None)
        }
        Err(e) => Err(StartError::Other(format!("metrics.listen: {e}"))),
    }
}

/// Serves `/metrics` and `/status` until `stop` changes.
pub(crate) async fn serve(listener: TcpListener, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let room = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics listener: too many connections; closing a new one");
            continue;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(answer(&app, &req, loopback, peer).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // Also the keep-alive idle limit of a scraper's connection.
                .header_read_timeout(Duration::from_secs(20))
                .serve_connection(TokioIo::new(tcp), svc);
            if let Err(e) = served.await {
                tracing::debug!(%peer, "metrics connection ended: {e}");
            }
        });
    }
}

async fn answer(app: &App, req: &Request<Incoming>, loopback: bool, peer: SocketAddr) -> Resp {
    if loopback && !local_host(req.headers()) {
        tracing::info!(%peer, "metrics listener: refused a request for another host name (DNS rebinding?)");
        return response::error(
            StatusCode::MISDIRECTED_REQUEST,
            "not_local",
            "This listener answers only requests for localhost or an IP address.",
        );
    }
    if let Some(token) = &app.config.metrics.token {
        if !bearer_matches(req.headers(), token) {
            let mut r = response::error(
                StatusCode::UNAUTHORIZED,
                "token_required",
                "Send the token of metrics.token_file as `Authorization: Bearer <token>`.",
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => metrics(app).await,
        (&Method::GET | &Method::HEAD, "/status") => {
            response::json(StatusCode::OK, &super::status::document(app).await)
        }
        (_, "/metrics" | "/status") => response::method_not_allowed(),
        _ => response::not_found(),
    }
}

/// `GET /metrics` on the HTTPS port: an admin's session or the metrics token, else `404` (as if
/// there were no such page: nobody else needs to learn that it exists).
pub(crate) async fn https_metrics(app: &App, req: &Request<Incoming>) -> Resp {
    let by_token = app
        .config
        .metrics
        .token
        .as_ref()
        .is_some_and(|t| bearer_matches(req.headers(), t));
    if !by_token {
        match crate::auth::login::authenticate(app, req.headers()).await {
            Some(user) if user.role == crate::auth::Role::Admin => {}
            _ => return response::not_found(),
        }
    }
    let mut r = metrics(app).await;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn metrics(app: &App) -> Resp {
    let text = render(live(app).await);
    response::with_body(StatusCode::OK, super::CONTENT_TYPE, text)
}

/// What a scrape reads from the rest of the server now.
pub(crate) async fn live(app: &App) -> Live {
    let ops = app.ops.get();
    let (sessions, users_signed_in) = app
        .store
        .call(|c| super::status::sessions(c, crate::store::now()))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!("metrics: cannot count the sessions: {e}");
            (0, 0)
        });
    let config = app.config.clone();
    let certificates = tokio::task::spawn_blocking(move || {
        crate::tls::status::certificates(&config)
            .into_iter()
            .filter_map(|c| Some((c.role.to_string(), c.name, c.not_after?)))
            .collect()
    })
    .await
    .unwrap_or_default();
    Live {
        start_time: ops.map_or(0, |o| o.started),
        connections_open: ops.map_or(0, |o| o.conns.open()),
        connections_max: app.config.limits.max_connections,
        runs: app.runs.count(),
        sessions,
        users_signed_in,
        certificates,
    }
}

/// Whether `Authorization` is `Bearer <token>`. The two are compared as SHA-256 digests, so the
/// time the comparison takes says nothing about how much of the token was right.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    use sha2::{Digest, Sha256};
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    Sha256::digest(given.trim().as_bytes()) == Sha256::digest(token.as_bytes())
}

/// `Host` is absent (HTTP/1.0), `localhost` or an IP address, with or without a port.
fn local_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST) else {
        return true;
    };
    let Ok(host) = host.to_str() else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => {
            return rest
                .split(']')
                .next()
                .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        }
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_local_host_names_are_answered() {
        for ok in [
            "localhost",
            "localhost:8643",
            "127.0.0.1:8643",
            "[::1]:8643",
            "10.0.0.1",
        ] {
            assert!(local_host(&with(header::HOST, ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8643",
            "[evil]:1",
            "127.0.0.1.nip.io",
        ] {
            assert!(!local_host(&with(header::HOST, bad)), "{bad}");
        }
        assert!(local_host(&HeaderMap::new()));
    }

    #[test]
    fn the_bearer_token_must_match_exactly() {
        let t = "0123456789abcdef0123";
        assert!(bearer_matches(
            &with(header::AUTHORIZATION, &format!("Bearer {t}")),
            t
        ));
        assert!(!bearer_matches(
            &with(header::AUTHORIZATION, "Bearer 0123456789abcdef012"),
            t
        ));
        assert!(!bearer_matches(&with(header::AUTHORIZATION, t), t));
        assert!(!bearer_matches(&HeaderMap::new(), t));
    }
}
