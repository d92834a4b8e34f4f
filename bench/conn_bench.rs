//! A lighter load client for new TLS connections, used by `bench/run.sh` beside h2load.
//!
//! `h2load --h1 -c400 -n400 -t2` spends about 470 µs of CPU per connection on this machine's two
//! cores (OpenSSL 3.0), against about 135 µs for hermes-edge and 255 µs for nginx, so its own
//! work sets most of the figure. This client does the same thing with rustls (aws-lc-rs): each
//! of CONNECTIONS connections, all opened at once and split over THREADS single-threaded
//! runtimes, does a full handshake (no resumption, as h2load), sends one `GET`, reads the whole
//! answer, sends `close_notify` and closes. Like h2load it sends an X25519 key share and does
//! not enforce the certificate chain, but it does check the server's handshake signature with
//! the certificate's key.
//! Never part of the product; built with `cargo build --release --example conn-bench`.
//!
//! ```text
//! conn-bench HOST:PORT PATH CONNECTIONS [THREADS]   # prints "conns/s N" (N whole connections)
//! ```
//! Any connection that fails, or answers other than 200 with its whole body, makes the run fail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Takes any certificate chain, as h2load does (it verifies nothing by default), but checks the
/// handshake signature: the server's private-key operation is part of what is measured.
#[derive(Debug)]
struct SignatureOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: conn-bench HOST:PORT PATH CONNECTIONS [THREADS]";
    let (Some(addr), Some(path), Some(count)) = (args.get(1), args.get(2), args.get(3)) else {
        return Err(usage.into());
    };
    let addr: SocketAddr = addr.parse()?;
    let count: usize = count.parse()?;
    let threads: usize = match args.get(4) {
        Some(t) => t.parse()?,
        None => 2,
    };
    if count == 0 || threads == 0 || count > 100_000 {
        return Err(usage.into());
    }
    // X25519 alone: the key share is X25519's, as h2load's is, and no group is offered that
    // one server knows and the other does not (X25519MLKEM768: rustls, not OpenSSL 3.0).
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SignatureOnly(provider)))
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    let request: Arc<[u8]> =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: conn-bench\r\n\r\n")
            .into_bytes()
            .into();

    let start = Instant::now();
    let mut workers = Vec::new();
    for t in 0..threads {
        // The first `count % threads` threads take one connection more.
        let share = count / threads + usize::from(t < count % threads);
        let (connector, name, request) = (connector.clone(), name.clone(), request.clone());
        workers.push(std::thread::spawn(move || -> Result<(), Failure> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for _ in 0..share {
                    let (connector, name, request) =
                        (connector.clone(), name.clone(), request.clone());
                    tasks.spawn(one(addr, connector, name, request));
                }
                while let Some(done) = tasks.join_next().await {
                    done??;
                }
                Ok(())
            })
        }));
    }
    for w in workers {
        w.join().map_err(|_| "a client thread panicked")??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("finished {count} connections in {:.1} ms", secs * 1000.0);
    println!("conns/s {}", (count as f64 / secs) as u64);
    Ok(())
}

/// One connection: handshake, one `GET`, the whole answer, `close_notify`, close.
async fn one(
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    request: Arc<[u8]>,
) -> Result<(), Failure> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(&request).await?;
    let mut got = Vec::with_capacity(2048);
    let mut buf = [0u8; 4096];
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            return Err("the server closed before the whole answer".into());
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(whole) = answer_len(&got)? {
            if got.len() >= whole {
                break;
            }
        }
        if got.len() > 1 << 20 {
            return Err("answer over 1 MiB".into());
        }
    }
    tls.shutdown().await?;
    Ok(())
}

/// The length of head plus body once the head is in, checking the status is 200.
fn answer_len(got: &[u8]) -> Result<Option<usize>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(got)? {
        httparse::Status::Complete(head) => head,
        httparse::Status::Partial => return Ok(None),
    };
    if response.code != Some(200) {
        return Err(format!("status {:?}, expected 200", response.code).into());
    }
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .ok_or("no content-length")?;
    let length: usize = std::str::from_utf8(length.value)?.trim().parse()?;
    Ok(Some(head + length))
}
