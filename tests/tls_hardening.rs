//! Issue #21, TLS and signals: a local-CA key that does not match its certificate, a certs
//! directory that is a file, the server's cipher order, and SIGHUP (reload, never exit).

mod common;

use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

/// Runs the binary with `args` (and the harness defaults) until it exits, up to 30 s.
fn run_to_exit(dir: &Path, args: &[String]) -> (ExitStatus, String) {
    let mut child = spawn_raw(dir, args, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit within 30 s (it should have refused to start)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, text)
}

fn sighup(s: &Server) {
    let pid = s.pid() as i32;
    assert!(pid > 0);
    let pid = rustix::process::Pid::from_raw(pid).unwrap();
    // A signal to the child this test started.
    let sent = rustix::process::kill_process(pid, rustix::process::Signal::HUP);
    assert_eq!(sent, Ok(()));
}

#[tokio::test]
async fn a_ca_key_that_does_not_match_the_ca_certificate_stops_startup_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(Start::default().in_dir(tmp.path()));
    s.stop();
    let certs = tmp.path().join("certs");
    let ca_cert = std::fs::read(certs.join("local-ca.crt")).unwrap();
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(certs.join("local-ca.key"), other.serialize_pem()).unwrap();
    let err = match Server::try_start(Start::default().in_dir(tmp.path())) {
        Ok(_) => panic!("started with a CA key that does not belong to the CA certificate"),
        Err(e) => e,
    };
    let key_path = certs.join("local-ca.key").display().to_string();
    let cert_path = certs.join("local-ca.crt").display().to_string();
    assert!(
        err.contains("exit status: 1") || err.contains("exited with exit status"),
        "{err}"
    );
    assert!(
        err.contains(&key_path) && err.contains(&cert_path),
        "both files named: {err}"
    );
    assert!(
        err.contains("does not belong to the CA certificate"),
        "{err}"
    );
    // Nothing was overwritten: the root devices trust is still there.
    assert_eq!(std::fs::read(certs.join("local-ca.crt")).unwrap(), ca_cert);

    // The key gone (the certificate kept) is not "first run" either: no new root replaces it.
    std::fs::remove_file(certs.join("local-ca.key")).unwrap();
    let err = match Server::try_start(Start::default().in_dir(tmp.path())) {
        Ok(_) => panic!("a new CA replaced a root whose key was missing"),
        Err(e) => e,
    };
    assert!(
        err.contains(&key_path) && err.contains(&cert_path) && err.contains("missing"),
        "{err}"
    );
    assert_eq!(std::fs::read(certs.join("local-ca.crt")).unwrap(), ca_cert);
}

#[test]
fn a_certs_dir_that_is_a_file_is_named_and_explained() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "off",
        "--certs-dir",
        file.to_str().unwrap(),
        "--data-dir",
        tmp.path().join("data").to_str().unwrap(),
        "--upstream",
        "http://127.0.0.1:9",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let (status, out) = run_to_exit(tmp.path(), &args);
    assert!(!status.success(), "{out}");
    assert!(out.contains(file.to_str().unwrap()), "{out}");
    assert!(out.contains("is not a directory"), "{out}");
    assert!(!out.contains("os error 17"), "{out}");
}

/// The suite the server picks when the client offers `suites` in that order.
async fn negotiated(
    s: &Server,
    version: &'static rustls::SupportedProtocolVersion,
    suites: Vec<rustls::SupportedCipherSuite>,
) -> rustls::CipherSuite {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&s.ca_pem()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = suites;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(s.https).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.negotiated_cipher_suite().unwrap().suite()
}

#[tokio::test]
async fn the_server_chooses_the_cipher_suite_by_its_own_order_not_the_clients() {
    use rustls::crypto::aws_lc_rs::cipher_suite as cs;
    use rustls::CipherSuite as C;
    let s = Server::start();
    let v13 = &rustls::version::TLS13;
    let v12 = &rustls::version::TLS12;
    let cases = [
        (
            v13,
            vec![cs::TLS13_AES_256_GCM_SHA384, cs::TLS13_AES_128_GCM_SHA256],
            C::TLS13_AES_128_GCM_SHA256,
        ),
        (
            v13,
            vec![
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS13_AES_256_GCM_SHA384,
            ],
            C::TLS13_AES_256_GCM_SHA384,
        ),
        (
            v12,
            vec![
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ],
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
    ];
    for (version, suites, want) in cases {
        let offered: Vec<_> = suites.iter().map(|s| s.suite()).collect();
        let got = negotiated(&s, version, suites).await;
        assert_eq!(got, want, "client offered {offered:?}");
    }
}

#[tokio::test]
async fn sighup_never_ends_the_process_and_a_download_in_flight_completes() {
    const LEN: u64 = 48 << 20;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("media")).unwrap();
    let big = std::fs::File::create(tmp.path().join("media/big.bin")).unwrap();
    big.set_len(LEN).unwrap();
    let config = tmp.path().join("edge.toml");
    std::fs::write(&config, "[media]\npublic = true\n").unwrap();
    let s = Server::start_with(
        Start::default()
            .in_dir(tmp.path())
            .arg("--config")
            .arg(config.display().to_string()),
    );
    let c = s.client();
    let mut r = c.get(s.url("/media/big.bin")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = r.chunk().await.unwrap().map_or(0, |b| b.len() as u64);
    assert!(got < LEN);
    for _ in 0..3 {
        sighup(&s);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(s.wait_for_log("SIGHUP: reloading", 5), "{}", s.stderr());
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .expect("download stalled")
        .expect("download cut")
    {
        got += chunk.len() as u64;
        assert!(Instant::now() < deadline, "download too slow");
    }
    assert_eq!(got, LEN, "the download in flight completed");
    // Still serving after several more, each logged.
    for _ in 0..3 {
        sighup(&s);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ok = c.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    assert!(s.wait_for_log("SIGHUP: config file read again", 5));
    assert!(s.wait_for_log("SIGHUP: site files are the ones built into the binary", 5));
    assert!(s.stderr().matches("SIGHUP: reloading").count() >= 2);
    assert!(!s.stdout().contains("shutting down"), "{}", s.stdout());
}

#[tokio::test]
async fn sighup_serves_replaced_certificate_files_at_once_not_at_the_next_poll() {
    let tmp = tempfile::tempdir().unwrap();
    let a = write_cert_pair(tmp.path(), "first");
    let config = tmp.path().join("edge.toml");
    // The files are looked at once an hour: only SIGHUP can explain a quick swap.
    std::fs::write(&config, "[tls]\nreload_interval_secs = 3600\n").unwrap();
    let s = Server::start_with(
        Start::default()
            .in_dir(tmp.path())
            .arg("--config")
            .arg(config.display().to_string())
            .arg("--cert")
            .arg(tmp.path().join("chain.pem").display().to_string())
            .arg("--key")
            .arg(tmp.path().join("key.pem").display().to_string()),
    );
    let pem_a = std::fs::read(tmp.path().join("chain.pem")).unwrap();
    let leaf = |pem: Vec<u8>| {
        let addr = s.https;
        async move {
            tls_connect_with_root(addr, "localhost", &pem, &[b"http/1.1"])
                .await
                .ok()
                .map(|t| t.get_ref().1.peer_certificates().unwrap()[0].to_vec())
        }
    };
    assert_eq!(leaf(pem_a).await, Some(a));
    // The poll's first tick has passed; a later change is not seen for an hour.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = write_cert_pair(tmp.path(), "second");
    let pem_b = std::fs::read(tmp.path().join("chain.pem")).unwrap();
    sighup(&s);
    let started = Instant::now();
    let mut served = None;
    while started.elapsed() < Duration::from_secs(5) {
        if let Some(der) = leaf(pem_b.clone()).await {
            served = Some(der);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served,
        Some(b),
        "new certificate not served within 5 s of SIGHUP\n{}",
        s.stderr()
    );
    assert!(s.wait_for_log(
        "certificate files reloaded on SIGHUP: new certificate loaded",
        5
    ));

    // A broken pair on SIGHUP is reported and the good one stays.
    std::fs::write(tmp.path().join("chain.pem"), "not a certificate").unwrap();
    sighup(&s);
    assert!(s.wait_for_log(
        "reloaded on SIGHUP but could not be loaded, still serving the previous certificate",
        5
    ));
    assert!(leaf(pem_b).await.is_some());
}

#[tokio::test]
async fn sighup_rereads_the_config_applies_new_names_and_says_which_keys_need_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("edge.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 100\n").unwrap();
    let s = Server::start_with(
        Start::default()
            .in_dir(tmp.path())
            .arg("--config")
            .arg(config.display().to_string()),
    );
    let root = s.ca_pem();
    let name = "reload-test.example";
    assert!(tls_connect_with_root(s.https, name, &root, &[b"http/1.1"])
        .await
        .is_err());
    std::fs::write(
        &config,
        format!("[limits]\nmax_connections = 101\n[tls]\nsan = [\"{name}\"]\n"),
    )
    .unwrap();
    sighup(&s);
    assert!(
        s.wait_for_log(
            "config key limits.max_connections changed: restart to apply",
            5
        ),
        "{}",
        s.stderr()
    );
    assert!(
        s.wait_for_log("local CA issued a new certificate", 5),
        "{}",
        s.stderr()
    );
    // The new name is served at once, by the same root.
    assert!(tls_connect_with_root(s.https, name, &root, &[b"http/1.1"])
        .await
        .is_ok());
    assert!(!s.stderr().contains("config key tls.san changed"));

    // A broken file changes nothing and the server keeps serving.
    std::fs::write(&config, "[limits]\nmax_connections = \"many\"\n").unwrap();
    sighup(&s);
    assert!(
        s.wait_for_log("nothing of it is applied", 5),
        "{}",
        s.stderr()
    );
    let ok = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(tls_connect_with_root(s.https, name, &root, &[b"http/1.1"])
        .await
        .is_ok());
}

/// A `max_connections` that the start lowered to fit the open-files limit is not a changed key:
/// a SIGHUP with the file as it was names nothing to restart for.
#[tokio::test]
async fn sighup_with_an_unchanged_config_names_no_key_when_max_connections_was_fitted() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("edge.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 4096\n").unwrap();
    let s = Server::start_with(
        Start::default()
            .in_dir(tmp.path())
            .nofile(256)
            .arg("--config")
            .arg(config.display().to_string()),
    );
    assert!(
        s.wait_for_log("max_connections lowered from 4096", 5),
        "{}",
        s.stderr()
    );
    sighup(&s);
    assert!(
        s.wait_for_log("config file read again, nothing changed", 5),
        "{}",
        s.stderr()
    );
    assert!(
        !s.stderr().contains("changed: restart to apply"),
        "{}",
        s.stderr()
    );
}
