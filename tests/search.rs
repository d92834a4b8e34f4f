//! Search over conversations (`GET /api/search`) and export (`GET /api/conversations/{id}/export`)
//! against the real binary and the real Hermes API Server (with the fake model provider, which
//! answers `echo: <message> ...`): title and message hits, never another user's, hostile queries
//! are a 200 or a 400 and never a 500, a deleted conversation leaves the index; exports in both
//! formats, for the owner only.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// One message sent from the page and its answer read to the end; returns the conversation id
/// once the answer is stored as done.
async fn converse(s: &Server, c: &reqwest::Client, conv: Option<&str>, message: &str) -> String {
    let mut body = json!({ "message": message });
    if let Some(id) = conv {
        body["conversation_id"] = json!(id);
    }
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .expect("the answer within 60 s")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = conversation(s, c, &id).await;
        let msgs = v["messages"].as_array().cloned().unwrap_or_default();
        if msgs
            .last()
            .is_some_and(|m| m["role"] == "assistant" && m["state"] == "done")
        {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "the answer was never stored: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn search(s: &Server, c: &reqwest::Client, q: &str) -> (u16, Value) {
    let r = c
        .get(s.url("/api/search"))
        .query(&[("q", q)])
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["id"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn start_with_hermes() -> (RealHermes, Server) {
    let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
    assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
    let hermes = RealHermes::start();
    let s = Server::start_with(
        Start::default()
            .upstream(hermes.url.clone())
            .env("HERMES_EDGE_API_KEY", hermes.key.clone()),
    );
    (hermes, s)
}

async fn other_user(s: &Server, name: &str) -> reqwest::Client {
    add_user_cli(s, name, "password-of-someone");
    let c = s.client();
    assert_eq!(s.login(&c, name, "password-of-someone").await.status(), 200);
    c
}

#[tokio::test]
async fn search_finds_titles_and_messages_of_the_user_only_and_survives_hostile_queries() {
    let (_hermes, s) = start_with_hermes();
    let admin = s.admin_client().await;
    let bob = other_user(&s, "bob").await;

    // The title is the first message's first line; the second message is only in the text.
    let pelican = converse(&s, &admin, None, "Pelican migration routes").await;
    converse(
        &s,
        &admin,
        Some(&pelican),
        "and what about the zeppelinfield ferries",
    )
    .await;
    let other = converse(&s, &admin, None, "unrelated groceries").await;
    let bobs = converse(&s, &bob, None, "Pelican secrets of bob zeppelinfield").await;

    // A title hit, with the hit marked in the title parts.
    let (status, v) = search(&s, &admin, "pelic").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v), vec![pelican.clone()], "{v}");
    let parts = &v["results"][0]["title_parts"];
    assert_eq!(parts[0], json!({"text": "Pelican", "hit": true}), "{v}");

    // A message hit in the second turn: its index and a snippet with the hit marked.
    let (status, v) = search(&s, &admin, "zeppelinfield").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(ids(&v), vec![pelican.clone()], "never bob's: {v}");
    let r = &v["results"][0];
    // Messages 2 (the question) and 3 (the echo of it) match; the newest is given.
    assert_eq!(r["message_index"], 3, "{v}");
    let snippet = r["snippet"].as_array().unwrap();
    assert!(
        snippet
            .iter()
            .any(|p| p["hit"] == true && p["text"] == "zeppelinfield"),
        "{v}"
    );
    assert!(r["title_parts"].is_null(), "{v}");

    // Bob finds his own, never the admin's.
    let (_, v) = search(&s, &bob, "pelican").await;
    assert_eq!(ids(&v), vec![bobs.clone()], "{v}");
    let (_, v) = search(&s, &bob, "groceries").await;
    assert!(ids(&v).is_empty(), "{v}");

    // Newest first: touching the older conversation moves it to the front.
    let (_, v) = search(&s, &admin, "echo").await;
    assert_eq!(ids(&v), vec![other.clone(), pelican.clone()], "{v}");
    converse(&s, &admin, Some(&pelican), "one more").await;
    let (_, v) = search(&s, &admin, "echo").await;
    assert_eq!(ids(&v), vec![pelican.clone(), other.clone()], "{v}");

    // Hostile input is plain text: 200 (or 400 for what is too long), never 500.
    let long = "a".repeat(10 * 1024);
    for q in [
        "\"",
        "*",
        "NEAR(",
        "NEAR(pelican zeppelinfield",
        "pelican\" OR \"",
        "AND",
        "-x",
        "^",
        "title:pelican",
        "(",
        ")",
        "'",
        "%",
        "\\",
        "\u{E000}",
        "💥",
        &long,
    ] {
        let (status, v) = search(&s, &admin, q).await;
        assert!(status == 200 || status == 400, "{q:.40}: {status} {v}");
        if status == 400 {
            assert_eq!(v["error"]["code"], "bad_query", "{v}");
        }
    }
    let (status, _) = search(&s, &admin, &long).await;
    assert_eq!(status, 400);
    // Quotes and operators in a query still find the words around them.
    let (_, v) = search(&s, &admin, "\"pelican\" NEAR(").await;
    assert!(ids(&v).is_empty(), "NEAR( is a word to find here: {v}");
    let (_, v) = search(&s, &admin, "\"pelican").await;
    assert_eq!(ids(&v), vec![pelican.clone()], "{v}");
    let (status, v) = search(&s, &admin, "").await;
    assert_eq!((status, ids(&v).len()), (200, 0), "{v}");
    let r = admin
        .get(s.url("/api/search?q=x&limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Renamed: the new title is found, the old one no longer.
    let r = admin
        .patch(s.url(&format!("/api/conversations/{other}")))
        .header("origin", s.origin())
        .json(&json!({"title": "Shopping list quokka"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, v) = search(&s, &admin, "quokka").await;
    assert_eq!(ids(&v), vec![other.clone()], "{v}");

    // Deleted: gone from the results, titles and messages alike.
    assert_eq!(delete_conversation(&s, &admin, &pelican).await.0, 200);
    for q in ["pelican", "zeppelinfield", "migration"] {
        let (_, v) = search(&s, &admin, q).await;
        assert!(!ids(&v).contains(&pelican), "{q}: {v}");
    }
    // Bob's are untouched.
    let (_, v) = search(&s, &bob, "zeppelinfield").await;
    assert_eq!(ids(&v), vec![bobs], "{v}");

    // Signed out: no search.
    let r = s
        .client()
        .get(s.url("/api/search?q=pelican"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
}

#[tokio::test]
async fn a_conversation_exports_as_markdown_and_json_for_its_owner_only() {
    let (_hermes, s) = start_with_hermes();
    let admin = s.admin_client().await;
    let bob = other_user(&s, "bob").await;
    let conv = converse(&s, &admin, None, "Plan: \"trip\" / notes").await;
    converse(&s, &admin, Some(&conv), "```rust\nfn main() {}\n```").await;

    let r = admin
        .get(s.url(&format!("/api/conversations/{conv}/export?format=md")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/markdown; charset=utf-8");
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cd.starts_with("attachment; filename=\"Plan trip notes.md\""),
        "{cd}"
    );
    assert!(
        cd.contains("filename*=UTF-8''Plan%3A%20%22trip%22%20%20notes.md"),
        "{cd}"
    );
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("no-store"));
    let md = r.text().await.unwrap();
    assert!(md.starts_with("# Plan: \"trip\" / notes\n"), "{md}");
    assert_eq!(md.matches("\n## You · ").count(), 2, "{md}");
    assert_eq!(md.matches("\n## Hermes · ").count(), 2, "{md}");
    assert!(
        md.contains("\n```rust\nfn main() {}\n```\n"),
        "code blocks kept: {md}"
    );

    let r = admin
        .get(s.url(&format!("/api/conversations/{conv}/export?format=json")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cd = r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cd.contains("filename=\"Plan trip notes.json\""), "{cd}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], conv);
    let msgs = v["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 4, "{v}");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(
            m["role"],
            if i % 2 == 0 { "user" } else { "assistant" },
            "{v}"
        );
        assert!(m["created_at"].as_str().unwrap().ends_with('Z'), "{v}");
        assert!(m["tool_steps"].is_array(), "{v}");
    }
    assert!(
        msgs[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("echo: Plan"),
        "{v}"
    );

    // Not bob's: the same 404 as a conversation that does not exist; a bad format is a 400.
    for (c, path, want) in [
        (
            &bob,
            format!("/api/conversations/{conv}/export?format=md"),
            404,
        ),
        (
            &bob,
            format!("/api/conversations/{conv}/export?format=json"),
            404,
        ),
        (&admin, "/api/conversations/nope/export".to_string(), 404),
        (
            &admin,
            format!("/api/conversations/{conv}/export?format=html"),
            400,
        ),
    ] {
        let r = c.get(s.url(&path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{path}");
    }
    let r = s
        .client()
        .get(s.url(&format!("/api/conversations/{conv}/export")))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
    let r = admin
        .post(s.url(&format!("/api/conversations/{conv}/export")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}
