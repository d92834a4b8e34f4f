//! Automatic HTTPS against a real ACME server: Pebble (Let's Encrypt's test CA), started on loopback by
//! `tests/acme/pebble.sh` with real validation. Names resolve to 127.0.0.1 through pebble-challtestsrv,
//! and Pebble's validator connects to the ports of the hermes-edge under test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "chat.acme.test";
const EMAIL: &str = "ops@example.org";

/// A running Pebble + pebble-challtestsrv pair, stopped (by PID) on drop.
struct Pebble {
    work: tempfile::TempDir,
    directory: String,
    listener_ca: PathBuf,
    management: String,
    log: PathBuf,
    /// Pebble processes started again by `restart_ca`, reaped on drop.
    restarted: std::sync::Mutex<Vec<std::process::Child>>,
}

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port` of 127.0.0.1.
    fn start(http_port: u16, tls_port: u16, validity_secs: Option<u64>) -> Pebble {
        let work = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/acme/pebble.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script)
            .arg(work.path())
            .arg(http_port.to_string())
            .arg(tls_port.to_string());
        if let Some(secs) = validity_secs {
            cmd.env("PEBBLE_CERT_VALIDITY_SECONDS", secs.to_string());
        }
        let out = cmd.output().expect("run tests/acme/pebble.sh");
        assert!(
            out.status.success(),
            "pebble.sh failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let env = std::fs::read_to_string(work.path().join("pebble.env")).unwrap();
        let var = |name: &str| {
            env.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} missing from pebble.env"))
                .to_string()
        };
        Pebble {
            directory: var("PEBBLE_DIRECTORY_URL"),
            listener_ca: PathBuf::from(var("PEBBLE_LISTENER_CA")),
            management: var("PEBBLE_MANAGEMENT_URL"),
            log: PathBuf::from(var("PEBBLE_LOG")),
            restarted: std::sync::Mutex::new(Vec::new()),
            work,
        }
    }

    /// Stops the Pebble ACME server (not the DNS mock): its directory becomes unreachable.
    fn stop_ca(&self) {
        let pids = std::fs::read_to_string(self.work.path().join("pebble.pids")).unwrap();
        // pebble.sh records pebble-challtestsrv first, then pebble.
        let pid: i32 = pids.lines().nth(1).unwrap().trim().parse().unwrap();
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while rustix::process::test_kill_process(pid).is_ok()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts Pebble again with the same configuration (same ports, same listener certificate).
    fn restart_ca(&self) {
        let env = std::fs::read_to_string(self.work.path().join("pebble.env")).unwrap();
        let dns = env
            .lines()
            .find_map(|l| l.strip_prefix("PEBBLE_DNS="))
            .unwrap();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("pebble")
            .arg("-config")
            .arg(self.work.path().join("pebble-config.json"))
            .arg("-dnsserver")
            .arg(dns)
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        // Recorded so that pebble-stop.sh (on drop) stops this one too.
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(self.work.path().join("pebble.pids"))
            .unwrap();
        std::io::Write::write_all(&mut pids, format!("{}\n", child.id()).as_bytes()).unwrap();
        self.restarted.lock().unwrap().push(child);
    }

    /// New-order requests Pebble has received.
    fn orders(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }

    /// Pebble's issuing root, fetched from its management interface over HTTPS.
    async fn root_pem(&self) -> Vec<u8> {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(&self.listener_ca).unwrap()).unwrap();
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap();
        let r = client
            .get(format!("{}/roots/0", self.management))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap().to_vec()
    }

    /// hermes-edge arguments that point its ACME client at this Pebble.
    fn server_args(&self, start: Start) -> Start {
        start
            .arg("--domain")
            .arg(DOMAIN)
            .arg("--email")
            .arg(EMAIL)
            .arg("--acme-directory")
            .arg(&self.directory)
            .arg("--acme-ca-root")
            .arg(self.listener_ca.display().to_string())
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let stop = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/acme/pebble-stop.sh");
        let _ = Command::new("bash")
            .arg(stop)
            .arg(self.work.path())
            .status();
        if let Ok(mut children) = self.restarted.lock() {
            for child in children.iter_mut() {
                let _ = child.wait();
            }
        }
    }
}

/// A client that trusts only `root_pem`, reaches DOMAIN at 127.0.0.1:`port` and records the peer cert.
fn client_trusting(root_pem: &[u8], port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem).unwrap())
        .resolve(DOMAIN, ([127, 0, 0, 1], port).into())
        .tls_info(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET /healthz on DOMAIN; returns the status and the issuer of the certificate presented.
async fn healthz(client: &reqwest::Client, port: u16) -> (u16, String) {
    let r = client
        .get(format!("https://{DOMAIN}:{port}/healthz"))
        .send()
        .await
        .unwrap();
    let der = r
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("peer certificate")
        .to_vec();
    (r.status().as_u16(), cert_issuer_and_serial(&der).0)
}

fn cert_issuer_and_serial(der: &[u8]) -> (String, String) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    (cert.issuer().to_string(), cert.raw_serial_as_string())
}

fn acme_started(s: &Server, needle: &str, secs: u64) {
    assert!(
        s.wait_for_log(needle, secs),
        "no `{needle}` within {secs} s\nstdout:\n{}\nstderr:\n{}",
        s.stdout(),
        s.stderr()
    );
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn tls_alpn_certificate_is_obtained_served_and_reused_from_the_cache_after_a_restart() {
    let port = free_port();
    let pebble = Pebble::start(free_port(), port, None);
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        pebble.server_args(
            Start::default()
                .in_dir(dir.path())
                .listen(format!("127.0.0.1:{port}")),
        )
    };

    let mut s = Server::start_with(start());
    acme_started(&s, "ACME: installed new certificate for chat.acme.test", 60);
    assert!(s
        .stderr()
        .contains("ACME: answered the TLS-ALPN-01 challenge for chat.acme.test"));

    let root = pebble.root_pem().await;
    let client = client_trusting(&root, port);
    let (status, issuer) = healthz(&client, port).await;
    assert_eq!(status, 200);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    assert_eq!(pebble.orders(), 1);

    // The cache: a 0700 directory of 0600 files (account key and certificate).
    let cache = dir.path().join("certs/acme");
    assert_eq!(mode(&cache), 0o700);
    let files: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    // `cert status` tells which certificate the name gets, its issuer, SANs, expiry and files.
    let status = Command::new(bin())
        .current_dir(dir.path())
        .args(["cert", "status", "--domain", DOMAIN, "--email", EMAIL])
        .args(["--acme-directory", &pebble.directory])
        .args([
            "--certs-dir",
            &dir.path().join("certs").display().to_string(),
        ])
        .args(["--data-dir", &dir.path().join("data").display().to_string()])
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("\nchat.acme.test\n  served by: ACME certificate\n  issuer:    CN=Pebble Intermediate CA"), "{text}");
    assert!(
        text.contains("  SANs:      chat.acme.test\n  expires:   "),
        "{text}"
    );
    assert!(text.contains("certs/acme/cert-chat.acme.test-"), "{text}");
    assert!(text.contains(".pem (mode 0600)"), "{text}");
    assert!(
        text.contains("ACME account key: ") && text.contains(".key (mode 0600)"),
        "{text}"
    );
    assert!(text.contains("local-ca.key (mode 0600)\n"), "{text}");
    assert!(
        text.contains("\nlocal CA root (devices trust it once via GET /ca.crt)\n"),
        "{text}"
    );

    // Close the keep-alive connection (its task must run to do so), or the graceful shutdown waits
    // for it.
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(s.stop().is_some_and(|st| st.success()));
    drop(s);

    // Restart on the same certs directory: the cached certificate is served at once, no new order.
    let s = Server::start_with(start());
    acme_started(&s, "ACME: using cached certificate for chat.acme.test", 20);
    assert!(s.stderr().contains("no new order placed"));
    let client = client_trusting(&root, port);
    let (status, issuer) = healthz(&client, port).await;
    assert_eq!(status, 200);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pebble.orders(),
        1,
        "a restart with a valid cached certificate must not order"
    );
    assert!(!s.stderr().contains("ACME: ordering"), "{}", s.stderr());
}

#[tokio::test]
async fn http01_certificate_is_obtained_through_the_port_80_listener() {
    let https_port = free_port();
    let http_port = free_port();
    // TLS-ALPN-01 validation would go to a closed port: only HTTP-01 can succeed.
    let pebble = Pebble::start(http_port, free_port(), None);
    let s = Server::start_with(
        pebble
            .server_args(
                Start::default()
                    .listen(format!("127.0.0.1:{https_port}"))
                    .with_http_on(format!("127.0.0.1:{http_port}")),
            )
            .arg("--acme-challenge")
            .arg("http-01"),
    );
    acme_started(&s, "ACME: installed new certificate for chat.acme.test", 60);
    assert!(
        s.stderr().contains("ACME: answered the HTTP-01 challenge"),
        "{}",
        s.stderr()
    );

    let client = client_trusting(&pebble.root_pem().await, https_port);
    let (status, issuer) = healthz(&client, https_port).await;
    assert_eq!(status, 200);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");

    // An unknown token is a 404 on the port-80 listener, not a redirect.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = plain
        .get(format!(
            "http://127.0.0.1:{http_port}/.well-known/acme-challenge/not-a-token"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn failed_validation_leaves_the_server_up_on_its_local_ca_certificate_with_the_cause_logged()
{
    let port = free_port();
    // Pebble validates TLS-ALPN-01 against a port where nothing listens.
    let closed = free_port();
    let pebble = Pebble::start(free_port(), closed, None);
    let s = Server::start_with(
        pebble.server_args(Start::default().listen(format!("127.0.0.1:{port}"))),
    );

    acme_started(
        &s,
        "ACME: could not obtain a certificate for chat.acme.test: ",
        60,
    );
    let log = s.stderr();
    assert!(
        log.contains("the CA could not connect to chat.acme.test on port 443 (HTTPS, TLS-ALPN-01 challenge): the port is not reachable from the internet"),
        "{log}"
    );
    assert!(
        log.contains(
            "Serving the local-CA certificate meanwhile; next attempt in 5 min (failure 1)"
        ),
        "{log}"
    );

    // Still serving, with the local-CA leaf (which covers the domain) to a client trusting that root.
    let client = client_trusting(&s.ca_pem(), port);
    let (status, issuer) = healthz(&client, port).await;
    assert_eq!(status, 200);
    assert!(issuer.contains("hermes-edge local CA"), "{issuer}");
    assert!(!log.contains("installed new certificate"));
}

/// A raw HTTP/1.1 keep-alive connection over TLS, to show that an open connection survives a swap.
struct KeepAlive {
    tls: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
}

impl KeepAlive {
    async fn open(root_pem: &[u8], port: u16) -> (KeepAlive, String) {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(root_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from(DOMAIN).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        (KeepAlive { tls }, cert_issuer_and_serial(&der).1)
    }

    /// Sends GET /healthz and returns the status code.
    async fn get(&mut self) -> u16 {
        let req = format!("GET /healthz HTTP/1.1\r\nhost: {DOMAIN}\r\n\r\n");
        self.tls.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = self.tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .expect("content-length");
        while buf.len() < head_end + length {
            let n = self.tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed mid-body");
            buf.extend_from_slice(&chunk[..n]);
        }
        head.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn renewal_swaps_in_a_new_certificate_while_open_connections_keep_working() {
    // Pebble 2.4 honours certificateValidityPeriod: 30-second certificates are renewed after 20 s.
    let port = free_port();
    let pebble = Pebble::start(free_port(), port, Some(30));
    let s = Server::start_with(
        pebble.server_args(Start::default().listen(format!("127.0.0.1:{port}"))),
    );
    acme_started(&s, "ACME: installed new certificate for chat.acme.test", 60);
    let root = pebble.root_pem().await;

    let (mut old, first_serial) = KeepAlive::open(&root, port).await;
    assert_eq!(old.get().await, 200);

    // Keep the connection busy (under the keep-alive idle limit) until the renewal is installed.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let installs = s
            .stderr()
            .matches("ACME: installed new certificate")
            .count();
        if installs >= 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no renewal within 60 s:\n{}",
            s.stderr()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(old.get().await, 200);
    }
    assert!(s
        .stderr()
        .contains("ACME: renewing the certificate for chat.acme.test"));
    assert_eq!(pebble.orders(), 2);

    // The open connection still works; a new handshake gets the new certificate.
    assert_eq!(old.get().await, 200);
    let (mut new, second_serial) = KeepAlive::open(&root, port).await;
    assert_ne!(first_serial, second_serial);
    assert_eq!(new.get().await, 200);
}

#[tokio::test]
async fn an_unreachable_ca_is_retried_with_backoff_until_the_certificate_arrives() {
    let port = free_port();
    let pebble = Pebble::start(free_port(), port, None);
    pebble.stop_ca();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("retry.toml"),
        "[tls]\nacme_retry_initial_secs = 1\n",
    )
    .unwrap();
    let s = Server::start_with(
        pebble.server_args(
            Start::default()
                .in_dir(dir.path())
                .listen(format!("127.0.0.1:{port}"))
                .arg("--config")
                .arg(dir.path().join("retry.toml").display().to_string()),
        ),
    );
    acme_started(&s, "ACME: could not obtain a certificate for chat.acme.test: could not talk to the ACME directory https://127.0.0.1:", 30);
    assert!(
        s.stderr().contains(
            "Serving the local-CA certificate meanwhile; next attempt in 1 s (failure 1)"
        ),
        "{}",
        s.stderr()
    );

    pebble.restart_ca();
    acme_started(&s, "ACME: installed new certificate for chat.acme.test", 60);
    assert!(
        s.stderr()
            .contains("ACME: ordering a certificate for chat.acme.test again (attempt 2)"),
        "{}",
        s.stderr()
    );
    let client = client_trusting(&pebble.root_pem().await, port);
    let (status, issuer) = healthz(&client, port).await;
    assert_eq!(status, 200);
    assert!(issuer.contains("Pebble Intermediate CA"), "{issuer}");
}

#[test]
fn unusable_acme_settings_stop_startup_naming_the_setting() {
    let bad_email = Server::try_start(
        Start::default()
            .arg("--domain")
            .arg(DOMAIN)
            .arg("--email")
            .arg("ops-at-example.org"),
    )
    .err()
    .expect("a malformed email must stop startup");
    assert!(
        bad_email.contains("hermes-edge: invalid setting `tls.email`: `ops-at-example.org` is not an email address (expected e.g. me@example.com)"),
        "{bad_email}"
    );
    assert!(!bad_email.contains("\nready "), "{bad_email}");

    let missing_root = Server::try_start(
        Start::default()
            .arg("--domain")
            .arg(DOMAIN)
            .arg("--acme-directory")
            .arg("https://127.0.0.1:1/dir")
            .arg("--acme-ca-root")
            .arg("/nonexistent/root.pem"),
    )
    .err()
    .expect("an unreadable --acme-ca-root must stop startup");
    assert!(
        missing_root.contains("hermes-edge: invalid setting `tls.acme_ca_root`: /nonexistent/root.pem: No such file or directory"),
        "{missing_root}"
    );
}
