//! The chat proxy against a scripted OpenAI-compatible fake of the Hermes API Server: streaming
//! without buffering, pass-through of tool events and keepalives, disconnects, every upstream
//! failure's clear message, per-user conversations, regenerate/edit, personal API tokens.

mod common;
mod fake_upstream;

use std::time::{Duration, Instant};

use common::*;
use fake_upstream::{chunk, chunk_role, finish, Fake, Reply, Step};
use serde_json::{json, Value};

const KEY: &str = "test-api-key-0123456789abcdef-do-not-leak";

/// Starts hermes-edge in front of `fake` with the API key and an optional config file body.
fn start(fake: &Fake, config: &str) -> (Server, tempfile::TempDir) {
    let cfg = tempfile::tempdir().unwrap();
    let path = cfg.path().join("edge.toml");
    std::fs::write(&path, config).unwrap();
    let s = Server::start_with(
        Start::default()
            .upstream(fake.url())
            .env("HERMES_EDGE_API_KEY", KEY)
            .arg("--config")
            .arg(path.display().to_string()),
    );
    (s, cfg)
}

async fn chat(s: &Server, c: &reqwest::Client, body: Value) -> reqwest::Response {
    c.post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn text(r: reqwest::Response) -> String {
    tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("body within 20 s")
        .unwrap()
}

async fn get_json(s: &Server, c: &reqwest::Client, path: &str) -> (u16, Value) {
    let r = c.get(s.url(path)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Waits until the stored answer of `conv` at `index` has settled (content or error set).
async fn stored_message(s: &Server, c: &reqwest::Client, conv: &str, index: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, v) = get_json(s, c, &format!("/api/conversations/{conv}")).await;
        assert_eq!(status, 200);
        let m = v["messages"][index].clone();
        if !m.is_null() && (m["content"] != "" || !m["error"].is_null()) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "message {index} never settled: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn user_client(s: &Server, name: &str) -> reqwest::Client {
    add_user_cli(s, name, "password-of-someone");
    let c = s.client();
    assert_eq!(s.login(&c, name, "password-of-someone").await.status(), 200);
    c
}

#[tokio::test]
async fn chunks_reach_the_client_as_soon_as_the_upstream_sends_them() {
    let fake = Fake::start().await;
    let mut steps = vec![Step::Data(chunk_role())];
    for i in 0..6 {
        steps.push(Step::Sleep(300));
        steps.push(Step::Data(chunk(&format!("tok{i} "))));
    }
    steps.push(Step::Data(finish()));
    steps.push(Step::Data("data: [DONE]\n\n".into()));
    fake.push(Reply::stream(steps));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let mut r = chat(&s, &c, json!({"message": "stream please"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let mut seen = String::new();
    let mut arrived = Vec::new();
    while let Some(bytes) = tokio::time::timeout(Duration::from_secs(10), r.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        let now = Instant::now();
        seen.push_str(std::str::from_utf8(&bytes).unwrap());
        for i in 0..6 {
            let m = format!("tok{i} ");
            if seen.contains(&m) && !arrived.iter().any(|(j, _)| *j == i) {
                arrived.push((i, now));
            }
        }
    }
    assert_eq!(arrived.len(), 6, "{seen}");
    for (i, at) in arrived {
        let sent = fake.sent_at(&format!("tok{i} ")).unwrap();
        let delay = at.duration_since(sent);
        // The upstream waits 300 ms between chunks: a buffering proxy would show delays of
        // hundreds of milliseconds here.
        assert!(
            delay < Duration::from_millis(50),
            "chunk {i} reached the client {delay:?} after the upstream sent it"
        );
    }
}

#[tokio::test]
async fn tool_steps_and_text_reach_the_page_and_are_stored() {
    let fake = Fake::start().await;
    let tool_start = "event: hermes.tool.progress\ndata: {\"tool\": \"terminal\", \"emoji\": \"💻\", \"label\": \"ls -la\", \"toolCallId\": \"call_1\", \"status\": \"running\"}\n\n";
    let tool_end = "event: hermes.tool.progress\ndata: {\"tool\": \"terminal\", \"toolCallId\": \"call_1\", \"status\": \"completed\"}\n\n";
    let parts = [
        chunk_role(),
        tool_start.to_string(),
        ": keepalive\n\n".to_string(),
        tool_end.to_string(),
        chunk("Done: "),
        chunk("3 files"),
        finish(),
        "data: [DONE]\n\n".to_string(),
    ];
    fake.push(Reply::stream(
        parts.iter().map(|p| Step::Data(p.clone())).collect(),
    ));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "list files"})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let seen = RunView::of(&text(r).await);
    assert_eq!(seen.text, "Done: 3 files");
    assert!(seen.done && seen.error.is_none());
    let step = json!({"id": "call_1", "tool": "terminal", "emoji": "💻", "label": "ls -la",
        "status": "completed", "preview": null, "duration": null, "output": null});
    assert_eq!(seen.steps, std::slice::from_ref(&step));
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["tool_steps"], json!([step]));
    assert_eq!(m["state"], "done");
    assert_eq!(m["content"], "Done: 3 files");
    assert_eq!(m["error"], Value::Null);
}

async fn closing_the_tab_leaves_the_run_and_stop_ends_it(http1: bool) {
    let fake = Fake::start().await;
    fake.push(Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("partial ")),
        Step::Hang,
    ]));
    let (s, _cfg) = start(&fake, "");
    let c = if http1 {
        let c = s.client_builder().http1_only().build().unwrap();
        assert_eq!(s.login(&c, "admin", ADMIN_PASSWORD).await.status(), 200);
        c
    } else {
        s.admin_client().await
    };
    let mut r = chat(&s, &c, json!({"message": "go"})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut seen = String::new();
    while !seen.contains("partial") {
        let b = r.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&b).unwrap());
    }
    // The tab goes away: the answer goes on (the run belongs to the server).
    drop(r);
    drop(c);
    assert!(fake
        .wait_disconnect(Duration::from_millis(1500))
        .await
        .is_none());
    let c = s.admin_client().await;
    let (_, list) = get_json(&s, &c, "/api/conversations").await;
    assert_eq!(
        list["conversations"][0]["run"],
        json!({"status": "running"})
    );
    // Another tab attaches: everything so far, and it is still being written.
    let mut again = c
        .get(s.url(&format!("/api/conversations/{conv}/run")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let first = again.chunk().await.unwrap().unwrap();
    let snapshot = RunView::of(std::str::from_utf8(&first).unwrap());
    assert_eq!(
        (snapshot.snapshots, snapshot.text.as_str()),
        (1, "partial ")
    );
    // Stop ends it, in Hermes too (its connection is closed).
    let stopped = Instant::now();
    assert_eq!(stop_run(&s, &c, &conv).await, 200);
    let gone = fake
        .wait_disconnect(Duration::from_secs(3))
        .await
        .expect("the upstream saw no disconnect");
    assert!(gone.duration_since(stopped) < Duration::from_secs(1));
    let rest = text(again).await;
    let tail = RunView::of(&rest);
    assert_eq!(tail.error.as_deref(), Some("stopped"));
    assert!(tail.done);
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["content"], "partial ");
    assert_eq!(m["error"]["code"], "stopped");
    assert_eq!(m["state"], "done");
    let r = c
        .get(s.url(&format!("/api/conversations/{conv}/run")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(!s.stderr().contains("ERROR"), "{}", s.stderr());
}

#[tokio::test]
async fn closing_an_http2_tab_leaves_the_run_and_stop_ends_it() {
    closing_the_tab_leaves_the_run_and_stop_ends_it(false).await;
}

#[tokio::test]
async fn closing_an_http1_tab_leaves_the_run_and_stop_ends_it() {
    closing_the_tab_leaves_the_run_and_stop_ends_it(true).await;
}

#[tokio::test]
async fn an_upstream_429_is_retried_after_retry_after_and_then_succeeds() {
    let fake = Fake::start().await;
    fake.push(
        Reply::json(
            429,
            "{\"error\":{\"message\":\"Too many concurrent runs (max 1)\"}}",
        )
        .header("retry-after", "1"),
    );
    fake.push(Reply::sse(&["after ", "retry"]));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let started = Instant::now();
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 200);
    let body = text(r).await;
    assert!(body.contains("retry"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(950));
}

#[tokio::test]
async fn an_upstream_429_beyond_the_retry_budget_is_a_429_with_retry_after() {
    let fake = Fake::start().await;
    fake.push(Reply::json(429, "{}").header("retry-after", "7"));
    let (s, _cfg) = start(&fake, "[chat]\nretry_budget_secs = 2\n");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    assert_eq!(v["error"]["retry_after"], 7);
    assert_eq!(
        v["error"]["message"],
        "Hermes is busy or its model provider is rate limiting; try again in 7 seconds."
    );
    assert_eq!(fake.requests().len(), 1);
    // Nothing was stored for a send Hermes refused.
    let (_, list) = get_json(&s, &c, "/api/conversations").await;
    assert_eq!(list, json!({"conversations": []}));
}

#[tokio::test]
async fn an_upstream_401_says_the_api_key_does_not_match() {
    let fake = Fake::start().await;
    fake.push(Reply::json(
        401,
        "{\"error\": {\"message\": \"Invalid API key\", \"type\": \"invalid_request_error\", \"code\": \"invalid_api_key\"}}",
    ));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "upstream_auth");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("the API key does not match API_SERVER_KEY"));
}

#[tokio::test]
async fn connection_refused_names_the_url_and_how_to_start_hermes() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let s = Server::start_with(
        Start::default()
            .upstream(url.clone())
            .env("HERMES_EDGE_API_KEY", KEY),
    );
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": {"code": "upstream_unreachable", "message": format!(
            "Cannot reach the Hermes API Server at {url}. Start Hermes with its API server enabled (API_SERVER_ENABLED=true, and API_SERVER_KEY set to the key hermes-edge uses), for example with `hermes gateway run`."
        )}})
    );
}

#[tokio::test]
async fn no_api_key_configured_is_a_503_that_says_how_to_set_it() {
    let fake = Fake::start().await;
    let s = Server::start_with(Start::default().upstream(fake.url()));
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "api_key_missing");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Set HERMES_EDGE_API_KEY"));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_stalled_stream_ends_with_an_upstream_stalled_event_and_drops_the_upstream() {
    let fake = Fake::start().await;
    fake.push(Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("half an ")),
        Step::Hang,
    ]));
    let (s, _cfg) = start(&fake, "[chat]\nidle_timeout_secs = 1\n");
    let c = s.admin_client().await;
    let started = Instant::now();
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = text(r).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );
    let expected_tail = "event: edge.error\ndata: {\"code\":\"upstream_stalled\",\"message\":\"Hermes sent nothing for 1 seconds, so the answer was abandoned. Check that Hermes and its model provider are working, then try again.\"}\n\ndata: [DONE]\n\n";
    assert!(body.ends_with(expected_tail), "{body}");
    assert_eq!(RunView::of(&body).text, "half an ");
    assert!(fake.wait_disconnect(Duration::from_secs(2)).await.is_some());
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["content"], "half an ");
    assert_eq!(m["error"]["code"], "upstream_stalled");
}

/// Hermes takes the request and never starts its answer: after the idle timeout the client gets
/// a 504 that says so (not a hang), the connection to Hermes is given up, and the next request
/// on the same client connection gets through on a new one. Both the chat page's route and the
/// OpenAI-compatible one.
#[tokio::test]
async fn an_answer_that_never_starts_is_a_504_upstream_stalled_and_the_next_request_gets_through() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[chat]\nidle_timeout_secs = 1\n");
    let c = s.admin_client().await;
    let token = new_token(&s, &c).await;
    let api = s.client_builder().cookie_store(false).build().unwrap();
    let completion = || {
        api.post(s.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {token}"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
            .send()
    };
    for route in ["/api/chat", "/v1/chat/completions"] {
        fake.push(Reply::silent());
        let started = Instant::now();
        let r = if route == "/api/chat" {
            chat(&s, &c, json!({"message": "hi"})).await
        } else {
            completion().await.unwrap()
        };
        let elapsed = started.elapsed();
        assert_eq!(r.status(), 504, "{route}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "upstream_stalled", "{route}");
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
            "{route}: {elapsed:?}"
        );
        let before = fake.connections();
        let r = if route == "/api/chat" {
            chat(&s, &c, json!({"message": "again"})).await
        } else {
            completion().await.unwrap()
        };
        assert_eq!(r.status(), 200, "{route}");
        let body = text(r).await;
        if route == "/api/chat" {
            assert_eq!(RunView::of(&body).text, "Hello there");
        } else {
            assert_eq!(body, Reply::sse_text(&["Hello", " there"]), "{route}");
        }
        assert_eq!(
            fake.connections(),
            before + 1,
            "{route}: the stalled connection was reused"
        );
    }
}

/// Request bodies up to `max_body_bytes` reach Hermes byte for byte, however they arrive (one
/// piece, or chunked in pieces apart in time); a larger one is a 413 whether its length was
/// declared or only shown by what arrived, and Hermes never sees it.
#[tokio::test]
async fn request_bodies_are_joined_whole_and_refused_past_the_limit() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[limits]\nmax_body_bytes = 1000\n");
    let c = s.admin_client().await;
    let token = new_token(&s, &c).await;
    let api = s.client_builder().cookie_store(false).build().unwrap();
    let body_of = |filler: usize| {
        format!(
            r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
            "x".repeat(filler)
        )
    };
    let in_pieces = |text: String| {
        let pieces: Vec<Result<bytes::Bytes, std::io::Error>> = text
            .into_bytes()
            .chunks(300)
            .map(|p| Ok(bytes::Bytes::copy_from_slice(p)))
            .collect();
        let paced =
            futures_util::StreamExt::then(futures_util::stream::iter(pieces), |p| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                p
            });
        reqwest::Body::wrap_stream(paced)
    };
    let send = |body: reqwest::Body| {
        api.post(s.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {token}"))
            .header("x-hermes-session-id", "pieces")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // Whole, and in four pieces: what Hermes gets is what was sent.
    let fits = body_of(900);
    assert!(fits.len() <= 1000);
    for (round, body) in [reqwest::Body::from(fits.clone()), in_pieces(fits.clone())]
        .into_iter()
        .enumerate()
    {
        let r = send(body).await.unwrap();
        assert_eq!(r.status(), 200, "round {round}");
        text(r).await;
        let got = fake.requests().last().unwrap().body.clone();
        assert_eq!(got, fits.as_bytes(), "round {round}");
    }
    // Too large, declared and in pieces.
    let seen = fake.requests().len();
    for (round, body) in [reqwest::Body::from(body_of(1200)), in_pieces(body_of(1200))]
        .into_iter()
        .enumerate()
    {
        let r = send(body).await.unwrap();
        assert_eq!(r.status(), 413, "round {round}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "body_too_large", "round {round}");
    }
    assert_eq!(
        fake.requests().len(),
        seen,
        "Hermes saw a body over the limit"
    );
}

#[tokio::test]
async fn a_stream_that_breaks_mid_answer_ends_with_stream_broken_and_keeps_the_partial_answer() {
    let fake = Fake::start().await;
    fake.push(Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("so far")),
        Step::Sleep(50),
        Step::Abort,
    ]));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = text(r).await;
    assert!(
        body.ends_with("event: edge.error\ndata: {\"code\":\"stream_broken\",\"message\":\"The connection to Hermes broke before the answer was complete; the partial answer was kept.\"}\n\ndata: [DONE]\n\n"),
        "{body}"
    );
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["content"], "so far");
    assert_eq!(m["error"]["code"], "stream_broken");
}

#[tokio::test]
async fn an_upstream_500_is_a_502_upstream_error_with_hermes_message() {
    let fake = Fake::start().await;
    fake.push(Reply::json(
        500,
        "{\"error\":{\"message\":\"agent exploded\",\"type\":\"server_error\"}}",
    ));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"error": {"code": "upstream_error", "message": "The Hermes API Server answered with an error: 500 agent exploded"}})
    );
}

#[tokio::test]
async fn malformed_chat_requests_are_400_with_a_reason() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[chat]\nmax_images = 1\nmax_image_bytes = 100\n");
    let c = s.admin_client().await;
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .header("content-type", "application/json")
        .body("{\"message\": \"unterminated")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "bad_body");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("The request body is not the expected JSON: EOF while parsing a string"));

    let cases = [
        (json!({"message": "  "}), 400, "empty_message"),
        (json!({"message": 5}), 400, "bad_body"),
        (
            json!({"message": "x", "images": ["http://evil/x.png"]}),
            400,
            "bad_image",
        ),
        (
            json!({"message": "x", "images": ["data:image/svg+xml;base64,PHN2Zz4="]}),
            400,
            "bad_image",
        ),
        (
            json!({"message": "x", "images": ["data:image/png;base64,@@@@"]}),
            400,
            "bad_image",
        ),
        (
            json!({"message": "x", "images": ["data:image/png;base64,AAAA", "data:image/png;base64,AAAA"]}),
            400,
            "too_many_images",
        ),
        (
            json!({"message": "x", "images": [format!("data:image/png;base64,{}", "A".repeat(400))]}),
            413,
            "image_too_large",
        ),
        (
            json!({"message": "x".repeat(65_537)}),
            400,
            "message_too_long",
        ),
        (json!({"regenerate": true}), 400, "bad_body"),
        (
            json!({"conversation_id": "00000000-0000-0000-0000-000000000000", "message": "x"}),
            404,
            "not_found",
        ),
    ];
    for (body, status, code) in cases {
        let r = chat(&s, &c, body.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}");
    }
    assert!(fake.requests().is_empty());

    // A valid image goes to Hermes as OpenAI content parts.
    let png = "data:image/png;base64,iVBORw0KGgo=";
    let r = chat(&s, &c, json!({"message": "what is this", "images": [png]})).await;
    assert_eq!(r.status(), 200);
    text(r).await;
    let sent = fake.requests()[0].json();
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": png}}
        ]}])
    );
}

#[tokio::test]
async fn hermes_gets_the_key_the_session_headers_and_the_client_address() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "first"})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid_like(&conv), "{conv}");
    text(r).await;
    let r = chat(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "second"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-conversation-id"], conv.as_str());
    text(r).await;

    let reqs = fake.requests();
    assert_eq!(reqs.len(), 2);
    for (req, msg) in reqs.iter().zip(["first", "second"]) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/chat/completions");
        assert_eq!(
            req.header("authorization").unwrap(),
            format!("Bearer {KEY}")
        );
        assert_eq!(
            req.header("x-hermes-session-id").unwrap(),
            format!("web-{conv}")
        );
        assert_eq!(
            req.header("x-hermes-session-key").unwrap(),
            format!("web:{}", memory_scope(&s, "admin"))
        );
        assert_eq!(req.header("x-forwarded-for").unwrap(), "127.0.0.1");
        assert_eq!(req.header("x-real-ip").unwrap(), "127.0.0.1");
        assert_eq!(req.header("cookie"), None);
        // Hermes keeps the history itself: only the new message is sent.
        assert_eq!(
            req.json(),
            json!({"model": "hermes-agent", "stream": true, "messages": [{"role": "user", "content": msg}]})
        );
    }
    // The upstream connection is pooled: both requests used one connection.
    assert_eq!(fake.connections(), 1);
}

/// No header of the answer has an empty value (a prepared slot the upstream did not fill).
fn assert_no_empty_header(r: &reqwest::Response) {
    assert!(
        r.headers().values().all(|v| !v.is_empty()),
        "{:?}",
        r.headers()
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[tokio::test]
async fn the_api_key_never_appears_in_a_response_or_the_log() {
    let fake = Fake::start().await;
    fake.push(Reply::json(
        401,
        "{\"error\":{\"message\":\"Invalid API key\"}}",
    ));
    fake.push(Reply::json(500, "{\"error\":{\"message\":\"boom\"}}"));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let mut seen = String::new();
    for body in [
        json!({"message": "a"}),
        json!({"message": "b"}),
        json!({"message": "c"}),
    ] {
        let r = chat(&s, &c, body).await;
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&text(r).await);
    }
    for path in ["/api/conversations", "/healthz", "/api/me"] {
        let r = c.get(s.url(path)).send().await.unwrap();
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&r.text().await.unwrap());
    }
    let chats = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(chats, 3);
    assert!(!seen.contains(KEY));
    assert!(!seen.contains(&KEY[..16]));
    let log = format!("{}\n{}", s.stdout(), s.stderr());
    assert!(log.contains("refused the API key"), "{log}");
    assert!(!log.contains(KEY));
    assert!(!log.contains(&KEY[..16]));
}

#[tokio::test]
async fn conversations_are_stored_listed_renamed_and_deleted_with_the_documented_shapes() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "Plan a trip\nto the sea"})).await;
    let first = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    text(r).await;
    let r = chat(&s, &c, json!({"message": "Second topic"})).await;
    let second = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    text(r).await;
    assert_ne!(first, second);

    let (status, list) = get_json(&s, &c, "/api/conversations").await;
    assert_eq!(status, 200);
    let items = list["conversations"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], second.as_str());
    assert_eq!(items[1]["id"], first.as_str());
    assert_eq!(items[1]["title"], "Plan a trip");
    let keys: Vec<&str> = items[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["created_at", "id", "run", "title", "updated_at"]);
    assert_eq!(items[0]["run"], Value::Null);
    assert!(items[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(items[0]["created_at"].as_str().unwrap().len(), 24);

    let m = stored_message(&s, &c, &first, 1).await;
    assert_eq!(m["content"], "Hello there");
    let (_, conv) = get_json(&s, &c, &format!("/api/conversations/{first}")).await;
    assert_eq!(conv["id"], first.as_str());
    assert_eq!(conv["title"], "Plan a trip");
    let msgs = conv["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    let mut user = msgs[0].clone();
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    user.as_object_mut().unwrap().remove("created_at");
    assert_eq!(
        user,
        json!({"index": 0, "role": "user", "content": "Plan a trip\nto the sea", "images": [], "tool_steps": [], "error": null, "state": "done"})
    );
    assert_eq!(msgs[1]["index"], 1);
    assert_eq!(msgs[1]["role"], "assistant");

    let r = c
        .patch(s.url(&format!("/api/conversations/{first}")))
        .header("origin", s.origin())
        .json(&json!({"title": "Seaside"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], first.as_str());
    assert_eq!(v["title"], "Seaside");
    let r = c
        .patch(s.url(&format!("/api/conversations/{first}")))
        .header("origin", s.origin())
        .json(&json!({"title": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (status, v) = delete_conversation(&s, &c, &first).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"deleted": true, "hermes_session": "deleted"}));
    let (status, _) = get_json(&s, &c, &format!("/api/conversations/{first}")).await;
    assert_eq!(status, 404);
    let (_, list) = get_json(&s, &c, "/api/conversations").await;
    assert_eq!(list["conversations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_user_cannot_read_continue_rename_or_delete_another_users_conversation() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let admin = s.admin_client().await;
    let r = chat(&s, &admin, json!({"message": "secret plans"})).await;
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    text(r).await;
    let bob = user_client(&s, "bob").await;
    let not_found =
        json!({"error": {"code": "not_found", "message": "There is no such conversation."}});

    let (status, v) = get_json(&s, &bob, &format!("/api/conversations/{conv}")).await;
    assert_eq!((status, v), (404, not_found.clone()));
    let (_, list) = get_json(&s, &bob, "/api/conversations").await;
    assert_eq!(list, json!({"conversations": []}));
    for body in [
        json!({"conversation_id": conv, "message": "me too"}),
        json!({"conversation_id": conv, "regenerate": true}),
        json!({"conversation_id": conv, "message": "x", "edit_from": 0}),
    ] {
        let r = chat(&s, &bob, body).await;
        assert_eq!(r.status(), 404);
        assert_eq!(r.json::<Value>().await.unwrap(), not_found);
    }
    let r = bob
        .patch(s.url(&format!("/api/conversations/{conv}")))
        .header("origin", s.origin())
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = bob
        .delete(s.url(&format!("/api/conversations/{conv}")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap(), not_found);

    // Nothing reached Hermes on Bob's behalf: no DELETE of the admin's session.
    assert_eq!(fake.requests().len(), 1);
    assert!(fake.requests().iter().all(|r| r.method == "POST"));
    let (status, v) = get_json(&s, &admin, &format!("/api/conversations/{conv}")).await;
    assert_eq!(status, 200);
    assert_eq!(v["title"], "secret plans");
    assert_eq!(v["messages"].as_array().unwrap().len(), 2);

    // Bob's own chats use his own memory key.
    let r = chat(&s, &bob, json!({"message": "hello"})).await;
    text(r).await;
    let last = fake.requests().last().unwrap().clone();
    assert_eq!(
        last.header("x-hermes-session-key").unwrap(),
        format!("web:{}", memory_scope(&s, "bob"))
    );
}

#[tokio::test]
async fn regenerate_and_edit_branch_the_conversation_with_its_kept_history() {
    let fake = Fake::start().await;
    fake.push(Reply::sse(&["A1"]));
    fake.push(Reply::sse(&["A2"]));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "Q1"})).await;
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    text(r).await;
    stored_message(&s, &c, &conv, 1).await;
    let r = chat(&s, &c, json!({"conversation_id": conv, "message": "Q2"})).await;
    text(r).await;
    stored_message(&s, &c, &conv, 3).await;

    // Regenerate: the last answer is replaced; Hermes gets the kept history explicitly and no
    // session header (it ignores body history when the header is present).
    fake.push(Reply::sse(&["A2 again"]));
    let r = chat(&s, &c, json!({"conversation_id": conv, "regenerate": true})).await;
    assert_eq!(r.status(), 200);
    text(r).await;
    let req = fake.requests()[2].clone();
    assert_eq!(req.header("x-hermes-session-id"), None);
    assert_eq!(
        req.header("x-hermes-session-key").unwrap(),
        format!("web:{}", memory_scope(&s, "admin"))
    );
    let sent = req.json();
    let msgs = sent["messages"].as_array().unwrap();
    let system = msgs[0]["content"].as_str().unwrap().to_string();
    assert_eq!(msgs[0]["role"], "system");
    assert!(
        system.starts_with("conversation: web-") && system.len() == 54,
        "{system}"
    );
    assert_eq!(
        msgs[1..],
        [
            json!({"role": "user", "content": "Q1"}),
            json!({"role": "assistant", "content": "A1"}),
            json!({"role": "user", "content": "Q2"}),
        ]
    );
    let m = stored_message(&s, &c, &conv, 3).await;
    assert_eq!(m["content"], "A2 again");
    let (_, v) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 4);

    // A plain message in the branch carries the whole history, in the same branch.
    fake.push(Reply::sse(&["A3"]));
    let r = chat(&s, &c, json!({"conversation_id": conv, "message": "Q3"})).await;
    text(r).await;
    let sent = fake.requests()[3].json();
    assert_eq!(sent["messages"][0]["content"], system.as_str());
    assert_eq!(sent["messages"].as_array().unwrap().len(), 6);
    assert_eq!(
        sent["messages"][4],
        json!({"role": "assistant", "content": "A2 again"})
    );
    assert_eq!(
        sent["messages"][5],
        json!({"role": "user", "content": "Q3"})
    );
    stored_message(&s, &c, &conv, 5).await;

    // Edit the second user message: everything from it on is replaced.
    fake.push(Reply::sse(&["B2"]));
    let r = chat(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "Q2 edited", "edit_from": 2}),
    )
    .await;
    assert_eq!(r.status(), 200);
    text(r).await;
    let req = fake.requests()[4].clone();
    assert_eq!(req.header("x-hermes-session-id"), None);
    let sent = req.json();
    let new_system = sent["messages"][0]["content"].as_str().unwrap();
    assert_ne!(new_system, system, "an edit starts a new branch");
    assert_eq!(
        sent["messages"].as_array().unwrap()[1..],
        [
            json!({"role": "user", "content": "Q1"}),
            json!({"role": "assistant", "content": "A1"}),
            json!({"role": "user", "content": "Q2 edited"}),
        ]
    );
    stored_message(&s, &c, &conv, 3).await;
    let (_, v) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    let contents: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["Q1", "A1", "Q2 edited", "B2"]);

    // edit_from must point at a user message.
    let r = chat(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "x", "edit_from": 1}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "bad_edit_from"
    );
}

#[tokio::test]
async fn chat_sends_are_limited_per_user() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[auth]\nchat_sends_per_minute_per_user = 2\n");
    let c = s.admin_client().await;
    for _ in 0..2 {
        let r = chat(&s, &c, json!({"message": "hi"})).await;
        assert_eq!(r.status(), 200);
        text(r).await;
    }
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 429);
    let secs = retry_after_secs(&r);
    assert!((1..=30).contains(&secs), "{secs}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "rate_limited");
    // Another user has their own allowance.
    let bob = user_client(&s, "bob").await;
    let r = chat(&s, &bob, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 200);
    text(r).await;
}

#[tokio::test]
async fn memory_files_are_injected_as_the_system_message_when_enabled() {
    let fake = Fake::start().await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("memories")).unwrap();
    std::fs::write(
        home.path().join("memories/USER.md"),
        "Name: Ada. Likes tea.\n",
    )
    .unwrap();
    std::fs::write(home.path().join("memories/MEMORY.md"), "x".repeat(100)).unwrap();
    let config = format!(
        "[chat]\nmemory_inject = true\nmemory_max_bytes = 10\nhermes_home = \"{}\"\n",
        home.path().display()
    );
    let (s, _cfg) = start(&fake, &config);
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    text(r).await;
    let sent = fake.requests()[0].json();
    assert_eq!(
        sent["messages"][0],
        json!({"role": "system", "content": "What you know about the user (USER.md):\nName: Ada.\n\nYour notes (MEMORY.md):\nxxxxxxxxxx"})
    );
    // A changed file is read again.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(home.path().join("memories/USER.md"), "Name: Bo").unwrap();
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    text(r).await;
    let sent = fake.requests()[1].json();
    assert!(sent["messages"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("What you know about the user (USER.md):\nName: Bo\n"));
}

/// The HTTP/2 keep-alive idle limit also holds after a request that opened the client
/// connection's own connection to Hermes (which stays open, idle, until the client connection
/// ends; when it ran as a task beside the streams, it once kept the connection from being idle).
#[tokio::test]
async fn an_idle_http2_connection_that_reached_hermes_is_closed_after_the_keep_alive_limit() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[limits]\nheader_read_timeout_secs = 1\n");
    let c = s.admin_client().await;
    let bearer = format!("Bearer {}", new_token(&s, &c).await);
    let idle = h2_request_then_idle(
        &s,
        "/v1/models",
        &[("authorization", &bearer)],
        Duration::from_secs(10),
    )
    .await;
    let open = idle.assert_closed_with_goaway("hermes-agent");
    assert!(open >= Duration::from_millis(700), "closed after {open:?}");
}

#[tokio::test]
async fn personal_tokens_open_v1_for_api_clients_with_forced_session_scoping() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;

    // Created in the page: shown once, listed without the secret.
    let r = c
        .post(s.url("/api/tokens"))
        .header("origin", s.origin())
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("hek_") && token.len() == 47, "{token}");
    assert_eq!(created["name"], "laptop");
    let (_, list) = get_json(&s, &c, "/api/tokens").await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 1);
    assert_eq!(list["tokens"][0]["prefix"], &token[..12]);
    assert!(!list.to_string().contains(&token));

    let api = s.client_builder().cookie_store(false).build().unwrap();
    // No credentials: 401 like every API route; a wrong token (or the Hermes key itself): 401.
    let r = api
        .post(s.url("/v1/chat/completions"))
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "login_required"
    );
    for auth in ["Bearer hek_wrong".to_string(), format!("Bearer {KEY}")] {
        let r = api
            .post(s.url("/v1/chat/completions"))
            .header("authorization", auth)
            .json(&json!({"messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "invalid_token"
        );
    }

    // Streaming, with a client session id: no Origin needed, the real key goes upstream.
    let body = json!({"model": "hermes-agent", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let r = api
        .post(s.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-hermes-session-id", "my-chat")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    // The upstream's Cache-Control passes; what it did not send is not made up (nor left empty).
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    assert!(r.headers().get("x-hermes-session-id").is_none());
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_no_empty_header(&r);
    assert_eq!(text(r).await, Reply::sse_text(&["Hello", " there"]));
    let req = fake.requests()[0].clone();
    assert_eq!(
        req.header("authorization").unwrap(),
        format!("Bearer {KEY}")
    );
    let scope = memory_scope(&s, "admin");
    assert_eq!(
        req.header("x-hermes-session-id").unwrap(),
        format!("api-{scope}-my-chat")
    );
    assert_eq!(
        req.header("x-hermes-session-key").unwrap(),
        format!("web:{scope}")
    );
    assert_eq!(req.json(), body);
    // The access log names the token's owner.
    let needle = "path=/v1/chat/completions status=200";
    assert!(s.wait_for_log(needle, 3), "{}", s.stderr());
    let log = s.stderr();
    let line = log.lines().find(|l| l.contains(needle)).unwrap_or_default();
    assert!(line.contains("user=admin"), "{log}");

    // Without a session id the request's own history is used, scoped to the user.
    fake.push(
        Reply::json(
            200,
            "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"ok\"}}]}",
        )
        .header("x-hermes-session-id", "derived-1"),
    );
    let r = api
        .post(s.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .json(&json!({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-hermes-session-id"], "derived-1");
    assert!(r.headers().get("cache-control").is_none());
    assert!(r.headers().get("x-accel-buffering").is_none());
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_no_empty_header(&r);
    // A JSON answer keeps its length (no chunked re-encoding).
    assert_eq!(r.headers()["content-length"], "61");
    assert_eq!(
        r.text().await.unwrap(),
        "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"ok\"}}]}"
    );
    let req = fake.requests()[1].clone();
    assert_eq!(req.header("x-hermes-session-id"), None);
    assert_eq!(
        req.json()["messages"],
        json!([{"role": "system", "content": format!("api user: {scope}")}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}])
    );

    // A path-like session id is refused before Hermes sees it.
    let r = api
        .post(s.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-hermes-session-id", "../web-other")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = api
        .get(s.url("/v1/models"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("hermes-agent"));

    // The cookie alone does not open /v1.
    let r = c.get(s.url("/v1/models")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A token made on the command line works too; a deleted token stops working.
    let out = std::process::Command::new(bin())
        .current_dir(&s.dir)
        .args(["--data-dir", &s.dir.join("data").display().to_string()])
        .args(["token", "create", "--user", "admin", "--name", "cli"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let r = api
        .get(s.url("/v1/models"))
        .header("authorization", format!("Bearer {cli_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = created["id"].as_i64().unwrap();
    let r = c
        .delete(s.url(&format!("/api/tokens/{id}")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = api
        .get(s.url("/v1/models"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Another user cannot delete someone else's token.
    let bob = user_client(&s, "bob").await;
    let (_, list) = get_json(&s, &c, "/api/tokens").await;
    let cli_id = list["tokens"][0]["id"].as_i64().unwrap();
    let r = bob
        .delete(s.url(&format!("/api/tokens/{cli_id}")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_agent_error_inside_the_stream_is_relayed_and_stored_with_the_partial_answer() {
    let fake = Fake::start().await;
    // What Hermes sends when the agent fails after the 200 (docs/hermes-notes.md, section a).
    let failed = "data: {\"id\": \"chatcmpl-1\", \"object\": \"chat.completion.chunk\", \"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"error\"}], \"error\": {\"message\": \"HTTP 500: provider down\", \"type\": \"agent_error\"}}\n\n";
    let parts = [
        chunk_role(),
        chunk("Let me "),
        failed.to_string(),
        "data: [DONE]\n\n".to_string(),
    ];
    fake.push(Reply::stream(
        parts.iter().map(|p| Step::Data(p.clone())).collect(),
    ));
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let r = chat(&s, &c, json!({"message": "hi"})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let seen = RunView::of(&text(r).await);
    assert_eq!(seen.text, "Let me ");
    assert_eq!(seen.error.as_deref(), Some("upstream_error"));
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["content"], "Let me ");
    assert_eq!(
        m["error"],
        json!({"code": "upstream_error", "message": "HTTP 500: provider down"})
    );
}

async fn new_conversation(s: &Server, c: &reqwest::Client, message: &str) -> String {
    let r = chat(s, c, json!({"message": message})).await;
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    text(r).await;
    stored_message(s, c, &conv, 1).await;
    conv
}

fn deletes(fake: &Fake) -> Vec<fake_upstream::Recorded> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect()
}

#[tokio::test]
async fn deleting_a_conversation_deletes_its_hermes_session_with_the_api_key() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "forget me").await;

    let (status, v) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(
        (status, v),
        (200, json!({"deleted": true, "hermes_session": "deleted"}))
    );
    let sent = deletes(&fake);
    assert_eq!(sent.len(), 1);
    let d = &sent[0];
    assert_eq!(d.path, format!("/api/sessions/web-{conv}"));
    assert_eq!(d.header("authorization").unwrap(), format!("Bearer {KEY}"));
    assert_eq!(d.header("cookie"), None);
    assert_eq!(d.header("x-hermes-session-id"), None);
    assert_eq!(d.header("x-hermes-session-key"), None);
    assert_eq!(d.header("content-type"), None);
    assert!(d.body.is_empty());
    let (status, _) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    assert_eq!(status, 404);
    // Deleting it again is a 404 at the edge and sends nothing more to Hermes.
    let (status, _) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(status, 404);
    assert_eq!(deletes(&fake).len(), 1);

    // Hermes' own 404 (it has no such session) is fine.
    let conv = new_conversation(&s, &c, "never stored by Hermes").await;
    fake.push(Reply::session_not_found(&format!("web-{conv}")));
    let (status, v) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(
        (status, v),
        (200, json!({"deleted": true, "hermes_session": "not_found"}))
    );

    // A 404 that is not Hermes' (no such route) and a 500 are not: Hermes' copy was not deleted.
    for (reply, says) in [
        (
            Reply::json(404, "404: Not Found"),
            "The Hermes API Server answered with an error: 404: this Hermes API Server has no DELETE /api/sessions/{id}",
        ),
        (
            Reply::json(500, "{\"error\":{\"message\":\"database is locked\"}}"),
            "The Hermes API Server answered with an error: 500 database is locked",
        ),
    ] {
        let conv = new_conversation(&s, &c, "keep trying").await;
        fake.push(reply);
        let (status, v) = delete_conversation(&s, &c, &conv).await;
        assert_eq!(status, 200);
        assert_eq!(v["deleted"], true);
        assert_eq!(v["hermes_session"], "not_deleted");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "The conversation was deleted here, but Hermes still keeps its copy (web-{conv}): {says}"
            )),
            "{message}"
        );
        let (status, _) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
        assert_eq!(status, 404);
    }
    let log = format!("{}\n{}", s.stdout(), s.stderr());
    assert!(
        log.contains("Hermes could not delete the session of a deleted conversation"),
        "{log}"
    );
    assert!(!log.contains(KEY));
    assert!(!log.contains(&KEY[..16]));
}

#[tokio::test]
async fn deleting_a_conversation_while_hermes_is_unreachable_still_deletes_it_at_the_edge() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "hello").await;
    fake.stop().await;

    let (status, v) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(status, 200);
    assert_eq!(v["deleted"], true);
    assert_eq!(v["hermes_session"], "not_deleted");
    let message = v["message"].as_str().unwrap();
    let prefix = format!(
        "The conversation was deleted here, but Hermes still keeps its copy (web-{conv}): "
    );
    assert!(message.starts_with(&prefix), "{message}");
    assert!(
        message[prefix.len()..]
            .starts_with("Cannot reach the Hermes API Server at http://127.0.0.1:"),
        "{message}"
    );
    let (status, _) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    assert_eq!(status, 404);
    let (_, list) = get_json(&s, &c, "/api/conversations").await;
    assert_eq!(list, json!({"conversations": []}));
    assert!(deletes(&fake).is_empty());
    let log = format!("{}\n{}", s.stdout(), s.stderr());
    assert!(
        log.contains("Hermes could not delete the session of a deleted conversation"),
        "{log}"
    );
}

#[tokio::test]
async fn a_hermes_that_does_not_answer_a_delete_is_given_up_on_after_5_seconds() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "hello").await;
    fake.push(Reply::stream(vec![Step::Hang]));

    let started = Instant::now();
    let (status, v) = delete_conversation(&s, &c, &conv).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(4900) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"deleted": true, "hermes_session": "not_deleted", "message": format!(
            "The conversation was deleted here, but Hermes still keeps its copy (web-{conv}): Hermes did not answer within 5 seconds"
        )})
    );
    let (status, _) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn deleting_a_branched_conversation_deletes_the_sessions_hermes_derived_for_it() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "q1").await;
    // Branch turns go without a session id; Hermes names the session and says so.
    fake.push(Reply::sse(&["A1 again"]).header("x-hermes-session-id", "api-0123456789abcdef"));
    let r = chat(&s, &c, json!({"conversation_id": conv, "regenerate": true})).await;
    assert_eq!(r.status(), 200);
    text(r).await;
    // A name that cannot go into a path is not kept.
    fake.push(Reply::sse(&["A2"]).header("x-hermes-session-id", "api-..%2Fetc"));
    let r = chat(&s, &c, json!({"conversation_id": conv, "message": "q2"})).await;
    assert_eq!(r.status(), 200);
    text(r).await;
    stored_message(&s, &c, &conv, 3).await;
    let posts = fake.requests();
    assert_eq!(posts[1].header("x-hermes-session-id"), None);
    assert_eq!(posts[2].header("x-hermes-session-id"), None);

    fake.push(Reply::session_not_found(&format!("web-{conv}")));
    let (status, v) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(
        (status, v),
        (200, json!({"deleted": true, "hermes_session": "deleted"}))
    );
    let paths: Vec<String> = deletes(&fake).into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            format!("/api/sessions/web-{conv}"),
            "/api/sessions/api-0123456789abcdef".to_string()
        ]
    );
}

/// A client connection keeps its own connection to Hermes for request after request; when Hermes
/// closes it in between, the next request opens a new one and nothing is lost.
#[tokio::test]
async fn a_client_connection_reuses_its_hermes_connection_and_reopens_it_when_hermes_closes_it() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    for message in ["one", "two"] {
        let r = chat(&s, &c, json!({"message": message})).await;
        assert_eq!(r.status(), 200);
        text(r).await;
    }
    assert_eq!(fake.connections(), 1);

    let mut closing = Reply::sse(&["closing after this"]);
    closing
        .headers
        .push(("connection".to_string(), "close".to_string()));
    fake.push(closing);
    let r = chat(&s, &c, json!({"message": "three"})).await;
    assert_eq!(r.status(), 200);
    assert!(text(r).await.contains("closing after this"));

    fake.push(Reply::sse(&["still here"]));
    let r = chat(&s, &c, json!({"message": "four"})).await;
    assert_eq!(r.status(), 200);
    assert!(text(r).await.contains("still here"));
    assert_eq!(fake.connections(), 2);
    assert_eq!(fake.requests().len(), 4);
}

/// A `200` whose body is not Hermes' JSON answer does not count as a deletion.
#[tokio::test]
async fn a_delete_answer_without_hermes_json_is_not_taken_for_success() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "hello").await;
    fake.push(Reply::json(200, "<html>proxy page</html>"));
    let (status, v) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"deleted": true, "hermes_session": "not_deleted", "message": format!(
            "The conversation was deleted here, but Hermes still keeps its copy (web-{conv}): The Hermes API Server answered with an error: its 200 answer was cut short or not the JSON Hermes sends"
        )})
    );
}

/// The server is killed (SIGKILL) while an answer streams: at the next start the answer keeps the
/// text stored so far (about once a second) and says it was interrupted, never "still being
/// written" for ever.
#[tokio::test]
async fn an_answer_cut_by_a_crash_keeps_its_text_and_is_marked_interrupted_at_the_next_start() {
    let fake = Fake::start().await;
    fake.push(Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("kept so far")),
        Step::Hang,
    ]));
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        Server::start_with(
            Start::default()
                .in_dir(dir.path())
                .upstream(fake.url())
                .env("HERMES_EDGE_API_KEY", KEY),
        )
    };
    let s = start();
    let c = s.admin_client().await;
    let mut r = chat(&s, &c, json!({"message": "go"})).await;
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut seen = String::new();
    while !seen.contains("kept so far") {
        let b = r.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&b).unwrap());
    }
    // Stored within about a second while it streams.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = stored_message(&s, &c, &conv, 1).await;
        if m["content"] == "kept so far" {
            assert_eq!(m["state"], "running");
            break;
        }
        assert!(Instant::now() < deadline, "not stored while streaming: {m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(r);
    drop(s); // SIGKILL

    let s = start();
    assert!(s.wait_for_log("marked interrupted", 5), "{}", s.stderr());
    let c = s.admin_client().await;
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["content"], "kept so far");
    assert_eq!(m["state"], "done");
    assert_eq!(m["error"]["code"], "interrupted");
    let r = c
        .get(s.url(&format!("/api/conversations/{conv}/run")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
}

/// A message Hermes refuses is taken back out: the conversation is as it was, and sending it
/// again does not find the first attempt stored.
#[tokio::test]
async fn a_message_hermes_refuses_is_not_kept() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "first").await;
    fake.push(Reply::json(500, r#"{"error":{"message":"provider down"}}"#));
    let r = chat(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "second"}),
    )
    .await;
    assert_eq!(r.status(), 502);
    let (_, v) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 2, "{v}");
    // Regenerate refused: the answer it would replace is back.
    fake.push(Reply::json(500, r#"{"error":{"message":"provider down"}}"#));
    let r = chat(&s, &c, json!({"conversation_id": conv, "regenerate": true})).await;
    assert_eq!(r.status(), 502);
    let (_, v) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    let contents: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["first", "Hello there"]);
}

/// SIGTERM while an answer streams with no tab left: the server gives it the grace period, then
/// stores it as interrupted with its text and exits cleanly (0).
#[tokio::test]
async fn sigterm_past_the_grace_period_keeps_a_running_answer_as_interrupted() {
    let fake = Fake::start().await;
    fake.push(Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("written before the stop")),
        Step::Hang,
    ]));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("edge.toml");
    std::fs::write(&cfg, "[limits]\nshutdown_grace_secs = 1\n").unwrap();
    let start = || {
        Server::start_with(
            Start::default()
                .in_dir(dir.path())
                .upstream(fake.url())
                .env("HERMES_EDGE_API_KEY", KEY)
                .arg("--config")
                .arg(cfg.display().to_string()),
        )
    };
    let mut s = start();
    let c = s.admin_client().await;
    let mut r = chat(&s, &c, json!({"message": "go"})).await;
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let mut seen = String::new();
    while !seen.contains("before the stop") {
        let b = r.chunk().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&b).unwrap());
    }
    drop(r);
    drop(c);
    let status = s.stop().expect("the server exits");
    assert!(status.success(), "{status:?}\n{}", s.stderr());
    assert!(
        s.stderr().contains("stored as interrupted"),
        "{}",
        s.stderr()
    );
    drop(s);

    let s = start();
    let c = s.admin_client().await;
    let m = stored_message(&s, &c, &conv, 1).await;
    assert_eq!(m["content"], "written before the stop");
    assert_eq!(m["state"], "done");
    assert_eq!(m["error"]["code"], "interrupted");
    // Nothing was left for the start to close.
    assert!(!s.stderr().contains("marked interrupted"), "{}", s.stderr());
}

/// When the message cannot be stored (here the database is held locked by another writer, as a
/// full disk would refuse it), the person is told to try again and Hermes never hears of it, so
/// the agent does not run for a message that is sent again.
#[tokio::test]
async fn a_message_that_cannot_be_stored_is_never_sent_to_hermes() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "");
    let c = s.admin_client().await;
    let conv = new_conversation(&s, &c, "first").await;
    let sent_before = fake.requests().len();
    let db = rusqlite::Connection::open(s.dir.join("data").join("hermes-edge.db")).unwrap();
    // Readers go on; the server's write waits out its busy timeout and fails.
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let asked = Instant::now();
    let r = chat(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "second"}),
    )
    .await;
    let status = r.status();
    let body = r.text().await.unwrap();
    assert_eq!(status, 503, "{body} after {:?}", asked.elapsed());
    // It was the write that failed, after the store's busy timeout.
    assert!(
        asked.elapsed() >= Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    assert!(body.contains("store_unavailable"), "{body}");
    assert_eq!(
        fake.requests().len(),
        sent_before,
        "Hermes was asked anyway"
    );
    db.execute_batch("ROLLBACK").unwrap();
    let (_, v) = get_json(&s, &c, &format!("/api/conversations/{conv}")).await;
    assert_eq!(v["messages"].as_array().unwrap().len(), 2, "{v}");
}
