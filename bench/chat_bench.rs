//! Load tool for bench/chat.sh: a fake OpenAI-compatible upstream and the measuring clients.
//!
//!   chat-bench upstream --port-file F [--interval-ms 10] [--events 100]
//!       POST .../chat/completions with "stream": true → `--events` SSE events, one every
//!       `--interval-ms`, each carrying its send time in its text ("w<i>@<ns since the Unix epoch> "), then [DONE];
//!       with "hold" in the body it sends one event and then only a keepalive every 10 s.
//!       Anything else → a small JSON completion.
//!   chat-bench latency --url URL [--edge --ca F --password P] --streams N
//!       per-event delay (receive time − that send time) over N streams; prints p50/p99 in microseconds.
//!   chat-bench rps --url URL [--ca F] [--token T] --concurrency C --seconds S
//!       non-streaming POSTs over HTTP/1.1 keep-alive; prints requests/s.
//!   chat-bench streams --url URL --ca F --password P --count N --hold-seconds S
//!       opens N concurrent /api/chat streams (HTTP/1.1, one connection each), prints `open N` once
//!       every stream has its first event, holds them S seconds.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: u64) -> u64 {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("upstream") => upstream().await,
        Some("latency") => latency().await,
        Some("rps") => rps().await,
        Some("streams") => streams().await,
        _ => eprintln!("usage: chat-bench upstream|latency|rps|streams ..."),
    }
}

async fn upstream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let interval = Duration::from_millis(num("--interval-ms", 10));
    let events = num("--events", 100);
    if let Some(f) = arg("--port-file") {
        std::fs::write(format!("{f}.tmp"), format!("{port}\n")).unwrap();
        std::fs::rename(format!("{f}.tmp"), f).unwrap();
    }
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, Infallible>(answer(req, interval, events).await)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    interval: Duration,
    events: u64,
) -> Response<http_body_util::combinators::BoxBody<Bytes, BoxError>> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let stream = text.contains("\"stream\":true") || text.contains("\"stream\": true");
    if !stream {
        let json = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}"#;
        let mut r = Response::new(Full::new(Bytes::from(json)).map_err(|e| match e {}).boxed());
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return r;
    }
    let hold = text.contains("hold");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
    tokio::spawn(async move {
        let ev = |i: u64| {
            // The send time rides in the text itself ("w<i>@<ns> "): the edge passes an answer's
            // text on, not the chunk objects around it.
            Bytes::from(format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"w{i}@{} \"}}}}]}}\n\n",
                now_ns()
            ))
        };
        if hold {
            if tx.send(Ok(Frame::data(ev(0)))).await.is_err() {
                return;
            }
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(10)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b": keepalive\n\n"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            return;
        }
        for i in 0..events {
            tokio::time::sleep(interval).await;
            if tx.send(Ok(Frame::data(ev(i)))).await.is_err() {
                return;
            }
        }
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
            .await;
    });
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let mut r = Response::new(StreamBody::new(s).boxed());
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

fn client(http1: bool) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .pool_max_idle_per_host(2000)
        .timeout(Duration::from_secs(600));
    if let Some(ca) = arg("--ca") {
        let pem = std::fs::read(ca).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    if http1 {
        b = b.http1_only();
    }
    b.build().unwrap()
}

fn origin(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or("");
    let host = rest.split('/').next().unwrap_or("");
    format!("https://{host}")
}

async fn login(c: &reqwest::Client, url: &str) {
    let r = c
        .post(format!("{url}/login"))
        .header("origin", origin(url))
        .header("accept", "application/json")
        .json(&serde_json::json!({"username": "admin", "password": arg("--password").unwrap_or_default()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "login failed");
}

/// Starts one stream; for the edge via /api/chat, else straight to the upstream.
async fn open(c: &reqwest::Client, url: &str, edge: bool, message: &str) -> reqwest::Response {
    let r = if edge {
        c.post(format!("{url}/api/chat"))
            .header("origin", origin(url))
            .json(&serde_json::json!({"message": message}))
            .send()
            .await
    } else {
        c.post(format!("{url}/v1/chat/completions"))
            .json(&serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": message}]}))
            .send()
            .await
    };
    let r = r.unwrap();
    assert_eq!(r.status(), 200, "stream refused");
    r
}

async fn latency() {
    let url = arg("--url").unwrap();
    let edge = flag("--edge");
    let c = client(false);
    if edge {
        login(&c, &url).await;
    }
    let mut delays: Vec<u128> = Vec::new();
    for _ in 0..num("--streams", 5) {
        let mut r = open(&c, &url, edge, "bench").await;
        let mut buf = String::new();
        while let Some(chunk) = r.chunk().await.unwrap() {
            let at = now_ns();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(t) = event.split('@').nth(1) {
                    let digits: String = t.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let Ok(sent) = digits.parse::<u128>() {
                        delays.push(at.saturating_sub(sent));
                    }
                }
            }
        }
    }
    delays.sort_unstable();
    let p = |q: f64| delays[((delays.len() as f64 - 1.0) * q).round() as usize] as f64 / 1000.0;
    println!(
        "events={} p50_us={:.0} p99_us={:.0} max_us={:.0}",
        delays.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

async fn rps() {
    let url = arg("--url").unwrap();
    let token = arg("--token");
    let conc = num("--concurrency", 32);
    let secs = num("--seconds", 10);
    let c = client(true);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (c, url, token, done, failed) = (
            c.clone(),
            url.clone(),
            token.clone(),
            done.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let mut b = c
                    .post(format!("{url}/v1/chat/completions"))
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(t) = &token {
                    b = b.header("authorization", format!("Bearer {t}"));
                }
                match b.send().await {
                    Ok(r) if r.status() == 200 => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    println!(
        "requests={n} failed={} rps={:.0}",
        failed.load(Ordering::Relaxed),
        n as f64 / secs as f64
    );
}

async fn streams() {
    let url = arg("--url").unwrap();
    let count = num("--count", 1000);
    let c = client(true);
    login(&c, &url).await;
    let opened = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = Vec::new();
    for _ in 0..count {
        let (c, url, opened, sem) = (c.clone(), url.clone(), opened.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let permit = sem.acquire_owned().await.unwrap();
            let mut r = open(&c, &url, true, "hold").await;
            let _ = r.chunk().await;
            drop(permit);
            opened.fetch_add(1, Ordering::Relaxed);
            // Keep reading (keepalives) until the process ends.
            while let Ok(Some(_)) = r.chunk().await {}
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("open {}", opened.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(num("--hold-seconds", 10))).await;
}
