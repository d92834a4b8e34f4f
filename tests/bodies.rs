//! Request bodies and request heads (issue 21): a body that never arrives, bodies that together
//! would hold too much memory, and request heads hyper lets through. Real binary, loopback only,
//! small limits so every attack is bounded in count and time.
mod common;
use common::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Limits for the attacks below: every client here is 127.0.0.1, so the per-address request and
/// sign-in limits are raised out of the way (they are not what is tested).
const OPEN_RATES: &str = "requests_per_second_per_ip = 2000\nrequest_burst_per_ip = 2000\n";
const OPEN_LOGINS: &str = "[auth]\nlogin_attempts_per_minute_per_ip = 1000\n\
                           login_attempts_per_minute_per_account = 1000\n\
                           chat_sends_per_minute_per_user = 1000\n";

/// The status code of a raw HTTP/1.1 answer (0 when there was none).
fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.strip_prefix("HTTP/1.")
        .and_then(|t| t.get(2..5))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// A signed-in `admin` session cookie (`name=value`) for raw clients.
async fn admin_cookie(s: &Server) -> String {
    let c = s.client();
    let r = s.login(&c, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    set.split(';').next().unwrap().to_string()
}

/// Whether `/healthz` and a real sign-in both succeed from a fresh client within `within`
/// (retrying while the server's connections are all taken).
async fn legitimate_client_gets_in(s: &Server, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let (mut health, mut login) = (false, false);
    while Instant::now() < deadline && !(health && login) {
        let c = s
            .client_builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        if !health {
            health = matches!(c.get(s.url("/healthz")).send().await, Ok(r) if r.status() == 200);
        }
        if health && !login {
            login =
                tokio::time::timeout(Duration::from_secs(2), s.login(&c, "admin", ADMIN_PASSWORD))
                    .await
                    .is_ok_and(|r| r.status() == 200);
        }
        if !(health && login) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    health && login
}

// ---------------------------------------------------------------------------------------------
// A body that never arrives

#[tokio::test]
async fn login_heads_whose_body_never_comes_get_408_and_are_closed_while_others_sign_in() {
    // Every place under the connection limit is taken by a client that sends a login head with
    // a Content-Length and then nothing, and takes a new place soon after losing one.
    const ATTACKERS: usize = 50;
    let s = Arc::new(start_with_config(&format!(
        "[limits]\nmax_connections = {ATTACKERS}\nbody_read_timeout_secs = 2\n\
         header_read_timeout_secs = 10\n{OPEN_RATES}{OPEN_LOGINS}"
    )));
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://localhost:{port}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: 10000\r\n\r\n",
        port = s.port()
    );
    let started = Instant::now();
    let attack_for = Duration::from_secs(8);
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let (s, head) = (s.clone(), head.clone());
        attackers.push(tokio::spawn(async move {
            // (status, seconds until the server closed) of each stalled request.
            let mut seen = Vec::new();
            while started.elapsed() < attack_for {
                let Ok(mut tls) =
                    tls_connect_with_root(s.https, "localhost", &s.ca_pem(), &[b"http/1.1"]).await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if tls.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                let sent = Instant::now();
                let mut answer = Vec::new();
                // Longer than the legitimate client tries: an attacker that gave up would free
                // its place.
                let closed =
                    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer))
                        .await
                        .is_ok();
                seen.push((status_of(&answer), closed.then(|| sent.elapsed())));
                // A patient attacker: back after a short pause.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            seen
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_in = legitimate_client_gets_in(&s, Duration::from_secs(6)).await;
    let mut seen = Vec::new();
    for a in attackers {
        seen.extend(a.await.unwrap());
    }
    assert!(
        got_in,
        "no sign-in (or no /healthz) while stalled login bodies held the connections"
    );
    assert!(seen.len() >= ATTACKERS, "{} stalled requests", seen.len());
    for (status, closed) in &seen {
        assert_eq!(*status, 408, "a stalled login body was not answered 408");
        let closed = closed.expect("the connection of a stalled body stayed open");
        assert!(
            closed < Duration::from_millis(4500),
            "closed only after {closed:?}"
        );
    }
    // The server is still whole.
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A raw HTTP/2 connection (the `h2` crate) over TLS: the request sender and the connection's
/// task, which ends when the server closes the connection.
async fn h2_connect(s: &Server) -> (h2::client::SendRequest<Bytes>, tokio::task::JoinHandle<()>) {
    let tls = tls_connect(s, &[b"h2"]).await;
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, task)
}

fn h2_post(s: &Server, path: &str, headers: &[(&str, &str)]) -> http::Request<()> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}{path}", s.port()))
        .header("origin", s.origin())
        .header("content-type", "application/json")
        .header("accept", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

#[tokio::test]
async fn http2_login_streams_whose_body_never_comes_get_408_and_the_connection_closes() {
    const CONNECTIONS: usize = 10;
    const STREAMS: usize = 3;
    let s = start_with_config(&format!(
        "[limits]\nmax_connections = {}\nbody_read_timeout_secs = 2\n\
         header_read_timeout_secs = 2\n{OPEN_RATES}{OPEN_LOGINS}",
        CONNECTIONS + 4
    ));
    let started = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let (mut send, task) = h2_connect(&s).await;
        let mut answers = Vec::new();
        let mut open = Vec::new();
        for _ in 0..STREAMS {
            send = send.ready().await.unwrap();
            // HEADERS without END_STREAM, then no DATA at all.
            let (resp, body) = send
                .send_request(h2_post(&s, "/login", &[("content-length", "10000")]), false)
                .unwrap();
            answers.push(resp);
            open.push(body);
        }
        conns.push((send, task, answers, open));
    }
    // Others still sign in meanwhile (over HTTP/2 too).
    assert!(legitimate_client_gets_in(&s, Duration::from_secs(5)).await);
    for (send, task, answers, open) in conns {
        for resp in answers {
            let resp = tokio::time::timeout(Duration::from_secs(5), resp)
                .await
                .expect("no answer to an HTTP/2 login stream whose body never came")
                .unwrap();
            assert_eq!(resp.status(), 408);
        }
        drop((send, open));
        // With its streams answered, the connection is closed by the server (the keep-alive
        // limit); the client keeps it open, as an attacker would.
        tokio::time::timeout(Duration::from_secs(6), task)
            .await
            .expect("the connection of the stalled streams stayed open")
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn routes_that_refuse_a_request_answer_before_its_body() {
    let s = start_with_config(&format!(
        "[limits]\nbody_read_timeout_secs = 20\n{OPEN_RATES}"
    ));
    let port = s.port();
    for (what, head, want) in [
        (
            "chat send without a session",
            format!("POST /api/chat HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://localhost:{port}\r\n"),
            401,
        ),
        (
            "login from another site",
            format!("POST /login HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://evil.example\r\n"),
            403,
        ),
        (
            "POST to /healthz",
            format!("POST /healthz HTTP/1.1\r\nHost: localhost:{port}\r\n"),
            405,
        ),
        (
            "a /v1 call without a token",
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: localhost:{port}\r\n"),
            401,
        ),
    ] {
        let request = format!("{head}Content-Length: 10000\r\n\r\n");
        let started = Instant::now();
        let answer = raw_exchange(&s, request.as_bytes(), 10).await;
        assert_eq!(status_of(&answer), want, "{what}");
        // Answered, and the connection closed, without waiting for the body.
        assert!(started.elapsed() < Duration::from_secs(3), "{what}");
    }
}

#[tokio::test]
async fn a_login_body_over_the_small_limit_gets_413() {
    let s = start_with_config(&format!("[limits]\n{OPEN_RATES}"));
    let port = s.port();
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost:{port}\r\nOrigin: https://localhost:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n"
    );
    // Declared: refused before a byte of it is read.
    let answer = raw_exchange(
        &s,
        format!("{head}Content-Length: 20000\r\n\r\n").as_bytes(),
        5,
    )
    .await;
    assert_eq!(status_of(&answer), 413);
    assert!(String::from_utf8_lossy(&answer).contains("body_too_large"));
    // Chunked: refused once it passes the limit.
    let mut chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
    for _ in 0..5 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend(std::iter::repeat_n(b'a', 0x1000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&s, &chunked, 5).await;
    assert_eq!(status_of(&answer), 413);
}

// ---------------------------------------------------------------------------------------------
// Memory held by request bodies

#[tokio::test]
async fn many_large_http2_bodies_beyond_the_budgets_get_413_or_503_and_memory_stays_bounded() {
    // Room for two 4 MB bodies per connection and three in the process.
    const BODY: usize = 4_000_000;
    const CONNECTIONS: usize = 2;
    const STREAMS: usize = 16;
    let s = start_with_config(&format!(
        "[limits]\nmax_body_bytes = 4194304\nbody_memory_per_connection = 8388608\n\
         body_memory_total = 12582912\nbody_read_timeout_secs = 30\n{OPEN_RATES}{OPEN_LOGINS}"
    ));
    let cookie = admin_cookie(&s).await;
    let baseline = rss_kib(s.pid());
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), s.pid());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    // A chat message of BODY bytes, all sent but its last byte: a body held until it ends.
    let mut message = br#"{"message":""#.to_vec();
    message.resize(BODY - 2, b'a');
    message.extend_from_slice(b"\"}");
    let most = Bytes::from(message).slice(..BODY - 1);
    let length = BODY.to_string();
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let (mut send, task) = h2_connect(&s).await;
        let mut streams = Vec::new();
        for _ in 0..STREAMS {
            send = send.ready().await.unwrap();
            let req = h2_post(
                &s,
                "/api/chat",
                &[("content-length", &length), ("cookie", &cookie)],
            );
            let (resp, mut body) = send.send_request(req, false).unwrap();
            let _ = body.send_data(most.clone(), false);
            streams.push((resp, body));
        }
        conns.push((send, task, streams));
    }
    // Refusals come at once; the bodies let in wait for their last byte.
    let mut statuses = Vec::new();
    let mut waiting = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    for (_, _, streams) in &mut conns {
        for (resp, _) in streams.iter_mut() {
            match tokio::time::timeout_at(deadline, resp).await {
                Ok(Ok(r)) => {
                    statuses.push(r.status().as_u16());
                    if r.status() == 413 || r.status() == 503 {
                        let mut b = r.into_body();
                        let mut text = Vec::new();
                        while let Some(Ok(chunk)) = b.data().await {
                            text.extend_from_slice(&chunk);
                        }
                        let v: serde_json::Value = serde_json::from_slice(&text).unwrap();
                        assert!(v["error"]["code"].is_string(), "{v}");
                    }
                }
                Ok(Err(e)) => panic!("stream failed: {e}"),
                Err(_) => waiting.push(()),
            }
        }
    }
    // Let whatever the server reads arrive.
    tokio::time::sleep(Duration::from_secs(1)).await;
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    // Signing in still works while the large bodies fill the budget: the login form has room of
    // its own. (After the sampling: the password hash takes memory of its own.)
    let c = s.client();
    assert_eq!(s.login(&c, "admin", ADMIN_PASSWORD).await.status(), 200);
    let grew_mib = peak.load(Ordering::Relaxed).saturating_sub(baseline) / 1024;
    let count = |code| statuses.iter().filter(|&&c| c == code).count();
    assert!(
        waiting.len() <= 3,
        "{} of {} large bodies held at once (statuses {statuses:?}), RSS grew {grew_mib} MiB",
        waiting.len(),
        CONNECTIONS * STREAMS
    );
    assert_eq!(
        count(413) + count(503) + waiting.len(),
        CONNECTIONS * STREAMS,
        "{statuses:?}"
    );
    assert!(
        count(413) > 0,
        "no 413 for the connection budget: {statuses:?}"
    );
    assert!(
        count(503) > 0,
        "no 503 for the process budget: {statuses:?}"
    );
    assert!(grew_mib < 32, "RSS grew {grew_mib} MiB");
    drop(conns);
}

// ---------------------------------------------------------------------------------------------
// Request heads

#[tokio::test]
async fn http11_heads_over_max_header_bytes_get_431_however_large() {
    let s = start_with_config("[limits]\nmax_header_bytes = 32768\n");
    let mut passed = Vec::new();
    for kib in 33..=46 {
        // Headers of 1 KiB each, so the head is whole long before hyper's buffer limit.
        let mut head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n".to_vec();
        for i in 0..kib {
            head.extend_from_slice(format!("X-Filler-{i:03}: ").as_bytes());
            head.extend(std::iter::repeat_n(b'a', 1024 - 17));
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let answer = raw_exchange(&s, &head, 5).await;
        let status = status_of(&answer);
        if status != 431 {
            passed.push((head.len(), status));
        }
    }
    assert!(
        passed.is_empty(),
        "heads over 32768 bytes answered otherwise: {passed:?}"
    );
    // One just under the limit still passes.
    let mut head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Filler: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 30_000));
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(status_of(&raw_exchange(&s, &head, 5).await), 200);
}

#[tokio::test]
async fn http11_requests_without_exactly_one_host_get_400() {
    let s = Server::start();
    for (what, request) in [
        ("no Host", "GET /healthz HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nHost: other.example\r\n\r\n",
        ),
        (
            "user information",
            "GET /healthz HTTP/1.1\r\nHost: user@localhost\r\n\r\n",
        ),
    ] {
        let answer = raw_exchange(&s, request.as_bytes(), 5).await;
        assert_eq!(status_of(&answer), 400, "{what}");
        assert!(
            String::from_utf8_lossy(&answer).contains("bad_host"),
            "{what}"
        );
    }
    // One Host, and HTTP/1.0 (which has none), are served.
    for request in [
        "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
    ] {
        let answer = raw_exchange(&s, request.as_bytes(), 5).await;
        assert_eq!(status_of(&answer), 200, "{request}");
    }
}

#[tokio::test]
async fn a_dashboard_request_whose_body_stops_gets_408() {
    // A dashboard that takes the request and reads whatever comes, answering nothing.
    let dashboard = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dashboard_addr = dashboard.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = dashboard.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\nbody_read_timeout_secs = 2\n",
        Start::default()
            .arg("--dashboard-upstream")
            .arg(format!("http://{dashboard_addr}")),
    );
    let c = s.admin_client().await;
    // The first piece, then nothing more (and no end).
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"a\":"))])
            .chain(futures_util::stream::pending());
    let started = Instant::now();
    let r = c
        .post(s.url("/dashboard/api/config"))
        .header("origin", s.origin())
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("no answer to a dashboard request whose body stopped");
    assert_eq!(r.status(), 408);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn small_bodies_beyond_the_per_connection_share_get_413_and_others_still_sign_in() {
    // Login forms of almost 16 KiB on one HTTP/2 connection, each but its last byte sent: at most
    // 16 of them are held at once.
    const STREAMS: usize = 24;
    const FORM: usize = 16_000;
    let s = start_with_config(&format!(
        "[limits]\nbody_read_timeout_secs = 10\n{OPEN_RATES}{OPEN_LOGINS}"
    ));
    let (mut send, _task) = h2_connect(&s).await;
    let most = Bytes::from(vec![b'a'; FORM - 1]);
    let length = FORM.to_string();
    let mut streams = Vec::new();
    for _ in 0..STREAMS {
        send = send.ready().await.unwrap();
        let (resp, mut body) = send
            .send_request(h2_post(&s, "/login", &[("content-length", &length)]), false)
            .unwrap();
        let _ = body.send_data(most.clone(), false);
        streams.push((resp, body));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let (mut refused, mut held) = (0, 0);
    for (resp, _) in streams.iter_mut() {
        match tokio::time::timeout_at(deadline, resp).await {
            Ok(Ok(r)) => {
                assert_eq!(r.status(), 413);
                refused += 1;
            }
            Ok(Err(e)) => panic!("stream failed: {e}"),
            Err(_) => held += 1,
        }
    }
    assert!(
        held <= 16,
        "{held} login bodies held at once on one connection"
    );
    assert_eq!(refused + held, STREAMS);
    assert!(held > 0, "every login body was refused");
    // Another client signs in meanwhile.
    let c = s.client();
    assert_eq!(s.login(&c, "admin", ADMIN_PASSWORD).await.status(), 200);
    drop((send, streams));
}
