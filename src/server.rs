//! Listeners, the accept loops and shutdown.
//!
//! Start-up binds every listener before it prints the `ready` line, so a port problem is reported
//! (with what to do about it) before anyone is told the server is up. SIGTERM or SIGINT stops the
//! accept loops; requests and streams in flight get `shutdown_grace` to finish, then the process exits 0.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::app::{App, Conn};
use crate::config::{Config, TlsMode};
use crate::conn_limits::{next_connection, ConnLimits, Registered, Requests};
use crate::response;
use crate::send_timeout::{SendCheck, SendWatch, WatchedBody, WatchedIo};
use crate::store::Store;
use crate::tls::{self, local_ca::LocalCa, CertResolver};

#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("port {port} is already in use ({addr}); another program (maybe an older hermes-edge or nginx) holds it. See which with: ss -tlnp 'sport = :{port}'")]
    PortInUse { addr: SocketAddr, port: u16 },
    #[error("permission denied to listen on port {port} ({addr}); ports below 1024 need a capability: run `sudo setcap cap_net_bind_service=+ep $(command -v hermes-edge)` or use AmbientCapabilities=CAP_NET_BIND_SERVICE in the systemd unit")]
    PortPermission { addr: SocketAddr, port: u16 },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    User(#[from] crate::auth::users::UserError),
    #[error("{0}")]
    Other(String),
}

/// Pending connections the kernel queues before the accept loop takes them (capped by
/// `net.core.somaxconn`). `TcpListener::bind` asks for 128: a burst of new connections larger than
/// that (measured with 400 at once) overflows the queue, the kernel drops the SYNs and each client
/// retries a whole second later (`TcpExtListenOverflows` in `nstat`). nginx asks for 511.
const LISTEN_BACKLOG: u32 = 4096;

/// Asks the kernel to hand over a connection only once its first bytes (the TLS ClientHello, or
/// the request on port 80) have arrived, or after about 10 s: one wake-up and one empty read less
/// per connection, and a client that connects and sends nothing costs the server nothing. Clients
/// always speak first in both protocols. Not being able to set it only loses that.
fn defer_accept(socket: &tokio::net::TcpSocket) {
    use std::os::fd::AsFd;
    if let Err(e) = crate::sys::set_tcp_defer_accept(socket.as_fd(), 10) {
        tracing::debug!("TCP_DEFER_ACCEPT not set: {e}");
    }
}

/// A listening socket on `addr`; with `shared`, one of several on the same port (`SO_REUSEPORT`).
fn listen_socket(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    defer_accept(&socket);
    socket.listen(LISTEN_BACKLOG)
}

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    listen_socket(addr, false).map_err(|e| bind_error(addr, e))
}

/// `count` listening sockets sharing the port of `addr` (`SO_REUSEPORT`: the kernel spreads new
/// connections over them evenly), one per HTTPS thread.
///
/// A port that another program holds is still reported as in use: `SO_REUSEPORT` would let this
/// process join a group that an older hermes-edge (same user) still listens in, and share its
/// traffic without a word. So the port is first bound alone, exactly as a single listener would
/// be, and only then by the shared sockets (on the port the first bind got, so port 0 works).
pub(crate) async fn bind_https(
    addr: SocketAddr,
    count: usize,
) -> Result<Vec<TcpListener>, StartError> {
    let alone = bind(addr).await?;
    let addr = alone.local_addr().map_err(|e| bind_error(addr, e))?;
    drop(alone);
    (0..count.max(1))
        .map(|_| listen_socket(addr, true).map_err(|e| bind_error(addr, e)))
        .collect()
}

fn bind_error(addr: SocketAddr, source: std::io::Error) -> StartError {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => StartError::PortInUse {
            addr,
            port: addr.port(),
        },
        std::io::ErrorKind::PermissionDenied => StartError::PortPermission {
            addr,
            port: addr.port(),
        },
        _ => StartError::Bind { addr, source },
    }
}

/// Sets up TLS, state and listeners, then serves until a shutdown signal.
pub(crate) async fn run(config: Config) -> Result<(), StartError> {
    // First: from here on SIGHUP no longer ends the process (it reloads, once serving).
    let hangups = crate::reload::Hangups::listen();
    // Ports first: a port held by a stale process is the most common start-up failure, and
    // nothing (no first-run account, no certificate) should happen before it is reported.
    let https = bind_https(config.listen, https_worker_count()).await?;
    let http = match config.http_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let metrics = crate::metrics::listener::bind(&config.metrics).await?;
    let store = Store::open(&config.data_dir)?;
    // Answers a previous process was writing when it died: kept, and marked interrupted.
    match store.call_blocking(|c| crate::chat::runs::close_interrupted(c)) {
        Ok(0) => {}
        Ok(n) => tracing::warn!("{n} answer(s) were being written when the server last stopped; their text so far is kept, marked interrupted"),
        Err(e) => tracing::error!("cannot close the answers left running: {e}"),
    }

    if let Some(path) = &config.source {
        println!("config: {}", path.display());
    }
    // Where the Hermes connection's settings came from (never the key itself).
    println!(
        "hermes: {} from {}; API key from {}",
        config.upstream,
        config.upstream_source,
        config
            .chat
            .api_key_source
            .as_deref()
            .unwrap_or("nowhere (not set)")
    );
    let (resolver, ca_pem) = setup_tls(&config).await?;
    let mut acme = match &config.tls {
        TlsMode::Acme(settings) => {
            let job = tls::acme::AcmeJob::from_config(settings, &config.certs_dir);
            Some(tls::acme::prepare(job, &resolver).map_err(|e| StartError::Other(e.to_string()))?)
        }
        _ => None,
    };
    let extra_alpn = acme.as_ref().map(|a| a.extra_alpn()).unwrap_or(&[]);
    let tls_config = tls::server_config(resolver.clone(), extra_alpn)?;
    // Only once everything that can stop the start has passed: a start that fails on a bad
    // certificate must not leave an `admin` behind whose password went by on a console.
    if let Some((password, from_env)) = crate::auth::users::ensure_first_admin(&store)? {
        if from_env {
            println!("created account `admin` with the password from HERMES_EDGE_ADMIN_PASSWORD");
        } else {
            println!("created account `admin` with password: {password}");
            println!("  (shown once; change it with `hermes-edge user passwd admin`)");
        }
    }
    let app = App::new(config.clone(), store, ca_pem);
    if let Some(acme) = &acme {
        // Set once, before any listener serves.
        let _ = app.http01.set(acme.http01_responder());
    }
    crate::reload::Reload::new(config.clone(), app.clone(), resolver.clone()).spawn(hangups);
    tokio::spawn(crate::chat::runs::driver::probe_at_start(app.clone()));
    let gc_app = app.clone();
    crate::security::spawn_limit_gc(vec![Arc::new(move || {
        gc_app.ip_limit.forget_idle();
        gc_app.login_ip_limit.forget_idle();
        gc_app.login_account_limit.forget_idle();
        gc_app.chat_limit.forget_idle();
    })]);

    let https_addr = https
        .first()
        .ok_or_else(|| StartError::Other("internal: no HTTPS listener".into()))?
        .local_addr()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let http_addr = match &http {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        ),
        None => None,
    };

    let metrics_addr = match &metrics {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        ),
        None => None,
    };
    let conn_limit = ConnLimits::new(
        config.limits.max_connections,
        config.limits.max_connections_per_ip,
        &config.limits.trusted_proxies,
    );

    let urls = public_urls(https_addr);
    let _ = app.ops.set(crate::metrics::Ops {
        conns: conn_limit.clone(),
        listening: crate::metrics::Listening {
            https: https_addr,
            http: http_addr,
            metrics: metrics_addr,
            urls: urls.clone(),
        },
        started: crate::store::now(),
    });
    let off = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_else(|| "off".into());
    println!(
        "ready https_addr={} http_addr={} metrics_addr={} urls={}",
        https_addr,
        off(http_addr),
        off(metrics_addr),
        urls.join(" ")
    );
    crate::notify::ready(&format!("serving on {https_addr}"));
    crate::notify::spawn_watchdog();

    let acme_task = acme.as_mut().and_then(|a| a.spawn());

    let (stop_tx, stop_rx) = watch::channel(false);
    let graceful = Arc::new(GracefulShutdown::new());

    let https_workers = spawn_https_workers(
        https,
        TlsAcceptor::from(tls_config),
        &app,
        &conn_limit,
        &stop_rx,
    )?;
    let http_task = http.map(|l| {
        tokio::spawn(crate::redirect::accept(
            l,
            https_addr.port(),
            app.clone(),
            conn_limit.clone(),
            graceful.clone(),
            stop_rx.clone(),
        ))
    });

    if let Some(l) = metrics {
        tokio::spawn(crate::metrics::listener::serve(
            l,
            app.clone(),
            stop_rx.clone(),
        ));
    }

    wait_for_signal().await;
    crate::notify::stopping();
    println!(
        "shutting down: no new connections; waiting up to {}s for requests in flight",
        config.limits.shutdown_grace.as_secs()
    );
    // Every accept loop and HTTPS connection holds a copy of `stop_rx`, and starts its graceful
    // shutdown when this changes; `stop_tx.closed()` is when the last copy is gone.
    drop(stop_rx);
    let _ = stop_tx.send(true);
    if let Some(task) = &acme_task {
        task.abort();
    }
    for done in https_workers {
        let _ = done.await;
    }
    if let Some(t) = http_task {
        let _ = t.await;
    }
    let graceful = match Arc::try_unwrap(graceful) {
        Ok(g) => g,
        Err(_) => return Ok(()),
    };
    tokio::select! {
        _ = async {
            // Connections, and the answers being written (which go on without a tab).
            tokio::join!(graceful.shutdown(), stop_tx.closed(), async {
                while !app.runs.all().is_empty() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        } => {
            println!("all connections closed and answers finished; bye")
        }
        _ = tokio::time::sleep(config.limits.shutdown_grace) => {
            println!("shutdown deadline reached; closing the remaining connections");
        }
    }
    // Answers still being written (their tabs may have closed long ago) end here, kept.
    crate::chat::runs::driver::interrupt_all(&app).await;
    Ok(())
}

/// Builds the certificate resolver for the configured mode, printing what devices need to know.
async fn setup_tls(config: &Config) -> Result<(Arc<CertResolver>, Option<Bytes>), StartError> {
    match &config.tls {
        // With ACME the local-CA certificate is served until the ACME certificate arrives (and for
        // names it does not cover, such as localhost or an IP address).
        TlsMode::LocalCa | TlsMode::Acme(_) => {
            let names = tls::local_ca::wanted_names(&config.extra_names);
            let dir = config.certs_dir.clone();
            let ca = tokio::task::spawn_blocking(move || LocalCa::load_or_create(&dir, &names))
                .await
                .map_err(|e| StartError::Other(e.to_string()))??;
            print_local_ca(&ca);
            let pem = Bytes::from(ca.ca_pem.clone());
            Ok((CertResolver::new(ca.key.clone()), Some(pem)))
        }
        TlsMode::Files { cert, key } => {
            let certified = tls::files::load_pair(cert, key)?;
            let resolver = CertResolver::new(certified);
            tls::files::spawn_reloader(
                cert.clone(),
                key.clone(),
                resolver.clone(),
                config.cert_reload_interval,
            );
            println!(
                "TLS: certificate files {} and {} (reloaded when they change)",
                cert.display(),
                key.display()
            );
            Ok((resolver, None))
        }
    }
}

fn print_local_ca(ca: &LocalCa) {
    if ca.ca_created {
        println!(
            "TLS: created a local certificate authority in {}",
            ca.ca_path.display()
        );
    }
    println!("TLS: local CA root  SHA-256 {}", ca.ca_fingerprint);
    println!(
        "TLS: leaf {} SHA-256 {}",
        if ca.leaf_reissued { "(new)" } else { "(kept)" },
        ca.leaf_fingerprint
    );
    println!("TLS: leaf covers {}", ca.leaf_names.join(", "));
    println!("TLS: to trust this server once on a device, open /ca.crt and check the root fingerprint above");
}

/// URLs a person can open: localhost and each local address when listening on all addresses.
fn public_urls(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    let fmt = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V4(v4) => format!("https://{v4}:{port}/"),
        std::net::IpAddr::V6(v6) => format!("https://[{v6}]:{port}/"),
    };
    if !addr.ip().is_unspecified() {
        return vec![fmt(addr.ip())];
    }
    let mut urls = vec![format!("https://localhost:{port}/")];
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for i in ifaces {
            if !i.is_loopback() && i.ip().is_ipv4() {
                urls.push(fmt(i.ip()));
            }
        }
    }
    urls
}

/// HTTP/1.1 for a connection that did not negotiate `h2` (with upgrades, for WebSockets).
fn h1_builder(config: &Config) -> hyper::server::conn::http1::Builder {
    let l = &config.limits;
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        // Also the keep-alive idle limit: hyper starts it whenever it waits for a request head.
        .header_read_timeout(l.header_read_timeout)
        .max_buf_size(l.max_header_bytes.max(8192))
        .keep_alive(true);
    b
}

/// HTTP/2 for a connection that negotiated `h2`; its streams run on `executor`.
fn h2_builder<E>(config: &Config, executor: E) -> hyper::server::conn::http2::Builder<E> {
    let l = &config.limits;
    let mut b = hyper::server::conn::http2::Builder::new(executor);
    b.timer(TokioTimer::new())
        .max_concurrent_streams(l.h2_max_concurrent_streams)
        .max_header_list_size(l.max_header_bytes as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// How many threads serve HTTPS: one per CPU the process may use.
fn https_worker_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 64)
}

/// Starts one thread per listening socket (one per CPU), each with its own single-threaded
/// runtime that accepts from its socket and serves the connections it accepted start to end.
/// Each returned receiver fires once its thread's accept loop has ended (after the stop signal).
///
/// Why: on tokio's work-stealing runtime a proxied request crossed threads (an idle worker was
/// woken through the runtime's eventfd to steal the task the busy one had just made ready) and
/// paid for the stealing machinery on every wake. One runtime per thread, sharing nothing but the
/// port, is nginx's worker model: measured on 2 cores with two one-thread processes against one
/// two-thread process, proxied requests/s rose by about a quarter. Each thread has its own socket
/// (`bind_https`) so the kernel spreads connections evenly; with one socket polled by every
/// thread, whichever woke first took a whole burst of new connections and the other idled.
fn spawn_https_workers(
    listeners: Vec<TcpListener>,
    acceptor: TlsAcceptor,
    app: &Arc<App>,
    limits: &Arc<ConnLimits>,
    stop: &watch::Receiver<bool>,
) -> Result<Vec<tokio::sync::oneshot::Receiver<()>>, StartError> {
    let failed =
        |e: std::io::Error| StartError::Other(format!("cannot start the HTTPS threads: {e}"));
    // Blocking work (database calls behind one connection, password hashing, file reads) gains
    // nothing from more threads than the 32 one runtime had before; split them between runtimes.
    let blocking = (32 / listeners.len().max(1)).max(4);
    let mut done = Vec::new();
    for (n, listener) in listeners.into_iter().enumerate() {
        let socket = listener.into_std().map_err(failed)?;
        socket.set_nonblocking(true).map_err(failed)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(blocking)
            .build()
            .map_err(failed)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (acceptor, app, limits, stop) =
            (acceptor.clone(), app.clone(), limits.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("https-{n}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(socket) {
                        Ok(l) => accept_https(l, acceptor, app, limits, stop).await,
                        Err(e) => tracing::error!("HTTPS thread {n} cannot poll the listener: {e}"),
                    }
                    let _ = tx.send(());
                    // The connections accepted here are served by this runtime until the
                    // process exits (after the shutdown grace).
                    std::future::pending::<()>().await
                })
            })
            .map_err(failed)?;
        done.push(rx);
    }
    Ok(done)
}

async fn accept_https(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    limits: Arc<ConnLimits>,
    mut stop: watch::Receiver<bool>,
) {
    while let Some((tcp, peer, place)) = next_connection(&listener, &limits, &mut stop).await {
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = limits.clone();
        // Held by the connection while it lives: shutdown waits until every copy is dropped.
        let mut stop = stop.clone();
        let handshake_timeout = app.config.limits.tls_handshake_timeout;
        tokio::spawn(async move {
            // The connection's place under the limits; it ends up in the `Conn` below.
            let Some(permit) = place.slot().await else {
                tracing::debug!(%peer, "no place freed in time; connection closed");
                return;
            };
            // Idle (and so closed first when a new client needs the place) until a request
            // comes, the handshake included.
            let mut registered = limits.register();
            let _ = tcp.set_nodelay(true);
            let send = SendWatch::new(app.config.limits.send_timeout);
            let handshake = tokio::time::timeout(
                handshake_timeout,
                acceptor.accept(WatchedIo::new(tcp, &send)),
            );
            let tls = tokio::select! {
                r = handshake => match r {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                },
                _ = registered.until_evicted() => {
                    tracing::debug!(%peer, "closed in its TLS handshake for a new client");
                    return;
                }
                _ = stop.wait_for(|s| *s) => return,
            };
            if tls.get_ref().1.alpn_protocol() == Some(tls::acme::ACME_TLS_ALPN_PROTOCOL) {
                // A TLS-ALPN-01 validation: the handshake was the answer; no HTTP on this connection.
                return;
            }
            // The protocol is the one ALPN settled (RFC 9113 §3.2: HTTP/2 over TLS is only ever
            // chosen that way), so nothing waits for the first bytes to tell them apart.
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let _counted = crate::metrics::COUNTERS.connection(h2);
            let hold = app.ip_limit.bucket(peer.ip());
            let shared = Arc::new(Conn::new(permit, peer.ip(), hold));
            let requests = registered.requests();
            let idle = h2.then(|| H2Idle {
                requests: requests.clone(),
                limit: app.config.limits.header_read_timeout,
            });
            let watch = send.clone();
            let config = app.config.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                // In progress (the connection is not idle) until its response has been sent.
                let busy = requests.begin();
                let watch = watch.clone();
                let slot = watch.body_slot(h2);
                let answer = crate::router::handle(app.clone(), req, peer, Some(shared.clone()));
                async move {
                    let resp = match answer.await {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    };
                    Ok::<_, Infallible>(resp.map(|body| WatchedBody::new(body, watch, slot, busy)))
                }
            });
            let io = TokioIo::new(tls);
            let conn: Pin<Box<dyn ServedConn>> = if h2 {
                let streams = StreamExecutor { send: send.clone() };
                Box::pin(h2_builder(&config, streams).serve_connection(io, svc))
            } else {
                Box::pin(
                    h1_builder(&config)
                        .serve_connection(io, svc)
                        .with_upgrades(),
                )
            };
            match drive(conn, stop, idle, registered, SendCheck::new(&send)).await {
                Ended::Served(Err(e)) => tracing::debug!(%peer, "connection ended: {e}"),
                Ended::Served(Ok(())) => {}
                Ended::Silent => {
                    tracing::debug!(%peer, "no request within the header timeout; connection closed")
                }
                Ended::Evicted => {
                    tracing::debug!(%peer, "idle connection closed for a new client")
                }
                Ended::SendTimeout => {
                    tracing::debug!(%peer, "response made no progress for the send timeout; connection closed")
                }
            }
        });
    }
}

/// Runs hyper's connection until it ends, and ends it early for what hyper does not watch
/// itself: the server stopping (a graceful shutdown: requests in flight finish, HTTP/2 sends
/// GOAWAY), an HTTP/2 connection with no stream for the idle limit, a new client needing the
/// place of this idle one, a response that stopped moving (`send_timeout`).
///
/// This is hyper's own graceful-shutdown pattern (a `select!` that calls `graceful_shutdown` on
/// the connection). hyper-util's `GracefulShutdown` wrapper is not used here because the HTTP/2
/// idle limit must call `graceful_shutdown` too, which its wrapper keeps to itself, and because
/// its trait does not cover the HTTP/1.1 connection with upgrades (WebSockets) built here. The
/// port-80 listener, which has neither, uses it.
async fn drive(
    mut conn: Pin<Box<dyn ServedConn>>,
    mut stop: watch::Receiver<bool>,
    idle: Option<H2Idle>,
    mut registered: Registered,
    mut send: SendCheck,
) -> Ended {
    let mut told_to_stop = false;
    let mut idle_closed = idle.is_none();
    loop {
        tokio::select! {
            // In this order: the send check looks at what the connection's poll just left
            // waiting (a write the socket refused), so it comes after it.
            biased;
            r = conn.as_mut() => return Ended::Served(r),
            _ = stop.wait_for(|s| *s), if !told_to_stop => {
                told_to_stop = true;
                conn.as_mut().graceful_shutdown();
            }
            ever = async { idle.as_ref()?.expired().await }, if !idle_closed => {
                idle_closed = true;
                match ever {
                    // hyper's HTTP/2 connection ignores a graceful shutdown until the client's
                    // preface has come: one that never asked anything is dropped instead.
                    Some(false) => return Ended::Silent,
                    _ => {
                        tracing::debug!("HTTP/2 connection idle for the keep-alive limit; closing");
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            _ = registered.until_evicted() => return Ended::Evicted,
            _ = std::future::poll_fn(|cx| send.poll_stalled(cx)) => return Ended::SendTimeout,
        }
    }
}

/// HTTP/2's keep-alive idle limit (HTTP/1.1 has hyper's header timeout): a connection with no
/// stream for `limit` is asked to close (GOAWAY). Without it, a client that answered the
/// keep-alive pings kept an idle connection, and its place under `max_connections`, forever.
struct H2Idle {
    requests: Requests,
    limit: Duration,
}

impl H2Idle {
    /// Once the connection has had no request in progress for the whole limit, with whether it
    /// ever had one. Looks again at most once per limit, so a busy connection costs one timer
    /// per `limit`, not one per request.
    async fn expired(&self) -> Option<bool> {
        loop {
            let wait = match self.requests.idle_for() {
                Some(idle) if idle >= self.limit => return Some(self.requests.ever()),
                Some(idle) => self.limit - idle,
                None => self.limit,
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// How a connection driven by [`drive`] ended.
enum Ended {
    /// hyper's connection finished (its result).
    Served(Result<(), hyper::Error>),
    /// Closed without a word, the client having asked nothing within the idle limit.
    Silent,
    /// Closed while idle, for a new client.
    Evicted,
    /// Closed because a response made no progress for `limits.send_timeout`.
    SendTimeout,
}

/// An HTTPS connection as served: HTTP/1.1 (with upgrades) or HTTP/2.
trait ServedConn: Future<Output = Result<(), hyper::Error>> + Send {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<S> ServedConn for hyper::server::conn::http1::UpgradeableConnection<TokioIo<Tls>, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = Watched> + Send,
    S::Future: Send,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<S> ServedConn for hyper::server::conn::http2::Connection<TokioIo<Tls>, S, StreamExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = Watched> + Send,
    S::Future: Send + 'static,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self);
    }
}

/// The TLS stream of an HTTPS connection.
type Tls = tokio_rustls::server::TlsStream<WatchedIo<TcpStream>>;
/// A response body as the connection sends it.
type Watched = WatchedBody<response::Body, crate::conn_limits::Busy>;

/// Runs an HTTPS connection's HTTP/2 streams as tokio tasks, each wrapped so that `send_timeout`
/// can reset it alone (dropping a stream's task makes h2 send `RST_STREAM`).
#[derive(Clone)]
struct StreamExecutor {
    send: Arc<SendWatch>,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        match self.send.take_stream_abort() {
            Some(abort) => {
                tokio::spawn(futures_util::future::Abortable::new(fut, abort).map(|_| ()));
            }
            None => {
                tokio::spawn(fut);
            }
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}
