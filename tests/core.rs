//! The HTTPS edge core (issue 2): TLS modes, listeners, headers, limits, shutdown, start-up errors.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

fn assert_security_headers(r: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            r.headers().get(*name).and_then(|v| v.to_str().ok()),
            Some(*value),
            "{name} on {} {}",
            r.status(),
            r.url()
        );
    }
    let hsts = r.headers()["strict-transport-security"].to_str().unwrap();
    assert!(hsts.starts_with("max-age="), "{hsts}");
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
}

fn printed_root_fingerprint(s: &Server) -> String {
    s.stdout()
        .lines()
        .find_map(|l| l.strip_prefix("TLS: local CA root  SHA-256 "))
        .expect("root fingerprint line")
        .to_string()
}

#[tokio::test]
async fn https_works_over_http1_and_http2_with_a_client_that_trusts_only_the_local_root() {
    let s = Server::start();
    let h1 = s.client_builder().http1_only().build().unwrap();
    let r = h1.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);

    // ALPN offers h2 first, http/1.1 second.
    let tls = tls_connect(&s, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let tls = tls_connect(&s, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));

    // A client that trusts the public web roots only (not this local CA) is refused.
    let public = reqwest::Client::builder()
        .use_rustls_tls()
        .resolve("localhost", s.https)
        .build()
        .unwrap();
    assert!(public.get(s.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn tls_versions_are_limited_to_1_2_and_1_3() {
    let s = Server::start();
    let tls = tls_connect(&s, &[b"http/1.1"]).await;
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    // A TLS 1.2-only client still connects.
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&s.ca_pem()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    // A TLS 1.0 ClientHello (record version 3.1, client version 3.1) gets an alert, not a session.
    let mut tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let hello = tls10_client_hello();
    tcp.write_all(&hello).await.unwrap();
    let mut buf = [0u8; 7];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "expected an alert or a close, got {:?}",
        &buf[..n]
    );
}

#[tokio::test]
async fn a_client_naming_an_ip_address_in_sni_leaves_no_log_line() {
    // wrk and other OpenSSL-based clients send the IP address of the URL as the TLS server name;
    // rustls ignores it and warns, once per connection: anyone could flood the log that way.
    let s = Server::start();
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
        tcp.write_all(&tls12_client_hello_with_sni(b"127.0.0.1"))
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        // The server read the hello (the server name included) and answered it.
        assert!(n > 0, "no answer to the ClientHello");
    }
    // The first line rustls writes for such a hello would be there by now.
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    std::thread::sleep(Duration::from_millis(300));
    let log = s.stderr() + &s.stdout();
    assert!(!log.contains("SNI"), "{log}");
}

/// A TLS 1.2 ClientHello with `name` in its server_name extension, as OpenSSL sends an IP address.
fn tls12_client_hello_with_sni(name: &[u8]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x02, 0xc0, 0x2b]); // TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    body.extend([0x01, 0x00]); // compression: null
    let mut sni = vec![0x00]; // host_name
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let mut list = (sni.len() as u16).to_be_bytes().to_vec();
    list.extend(sni);
    let mut ext = vec![0x00, 0x00]; // server_name
    ext.extend((list.len() as u16).to_be_bytes());
    ext.extend(list);
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

/// A minimal TLS 1.0 ClientHello offering one TLS 1.0 cipher suite.
fn tls10_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x01];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    body.extend([0x00, 0x02, 0x00, 0x2f]); // TLS_RSA_WITH_AES_128_CBC_SHA
    body.extend([0x01, 0x00]); // compression: null
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test]
async fn the_leaf_covers_localhost_loopback_local_addresses_and_extra_names() {
    let s = Server::start_with(
        Start::default()
            .arg("--san")
            .arg("10.20.30.40")
            .arg("--san")
            .arg("hermes.lan"),
    );
    let tls = tls_connect(&s, &[b"http/1.1"]).await;
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    // The leaf alone: a client that trusts the local CA holds the root already.
    assert_eq!(certs.len(), 1, "the handshake should carry only the leaf");
    let (_, leaf) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    assert_ne!(
        leaf.subject(),
        leaf.issuer(),
        "the certificate sent is the leaf, not the root"
    );
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let mut ips = Vec::new();
    let mut dns = Vec::new();
    for gn in &san.value.general_names {
        match gn {
            x509_parser::extensions::GeneralName::IPAddress(b) => ips.push(b.to_vec()),
            x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
            _ => {}
        }
    }
    assert!(ips.contains(&vec![127, 0, 0, 1]), "{ips:?}");
    assert!(ips.contains(&vec![10, 20, 30, 40]), "{ips:?}");
    let mut v6_loopback = vec![0u8; 16];
    v6_loopback[15] = 1;
    assert!(ips.contains(&v6_loopback), "{ips:?}");
    // Every non-loopback IPv4 address of this machine is covered too.
    for iface in if_addrs::get_if_addrs().unwrap() {
        if let std::net::IpAddr::V4(v4) = iface.ip() {
            assert!(
                ips.contains(&v4.octets().to_vec()),
                "{v4} missing from {ips:?}"
            );
        }
    }
    assert!(dns.contains(&"localhost".to_string()), "{dns:?}");
    assert!(dns.contains(&"hermes.lan".to_string()), "{dns:?}");
    // The printed leaf fingerprint is the certificate actually served.
    assert!(s.stdout().contains(&fingerprint(&certs[0])));
}

#[tokio::test]
async fn the_root_fingerprint_is_stable_across_restarts_and_ca_crt_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Server::start_with(Start::default().in_dir(dir.path()));
    let first = printed_root_fingerprint(&a);
    assert!(a.stdout().contains("created a local certificate authority"));
    let served = a.client().get(a.url("/ca.crt")).send().await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(
        served.headers()["content-type"],
        "application/x-x509-ca-cert"
    );
    let pem = served.bytes().await.unwrap();
    assert_eq!(&pem[..], &a.ca_pem()[..]);
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(&pem).unwrap();
    assert_eq!(fingerprint(&der), first);
    let (_, root) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(root.is_ca());
    assert_eq!(a.stop().map(|s| s.code()), Some(Some(0)));

    let key_mode = std::fs::metadata(dir.path().join("certs/local-ca.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key_mode.permissions().mode() & 0o777, 0o600);

    let b = Server::start_with(Start::default().in_dir(dir.path()));
    assert_eq!(printed_root_fingerprint(&b), first);
    assert!(!b.stdout().contains("created a local certificate authority"));
    assert!(b.stdout().contains("leaf (kept)"));
    // The same client root still verifies the restarted server.
    let r = b.client().get(b.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn plain_http_gets_308_to_the_same_host_and_path_on_https() {
    let s = Server::start_with(Start::default().with_http());
    let http = s.http.expect("http listener");
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = c
        .get(format!("http://{http}/some/path?q=1&x=%20"))
        .header("host", "chat.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://chat.example.com:{}/some/path?q=1&x=%20", s.port()).as_str()
    );
    assert_security_headers(&r);
    // A POST is redirected with 308 too (method and body are kept by the browser).
    let r = c
        .post(format!("http://{http}/login"))
        .header("host", "10.0.0.5:80")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(
        r.headers()["location"],
        format!("https://10.0.0.5:{}/login", s.port()).as_str()
    );
    // A Host header that could inject into Location is refused.
    let mut tcp = tokio::net::TcpStream::connect(http).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: evil.com/x?\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[tokio::test]
async fn security_headers_are_on_200_404_and_5xx_responses() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[[routes]]\npath = \"/broken\"\nfile = \"/nonexistent/hermes-edge-test.html\"\n",
        Start::default(),
    );
    let c = s.admin_client().await;
    let ok = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_security_headers(&ok);
    let missing = c.get(s.url("/api/nothing-here")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_security_headers(&missing);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    let broken = c.get(s.url("/broken")).send().await.unwrap();
    assert_eq!(broken.status(), 500);
    assert_security_headers(&broken);
    let body: serde_json::Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_file_unreadable");
    // Unauthenticated answers carry them too.
    let anon = s.client().get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    assert_security_headers(&anon);
}

#[tokio::test]
async fn a_port_in_use_stops_startup_with_the_port_and_the_ss_command() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = Server::try_start(Start::default().listen(format!("127.0.0.1:{port}")))
        .err()
        .expect("must not start");
    assert!(
        err.contains(&format!("port {port} is already in use")),
        "{err}"
    );
    assert!(
        err.contains(&format!("ss -tlnp 'sport = :{port}'")),
        "{err}"
    );
    assert!(!err.lines().any(|l| l.starts_with("ready ")), "{err}");
    assert!(err.contains("exit status: 1"), "{err}");
}

/// The HTTPS port is shared by one socket per thread (`SO_REUSEPORT`), which would also let a
/// second hermes-edge of the same user join it and take half of the traffic. It must instead
/// be told the port is in use, and the first one must go on serving every request.
#[tokio::test]
async fn a_second_hermes_edge_on_the_same_port_is_refused() {
    let first = Server::start();
    let port = first.port();
    let err = Server::try_start(Start::default().listen(format!("127.0.0.1:{port}")))
        .err()
        .expect("a second server on the same port must not start");
    assert!(
        err.contains(&format!("port {port} is already in use")),
        "{err}"
    );
    // A new connection each time, so each would be spread over the port's sockets.
    for _ in 0..20 {
        let r = first
            .client()
            .get(first.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn unreadable_certificate_files_and_bad_config_are_one_clear_line() {
    let err = Server::try_start(
        Start::default()
            .arg("--cert")
            .arg("/nonexistent/chain.pem")
            .arg("--key")
            .arg("/nonexistent/key.pem"),
    )
    .err()
    .expect("must not start");
    assert!(
        err.contains("hermes-edge: cannot read certificate file /nonexistent/chain.pem: No such file or directory"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[limits]\nmax_connections = \"lots\"\n").unwrap();
    let err = Server::try_start(
        Start::default()
            .arg("--config")
            .arg(config.display().to_string()),
    )
    .err()
    .expect("must not start");
    assert!(
        err.contains(&format!("invalid config file {}", config.display())),
        "{err}"
    );
    assert!(err.contains("max_connections"), "{err}");
    assert!(err.contains("exit status: 2"), "{err}");
}

/// A one-shot HTTP server that answers `/health` after a delay (a slow upstream).
async fn slow_upstream(delay: Duration) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}")
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_in_flight_slow_response_completes_during_graceful_shutdown() {
    let upstream = slow_upstream(Duration::from_millis(1500)).await;
    let mut s = Server::start_with(Start::default().upstream(format!("http://{upstream}")));
    let c = s.client();
    let url = s.url("/healthz");
    let inflight = tokio::spawn(async move { c.get(url).send().await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.terminate();
    assert!(s.wait_for_log("shutting down", 5), "{}", s.stdout());
    // New connections are no longer accepted while the old request finishes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(s.https).await.is_err());
    let r = inflight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["upstream"]["reachable"], true);
    let status = s.wait_exit(20).expect("exits");
    assert_eq!(status.code(), Some(0));
    // The client's idle keep-alive connection was told to close, not waited out to the deadline.
    assert!(
        s.stdout().contains("all connections closed"),
        "{}",
        s.stdout()
    );
}

async fn served_leaf(s: &Server, root: &[u8]) -> Vec<u8> {
    let tls = tls_connect_with_root(s.https, "localhost", root, &[b"http/1.1"])
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test]
async fn file_mode_serves_a_replaced_certificate_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_cert_pair(dir.path(), "first");
    let s = Server::start_with(
        Start::default()
            .in_dir(dir.path())
            .arg("--cert")
            .arg(dir.path().join("chain.pem").display().to_string())
            .arg("--key")
            .arg(dir.path().join("key.pem").display().to_string()),
    );
    let pem_a = std::fs::read(dir.path().join("chain.pem")).unwrap();
    assert_eq!(served_leaf(&s, &pem_a).await, a);
    // Let the modification time move on (some filesystems have 1 s resolution).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let b = write_cert_pair(dir.path(), "second");
    let pem_b = std::fs::read(dir.path().join("chain.pem")).unwrap();
    let mut swapped = false;
    for _ in 0..100 {
        if let Ok(tls) = tls_connect_with_root(s.https, "localhost", &pem_b, &[b"http/1.1"]).await {
            assert_eq!(
                tls.get_ref().1.peer_certificates().unwrap()[0].as_ref(),
                &b[..]
            );
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        swapped,
        "new certificate not served within 10 s\n{}",
        s.stderr()
    );
    assert!(s.stderr().contains("new certificate loaded"));

    // A broken replacement is reported and the good certificate stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(dir.path().join("chain.pem"), "not a certificate").unwrap();
    assert!(s.wait_for_log(
        "could not be loaded, still serving the previous certificate",
        10
    ));
    assert_eq!(served_leaf(&s, &pem_b).await, b);
}

#[tokio::test]
async fn a_malformed_request_gets_400_and_the_server_keeps_serving() {
    let s = Server::start();
    let out = raw_exchange(&s, b"GARBAGE\x01 / HTTP/9.9\r\n\r\n", 5).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    // A header block over the limit is refused too.
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend(b"\r\n\r\n");
    let out = raw_exchange(&s, &big, 5).await;
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.1 431") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// The server with `header_read_timeout_secs = secs`, its files in `dir`.
fn start_with_header_timeout(dir: &std::path::Path, secs: u64) -> Server {
    start_in_with_config(
        dir,
        &format!("[limits]\nheader_read_timeout_secs = {secs}\n"),
        Start::default(),
    )
}

#[tokio::test]
async fn a_client_that_sends_no_headers_is_disconnected_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_header_timeout(dir.path(), 1);
    let mut tls = tls_connect(&s, &[b"http/1.1"]).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "slowloris connection was kept open"
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

/// The general per-address limit (`limits.requests_per_second_per_ip`, `request_burst_per_ip`):
/// past the burst every request from the address gets a 429 with `Retry-After` and the security
/// headers, on HTTP/1.1 and HTTP/2, and a new connection does not start it afresh. The edge keeps
/// each connection's bucket at hand (src/security.rs, `IpLimit`); it must still be the address's.
#[tokio::test]
async fn requests_past_the_per_address_burst_get_429_on_every_connection_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nrequests_per_second_per_ip = 1\nrequest_burst_per_ip = 4\n",
        Start::default(),
    );
    let h1 = s.client_builder().http1_only().build().unwrap();
    let h2 = s.client();
    let mut got = Vec::new();
    for (i, c) in [&h1, &h2, &h1, &h2, &h1, &h2].into_iter().enumerate() {
        let r = c.get(s.url("/healthz")).send().await.unwrap();
        if i == 0 {
            assert_eq!(r.version(), reqwest::Version::HTTP_11);
        }
        if i == 1 {
            assert_eq!(r.version(), reqwest::Version::HTTP_2);
        }
        got.push(r.status().as_u16());
        if r.status() == 429 {
            assert_security_headers(&r);
            let wait = retry_after_secs(&r);
            assert!((1..=2).contains(&wait), "Retry-After: {wait}");
        }
    }
    // Four within the burst (a second more may have refilled one), then refused.
    assert!(got[..4].iter().all(|c| *c == 200), "{got:?}");
    assert_eq!(got[5], 429, "{got:?}");
    // Connections made afresh are held to the same bucket.
    for _ in 0..3 {
        let fresh = s.client_builder().http1_only().build().unwrap();
        let r = fresh.get(s.url("/healthz")).send().await.unwrap();
        got.push(r.status().as_u16());
    }
    assert!(
        got[6..].iter().filter(|c| **c == 429).count() >= 2,
        "{got:?}"
    );
    // It refills at one a second.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = h2.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Behind a trusted proxy the general per-address limit counts the forwarded address, not the
/// proxy's connection, whose bucket the edge keeps at hand (src/router.rs looks the address's up
/// instead): one client past its burst does not hold up another coming through the same proxy.
#[tokio::test]
async fn behind_a_trusted_proxy_the_per_address_limit_counts_the_forwarded_address() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nrequests_per_second_per_ip = 1\nrequest_burst_per_ip = 3\n\
         trusted_proxies = [\"127.0.0.1\"]\n",
        Start::default(),
    );
    // One connection, the proxy's, carries both clients' requests.
    let proxy = s.client_builder().http1_only().build().unwrap();
    let get = |ip: &'static str| {
        proxy
            .get(s.url("/healthz"))
            .header("x-forwarded-for", ip)
            .send()
    };
    let mut flood = Vec::new();
    for _ in 0..6 {
        flood.push(get("203.0.113.10").await.unwrap().status().as_u16());
    }
    assert_eq!(flood[..3], [200, 200, 200], "{flood:?}");
    assert_eq!(flood[5], 429, "{flood:?}");
    let other = get("198.51.100.20").await.unwrap();
    assert_eq!(other.status(), 200);
    assert_eq!(get("203.0.113.10").await.unwrap().status(), 429);
}

/// A client that completes the TLS handshake and then sends nothing at all must not keep its
/// connection (and its place under `max_connections`): over HTTP/1.1 and over HTTP/2.
#[tokio::test]
async fn a_client_that_sends_nothing_after_the_handshake_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_header_timeout(dir.path(), 1);
    for alpn in [&b"http/1.1"[..], &b"h2"[..]] {
        let mut tls = tls_connect(&s, &[alpn]).await;
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
        let open = started.elapsed();
        assert!(
            open < Duration::from_secs(9),
            "a silent {} connection was kept open",
            String::from_utf8_lossy(alpn)
        );
        assert!(open >= Duration::from_millis(700), "closed after {open:?}");
    }
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// An HTTP/2 connection with no stream left is closed after the keep-alive idle limit (the header
/// timeout), even though it would answer pings: spoken here in raw frames, one request and then
/// nothing.
#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_keep_alive_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_header_timeout(dir.path(), 1);
    let idle = h2_request_then_idle(&s, "/ca.crt", &[], Duration::from_secs(10)).await;
    let open = idle.assert_closed_with_goaway("BEGIN CERTIFICATE");
    assert!(open >= Duration::from_millis(700), "closed after {open:?}");
}

/// The header timeout is also the keep-alive idle limit, and each request's own: a connection
/// whose first request head came slowly is still given the whole timeout for its next one (the
/// server keeps one timer per connection and moves it; see src/header_timer.rs).
#[tokio::test]
async fn an_idle_keep_alive_connection_gets_the_whole_header_timeout_after_each_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_header_timeout(dir.path(), 2);
    let mut tls = tls_connect(&s, &[b"http/1.1"]).await;
    // The first request's head takes 1.5 s of its 2 s.
    tls.write_all(b"GET /ca.crt HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tls.write_all(b"Host: localhost\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("END CERTIFICATE") {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .expect("the first answer came")
            .unwrap();
        assert!(n > 0, "closed before the first answer");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // Idle from here: the connection may be closed 2 s from now, not at the first deadline.
    let answered = std::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut rest)).await;
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(1700),
        "closed {idle:?} after the answer, before the 2 s keep-alive limit"
    );
    assert!(idle < Duration::from_secs(9), "idle connection kept open");
}

// Connections beyond `max_connections`: tests/connections.rs (an idle one makes way for a new
// client; a new one is refused only when none is idle).

#[tokio::test]
async fn a_privileged_port_without_the_capability_names_setcap() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // As root, drop to `nobody` (no capabilities) the way a service user would run.
    let is_root = rustix::process::geteuid().is_root();
    let mut cmd = if is_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()]);
        c
    } else {
        std::process::Command::new(bin())
    };
    let out = cmd
        .args(["--listen", "127.0.0.1:443", "--http-listen", "off"])
        .arg("--certs-dir")
        .arg(dir.path().join("certs"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .output()
        .expect("run hermes-edge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("permission denied to listen on port 443"),
        "{stderr}"
    );
    assert!(
        stderr.contains("setcap cap_net_bind_service=+ep"),
        "{stderr}"
    );
    // Nothing happened before the port was refused: no account, no certificate authority.
    assert!(!dir.path().join("data").exists());
    assert!(!dir.path().join("certs").exists());
}

/// The kernel hands a connection over only once its ClientHello has arrived (`TCP_DEFER_ACCEPT`):
/// sockets that connect and say nothing never take one of the `max_connections` places.
#[tokio::test]
async fn silent_connections_take_no_place_under_the_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nmax_connections = 1\n",
        Start::default(),
    );
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(s.https).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = tokio::time::timeout(
        Duration::from_secs(5),
        s.client().get(s.url("/healthz")).send(),
    )
    .await
    .expect("answer within 5 s")
    .expect("served although three silent sockets are connected");
    assert_eq!(r.status(), 200);
    drop(silent);
}
