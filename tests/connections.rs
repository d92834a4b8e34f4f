//! Connection-level limits (issue 21): the per-address connection cap, idle connections making
//! way at the global cap, the open-files limit, the send timeout, and per-/64 keying for IPv6.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A TLS connection to the server from the local address `from` (any of 127.0.0.0/8 is
/// loopback), with a receive buffer of `rcvbuf` bytes if given.
async fn tls_from(
    s: &Server,
    from: IpAddr,
    alpn: &[&[u8]],
    rcvbuf: Option<u32>,
) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&s.ca_pem()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let socket = if from.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(from, 0))?;
    let tcp = socket.connect(s.https).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
}

/// A TLS connection from `from` that answers within 5 s (`Err` when the server closed it).
async fn connect_from(s: &Server, from: &str) -> std::io::Result<TlsStream<tokio::net::TcpStream>> {
    tokio::time::timeout(
        Duration::from_secs(5),
        tls_from(s, ip(from), &[b"http/1.1"], None),
    )
    .await
    .expect("the server answered within 5 s")
}

/// `GET /ca.crt` on an HTTP/1.1 keep-alive connection, read to the end of the answer.
async fn get_ca(tls: &mut TlsStream<tokio::net::TcpStream>) -> std::io::Result<()> {
    tls.write_all(b"GET /ca.crt HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("END CERTIFICATE-----") {
        let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("no answer within 5 s"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    Ok(())
}

/// An HTTPS client of the server whose connections come from `from`.
fn client_from(s: &Server, from: &str) -> reqwest::Client {
    s.client_builder().local_address(ip(from)).build().unwrap()
}

/// One address once took every place under `max_connections` with idle TLS connections. Now it
/// gets `max_connections_per_ip`, and a client from another address still connects and signs
/// in while they are held.
#[tokio::test]
async fn one_address_is_held_to_its_connection_cap_and_another_still_signs_in() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nmax_connections = 20\nmax_connections_per_ip = 10\n",
        Start::default(),
    );
    let mut held = Vec::new();
    for n in 0..10 {
        let tls = connect_from(&s, "127.0.0.1").await;
        held.push(tls.unwrap_or_else(|e| panic!("connection {n} within the cap refused: {e}")));
    }
    for _ in 0..3 {
        assert!(
            connect_from(&s, "127.0.0.1").await.is_err(),
            "a connection past the per-address cap was accepted"
        );
    }
    let other = client_from(&s, "127.0.0.2");
    let r = s.login(&other, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200, "another address could not sign in");
    let me = other.get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    // The capped address's own connections still work.
    get_ca(&mut held[9])
        .await
        .expect("a held connection answers");
    // A place given back is a place to take again.
    drop(held.remove(0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    connect_from(&s, "127.0.0.1")
        .await
        .expect("a connection once one of the address's was closed");
}

/// With `max_connections` full of idle keep-alive connections a new client is served: the one
/// idle longest (here an HTTP/2 connection with no stream open) is closed for it, not the client
/// refused.
#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_makes_way_for_a_new_client() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nmax_connections = 4\n",
        Start::default(),
    );
    // The oldest: HTTP/2, one request answered, then no stream open.
    let h2 = s.client();
    let r = h2.get(s.url("/ca.crt")).send().await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    r.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut h1 = Vec::new();
    for _ in 0..3 {
        let mut tls = connect_from(&s, "127.0.0.1").await.unwrap();
        get_ca(&mut tls).await.unwrap();
        h1.push(tls);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Full: four connections, all idle.
    let started = Instant::now();
    let new = client_from(&s, "127.0.0.2");
    let r = tokio::time::timeout(Duration::from_secs(5), new.get(s.url("/healthz")).send())
        .await
        .expect("answer within 5 s")
        .expect("a new client served at the cap");
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The HTTP/1.1 ones, idle for less long, are all still open.
    for tls in &mut h1 {
        get_ca(tls)
            .await
            .expect("a younger idle connection was kept");
    }
}

/// With every place taken by connections that are busy (responses being sent), a new client is
/// refused at once, and served again once a place is free.
#[tokio::test]
async fn at_the_cap_with_no_idle_connection_a_new_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nmax_connections = 2\nsend_timeout_secs = 60\n[media]\npublic = true\n",
        Start::default(),
    );
    big_file(&s, "big.bin");
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut tls = tls_from(&s, ip("127.0.0.1"), &[b"http/1.1"], Some(4096))
            .await
            .unwrap();
        tls.write_all(b"GET /media/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        busy.push(tls);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        connect_from(&s, "127.0.0.2").await.is_err(),
        "a third connection was accepted past the cap"
    );
    drop(busy.remove(0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Lines of the log (stdout and stderr) containing `needle`.
fn log_lines(s: &Server, needle: &str) -> usize {
    let (out, err) = (s.stdout(), s.stderr());
    out.lines()
        .chain(err.lines())
        .filter(|l| l.contains(needle))
        .count()
}

/// The open-files limit is the real cap on connections: `max_connections` is lowered to fit it
/// (and the log says so), and a flood past the caps leaves a few log lines, not one per
/// connection, while a client from elsewhere still signs in.
#[tokio::test]
async fn max_connections_fits_the_open_files_limit_and_a_flood_writes_few_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nmax_connections_per_ip = 16\n",
        Start::default().nofile(256),
    );
    assert!(
        s.wait_for_log("max_connections lowered from 4096 to 64", 5),
        "no word of max_connections fitted to 256 open files:\n{}",
        s.stderr()
    );
    let mut held = Vec::new();
    let mut refused = 0;
    // 40 from one address (16 allowed), then 15 from each of four more (past the 64 in all).
    let from: Vec<String> = std::iter::repeat_n("127.0.0.1".to_string(), 40)
        .chain((2..6).flat_map(|n| std::iter::repeat_n(format!("127.0.0.{n}"), 15)))
        .collect();
    for addr in &from {
        match connect_from(&s, addr).await {
            Ok(tls) => held.push(tls),
            Err(_) => refused += 1,
        }
    }
    assert!(refused >= 20, "only {refused} refused");
    let c = client_from(&s, "127.0.0.200");
    let r = s.login(&c, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200);
    let lines = log_lines(&s, "closing a new one") + log_lines(&s, "accept failed");
    assert!(
        lines <= 3,
        "{refused} refused connections wrote {lines} log lines:\n{}",
        s.stderr()
    );
    // Nothing past the limit: the server still holds fewer descriptors than it may.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", s.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(fds < 256, "{fds} descriptors open");
    drop(held);
}

/// A sparse file of 64 MiB in the server's media folder.
fn big_file(s: &Server, name: &str) -> u64 {
    let len = 64 << 20;
    let f = std::fs::File::create(s.dir.join("media").join(name)).unwrap();
    f.set_len(len).unwrap();
    len
}

const SEND_TIMEOUT_CONFIG: &str = "[limits]\nsend_timeout_secs = 2\n[media]\npublic = true\n";

fn start_for_send_timeout(dir: &std::path::Path) -> Server {
    start_in_with_config(
        dir,
        SEND_TIMEOUT_CONFIG,
        Start::default().env("RUST_LOG", "info,hermes_edge::server=debug"),
    )
}

const SEND_TIMEOUT_LINE: &str = "made no progress for the send timeout";

/// An HTTP/1.1 client that asks for a large file and never reads is disconnected once nothing
/// has been written to it for `send_timeout` (it was held for as long as it liked).
#[tokio::test]
async fn an_http1_client_that_stops_reading_is_disconnected_after_the_send_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_for_send_timeout(dir.path());
    let len = big_file(&s, "big.bin");
    let mut tls = tls_from(&s, ip("127.0.0.1"), &[b"http/1.1"], Some(4096))
        .await
        .unwrap();
    tls.write_all(b"GET /media/big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let asked = Instant::now();
    assert!(
        s.wait_for_log(SEND_TIMEOUT_LINE, 12),
        "a client that stopped reading was held {:?}",
        asked.elapsed()
    );
    let held = asked.elapsed();
    assert!(held >= Duration::from_millis(1500), "closed after {held:?}");
    // What the kernel had already buffered arrives, then the end: not the whole file.
    let mut got = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection was still open");
    assert!(got < len, "the whole file was sent");
    // Others are served.
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// HPACK for `GET https://localhost{path}` (every length below 127).
fn h2_get(stream: u8, path: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x41, 9];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0x04, path.len() as u8]);
    block.extend_from_slice(path.as_bytes());
    // HEADERS, END_STREAM | END_HEADERS.
    let mut frame = vec![0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, stream];
    frame.extend_from_slice(&block);
    frame
}

/// An HTTP/2 stream held by a zero flow-control window, on a connection whose client keeps it
/// busy with pings, is reset after `send_timeout` (pings kept it open forever); the connection
/// itself goes on, and answers the next request once the client gives it a window.
#[tokio::test]
async fn an_http2_stream_held_by_a_zero_window_is_reset_after_the_send_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_for_send_timeout(dir.path());
    big_file(&s, "big.bin");
    let mut tls = tls_from(&s, ip("127.0.0.1"), &[b"h2"], None).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS: SETTINGS_INITIAL_WINDOW_SIZE (4) = 0.
    out.extend_from_slice(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0]);
    out.extend_from_slice(&h2_get(1, "/media/big.bin"));
    tls.write_all(&out).await.unwrap();
    let asked = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(tls);
    // The client stays alive: a PING every half second, and answers to the server's.
    let (send_tx, mut send_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
                    if wr.write_all(&ping).await.is_err() { break; }
                }
                frame = send_rx.recv() => match frame {
                    Some(frame) => if wr.write_all(&frame).await.is_err() { break; },
                    None => break,
                }
            }
        }
    });
    let mut got = Vec::new();
    // (type, flags, stream) of each frame received.
    let mut frames: Vec<(u8, u8, u32)> = Vec::new();
    let mut reset_after = None;
    let mut buf = [0u8; 16384];
    let answered = tokio::time::timeout(Duration::from_secs(15), async {
        let mut at = 0;
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            while let Some((kind, flags, stream, len)) = h2_frame_at(&got, at) {
                frames.push((kind, flags, stream));
                if kind == 4 && flags & 1 == 0 {
                    let _ = send_tx.send(vec![0, 0, 0, 4, 1, 0, 0, 0, 0]);
                }
                if kind == 6 && flags & 1 == 0 {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&got[at + 9..at + 17]);
                    let _ = send_tx.send(ack);
                }
                if kind == 3 && stream == 1 && reset_after.is_none() {
                    reset_after = Some(asked.elapsed());
                    // A window for new streams, and a small request on the same connection.
                    let mut next = vec![0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0xff, 0xff];
                    next.extend_from_slice(&h2_get(3, "/healthz"));
                    let _ = send_tx.send(next);
                }
                // The answer to stream 3 complete (END_STREAM on DATA or HEADERS).
                if stream == 3 && (kind == 0 || kind == 1) && flags & 1 == 1 {
                    return true;
                }
                at += 9 + len;
            }
        }
    })
    .await;
    writer.abort();
    let Some(reset) = reset_after else {
        panic!(
            "a stream with no window was held for {:?} (frames {:?})",
            asked.elapsed(),
            &frames[..frames.len().min(20)]
        );
    };
    assert!(
        reset >= Duration::from_millis(1500),
        "reset after {reset:?}"
    );
    assert!(
        frames.iter().any(|f| f.0 == 1 && f.2 == 1),
        "the response headers never came"
    );
    assert!(
        frames.iter().any(|f| f.0 == 6 && f.1 & 1 == 1),
        "the server answered no ping"
    );
    assert!(
        matches!(answered, Ok(true)),
        "the connection did not answer a request after the reset: {:?}",
        &frames[..frames.len().min(30)]
    );
}

/// Addresses put on the loopback interface for one test, taken off again when dropped.
struct LoopbackAddrs(Vec<&'static str>);

impl LoopbackAddrs {
    /// Adds each address with its /64 (needs root); `None` where that is not possible.
    fn add(addrs: &[&'static str]) -> Option<LoopbackAddrs> {
        let mut added = LoopbackAddrs(Vec::new());
        for a in addrs {
            let ok = std::process::Command::new("ip")
                .args([
                    "-6",
                    "addr",
                    "add",
                    &format!("{a}/64"),
                    "dev",
                    "lo",
                    "nodad",
                ])
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return None;
            }
            added.0.push(a);
        }
        Some(added)
    }
}

impl Drop for LoopbackAddrs {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["-6", "addr", "del", &format!("{a}/64"), "dev", "lo"])
                .status();
        }
    }
}

/// A wrong sign-in from `c` under a name used once (so only the per-address limit counts).
async fn wrong_login(s: &Server, c: &reqwest::Client, n: usize) -> u16 {
    let name = format!("nobody-{n}");
    s.login(c, &name, "wrong-password").await.status().as_u16()
}

/// The per-IP sign-in limit counts an IPv6 client by its /64, as one host has the whole /64 to
/// pick addresses from: from ::1, and (where root may put addresses on loopback) from two
/// addresses of one /64 together, while a third /64 is not held up by them.
#[tokio::test]
async fn sign_in_attempts_from_ipv6_are_limited_per_64() {
    let net = LoopbackAddrs::add(&["fd00:21:9::1", "fd00:21:9::2", "fd00:21:a::1"]);
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[auth]\nlogin_attempts_per_minute_per_ip = 5\n",
        Start::default().listen("[::1]:0"),
    );
    let local = s.client();
    let mut got = Vec::new();
    for n in 0..7 {
        got.push(wrong_login(&s, &local, n).await);
    }
    assert_eq!(got[..5], [401; 5], "{got:?}");
    assert_eq!(got[5..], [429; 2], "{got:?}");
    let Some(_net) = net else {
        eprintln!("no IPv6 addresses could be put on loopback here (not root?); /64 part skipped");
        return;
    };
    let a = client_from(&s, "fd00:21:9::1");
    let b = client_from(&s, "fd00:21:9::2");
    let mut got = Vec::new();
    for n in 0..3 {
        got.push(wrong_login(&s, &a, 100 + n).await);
    }
    for n in 0..4 {
        got.push(wrong_login(&s, &b, 200 + n).await);
    }
    assert_eq!(got[..5], [401; 5], "{got:?}");
    assert_eq!(
        got[5..],
        [429; 2],
        "two addresses of one /64 had two limits: {got:?}"
    );
    let other = client_from(&s, "fd00:21:a::1");
    assert_eq!(wrong_login(&s, &other, 300).await, 401);
    let r = s.login(&other, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200);
}
