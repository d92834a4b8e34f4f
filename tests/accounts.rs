//! Accounts and the database, against the real binary: a removed account's id and Hermes memory
//! never pass to a new account (also across the schema migration), removed accounts and changed
//! passwords end API tokens and sessions at once or within seconds (also when the command line,
//! another process, made the change), an empty database file stops the start, the sign-in audit
//! is pruned, and a start that fails on its certificate creates no account.

mod common;
mod fake_upstream;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fake_upstream::Fake;
use serde_json::json;

const KEY: &str = "test-api-key-accounts-0123456789";
const PASSWORD: &str = "password-of-someone";

fn start_in(fake: &Fake, dir: &Path) -> Server {
    Server::start_with(
        Start::default()
            .in_dir(dir)
            .upstream(fake.url())
            .env("HERMES_EDGE_API_KEY", KEY),
    )
}

/// Runs `hermes-edge --data-dir <dir>/data ARGS` (a separate process, as an operator would) with
/// `stdin` as its input; returns (success, stdout, stderr).
fn cli(dir: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new(bin())
        .current_dir(dir)
        .args(["--data-dir", &dir.join("data").display().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{stdin}").unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("data/hermes-edge.db")).unwrap()
}

fn user_id(dir: &Path, name: &str) -> i64 {
    db(dir)
        .query_row("SELECT id FROM users WHERE username = ?1", [name], |r| {
            r.get(0)
        })
        .unwrap()
}

async fn signed_in(s: &Server, name: &str) -> reqwest::Client {
    let c = s.client();
    assert_eq!(s.login(&c, name, PASSWORD).await.status(), 200);
    c
}

/// `GET /v1/models` with a bearer token: its status.
async fn with_token(s: &Server, token: &str) -> u16 {
    s.client()
        .get(s.url("/v1/models"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// What Hermes was sent for `c`'s user: the memory key of a web chat message, the session id of
/// an API request with `X-Hermes-Session-Id: mine`, and the user line of one without.
async fn what_hermes_sees(s: &Server, fake: &Fake, c: &reqwest::Client) -> [String; 3] {
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "remember me"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let key = fake
        .requests()
        .last()
        .unwrap()
        .header("x-hermes-session-key");
    let token = new_token(s, c).await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let api = s.client();
    let r = api
        .post(s.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-hermes-session-id", "mine")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let session = fake
        .requests()
        .last()
        .unwrap()
        .header("x-hermes-session-id");
    assert_eq!(
        fake.requests()
            .last()
            .unwrap()
            .header("x-hermes-session-key"),
        key
    );
    let r = api
        .post(s.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let line = fake.requests().last().unwrap().json()["messages"][0]["content"].clone();
    [
        key.unwrap(),
        session.unwrap(),
        line.as_str().unwrap().to_string(),
    ]
}

#[tokio::test]
async fn removed_account_id_memory_and_sessions_never_pass_to_a_new_account() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let s = start_in(&fake, tmp.path());
    add_user_cli(&s, "alice", PASSWORD);
    let alice = signed_in(&s, "alice").await;
    let seen_a = what_hermes_sees(&s, &fake, &alice).await;
    let id_a = user_id(tmp.path(), "alice");

    // Alice, the newest account, goes (by the command line, another process); Bob comes (by the
    // admin API).
    let (ok, _, err) = cli(tmp.path(), &["user", "remove", "alice"], "");
    assert!(ok, "{err}");
    let admin = s.admin_client().await;
    let r = admin
        .post(s.url("/api/admin/users"))
        .header("origin", s.origin())
        .json(&json!({"username": "bob", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bob = signed_in(&s, "bob").await;
    let seen_b = what_hermes_sees(&s, &fake, &bob).await;

    assert!(
        user_id(tmp.path(), "bob") > id_a,
        "Bob got a removed account's id"
    );
    for (a, b) in seen_a.iter().zip(&seen_b) {
        assert_ne!(a, b, "Bob is sent to Hermes as Alice was");
    }
    assert!(seen_b[0].starts_with("web:"), "{seen_b:?}");
    assert!(seen_b[1].starts_with("api-") && seen_b[1].ends_with("-mine"));
    // Bob's API session ids cannot be any of Alice's, whatever id Alice's client chose.
    let a_prefix = seen_a[1].trim_end_matches("mine");
    assert!(!seen_b[1].starts_with(a_prefix), "{seen_a:?} {seen_b:?}");
}

/// The schema of user_version 4 (before account ids were kept from coming back), as released.
const SCHEMA_V4: &str = "
    CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('admin','user')),
        created_at INTEGER NOT NULL);
    CREATE TABLE sessions (token_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, last_seen INTEGER NOT NULL,
        ip TEXT NOT NULL DEFAULT '', user_agent TEXT NOT NULL DEFAULT '');
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE login_audit (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, username TEXT NOT NULL,
        user_id INTEGER, ip TEXT NOT NULL, success INTEGER NOT NULL);
    CREATE INDEX login_audit_user ON login_audit(user_id, at);
    CREATE TABLE conversations (id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, title TEXT NOT NULL,
        hermes_session TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
    CREATE INDEX conversations_user ON conversations(user_id, updated_at);
    CREATE TABLE messages (id INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('user','assistant')),
        content TEXT NOT NULL, images TEXT NOT NULL DEFAULT '[]',
        tool_steps TEXT NOT NULL DEFAULT '[]', error TEXT, created_at INTEGER NOT NULL,
        UNIQUE (conversation_id, idx));
    CREATE TABLE api_tokens (id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE, name TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE, prefix TEXT NOT NULL, created_at INTEGER NOT NULL,
        last_used_at INTEGER);
    CREATE INDEX api_tokens_user ON api_tokens(user_id);
    CREATE TABLE hermes_sessions (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        session_id TEXT NOT NULL, PRIMARY KEY (conversation_id, session_id)) WITHOUT ROWID;
    PRAGMA user_version = 4;";

fn password_hash(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn migrated_database_keeps_its_users_memory_scopes_and_never_reissues_freed_ids() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    {
        let c = db(tmp.path());
        c.execute_batch(SCHEMA_V4).unwrap();
        let hash = password_hash(PASSWORD);
        // Ids 2 and 4 were removed under the old schema; 4 was the highest and left no trace, 7
        // left a sign-in in the audit.
        for (id, name, role) in [(1, "admin", "admin"), (3, "carol", "user")] {
            c.execute(
                "INSERT INTO users (id, username, password_hash, role, created_at) VALUES (?1, ?2, ?3, ?4, 0)",
                rusqlite::params![id, name, hash, role],
            )
            .unwrap();
        }
        c.execute(
            "INSERT INTO login_audit (at, username, user_id, ip, success) VALUES (0, 'gone', 7, '127.0.0.1', 1)",
            [],
        )
        .unwrap();
        c.execute(
            "INSERT INTO conversations (id, user_id, title, hermes_session, created_at, updated_at)
             VALUES ('c1', 3, 'kept', 'web-c1', 0, 0)",
            [],
        )
        .unwrap();
    }
    let s = start_in(&fake, tmp.path());
    assert!(
        !s.stdout().contains("created account"),
        "a migrated database got a new admin"
    );
    // Carol keeps her memory and API sessions in Hermes, and her conversation.
    let carol = signed_in(&s, "carol").await;
    let seen = what_hermes_sees(&s, &fake, &carol).await;
    assert_eq!(
        seen,
        ["web:3", "api-3-mine", "api user: 3"].map(String::from)
    );
    let r = carol
        .get(s.url("/api/conversations/c1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A new account gets neither a freed id's memory nor any id ever seen.
    add_user_cli(&s, "dave", PASSWORD);
    assert!(user_id(tmp.path(), "dave") > 7);
    let dave = signed_in(&s, "dave").await;
    let seen = what_hermes_sees(&s, &fake, &dave).await;
    for old in 1..=8 {
        assert_ne!(seen[0], format!("web:{old}"));
        assert!(!seen[1].starts_with(&format!("api-{old}-")), "{seen:?}");
        assert_ne!(seen[2], format!("api user: {old}"));
    }

    // The rebuilt table is still what the others refer to: removing Carol takes her rows along.
    let (ok, _, err) = cli(tmp.path(), &["user", "remove", "carol"], "");
    assert!(ok, "{err}");
    let left: i64 = db(tmp.path())
        .query_row(
            "SELECT (SELECT COUNT(*) FROM conversations WHERE user_id = 3)
                  + (SELECT COUNT(*) FROM sessions WHERE user_id = 3)
                  + (SELECT COUNT(*) FROM api_tokens WHERE user_id = 3)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn token_of_a_removed_account_is_refused_at_once() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let s = start_in(&fake, tmp.path());
    let admin = s.admin_client().await;
    let r = admin
        .post(s.url("/api/admin/users"))
        .header("origin", s.origin())
        .json(&json!({"username": "erin", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let erin = signed_in(&s, "erin").await;
    let token = new_token(&s, &erin).await;
    assert_eq!(with_token(&s, &token).await, 200);
    let r = admin
        .delete(s.url("/api/admin/users/erin"))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(with_token(&s, &token).await, 401);
}

/// Polls `check` for up to 5 s until it is true.
async fn within_5s<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn password_changed_by_the_command_line_ends_tokens_and_sessions_within_seconds() {
    let fake = Fake::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let s = start_in(&fake, tmp.path());
    add_user_cli(&s, "frank", PASSWORD);
    let frank = signed_in(&s, "frank").await;
    let token = new_token(&s, &frank).await;
    let other = new_token(&s, &s.admin_client().await).await;
    assert_eq!(with_token(&s, &token).await, 200);
    let me = frank.get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);

    let (ok, out, err) = cli(
        tmp.path(),
        &["user", "passwd", "frank", "--password-stdin"],
        "a-new-password-9",
    );
    assert!(ok, "{err}");
    assert!(
        within_5s(|| async { with_token(&s, &token).await == 401 }).await,
        "the token still works 5 s after the password change"
    );
    assert!(out.contains("1 API token(s) revoked"), "{out}");
    assert!(
        within_5s(|| async { frank.get(s.url("/api/me")).send().await.unwrap().status() == 401 })
            .await,
        "the session still works 5 s after the password change"
    );
    // Only Frank's: another account's token goes on working.
    assert_eq!(with_token(&s, &other).await, 200);

    // The same for a token revoked by the command line.
    let c = s.client();
    assert_eq!(s.login(&c, "frank", "a-new-password-9").await.status(), 200);
    let token = new_token(&s, &c).await;
    assert_eq!(with_token(&s, &token).await, 200);
    let (ok, out, err) = cli(tmp.path(), &["token", "list", "--user", "frank"], "");
    assert!(ok, "{err}");
    let id = out.split('\t').next().unwrap().to_string();
    let (ok, _, err) = cli(tmp.path(), &["token", "revoke", "--user", "frank", &id], "");
    assert!(ok, "{err}");
    assert!(
        within_5s(|| async { with_token(&s, &token).await == 401 }).await,
        "a token revoked by the command line still works 5 s later"
    );
}

#[test]
fn empty_database_file_stops_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("data/hermes-edge.db");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, b"").unwrap();
    let err = match Server::try_start(Start::default().in_dir(tmp.path())) {
        Ok(_) => panic!("started on an empty database file as a new installation"),
        Err(e) => e,
    };
    assert!(err.contains("hermes-edge.db"), "{err}");
    assert!(err.contains("--init-database"), "{err}");
    assert!(!err.contains("created account"), "{err}");
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        0,
        "the file was written"
    );
    // The command line refuses it too.
    let (ok, _, err) = cli(tmp.path(), &["user", "list"], "");
    assert!(!ok && err.contains("--init-database"), "{err}");

    // Asked for, it is a new installation.
    let s = Server::start_with(Start::default().in_dir(tmp.path()).arg("--init-database"));
    assert!(
        s.stdout().contains("created account `admin`"),
        "{}",
        s.stdout()
    );
}

#[tokio::test]
async fn sign_in_audit_older_than_login_audit_days_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(Start::default().in_dir(tmp.path()));
    s.stop();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let insert = |days: i64, name: &str| {
        db(tmp.path())
            .execute(
                "INSERT INTO login_audit (at, username, user_id, ip, success) VALUES (?1, ?2, NULL, '127.0.0.1', 0)",
                rusqlite::params![now - days * 86_400, name],
            )
            .unwrap();
    };
    insert(400, "older");
    insert(91, "old");
    insert(50, "recent");
    insert(1, "newest");
    let names = || {
        let c = db(tmp.path());
        let mut st = c
            .prepare("SELECT username FROM login_audit ORDER BY at")
            .unwrap();
        st.query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    };
    let until = |want: &[&str]| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while names() != want {
            assert!(Instant::now() < deadline, "audit rows left: {:?}", names());
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // The default keeps 90 days.
    let mut s = Server::start_with(Start::default().in_dir(tmp.path()));
    until(&["recent", "newest"]);
    s.stop();
    // `auth.login_audit_days` shortens it (never below the "keep me signed in" lifetime: 30 days).
    let cfg = tmp.path().join("edge.toml");
    std::fs::write(&cfg, "[auth]\nlogin_audit_days = 7\n").unwrap();
    insert(31, "past-30");
    insert(10, "ten");
    let _s = Server::start_with(
        Start::default()
            .in_dir(tmp.path())
            .arg("--config")
            .arg(cfg.display().to_string()),
    );
    until(&["ten", "newest"]);
}

#[test]
fn a_start_that_fails_on_its_certificate_creates_no_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert, "not a certificate\n").unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let err = match Server::try_start(
        Start::default()
            .in_dir(tmp.path())
            .arg("--cert")
            .arg(cert.display().to_string())
            .arg("--key")
            .arg(key.display().to_string()),
    ) {
        Ok(_) => panic!("started with a bad certificate"),
        Err(e) => e,
    };
    assert!(err.contains("exited with"), "{err}");
    assert!(!err.contains("created account"), "{err}");
    let file = tmp.path().join("data/hermes-edge.db");
    if file.exists() {
        let users: i64 = db(tmp.path())
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(users, 0, "an admin was created by a start that failed");
    }
}
