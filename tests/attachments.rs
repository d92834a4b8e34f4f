//! Files attached to a message (`POST /api/attachments`, `"files"` in `POST /api/chat`) against the
//! real binary and the real Hermes API Server with the fake model provider: the file lands in the
//! account's own folder of the media directory, the agent is told its path and reads the file with
//! its terminal tool, only the owner and administrators can fetch it back (also with
//! `[media] public = true`, and whatever the URL's spelling), another account's file cannot be
//! named, the size limit and quota hold (files never sent make room after an hour), and deleting
//! its conversations deletes a file.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const CONFIG: &str = "[media]\npublic = true\n\n[chat]\nmax_attachment_bytes = 2000\nattachment_quota_bytes = 3500\n";

async fn upload(s: &Server, c: &reqwest::Client, name: &str, body: Vec<u8>) -> (u16, Value) {
    let r = c
        .post(s.url("/api/attachments"))
        .query(&[("name", name)])
        .header("origin", s.origin())
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get_status(s: &Server, c: &reqwest::Client, path: &str) -> u16 {
    c.get(s.url(path)).send().await.unwrap().status().as_u16()
}

async fn client_of(s: &Server, name: &str) -> reqwest::Client {
    add_user_cli(s, name, "password-of-someone");
    let c = s.client();
    assert_eq!(s.login(&c, name, "password-of-someone").await.status(), 200);
    c
}

#[tokio::test]
async fn an_attached_file_is_stored_for_its_owner_and_its_path_reaches_the_agent() {
    let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
    assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
    let hermes = RealHermes::start();
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("hermes-edge.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let s = Server::start_with(
        Start::default()
            .upstream(hermes.url.clone())
            .env("HERMES_EDGE_API_KEY", hermes.key.clone())
            .arg("--config")
            .arg(config.display().to_string()),
    );
    let admin = s.admin_client().await;
    let bob = client_of(&s, "bob").await;
    let carol = client_of(&s, "carol").await;
    std::fs::write(s.dir.join("media/open.txt"), "for everyone").unwrap();

    // Stored under bob's own folder, with a safe name.
    let pdf = b"%PDF-1.4 quarterly figures 4711".to_vec();
    let (status, v) = upload(&s, &bob, "Quarterly report (final).pdf", pdf.clone()).await;
    assert_eq!(status, 201, "{v}");
    let path = v["path"].as_str().unwrap().to_string();
    let bob_dir = path
        .strip_prefix("/media/users/")
        .and_then(|p| p.split_once('/'))
        .map(|(id, _)| id.to_string())
        .unwrap();
    assert!(path.ends_with("-Quarterly_report__final_.pdf"), "{path}");
    assert_eq!(v["name"], "Quarterly_report__final_.pdf");
    assert_eq!(v["type"], "application/pdf");
    assert_eq!(v["size"], pdf.len());
    let on_disk = s.dir.join("media").join(path.trim_start_matches("/media/"));
    assert_eq!(std::fs::read(&on_disk).unwrap(), pdf);

    // Fetched back by its owner and administrators only, public media or not.
    assert_eq!(get_status(&s, &bob, &path).await, 200);
    assert_eq!(
        bob.get(s.url(&path))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        pdf
    );
    assert_eq!(get_status(&s, &admin, &path).await, 200);
    assert_eq!(get_status(&s, &carol, &path).await, 404);
    assert_eq!(get_status(&s, &s.client(), "/media/open.txt").await, 200);
    assert_ne!(get_status(&s, &s.client(), &path).await, 200, "signed out");
    let r = bob.get(s.url(&path)).send().await.unwrap();
    assert!(r.headers()["cache-control"]
        .to_str()
        .unwrap()
        .starts_with("private"));
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let encoded = path.replace("/users/", "/user%73/");
    let doubled = path.replace("/media/users/", "/media//users/");
    let dotted = path.replace("/media/users/", "/media/./users/");
    for p in [&encoded, &doubled, &dotted, &"/media/users/".to_string()] {
        assert_ne!(get_status(&s, &carol, p).await, 200, "{p}");
        assert_ne!(get_status(&s, &s.client(), p).await, 200, "{p}");
    }
    assert_eq!(get_status(&s, &bob, "/media/users/").await, 404);

    // Sent with a message: the agent is told the file's full path on disk.
    let r = bob
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "", "files": [path]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    tokio::time::timeout(Duration::from_secs(60), r.text())
        .await
        .unwrap()
        .unwrap();
    let full = std::fs::canonicalize(&on_disk).unwrap();
    let note = format!(
        "[attached file: Quarterly_report__final_.pdf (application/pdf, {} bytes) at {}]",
        pdf.len(),
        full.display()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let sent = loop {
        let found = hermes
            .provider_requests()
            .into_iter()
            .find(|r| r.to_string().contains("quarterly") || r.to_string().contains("Quarterly"));
        if let Some(r) = found {
            break r;
        }
        assert!(Instant::now() < deadline, "Hermes never asked the model");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let escaped = serde_json::to_string(&note).unwrap();
    assert!(
        sent.to_string().contains(escaped.trim_matches('"')),
        "{sent}"
    );
    let v = conversation(&s, &bob, &conv).await;
    assert_eq!(v["messages"][0]["content"], note);
    assert_eq!(v["title"], "Quarterly_report__final_.pdf");

    // The agent reads it with its own tool (the fake model asks for `cat <the path in the line>`).
    let r = bob
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "toolcat", "files": [path]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let conv2 = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    tokio::time::timeout(Duration::from_secs(90), r.text())
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = conversation(&s, &bob, &conv2).await;
        let answer = &v["messages"][1];
        if answer["state"] == "done" {
            let text = answer["content"].as_str().unwrap_or_default();
            assert!(text.contains("quarterly figures 4711"), "{v}");
            assert_eq!(answer["tool_steps"][0]["tool"], "terminal", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "the answer never finished: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Another account's file, or a path that leaves the folder, cannot be named.
    for files in [
        json!([path.replace(&format!("/users/{bob_dir}/"), "/users/1/")]),
        json!([format!("/media/users/{bob_dir}/../1/x.pdf")]),
        json!(["/media/open.txt"]),
        json!([format!("/media/users/{bob_dir}/missing.pdf")]),
    ] {
        let r = carol
            .post(s.url("/api/chat"))
            .header("origin", s.origin())
            .json(&json!({"message": "read it", "files": files}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{files}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_attachment", "{v}");
    }
    let r = bob
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "x", "files": [path.replace(&format!("/users/{bob_dir}/"), "/users/1/")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // The size limit and the quota (3500 bytes, 31 used).
    let (status, v) = upload(&s, &bob, "big.bin", vec![7; 2001]).await;
    assert_eq!(status, 413, "{v}");
    let (status, v) = upload(&s, &bob, "a.bin", vec![7; 2000]).await;
    assert_eq!(status, 201, "{v}");
    let a_path = v["path"].as_str().unwrap().to_string();
    let (status, v) = upload(&s, &bob, "b.bin", vec![7; 2000]).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["error"]["code"], "quota_exceeded", "{v}");
    // A file never sent makes room once it is an hour old; a file a message names stays.
    let a_disk = s
        .dir
        .join("media")
        .join(a_path.trim_start_matches("/media/"));
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    for p in [&a_disk, &on_disk] {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(two_hours_ago).unwrap();
    }
    let (status, v) = upload(&s, &bob, "b.bin", vec![7; 2000]).await;
    assert_eq!(status, 201, "{v}");
    assert!(!a_disk.exists(), "the unsent file was swept");
    assert!(on_disk.exists(), "the sent file stays");
    // Carol has her own quota.
    let (status, v) = upload(&s, &carol, "b.bin", vec![7; 2000]).await;
    assert_eq!(status, 201, "{v}");
    // Empty or unnamed files are refused; the route needs a login and the site's own origin.
    assert_eq!(upload(&s, &bob, "e.txt", Vec::new()).await.0, 400);
    let r = bob
        .post(s.url("/api/attachments"))
        .header("origin", s.origin())
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(upload(&s, &s.client(), "x.txt", b"x".to_vec()).await.0, 401);
    let r = bob
        .post(s.url("/api/attachments?name=x.txt"))
        .header("origin", "https://evil.example")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Deleting a conversation deletes the files no other conversation of the account names.
    assert_eq!(delete_conversation(&s, &bob, &conv).await.0, 200);
    assert!(on_disk.exists(), "still named by the second conversation");
    assert_eq!(delete_conversation(&s, &bob, &conv2).await.0, 200);
    assert!(!on_disk.exists());
    assert_eq!(get_status(&s, &bob, &path).await, 404);
}
