//! A bare hyper + rustls server, the ceiling the benchmarks are read against: the same stack as
//! hermes-edge (one current-thread runtime per CPU on `SO_REUSEPORT` sockets, aws-lc-rs, HTTP/1.1
//! and HTTP/2 by ALPN) with none of its work (no routing, files, limits, login or timeouts).
//! Never part of the product; built with `cargo build --release --example bare-bench`.
//!
//! ```text
//! bare-bench PORT CERT.pem KEY.pem page           # 1 KiB answer with hermes-edge's headers
//! bare-bench PORT CERT.pem KEY.pem proxy HOST:PORT # HTTP/1.1 to HOST:PORT, one upstream
//!                                                  # connection per client connection
//! ```
//! Loopback only: it binds 127.0.0.1.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{combinators::BoxBody, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The security headers hermes-edge sends (its `security::CSP` and the five others).
const SECURITY: [(&str, &str); 6] = [
    ("strict-transport-security", "max-age=86400"),
    (
        "content-security-policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; \
         script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
         base-uri 'none'; form-action 'self'",
    ),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
];

#[derive(Clone)]
enum Mode {
    Page { body: Bytes, headers: HeaderMap },
    Proxy { upstream: String },
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: bare-bench PORT CERT.pem KEY.pem page | proxy HOST:PORT";
    let (Some(port), Some(cert), Some(key), Some(mode)) =
        (args.get(1), args.get(2), args.get(3), args.get(4))
    else {
        return Err(usage.into());
    };
    let port: u16 = port.parse()?;
    let certs = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let mode = match (mode.as_str(), args.get(5)) {
        ("page", _) => {
            let mut headers = HeaderMap::new();
            for (name, value) in [
                ("etag", "\"5f1e-400\""),
                ("last-modified", "Tue, 01 Dec 2026 16:00:00 GMT"),
                ("cache-control", "no-cache"),
                ("accept-ranges", "bytes"),
                ("content-type", "text/plain"),
            ]
            .into_iter()
            .chain(SECURITY)
            {
                headers.insert(name, HeaderValue::from_static(value));
            }
            Mode::Page {
                body: Bytes::from(vec![b'x'; 1024]),
                headers,
            }
        }
        ("proxy", Some(upstream)) => Mode::Proxy {
            upstream: upstream.clone(),
        },
        _ => return Err(usage.into()),
    };

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::new();
    for _ in 0..cpus {
        let (acceptor, mode) = (acceptor.clone(), mode.clone());
        threads.push(std::thread::spawn(move || -> Result<(), Failure> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.set_reuseport(true)?;
                socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
                let listener = socket.listen(1024)?;
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let (acceptor, mode) = (acceptor.clone(), mode.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                            let _ = serve(TokioIo::new(tls), h2, mode).await;
                        }
                    });
                }
            })
        }));
    }
    for t in threads {
        t.join().map_err(|_| "a server thread panicked")??;
    }
    Ok(())
}

async fn serve<I>(io: I, h2: bool, mode: Mode) -> Result<(), Failure>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    match mode {
        Mode::Page { body, headers } => {
            let svc = hyper::service::service_fn(move |_req: Request<Incoming>| {
                let mut r = Response::new(Full::new(body.clone()));
                *r.headers_mut() = headers.clone();
                async move { Ok::<_, Infallible>(r) }
            });
            if h2 {
                hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await?;
            } else {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await?;
            }
        }
        Mode::Proxy { upstream } => {
            // HTTP/1.1 clients only (wrk): requests on one connection come one after another.
            let tcp = tokio::net::TcpStream::connect(upstream.as_str()).await?;
            let _ = tcp.set_nodelay(true);
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, Incoming>(TokioIo::new(tcp)).await?;
            let sender = Arc::new(tokio::sync::Mutex::new(sender));
            let bearer = HeaderValue::from_static("Bearer bench-api-key-0123456789abcdef");
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (sender, bearer) = (sender.clone(), bearer.clone());
                async move {
                    req.headers_mut().insert("authorization", bearer);
                    let resp = sender.lock().await.send_request(req).await?;
                    let (mut parts, body) = resp.into_parts();
                    for (name, value) in SECURITY {
                        parts.headers.insert(name, HeaderValue::from_static(value));
                    }
                    Ok::<_, hyper::Error>(Response::from_parts(parts, BoxBody::new(body)))
                }
            });
            let server = hyper::server::conn::http1::Builder::new().serve_connection(io, svc);
            tokio::select! {
                r = server => r?,
                r = conn => r?,
            }
        }
    }
    Ok(())
}
