//! The account page's and the admin page's API against the real binary: changing your own
//! password (a wrong current one refused, audited and limited; the other sessions signed out,
//! this one kept; single sign-on accounts refused), one-time invitation and reset links (work
//! once, expire, stored as a hash only), role changes that never leave the site without an
//! administrator (also on the command line, also by removal), the second-factor reset, the audit filters, and a
//! non-admin getting nothing from `/admin` or `/api/admin/*`; cross-origin requests refused.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "password-of-alice";

/// Roomy per-address limit (the tests sign in many times from 127.0.0.1); a small per-account one
/// so that the password change's limit shows within a few tries.
const CONFIG: &str =
    "[auth]\nlogin_attempts_per_minute_per_ip = 200\nlogin_attempts_per_minute_per_account = 5\n";

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("data/hermes-edge.db")).unwrap()
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(bin())
        .current_dir(dir)
        .args(["--data-dir", &dir.join("data").display().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take().unwrap().write_all(b"\n"));
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn post(s: &Server, c: &reqwest::Client, path: &str, body: Value) -> reqwest::Response {
    c.post(s.url(path))
        .header("origin", s.origin())
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(s: &Server, c: &reqwest::Client, path: &str) -> reqwest::Response {
    c.get(s.url(path)).send().await.unwrap()
}

async fn signed_in(s: &Server, name: &str, password: &str) -> reqwest::Client {
    let c = s.client();
    let r = s.login(&c, name, password).await;
    assert_eq!(r.status(), 200, "{name} cannot sign in");
    c
}

async fn error_code(r: reqwest::Response) -> String {
    r.json::<Value>().await.unwrap()["error"]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn token_of(url: &str) -> String {
    url.rsplit('/').next().unwrap().to_string()
}

#[tokio::test]
async fn changing_your_own_password_keeps_this_session_and_ends_the_others() {
    let cfg = start_with_config(CONFIG);
    let s = &cfg.server;
    let admin = s.admin_client().await;
    add_user(s, &admin, "alice", PASSWORD, "user").await;
    add_user(s, &admin, "bob", PASSWORD, "user").await;
    let here = signed_in(s, "alice", PASSWORD).await;
    let there = signed_in(s, "alice", PASSWORD).await;
    let token = new_token(s, &here).await;

    let r = get(s, &here, "/api/account/password").await;
    assert_eq!(r.json::<Value>().await.unwrap()["has_password"], true);

    // A page elsewhere cannot change it.
    let r = here
        .post(s.url("/api/account/password"))
        .header("origin", "https://evil.example")
        .json(&json!({"current": PASSWORD, "new": "a-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "cross_origin");

    let wrong = json!({"current": "not-the-password", "new": "a-new-password"});
    let r = post(s, &here, "/api/account/password", wrong.clone()).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "wrong_password");
    let r = post(
        s,
        &here,
        "/api/account/password",
        json!({"current": PASSWORD, "new": "short"}),
    )
    .await;
    assert_eq!(r.status(), 400);

    let r = post(
        s,
        &here,
        "/api/account/password",
        json!({"current": PASSWORD, "new": "a-new-password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["other_sessions_ended"], 1);
    assert_eq!(
        get(s, &here, "/api/me").await.status(),
        200,
        "this session stays"
    );
    assert_eq!(
        get(s, &there, "/api/me").await.status(),
        401,
        "the other one ends"
    );
    // The owner changed it: their tokens keep working.
    let r = s
        .client()
        .get(s.url("/v1/models"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 401);
    assert_eq!(s.login(&s.client(), "alice", PASSWORD).await.status(), 401);
    assert_eq!(
        s.login(&s.client(), "alice", "a-new-password")
            .await
            .status(),
        200
    );

    // Wrong current passwords are limited like sign-in attempts on the account.
    let bob = signed_in(s, "bob", PASSWORD).await;
    let mut limited = false;
    for _ in 0..8 {
        let r = post(s, &bob, "/api/account/password", wrong.clone()).await;
        if r.status() == 429 {
            assert!(retry_after_secs(&r) > 0);
            limited = true;
            break;
        }
        assert_eq!(r.status(), 403);
    }
    assert!(limited, "wrong current passwords are never limited");

    // Audited: the admin sees the failures and the change.
    let r = get(
        s,
        &admin,
        "/api/admin/audit?method=password_change&success=false&user=BOB",
    )
    .await;
    let body: Value = r.json().await.unwrap();
    let entries = body["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert!(entries
        .iter()
        .all(|e| e["username"] == "bob" && e["success"] == false));
    let r = get(
        s,
        &admin,
        "/api/admin/audit?method=password_change&success=true",
    )
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(body["entries"][0]["username"], "alice");

    // Paging: one at a time, `before` the last id seen.
    let r = get(s, &admin, "/api/admin/audit?limit=1").await;
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["more"], true);
    let id = first["entries"][0]["id"].as_i64().unwrap();
    let r = get(s, &admin, &format!("/api/admin/audit?limit=1&before={id}")).await;
    let second: Value = r.json().await.unwrap();
    assert!(second["entries"][0]["id"].as_i64().unwrap() < id);
    assert_eq!(
        get(s, &admin, "/api/admin/audit?success=maybe")
            .await
            .status(),
        400
    );

    // An account without a password (as single sign-on makes them) has nothing to change.
    db(&s.dir)
        .execute(
            "UPDATE users SET password_hash = '!' WHERE username = 'alice'",
            [],
        )
        .unwrap();
    let r = get(s, &here, "/api/account/password").await;
    assert_eq!(r.json::<Value>().await.unwrap()["has_password"], false);
    let r = post(
        s,
        &here,
        "/api/account/password",
        json!({"current": "", "new": "another-password"}),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "no_password");
}

#[tokio::test]
async fn an_invitation_link_works_once_expires_and_is_stored_hashed() {
    let cfg = start_with_config(CONFIG);
    let s = &cfg.server;
    let admin = s.admin_client().await;

    let r = post(
        s,
        &admin,
        "/api/admin/invites",
        json!({"username": "carol"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let made: Value = r.json().await.unwrap();
    let url = made["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/invite/", s.origin())), "{url}");
    let token = token_of(url);
    assert_eq!(token.len(), 43, "256 random bits");

    // Only the SHA-256 of the token is in the database.
    let stored: Vec<Vec<u8>> = {
        let c = db(&s.dir);
        let mut st = c.prepare("SELECT token_hash FROM password_links").unwrap();
        let rows = st.query_map([], |r| r.get(0)).unwrap();
        rows.map(|r| r.unwrap()).collect()
    };
    assert_eq!(stored, vec![Sha256::digest(token.as_bytes()).to_vec()]);
    for file in ["hermes-edge.db", "hermes-edge.db-wal"] {
        if let Ok(bytes) = std::fs::read(s.dir.join("data").join(file)) {
            assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
        }
    }

    // Nobody can sign in to the invited account before the link is used.
    assert_eq!(s.login(&s.client(), "carol", "").await.status(), 401);
    let users: Value = get(s, &admin, "/api/admin/users")
        .await
        .json()
        .await
        .unwrap();
    let carol = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "carol")
        .unwrap()
        .clone();
    assert_eq!(carol["pending_link"], true);
    assert_eq!(carol["has_password"], false);

    // The page is open without a session; the link says whom it is for.
    let anon = s.client();
    let r = get(s, &anon, &format!("/invite/{token}")).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("invite.js"));
    let r = get(s, &anon, &format!("/api/invite/{token}")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["username"], "carol");

    // Only from this site's pages.
    let r = anon
        .post(s.url(&format!("/api/invite/{token}")))
        .header("origin", "https://evil.example")
        .json(&json!({"password": "carols-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(
        s,
        &anon,
        &format!("/api/invite/{token}"),
        json!({"password": "short"}),
    )
    .await;
    assert_eq!(r.status(), 400);

    let r = post(
        s,
        &anon,
        &format!("/api/invite/{token}"),
        json!({"password": "carols-password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.login(&s.client(), "carol", "carols-password")
            .await
            .status(),
        200
    );

    // Used: refused, and saying so.
    let r = post(
        s,
        &anon,
        &format!("/api/invite/{token}"),
        json!({"password": "someone-elses"}),
    )
    .await;
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "link_used");
    assert_eq!(
        s.login(&s.client(), "carol", "someone-elses")
            .await
            .status(),
        401
    );

    // Expired: refused, and saying so.
    let r = post(
        s,
        &admin,
        "/api/admin/invites",
        json!({"username": "dave", "role": "admin"}),
    )
    .await;
    let token = token_of(r.json::<Value>().await.unwrap()["url"].as_str().unwrap());
    db(&s.dir)
        .execute(
            "UPDATE password_links SET expires_at = 0 WHERE used_at IS NULL",
            [],
        )
        .unwrap();
    let r = get(s, &anon, &format!("/api/invite/{token}")).await;
    assert_eq!(r.status(), 410);
    assert_eq!(error_code(r).await, "link_expired");
    let r = post(
        s,
        &anon,
        &format!("/api/invite/{token}"),
        json!({"password": "daves-password"}),
    )
    .await;
    assert_eq!(r.status(), 410);
    let r = get(s, &anon, "/api/invite/not-a-token").await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "link_unknown");

    // A reset link: the old password, the sessions and the API tokens end at once.
    let carol = signed_in(s, "carol", "carols-password").await;
    let api_token = new_token(s, &carol).await;
    let r = post(
        s,
        &admin,
        "/api/admin/users/carol/password",
        json!({"link": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let token = token_of(r.json::<Value>().await.unwrap()["url"].as_str().unwrap());
    assert_eq!(get(s, &carol, "/api/me").await.status(), 401);
    assert_eq!(
        s.login(&s.client(), "carol", "carols-password")
            .await
            .status(),
        401
    );
    let r = s
        .client()
        .get(s.url("/v1/models"))
        .header("authorization", format!("Bearer {api_token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = get(s, &anon, &format!("/api/invite/{token}")).await;
    assert_eq!(r.json::<Value>().await.unwrap()["purpose"], "reset");
    let r = post(
        s,
        &anon,
        &format!("/api/invite/{token}"),
        json!({"password": "carols-second"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.login(&s.client(), "carol", "carols-second")
            .await
            .status(),
        200
    );

    // A reset with a password, as `user passwd` does.
    let r = post(
        s,
        &admin,
        "/api/admin/users/carol/password",
        json!({"password": "carols-third"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.login(&s.client(), "carol", "carols-third").await.status(),
        200
    );
}

#[tokio::test]
async fn roles_change_but_the_last_admin_stays_and_the_second_factor_resets() {
    let cfg = start_with_config(CONFIG);
    let s = &cfg.server;
    let admin = s.admin_client().await;
    add_user(s, &admin, "alice", PASSWORD, "user").await;

    let r = post(
        s,
        &admin,
        "/api/admin/users/admin/role",
        json!({"role": "user"}),
    )
    .await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "last_admin");
    let (ok, _, err) = cli(&s.dir, &["user", "role", "admin", "user"]);
    assert!(!ok && err.contains("only administrator"), "{err}");
    // Removing is refused alike, by the page's API and by the command line.
    let r = admin
        .delete(s.url("/api/admin/users/admin"))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let (ok, _, err) = cli(&s.dir, &["user", "remove", "admin"]);
    assert!(!ok && err.contains("only administrator"), "{err}");
    let r = post(
        s,
        &admin,
        "/api/admin/users/admin/role",
        json!({"role": "boss"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = post(
        s,
        &admin,
        "/api/admin/users/nobody/role",
        json!({"role": "user"}),
    )
    .await;
    assert_eq!(r.status(), 404);

    // A user gets nothing from the admin page or API.
    let alice = signed_in(s, "alice", PASSWORD).await;
    assert_eq!(get(s, &alice, "/admin").await.status(), 404);
    assert_eq!(get(s, &admin, "/admin").await.status(), 200);
    for path in [
        "/api/admin/users",
        "/api/admin/sessions",
        "/api/admin/audit",
    ] {
        assert_eq!(get(s, &alice, path).await.status(), 403, "{path}");
    }
    for (path, body) in [
        ("/api/admin/invites", json!({"username": "eve"})),
        ("/api/admin/users/alice/role", json!({"role": "admin"})),
        ("/api/admin/users/admin/password", json!({"link": true})),
        ("/api/admin/users/admin/2fa/reset", json!({})),
    ] {
        assert_eq!(post(s, &alice, path, body).await.status(), 403, "{path}");
    }
    let me: Value = get(s, &alice, "/api/me").await.json().await.unwrap();
    assert_eq!(me["dashboard"], false);

    // Cross-origin admin requests are refused.
    let r = admin
        .post(s.url("/api/admin/users/alice/role"))
        .header("origin", "https://evil.example")
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = admin
        .post(s.url("/api/admin/invites"))
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"username": "eve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Another admin first; then the first one can step down, through the page's API or the CLI.
    let r = post(
        s,
        &admin,
        "/api/admin/users/alice/role",
        json!({"role": "admin"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(get(s, &alice, "/api/admin/users").await.status(), 200);
    let (ok, out, err) = cli(&s.dir, &["user", "role", "admin", "user"]);
    assert!(ok, "{out}{err}");
    let r = post(
        s,
        &alice,
        "/api/admin/users/alice/role",
        json!({"role": "user"}),
    )
    .await;
    assert_eq!(r.status(), 409, "alice is the last admin now");

    // Second factor: the same reset as `user 2fa reset`.
    let (ok, out, err) = cli(&s.dir, &["user", "2fa", "enable", "admin"]);
    assert!(ok, "{out}{err}");
    let list: Value = get(s, &alice, "/api/admin/users")
        .await
        .json()
        .await
        .unwrap();
    let totp_of = |list: &Value| {
        list["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "admin")
            .unwrap()["totp"]
            .clone()
    };
    assert_eq!(totp_of(&list), true);
    let r = post(s, &alice, "/api/admin/users/admin/2fa/reset", json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["had_totp"], true);
    let list: Value = get(s, &alice, "/api/admin/users")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(totp_of(&list), false);
    // Signed out everywhere, and back in with the password alone.
    assert_eq!(get(s, &admin, "/api/me").await.status(), 401);
    assert_eq!(
        s.login(&s.client(), "admin", ADMIN_PASSWORD).await.status(),
        200
    );
}
