//! End to end with the real Hermes Agent API Server (PyPI `hermes-agent`, installed into a venv by
//! `tests/hermes/setup.sh`; never skipped when missing) using the scripted fake model provider:
//! a browser-style client signs in to hermes-edge, chats twice in one conversation, and the fake
//! provider's request log shows that Hermes answered the second message with the first exchange
//! in its history. An edit then shows the branch works too: Hermes answers from the kept history
//! only, and keeps the branch under its own session, which deleting the conversation deletes.
//! (This Hermes has runs, so these messages go through `POST /v1/runs` with the edge's history.)

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The answer text of an SSE chat stream (content deltas joined) and whether it ended with [DONE].
fn answer_of(sse: &str) -> (String, bool) {
    let mut text = String::new();
    let mut done = false;
    for line in sse.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        if let Some(t) = v
            .pointer("/choices/0/delta/content")
            .and_then(|t| t.as_str())
        {
            text.push_str(t);
        }
    }
    (text, done)
}

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The (role, text) pairs of a provider request's messages, Hermes' own system prompt left out.
fn turns(req: &Value) -> Vec<(String, String)> {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_string(),
                text_of(&m["content"]),
            )
        })
        .collect()
}

fn pair(role: &str, text: &str) -> (String, String) {
    (role.to_string(), text.to_string())
}

async fn send(s: &Server, c: &reqwest::Client, body: Value) -> (String, String) {
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .header("accept", "text/event-stream")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{body}");
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    let sse = tokio::time::timeout(Duration::from_secs(90), r.text())
        .await
        .expect("answer within 90 s")
        .unwrap();
    (conv, sse)
}

#[tokio::test]
async fn the_real_hermes_api_server_answers_the_second_message_with_the_first_exchange_in_its_history(
) {
    let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
    assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
    let hermes = RealHermes::start();
    let s = Server::start_with(
        Start::default()
            .upstream(hermes.url.clone())
            .env("HERMES_EDGE_API_KEY", hermes.key.clone()),
    );

    // Like a browser: the login form, then the page's API calls with the cookie.
    let c = s.client();
    let r = c
        .post(s.url("/login"))
        .header("origin", s.origin())
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let r = c.get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"username": "admin", "role": "admin", "dashboard": false})
    );

    let (conv, sse) = send(&s, &c, json!({"message": "hello one"})).await;
    assert_eq!(
        answer_of(&sse),
        ("echo: hello one (history: 2 messages)".to_string(), true),
        "{sse}"
    );
    let (conv2, sse) = send(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "hello two"}),
    )
    .await;
    assert_eq!(conv2, conv);
    assert_eq!(
        answer_of(&sse),
        ("echo: hello two (history: 4 messages)".to_string(), true),
        "{sse}"
    );
    let reqs = hermes.provider_requests();
    let second = reqs.last().unwrap();
    assert_eq!(
        turns(second),
        [
            pair("user", "hello one"),
            pair("assistant", "echo: hello one (history: 2 messages)"),
            pair("user", "hello two"),
        ],
        "Hermes did not load the first exchange for the second message"
    );

    // Stored on the edge, per user.
    let v: Value = c
        .get(s.url(&format!("/api/conversations/{conv}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let contents: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "hello one",
            "echo: hello one (history: 2 messages)",
            "hello two",
            "echo: hello two (history: 4 messages)"
        ]
    );

    // Edit the second message: the real Hermes answers from the kept history only.
    let (_, sse) = send(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "hello edited", "edit_from": 2}),
    )
    .await;
    assert_eq!(
        answer_of(&sse).0,
        "echo: hello edited (history: 4 messages)",
        "{sse}"
    );
    let reqs = hermes.provider_requests();
    let edited = reqs.last().unwrap();
    assert_eq!(
        turns(edited),
        [
            pair("user", "hello one"),
            pair("assistant", "echo: hello one (history: 2 messages)"),
            pair("user", "hello edited"),
        ]
    );
    // And a follow-up in the branch keeps the edited history.
    let (_, sse) = send(
        &s,
        &c,
        json!({"conversation_id": conv, "message": "hello three"}),
    )
    .await;
    assert_eq!(
        answer_of(&sse).0,
        "echo: hello three (history: 6 messages)",
        "{sse}"
    );

    // Deleting the conversation deletes Hermes' copy too: its session `web-<uuid>` and the
    // branch's own session.
    let direct = reqwest::Client::new();
    let bearer = format!("Bearer {}", hermes.key);
    let session_status = |id: String| {
        let req = direct
            .get(format!("{}/api/sessions/{id}", hermes.url))
            .header("authorization", bearer.clone());
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let list_ids = || {
        let req = direct
            .get(format!(
                "{}/api/sessions?limit=200&include_children=true",
                hermes.url
            ))
            .header("authorization", bearer.clone());
        async move {
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["id"].as_str().unwrap().to_string())
                .collect::<Vec<String>>()
        }
    };
    let web = format!("web-{conv}");
    let (status, v) = session_status(web.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["session"]["id"], web.as_str());
    let before = list_ids().await;
    let derived: Vec<String> = before
        .iter()
        .filter(|id| id.starts_with("web-") && **id != web)
        .cloned()
        .collect();
    assert!(before.contains(&web), "{before:?}");
    assert!(!derived.is_empty(), "no branch session in {before:?}");

    let (status, v) = delete_conversation(&s, &c, &conv).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"deleted": true, "hermes_session": "deleted"}));
    let (status, v) = session_status(web.clone()).await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "session_not_found");
    for id in &derived {
        let (status, v) = session_status(id.clone()).await;
        assert_eq!(status, 404, "{id}: {v}");
    }
    let after = list_ids().await;
    assert!(
        !after.iter().any(|id| id == &web || derived.contains(id)),
        "{after:?}"
    );
    let r = c
        .get(s.url(&format!("/api/conversations/{conv}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
