//! Issue #24, monitoring: `/metrics` on the loopback listener parses with the Prometheus Python
//! client's text parser and moves with requests; who may read it on the HTTPS port; the listener's
//! start rules; `hermes-edge status` against a running and a stopped server.

mod common;
mod fake_upstream;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fake_upstream::{chunk, chunk_role, finish, Fake, Reply, Step};
use serde_json::{json, Value};

const KEY: &str = "test-api-key-0123456789abcdef-do-not-leak";
const TOKEN: &str = "metrics-token-0123456789abcdef";

/// The Python interpreter of the venv with `prometheus_client` (installed if missing).
fn prometheus_python() -> String {
    let out = Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/prometheus/setup.sh"
        ))
        .output()
        .expect("run tests/prometheus/setup.sh");
    assert!(
        out.status.success(),
        "tests/prometheus/setup.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .expect("the venv's python")
        .to_string()
}

/// One sample as the parser read it: name, labels, value.
type Sample = (String, HashMap<String, String>, f64);

/// `text` parsed by `prometheus_client.parser.text_string_to_metric_families`: each family's name
/// and type, and its samples. Panics with the parser's message if it refuses the text.
fn parse(python: &str, text: &str) -> HashMap<String, (String, Vec<Sample>)> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = [f.type, [[s.name, s.labels, s.value] for s in f.samples]]
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text: {}\n--- text:\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The value of `sample` whose labels include `labels`, or 0 when there is none.
fn value(
    families: &HashMap<String, (String, Vec<Sample>)>,
    family: &str,
    sample: &str,
    labels: &[(&str, &str)],
) -> f64 {
    families
        .get(family)
        .into_iter()
        .flat_map(|(_, samples)| samples)
        .filter(|(name, l, _)| {
            name == sample
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

async fn scrape(s: &Server) -> String {
    let addr = s.metrics.expect("the metrics listener is on");
    let r = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    r.text().await.unwrap()
}

/// Every histogram's buckets are cumulative (never fall as `le` grows) and end in `+Inf`, which
/// equals its `_count`.
fn assert_histograms_consistent(families: &HashMap<String, (String, Vec<Sample>)>) {
    for (name, (kind, samples)) in families {
        if kind != "histogram" {
            continue;
        }
        let mut by_group: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        let mut counts = HashMap::new();
        for (sample, labels, v) in samples {
            let group = labels.get("group").cloned().unwrap_or_default();
            if sample.ends_with("_bucket") {
                let le = labels["le"].parse::<f64>().unwrap();
                by_group.entry(group).or_default().push((le, *v));
            } else if sample.ends_with("_count") {
                counts.insert(group, *v);
            }
        }
        for (group, mut buckets) in by_group {
            buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}{{group={group}}} buckets are not cumulative: {buckets:?}"
            );
            let last = buckets.last().unwrap();
            assert!(last.0.is_infinite(), "{name} has no +Inf bucket");
            assert_eq!(Some(&last.1), counts.get(&group), "{name}{{group={group}}}");
        }
    }
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_move_with_requests() {
    let python = prometheus_python();
    let fake = Fake::start().await;
    let s = Server::start_with(
        Start::default()
            .upstream(fake.url())
            .env("HERMES_EDGE_API_KEY", KEY),
    );
    let before = parse(&python, &scrape(&s).await);
    assert_eq!(before["hermes_edge_build_info"].0, "gauge");
    assert!(
        value(
            &before,
            "hermes_edge_process_start_time_seconds",
            "hermes_edge_process_start_time_seconds",
            &[]
        ) > 1.7e9
    );
    // The local CA's leaf and root, by name.
    let leaf = value(
        &before,
        "hermes_edge_certificate_expiry_seconds",
        "hermes_edge_certificate_expiry_seconds",
        &[("certificate", "local_ca_leaf")],
    );
    assert!(leaf > 86_400.0, "leaf expiry {leaf}");

    // A failed sign-in, a static file, a chat answer from the fake upstream.
    let c = s.client();
    let r = s.login(&c, "admin", "wrong-password").await;
    assert_eq!(r.status(), 401);
    let r = c.get(s.url("/js/main.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let admin = s.admin_client().await;
    let r = admin
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .unwrap()
        .unwrap();
    assert!(answer.contains("Hello"), "{answer}");

    let after = parse(&python, &scrape(&s).await);
    let requests = |f: &HashMap<_, _>, labels: &[(&str, &str)]| {
        value(
            f,
            "hermes_edge_http_requests",
            "hermes_edge_http_requests_total",
            labels,
        )
    };
    assert_eq!(after["hermes_edge_http_requests"].0, "counter");
    for (group, code) in [("login", "401"), ("static", "200"), ("chat", "200")] {
        let labels = [("group", group), ("code", code)];
        assert!(
            requests(&after, &labels) > requests(&before, &labels),
            "{group} {code} did not move"
        );
    }
    let failures = |f: &HashMap<_, _>| {
        value(
            f,
            "hermes_edge_login_failures",
            "hermes_edge_login_failures_total",
            &[("reason", "invalid_credentials")],
        )
    };
    assert_eq!(failures(&after), failures(&before) + 1.0);
    let chat_count = value(
        &after,
        "hermes_edge_http_request_duration_seconds",
        "hermes_edge_http_request_duration_seconds_count",
        &[("group", "chat")],
    );
    assert!(chat_count >= 1.0);
    assert_histograms_consistent(&after);
    // The admin's session counts as signed in; the connections of the clients above are open.
    assert!(
        value(
            &after,
            "hermes_edge_sessions_active",
            "hermes_edge_sessions_active",
            &[]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "hermes_edge_connections_open",
            "hermes_edge_connections_open",
            &[]
        ) >= 1.0
    );
    // No label value ever comes from the request: every group is one of the fixed list.
    let groups = [
        "v1",
        "chat",
        "conversations",
        "runs",
        "tokens",
        "admin",
        "login",
        "media",
        "dashboard",
        "static",
        "page",
        "ops",
        "other",
    ];
    for (_, labels, _) in &after["hermes_edge_http_requests"].1 {
        assert!(groups.contains(&labels["group"].as_str()), "{labels:?}");
    }
}

/// The value of a metric without labels in a scrape (the Rust side reads it, the parser has
/// checked the whole text in the test above).
fn gauge(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

#[tokio::test]
async fn streams_runs_and_upstream_errors_are_counted() {
    let fake = Fake::start().await;
    let s = Server::start_with(
        Start::default()
            .upstream(fake.url())
            .env("HERMES_EDGE_API_KEY", KEY),
    );
    fake.push(Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("slow ")),
        Step::Sleep(1500),
        Step::Data(finish()),
        Step::Data("data: [DONE]\n\n".into()),
    ]));
    let admin = s.admin_client().await;
    let mut r = admin
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "take your time"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The first event has arrived: the answer is being written and its stream is open.
    let first = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .unwrap();
    assert!(first.unwrap().is_some());
    let during = scrape(&s).await;
    assert_eq!(gauge(&during, "hermes_edge_runs_active"), 1.0, "{during}");
    assert_eq!(
        gauge(&during, "hermes_edge_sse_streams_active"),
        1.0,
        "{during}"
    );
    while tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .unwrap()
        .unwrap()
        .is_some()
    {}
    drop(r);
    // Once the answer is finished and its stream read to the end, both go back to zero.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let after = scrape(&s).await;
        let idle = gauge(&after, "hermes_edge_runs_active") == 0.0
            && gauge(&after, "hermes_edge_sse_streams_active") == 0.0;
        if idle {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{after}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Hermes gone: the next message is an upstream error of its kind.
    fake.stop().await;
    let unreachable = "hermes_edge_upstream_errors_total{kind=\"upstream_unreachable\"}";
    let before = gauge(&scrape(&s).await, unreachable);
    let r = admin
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "anyone there?"}))
        .send()
        .await
        .unwrap();
    let _ = r.text().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gauge(&scrape(&s).await, unreachable) <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the unreachable upstream was not counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server with the metrics token and 127.0.0.1 as a trusted proxy.
fn start_with_token(dir: &std::path::Path) -> Server {
    std::fs::write(dir.join("metrics-token"), format!("{TOKEN}\n")).unwrap();
    let toml = format!(
        "[metrics]\ntoken_file = \"{}\"\n[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n",
        dir.join("metrics-token").display()
    );
    start_in_with_config(dir, &toml, Start::default())
}

#[tokio::test]
async fn https_metrics_answer_only_an_admin_or_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_token(dir.path());
    let c = s.client();
    let get = |headers: Vec<(&'static str, String)>| {
        let mut r = c.get(s.url("/metrics"));
        for (k, v) in headers {
            r = r.header(k, v);
        }
        r.send()
    };
    // Nobody, and an outside client through the trusted proxy: as if there were no such page.
    assert_eq!(get(vec![]).await.unwrap().status(), 404);
    let outside = vec![("x-forwarded-for", "203.0.113.9".to_string())];
    assert_eq!(get(outside).await.unwrap().status(), 404);
    let wrong = vec![(
        "authorization",
        "Bearer not-the-token-at-all-0000".to_string(),
    )];
    assert_eq!(get(wrong).await.unwrap().status(), 404);
    // A signed-in account that is not an admin.
    let admin = s.admin_client().await;
    add_user(&s, &admin, "bob", "password-of-bob", "user").await;
    let bob = s.client();
    assert_eq!(s.login(&bob, "bob", "password-of-bob").await.status(), 200);
    assert_eq!(
        bob.get(s.url("/metrics")).send().await.unwrap().status(),
        404
    );
    // The token, even through the proxy; an admin's session.
    let with_token = vec![
        ("authorization", format!("Bearer {TOKEN}")),
        ("x-forwarded-for", "203.0.113.9".to_string()),
    ];
    let r = get(with_token).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("hermes_edge_http_requests_total"));
    let r = admin.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The loopback listener asks for the token once one is configured, and refuses other host
    // names (a DNS-rebound page in a browser on this machine).
    let addr = s.metrics.unwrap();
    let plain = reqwest::Client::new();
    let r = plain
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = plain
        .get(format!("http://{addr}/status"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = plain
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(TOKEN)
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 421);
}

#[test]
fn the_metrics_listener_stays_off_the_network_and_its_port_rules_hold() {
    // Not loopback and no token: the start is refused, saying why.
    let err = Server::try_start(Start::default().metrics_listen(Some("0.0.0.0:0")))
        .err()
        .expect("a non-loopback metrics listener without a token must not start");
    assert!(err.contains("metrics.listen"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("token_file"), "{err}");

    // An address the operator chose that is taken stops the start.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let err = Server::try_start(Start::default().metrics_listen(Some(&addr)))
        .err()
        .expect("a taken metrics address must stop the start");
    assert!(
        err.contains("metrics.listen") && err.contains("already in use"),
        "{err}"
    );

    // The default port taken (held here if free): a warning, and the server serves.
    let _default = std::net::TcpListener::bind("127.0.0.1:8643");
    let s = Server::start_with(Start::default().metrics_listen(None));
    assert_eq!(s.metrics, None);
    assert!(
        s.wait_for_log("metrics listener not started", 5),
        "{}",
        s.stderr()
    );

    // `off`: no listener, and the ready line says so.
    let s = Server::start_with(Start::default().metrics_listen(Some("off")));
    assert_eq!(s.metrics, None);
    assert!(s.stdout().contains("metrics_addr=off"), "{}", s.stdout());
}

/// `hermes-edge status` with the server's own settings; its exit success and stdout.
fn status(s: &Server, metrics: &str, upstream: &str, extra: &[&str]) -> (bool, String) {
    status_with_key(s, metrics, upstream, KEY, extra)
}

fn status_with_key(
    s: &Server,
    metrics: &str,
    upstream: &str,
    key: &str,
    extra: &[&str],
) -> (bool, String) {
    let out = Command::new(bin())
        .current_dir(&s.dir)
        .env("HERMES_HOME", s.dir.join("no-hermes-home"))
        .env("HERMES_EDGE_API_KEY", key)
        .args(["--metrics-listen", metrics, "--upstream", upstream])
        .args(["--certs-dir", &s.dir.join("certs").display().to_string()])
        .args(["--data-dir", &s.dir.join("data").display().to_string()])
        .arg("status")
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    (
        out.status.success(),
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_running_server_and_says_when_it_is_not() {
    let fake = Fake::start().await;
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let mut s = Server::start_with(
        Start::default()
            .upstream(fake.url())
            .env("HERMES_EDGE_API_KEY", KEY)
            .metrics_listen(Some(&metrics)),
    );
    let _admin = s.admin_client().await;
    let (up, dead) = (fake.url(), "http://127.0.0.1:9".to_string());

    // Serving, Hermes reachable: exit 0, the addresses, the certificate, Hermes, the sessions.
    let (m, u) = (metrics.clone(), up.clone());
    let (ok, text) = tokio::task::block_in_place(|| status(&s, &m, &u, &[]));
    assert!(ok, "{text}");
    assert!(text.contains("serving"), "{text}");
    assert!(text.contains(&format!("https {}", s.https)), "{text}");
    assert!(text.contains(&format!("metrics {metrics}")), "{text}");
    assert!(
        text.contains("local_ca_leaf") && text.contains("expires"),
        "{text}"
    );
    assert!(text.contains(&format!("{up} reachable")), "{text}");
    assert!(text.contains("1 signed in"), "{text}");

    // JSON for scripts.
    let (ok, text) = tokio::task::block_in_place(|| status(&s, &metrics, &up, &["--json"]));
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["serving"], true);
    assert_eq!(v["listening"]["https"], s.https.to_string());
    assert_eq!(v["hermes"]["reachable"], true);
    assert_eq!(v["sessions"]["users"], 1);

    // Hermes gone: the server answers, but it is not healthy.
    fake.stop().await;
    let (ok, text) = tokio::task::block_in_place(|| status(&s, &metrics, &dead, &[]));
    assert!(!ok, "{text}");
    assert!(text.contains("UNREACHABLE"), "{text}");

    // The server stopped: said plainly, with what can be read without it.
    s.stop();
    let (ok, text) = tokio::task::block_in_place(|| status(&s, &metrics, &dead, &[]));
    assert!(!ok, "{text}");
    assert!(
        text.starts_with("hermes-edge is not running: nothing answers on"),
        "{text}"
    );
    assert!(text.contains("local_ca_leaf"), "{text}");
    assert!(text.contains("accounts     1;"), "{text}");
}

#[test]
fn status_names_the_real_hermes_its_version_and_runs() {
    let hermes = RealHermes::start();
    let metrics = format!("127.0.0.1:{}", free_port());
    let s = Server::start_with(
        Start::default()
            .upstream(hermes.url.clone())
            .env("HERMES_EDGE_API_KEY", hermes.key.clone())
            .metrics_listen(Some(&metrics)),
    );
    let (ok, text) = status_with_key(&s, &metrics, &hermes.url, &hermes.key, &["--json"]);
    assert!(ok, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let h = &v["hermes"];
    assert_eq!(h["reachable"], true, "{h}");
    assert_eq!(h["api_key"], "accepted", "{h}");
    assert_eq!(h["runs_api"], true, "{h}");
    // The version Hermes reports on /health, as installed by tests/hermes/setup.sh.
    let version = h["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("0."), "{h}");
    let (ok, text) = status_with_key(&s, &metrics, &hermes.url, &hermes.key, &[]);
    assert!(ok, "{text}");
    assert!(
        text.contains(&format!(
            "reachable, version {version}; API key accepted; runs with approvals"
        )),
        "{text}"
    );
}
