//! `/dashboard/`: Hermes' own web dashboard behind the edge, for administrators only.
//!
//! The main test runs the REAL `hermes dashboard` (PyPI `hermes-agent`, installed by
//! `tests/hermes/setup.sh`, started by `tests/hermes/dashboard.sh` in a throw-away HERMES_HOME on a
//! free loopback port; never skipped when missing): the page and its assets through the edge, the
//! page's Content-Security-Policy carrying the hash of its inline script, the roles, and a
//! WebSocket to the dashboard's `/api/ws` exchanging real JSON-RPC messages through the edge.
//! A recording stand-in shows exactly which headers reach the dashboard, and the remaining tests
//! cover a dashboard that is down or not configured.

mod common;
mod fake_upstream;

use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::Digest;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

use common::*;

/// The real dashboard, stopped (by its recorded PID) on drop.
struct Dashboard {
    work: tempfile::TempDir,
    url: String,
}

impl Dashboard {
    fn start() -> Dashboard {
        let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
        assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
        let (work, port, url) = start_by_script("dashboard.sh", "hermes dashboard");
        assert_eq!(url, format!("http://127.0.0.1:{port}"));
        Dashboard { work, url }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        drop(StopGuard(self.work.path().to_path_buf()));
    }
}

fn edge_for(dashboard_url: &str) -> Server {
    Server::start_with(
        Start::default()
            .arg("--dashboard-upstream")
            .arg(dashboard_url)
            .arg("--san")
            .arg(SITE),
    )
}

/// The dashboard's session token, which its page hands to its WebSockets (`?token=`), fetched
/// through the edge with `cookie`.
async fn page_token(s: &Server, cookie: &str) -> String {
    let client = s.client_builder().cookie_store(false).build().unwrap();
    let page = client
        .get(s.url("/dashboard/"))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.split("window.__HERMES_SESSION_TOKEN__=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .expect("the page carries its session token")
        .to_string()
}

/// The dashboard's `/api/ws` opened through the edge with `cookie` and the page's `token`, past
/// the dashboard's `gateway.ready` event.
async fn ready_websocket(s: &Server, cookie: &str, token: &str) -> Ws {
    let mut ws = ws_connect(
        s,
        &format!("/dashboard/api/ws?token={token}"),
        Some(cookie),
        &site_origin(s),
    )
    .await
    .expect("the WebSocket upgrades through the edge");
    let ready: Value = serde_json::from_str(&next_text(&mut ws, 20).await).unwrap();
    assert_eq!(ready["params"]["type"], "gateway.ready", "{ready}");
    ws
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// The name the WebSocket tests address the edge by: not a loopback name, like a real deployment
/// (the dashboard accepts an `Origin` on `localhost`, so only another name shows that the edge
/// rewrites it). The local CA's leaf covers it through `--san`.
const SITE: &str = "hermes.test";

/// A WebSocket handshake to `wss://hermes.test:PORT{path}` over the edge's TLS (HTTP/1.1), with
/// the given cookie and Origin.
async fn ws_connect(
    s: &Server,
    path: &str,
    cookie: Option<&str>,
    origin: &str,
) -> Result<Ws, tungstenite::Error> {
    let tls = tls_connect_with_root(s.https, SITE, &s.ca_pem(), &[b"http/1.1"])
        .await
        .expect("TLS to the edge");
    let mut req = format!("wss://{SITE}:{}{path}", s.port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("origin", origin.parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut().insert("cookie", c.parse().unwrap());
    }
    let (ws, resp) = tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::client_async(req, tls),
    )
    .await
    .expect("handshake within 20 s")?;
    assert_eq!(resp.status(), 101);
    Ok(ws)
}

fn site_origin(s: &Server) -> String {
    format!("https://{SITE}:{}", s.port())
}

/// The next text message, within `secs`.
async fn next_text(ws: &mut Ws, secs: u64) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(secs), ws.next())
            .await
            .expect("a message in time")
            .expect("stream open")
            .expect("message");
        match msg {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// The refused handshake's status and body.
fn refused(e: tungstenite::Error) -> (u16, String) {
    match e {
        tungstenite::Error::Http(resp) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or(b"")).to_string(),
        ),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

fn sha256_source(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
    )
}

#[tokio::test]
async fn the_real_dashboard_works_through_the_edge_for_admins_with_its_websocket() {
    let dashboard = Dashboard::start();
    let s = edge_for(&dashboard.url);
    let admin = s.admin_client().await;

    // The page: asset links under the prefix, the inline bootstrap script allowed by its hash.
    let r = admin
        .get(s.url("/dashboard/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers().contains_key("strict-transport-security"));
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<title>Hermes Agent - Dashboard</title>"),
        "{page}"
    );
    assert!(
        page.contains("window.__HERMES_BASE_PATH__=\"/dashboard\""),
        "{page}"
    );
    let script_start = page.find("<script>").expect("the inline script") + "<script>".len();
    let script_len = page[script_start..].find("</script>").unwrap();
    let script = &page[script_start..script_start + script_len];
    assert!(
        script.starts_with("window.__HERMES_SESSION_TOKEN__=\""),
        "{script}"
    );
    let hash = sha256_source(script);
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src "))
        .unwrap();
    assert_eq!(script_src, format!("script-src 'self' {hash}"), "{csp}");
    assert!(csp.contains("default-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains(&format!("connect-src 'self' wss://localhost:{};", s.port())),
        "{csp}"
    );
    let token = script
        .strip_prefix("window.__HERMES_SESSION_TOKEN__=\"")
        .and_then(|t| t.split('"').next())
        .unwrap()
        .to_string();

    // An asset the page links, byte for byte what the dashboard serves, with the edge's own CSP.
    let js = page
        .split("src=\"")
        .skip(1)
        .filter_map(|p| p.split('"').next())
        .find(|p| p.starts_with("/dashboard/assets/") && p.ends_with(".js"))
        .expect("a script under /dashboard/assets/")
        .to_string();
    let css = page
        .split("href=\"")
        .skip(1)
        .filter_map(|p| p.split('"').next())
        .find(|p| p.starts_with("/dashboard/assets/") && p.ends_with(".css"))
        .expect("a stylesheet under /dashboard/assets/")
        .to_string();
    let r = admin.get(s.url(&js)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-security-policy"].to_str().unwrap(),
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; \
         script-src 'self'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
         object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    let through_edge = r.bytes().await.unwrap();
    let direct = reqwest::get(format!(
        "{}{}",
        dashboard.url,
        js.strip_prefix("/dashboard").unwrap()
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert!(through_edge.len() > 100_000, "{}", through_edge.len());
    assert!(
        through_edge == direct,
        "the asset differs from the dashboard's"
    );
    let r = admin.get(s.url(&css)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let css_text = r.text().await.unwrap();
    assert!(
        css_text.contains("url(/dashboard/assets/"),
        "fonts stay under the prefix"
    );

    // The dashboard's own API with its token, through the edge.
    let r = admin
        .get(s.url("/dashboard/api/status"))
        .header("x-hermes-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status: Value = r.json().await.unwrap();
    assert!(status.get("version").is_some(), "{status}");

    // Roles: a signed-in non-admin gets 403; logged out gets the login redirect or 401.
    add_user(&s, &admin, "bob", "bob-password-1", "user").await;
    let bob = s.client();
    assert_eq!(s.login(&bob, "bob", "bob-password-1").await.status(), 200);
    for path in ["/dashboard/", "/dashboard/api/status", &js] {
        let r = bob.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "admin_only", "{path}");
    }
    let r = bob
        .get(s.url("/dashboard/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Only an administrator"));
    let anon = s.client();
    let r = anon.get(s.url("/dashboard/")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fdashboard%2F");
    let r = anon
        .get(s.url("/dashboard/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "login_required");

    // The WebSocket: upgraded through the edge, real JSON-RPC both ways. The dashboard accepts
    // only an Origin on its own loopback name, so this one passes only because the edge rewrites
    // a same-site Origin to the dashboard's.
    let cookie = session_cookie(&s, "admin", ADMIN_PASSWORD).await;
    let ws_path = format!("/dashboard/api/ws?token={token}");
    let mut ws = ws_connect(&s, &ws_path, Some(&cookie), &site_origin(&s))
        .await
        .expect("the WebSocket upgrades through the edge");
    let ready: Value = serde_json::from_str(&next_text(&mut ws, 20).await).unwrap();
    assert_eq!(ready["method"], "event", "{ready}");
    assert_eq!(ready["params"]["type"], "gateway.ready", "{ready}");
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "id": 7, "method": "session.list", "params": {}}).to_string(),
    ))
    .await
    .unwrap();
    let answer = loop {
        let v: Value = serde_json::from_str(&next_text(&mut ws, 20).await).unwrap();
        if v.get("id") == Some(&json!(7)) {
            break v;
        }
    };
    assert_eq!(answer["jsonrpc"], "2.0", "{answer}");
    assert!(answer["result"]["sessions"].is_array(), "{answer}");
    ws.close(None).await.unwrap();

    // A cross-site page cannot open it, even with the admin's cookie and the right token.
    let e = ws_connect(&s, &ws_path, Some(&cookie), "https://evil.example")
        .await
        .expect_err("a cross-site WebSocket is refused");
    let (status, body) = refused(e);
    assert_eq!(status, 403);
    assert!(body.contains("\"code\":\"cross_origin\""), "{body}");
    // Without its token the dashboard itself refuses; the edge passes that on.
    let e = ws_connect(&s, "/dashboard/api/ws", Some(&cookie), &site_origin(&s))
        .await
        .expect_err("no token, no WebSocket");
    assert_eq!(refused(e).0, 403);
    // Logged out: 401 before anything reaches the dashboard.
    let e = ws_connect(&s, &ws_path, None, &site_origin(&s))
        .await
        .expect_err("logged out");
    let (status, body) = refused(e);
    assert_eq!(status, 401);
    assert!(body.contains("login_required"), "{body}");
    // Non-admin: 403.
    let bob_cookie = session_cookie(&s, "bob", "bob-password-1").await;
    let e = ws_connect(&s, &ws_path, Some(&bob_cookie), &site_origin(&s))
        .await
        .expect_err("non-admin");
    let (status, body) = refused(e);
    assert_eq!(status, 403);
    assert!(body.contains("admin_only"), "{body}");
}

#[tokio::test]
async fn requests_reach_the_dashboard_without_the_prefix_with_forwarding_headers_and_without_the_session_cookie(
) {
    let fake = fake_upstream::Fake::start().await;
    let s = edge_for(&fake.url());
    let cookie = session_cookie(&s, "admin", ADMIN_PASSWORD).await;
    let client = s.client_builder().cookie_store(false).build().unwrap();

    // A large upload and a large answer both pass whole.
    let upload = vec![b'u'; 3 * 1024 * 1024];
    let answer = "d".repeat(2 * 1024 * 1024);
    fake.push(
        fake_upstream::Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/octet-stream".into()),
                ("content-security-policy".into(), "default-src *".into()),
                ("connection".into(), "x-hop".into()),
                ("x-hop".into(), "1".into()),
            ],
            steps: vec![
                fake_upstream::Step::Data(answer[..1024 * 1024].to_string()),
                fake_upstream::Step::Data(answer[1024 * 1024..].to_string()),
            ],
            silent: false,
        }
        .header("x-dashboard", "yes"),
    );
    let r = client
        .post(s.url("/dashboard/api/upload?x=1"))
        .header("cookie", format!("theme=dark; {cookie}; lang=en"))
        .header("origin", s.origin())
        .header("x-hermes-session-token", "tok")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-prefix", "/elsewhere")
        .body(upload.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-dashboard"], "yes");
    assert!(r.headers().get("x-hop").is_none());
    assert!(!r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains('*'));
    assert!(r.bytes().await.unwrap() == answer.as_bytes());
    let got = fake.requests().pop().unwrap();
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/api/upload");
    assert_eq!(got.header("host").unwrap(), fake.addr.to_string());
    assert_eq!(got.header("x-forwarded-prefix").unwrap(), "/dashboard");
    assert_eq!(got.header("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(got.header("x-real-ip").unwrap(), "127.0.0.1");
    assert_eq!(got.header("x-forwarded-proto").unwrap(), "https");
    assert_eq!(got.header("origin").unwrap(), fake.url());
    assert_eq!(got.header("cookie").unwrap(), "theme=dark; lang=en");
    assert_eq!(got.header("x-hermes-session-token").unwrap(), "tok");
    assert!(got.body == upload, "upload of {} bytes", got.body.len());

    // A redirect to one of the dashboard's own paths stays under the prefix.
    fake.push(fake_upstream::Reply::json(302, "{}").header("location", "/sessions"));
    let r = client
        .get(s.url("/dashboard/old"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/dashboard/sessions");
    // Only the session cookie was sent: no Cookie header reaches the dashboard at all.
    assert_eq!(fake.requests().pop().unwrap().header("cookie"), None);

    // `/dashboard` itself: a permanent redirect to the mounted root.
    let r = client
        .get(s.url("/dashboard?profile=x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/dashboard/?profile=x");
}

#[tokio::test]
async fn a_dashboard_that_is_not_running_gets_a_clear_502_at_once() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let s = edge_for(&url);
    let admin = s.admin_client().await;

    let started = Instant::now();
    let r = admin
        .get(s.url("/dashboard/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert!(r.headers().contains_key("content-security-policy"));
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!("Cannot reach Hermes' dashboard at {url}.")),
        "{page}"
    );
    assert!(
        page.contains(&format!("hermes dashboard --no-open --port {port}")),
        "{page}"
    );

    let r = admin
        .get(s.url("/dashboard/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dashboard_unreachable");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("`hermes dashboard --no-open --port {port}`")));

    // A WebSocket to it fails the same way, promptly.
    let cookie = session_cookie(&s, "admin", ADMIN_PASSWORD).await;
    let started = Instant::now();
    let e = ws_connect(
        &s,
        "/dashboard/api/ws?token=t",
        Some(&cookie),
        &site_origin(&s),
    )
    .await
    .expect_err("no dashboard, no WebSocket");
    assert!(started.elapsed() < Duration::from_secs(10));
    let (status, body) = refused(e);
    assert_eq!(status, 502);
    assert!(body.contains("dashboard_unreachable"), "{body}");
}

#[tokio::test]
async fn without_a_configured_dashboard_the_page_says_how_to_enable_it() {
    let s = Server::start();
    let admin = s.admin_client().await;
    let r = admin.get(s.url("/dashboard/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "dashboard_off");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("upstream = \"http://127.0.0.1:9119\""),
        "{message}"
    );
    assert!(message.contains("[dashboard]"), "{message}");
    assert!(message.contains("--dashboard-upstream"), "{message}");
    let r = admin
        .get(s.url("/dashboard/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(page.contains("<h1>Dashboard not enabled</h1>"), "{page}");
    assert!(
        page.contains("hermes dashboard --no-open --port 9119"),
        "{page}"
    );
}

/// An upgraded WebSocket outlives the HTTP connection it came on; it keeps that connection's place
/// under `limits.max_connections` until it closes, so tunnels cannot pile up past the limit. It is
/// never taken for an idle connection either (idle ones make way for new clients at the limit):
/// with the one place held by a tunnel, a new connection is refused.
#[tokio::test]
async fn an_open_dashboard_websocket_counts_toward_the_connection_limit() {
    let dashboard = Dashboard::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, "[limits]\nmax_connections = 1\n").unwrap();
    let s = Server::start_with(
        Start::default()
            .in_dir(dir.path())
            .arg("--config")
            .arg(config.display().to_string())
            .arg("--dashboard-upstream")
            .arg(&dashboard.url)
            .arg("--san")
            .arg(SITE),
    );
    let cookie = session_cookie(&s, "admin", ADMIN_PASSWORD).await;
    let token = page_token(&s, &cookie).await;
    // The clients above have closed their connections; give the edge a moment to see it.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut ws = ready_websocket(&s, &cookie, &token).await;
    let second = tokio::time::timeout(
        Duration::from_secs(5),
        tls_connect_with_root(s.https, "localhost", &s.ca_pem(), &[b"http/1.1"]),
    )
    .await
    .expect("answer within 5 s");
    assert!(
        second.is_err(),
        "the tunnel and a second connection exceed max_connections = 1"
    );

    // Once the WebSocket closes its place is free again.
    ws.close(None).await.unwrap();
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        tls_connect_with_root(s.https, "localhost", &s.ca_pem(), &[b"http/1.1"]),
    )
    .await
    .expect("answer within 5 s");
    assert!(again.is_ok(), "a place is free after the WebSocket closed");
}

/// A dashboard WebSocket (its terminal among them) outlives the request that opened it. Signing
/// the session out ends it within the edge's 5 s re-check; until then it keeps working.
#[tokio::test]
async fn signing_out_closes_the_dashboard_websocket_the_session_opened() {
    let dashboard = Dashboard::start();
    let s = edge_for(&dashboard.url);
    let cookie = session_cookie(&s, "admin", ADMIN_PASSWORD).await;
    let token = page_token(&s, &cookie).await;
    let mut ws = ready_websocket(&s, &cookie, &token).await;

    // Past one re-check with the session valid, the tunnel still answers.
    tokio::time::sleep(Duration::from_secs(6)).await;
    ws.send(Message::text(
        json!({"jsonrpc": "2.0", "id": 8, "method": "session.list", "params": {}}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        let v: Value = serde_json::from_str(&next_text(&mut ws, 20).await).unwrap();
        if v.get("id") == Some(&json!(8)) {
            assert!(v["result"]["sessions"].is_array(), "{v}");
            break;
        }
    }

    // Sign the session out (as the page's button does), then the tunnel must end.
    let client = s.client_builder().cookie_store(false).build().unwrap();
    let r = client
        .post(s.url("/logout"))
        .header("cookie", &cookie)
        .header("origin", s.origin())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let signed_out = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the WebSocket was still open 15 s after its session was signed out"
    );
    assert!(signed_out.elapsed() < Duration::from_secs(8));
    assert!(
        s.wait_for_log("dashboard WebSocket closed: the session that opened it", 5),
        "{}",
        s.stderr()
    );
}
