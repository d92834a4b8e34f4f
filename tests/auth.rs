//! Accounts, login and rate limits (issue 4), over real HTTPS against the real binary.
mod common;
use common::*;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::{header, Client, Response};
use serde_json::{json, Value};

const COOKIE_RE_PREFIX: &str = "__Host-hermes_session=";

/// A client whose requests seem to come from `ip` (through the trusted proxy 127.0.0.1).
fn client_from(s: &Server, ip: &str) -> Client {
    let mut h = header::HeaderMap::new();
    h.insert("x-forwarded-for", ip.parse().unwrap());
    s.client_builder().default_headers(h).build().unwrap()
}

async fn json_login(s: &Server, c: &Client, body: Value) -> Response {
    c.post(s.url("/login"))
        .header("origin", s.origin())
        .header("accept", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn form_login(s: &Server, c: &Client, fields: &[(&str, &str)]) -> Response {
    c.post(s.url("/login"))
        .header("origin", s.origin())
        .form(fields)
        .send()
        .await
        .unwrap()
}

fn set_cookie(r: &Response) -> Option<String> {
    r.headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().unwrap().to_string())
}

fn location(r: &Response) -> String {
    r.headers()
        .get(header::LOCATION)
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_string()
}

/// The token of a session cookie header, after checking every attribute exactly.
fn token_of(cookie: &str, max_age: u64) -> String {
    let token = cookie
        .strip_prefix(COOKIE_RE_PREFIX)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("not a session cookie: {cookie}"));
    assert_eq!(token.len(), 43, "{cookie}");
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{cookie}"
    );
    assert_eq!(
        cookie,
        format!(
            "{COOKIE_RE_PREFIX}{token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
        )
    );
    token.to_string()
}

/// `GET /api/me` with exactly this cookie (no cookie store).
async fn me_with_token(s: &Server, token: &str) -> Response {
    s.client_builder()
        .cookie_store(false)
        .build()
        .unwrap()
        .get(s.url("/api/me"))
        .header("cookie", format!("{COOKIE_RE_PREFIX}{token}"))
        .send()
        .await
        .unwrap()
}

async fn assert_error(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    body
}

async fn signed_in_as(s: &Server, name: &str, password: &str) -> Client {
    let c = s.client();
    let r = s.login(&c, name, password).await;
    assert_eq!(r.status(), 200);
    c
}

// ---------------------------------------------------------------------------------------------
// Sign-in

#[tokio::test]
async fn json_login_succeeds_with_a_24_hour_session_cookie() {
    let s = Server::start();
    let c = s.client();
    let r = json_login(
        &s,
        &c,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    token_of(&set_cookie(&r).unwrap(), 86_400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"ok": true, "next": "/"})
    );
    let me = c.get(s.url("/api/me")).send().await.unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(
        me.json::<Value>().await.unwrap(),
        json!({"username": "admin", "role": "admin", "dashboard": false})
    );
}

#[tokio::test]
async fn remember_me_makes_the_cookie_last_30_days() {
    let s = Server::start();
    let r = json_login(
        &s,
        &s.client(),
        json!({"username": "admin", "password": ADMIN_PASSWORD, "remember": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    token_of(&set_cookie(&r).unwrap(), 2_592_000);
    let r = form_login(
        &s,
        &s.client(),
        &[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("remember", "on"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    token_of(&set_cookie(&r).unwrap(), 2_592_000);
}

#[tokio::test]
async fn json_login_with_a_wrong_password_is_401_invalid_credentials() {
    let s = Server::start();
    let c = s.client();
    let r = json_login(
        &s,
        &c,
        json!({"username": "admin", "password": "not-the-password"}),
    )
    .await;
    assert!(set_cookie(&r).is_none());
    assert_error(r, 401, "invalid_credentials").await;
    assert_error(
        c.get(s.url("/api/me")).send().await.unwrap(),
        401,
        "login_required",
    )
    .await;
}

#[tokio::test]
async fn form_login_redirects_303_to_next_with_the_cookie() {
    let s = Server::start();
    let c = s.client();
    let r = form_login(
        &s,
        &c,
        &[
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("next", "/c/abc?x=1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/c/abc?x=1");
    token_of(&set_cookie(&r).unwrap(), 86_400);
    assert_eq!(c.get(s.url("/api/me")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn form_login_failure_redirects_back_to_the_login_page_with_the_error() {
    let s = Server::start();
    let c = s.client();
    let r = form_login(
        &s,
        &c,
        &[
            ("username", "admin"),
            ("password", "wrong-password"),
            ("next", "/c/abc"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login?error=invalid&next=%2Fc%2Fabc");
    assert!(set_cookie(&r).is_none());
    let r = form_login(
        &s,
        &c,
        &[("username", "admin"), ("password", "wrong-password")],
    )
    .await;
    assert_eq!(location(&r), "/login?error=invalid");
}

#[tokio::test]
async fn unknown_user_gets_the_same_answer_as_a_wrong_password_in_about_the_same_time() {
    let s = start_with_config("[auth]\nlogin_attempts_per_minute_per_ip = 100\n");
    let c = s.client();
    let attempt = |user: &'static str| {
        let (s, c) = (&s, &c);
        async move {
            let started = Instant::now();
            let r = json_login(
                s,
                c,
                json!({"username": user, "password": "wrong-password"}),
            )
            .await;
            let status = r.status();
            let body = r.bytes().await.unwrap();
            (status, body, started.elapsed())
        }
    };
    let (mut wrong, mut unknown) = (Duration::MAX, Duration::MAX);
    for _ in 0..4 {
        let (st_w, body_w, t_w) = attempt("admin").await;
        let (st_u, body_u, t_u) = attempt("nobody-here").await;
        assert_eq!(st_w, 401);
        assert_eq!(st_u, st_w);
        assert_eq!(body_u, body_w);
        wrong = wrong.min(t_w);
        unknown = unknown.min(t_u);
    }
    // Without the decoy hash an unknown name answers tens of times faster than a real one.
    assert!(
        unknown * 3 > wrong && wrong * 3 > unknown,
        "wrong password {wrong:?}, unknown user {unknown:?}"
    );
    let form_w = form_login(&s, &c, &[("username", "admin"), ("password", "x")]).await;
    let form_u = form_login(&s, &c, &[("username", "nobody-here"), ("password", "x")]).await;
    assert_eq!(form_w.status(), 303);
    assert_eq!(location(&form_u), location(&form_w));
}

#[tokio::test]
async fn login_page_redirects_a_signed_in_user_to_next() {
    let s = Server::start();
    let anon = s
        .client()
        .get(s.url("/login?next=%2Fc%2F1"))
        .send()
        .await
        .unwrap();
    assert_ne!(anon.status(), 303, "an anonymous visitor gets the form");
    assert!(anon.headers().get(header::LOCATION).is_none());
    let c = s.admin_client().await;
    let r = c.get(s.url("/login?next=%2Fc%2F1")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/c/1");
    let r = c.get(s.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/");
    let r = c
        .get(s.url("/login?next=%2F%2Fevil.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/");
}

// ---------------------------------------------------------------------------------------------
// Sessions

#[tokio::test]
async fn session_expires_after_the_configured_lifetime() {
    let s = start_with_config("[auth]\nsession_secs = 2\n");
    let c = s.client();
    let r = s.login(&c, "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 200);
    let token = token_of(&set_cookie(&r).unwrap(), 2);
    assert_eq!(me_with_token(&s, &token).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_error(me_with_token(&s, &token).await, 401, "login_required").await;
}

#[tokio::test]
async fn logout_revokes_the_session_so_the_old_cookie_no_longer_works() {
    let s = Server::start();
    let c = s.client();
    let token = token_of(
        &set_cookie(&s.login(&c, "admin", ADMIN_PASSWORD).await).unwrap(),
        86_400,
    );
    let r = c
        .post(s.url("/logout"))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/login");
    assert_eq!(
        set_cookie(&r).unwrap(),
        "__Host-hermes_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    );
    assert_error(me_with_token(&s, &token).await, 401, "login_required").await;

    // JSON clients get 204.
    let c = s.admin_client().await;
    let r = c
        .post(s.url("/logout"))
        .header("origin", s.origin())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        c.get(s.url("/api/me")).send().await.unwrap(),
        401,
        "login_required",
    )
    .await;
}

#[tokio::test]
async fn sessions_survive_a_restart_with_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_with(Start::default().in_dir(dir.path()));
    let token = {
        let c = s.client();
        token_of(
            &set_cookie(&s.login(&c, "admin", ADMIN_PASSWORD).await).unwrap(),
            86_400,
        )
    };
    assert_eq!(me_with_token(&s, &token).await.status(), 200);
    assert!(s.stop().is_some_and(|st| st.success()));
    let s = Server::start_with(Start::default().in_dir(dir.path()));
    let r = me_with_token(&s, &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["username"], "admin");
}

// ---------------------------------------------------------------------------------------------
// Administration

#[tokio::test]
async fn a_user_gets_403_admin_only_on_every_admin_route() {
    let s = Server::start();
    let admin = s.admin_client().await;
    add_user(&s, &admin, "bob", "bob-password-1", "user").await;
    let bob = signed_in_as(&s, "bob", "bob-password-1").await;
    let o = s.origin();
    let requests = [
        bob.get(s.url("/api/admin/users")),
        bob.post(s.url("/api/admin/users"))
            .header("origin", &o)
            .json(&json!({"username": "eve", "password": "eve-password-1", "role": "admin"})),
        bob.delete(s.url("/api/admin/users/admin"))
            .header("origin", &o),
        bob.get(s.url("/api/admin/sessions?user=admin")),
        bob.delete(s.url("/api/admin/sessions/0123456789abcdef"))
            .header("origin", &o),
        bob.get(s.url("/api/admin/audit?limit=5")),
        bob.get(s.url("/api/admin/anything-else")),
    ];
    for req in requests {
        assert_error(req.send().await.unwrap(), 403, "admin_only").await;
    }
    // Nothing happened: eve does not exist and admin is still there.
    let users: Value = admin
        .get(s.url("/api/admin/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<_> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["admin", "bob"]);
}

#[tokio::test]
async fn admin_creates_lists_and_removes_users() {
    let s = Server::start();
    let admin = s.admin_client().await;
    let o = s.origin();
    let r = admin
        .post(s.url("/api/admin/users"))
        .header("origin", &o)
        .json(&json!({"username": "carol", "password": "carol-password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["username"], "carol");
    assert_eq!(body["role"], "user");
    assert_eq!(body["created_at"].as_str().unwrap().len(), 20, "{body}");

    let create = |b: Value| {
        admin
            .post(s.url("/api/admin/users"))
            .header("origin", &o)
            .json(&b)
            .send()
    };
    let dup = create(json!({"username": "CAROL", "password": "another-pass-1"}));
    assert_error(dup.await.unwrap(), 409, "user_exists").await;
    let weak = create(json!({"username": "dave", "password": "short"}));
    assert_error(weak.await.unwrap(), 400, "weak_password").await;
    let bad = create(json!({"username": "d ave", "password": "dave-password-1"}));
    assert_error(bad.await.unwrap(), 400, "bad_username").await;
    let role = create(json!({"username": "dave", "password": "dave-password-1", "role": "root"}));
    assert_error(role.await.unwrap(), 400, "bad_role").await;

    let list: Value = admin
        .get(s.url("/api/admin/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let users = list["users"].as_array().unwrap();
    assert_eq!(users.len(), 2);
    assert_eq!(users[0]["username"], "admin");
    assert_eq!(users[0]["role"], "admin");
    assert_eq!(users[1]["username"], "carol");
    assert_eq!(users[1]["role"], "user");

    let carol = signed_in_as(&s, "carol", "carol-password-1").await;
    let r = admin
        .delete(s.url("/api/admin/users/carol"))
        .header("origin", &o)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.text().await.unwrap(), "");
    // Her session went with her account.
    assert_error(
        carol.get(s.url("/api/me")).send().await.unwrap(),
        401,
        "login_required",
    )
    .await;
    let again = admin
        .delete(s.url("/api/admin/users/carol"))
        .header("origin", &o)
        .send();
    assert_error(again.await.unwrap(), 404, "not_found").await;
    let last = admin
        .delete(s.url("/api/admin/users/admin"))
        .header("origin", &o)
        .send();
    assert_error(last.await.unwrap(), 409, "last_admin").await;
}

#[tokio::test]
async fn admin_lists_and_revokes_a_users_sessions() {
    let s = Server::start();
    let admin = s.admin_client().await;
    add_user(&s, &admin, "bob", "bob-password-1", "user").await;
    let phone = s
        .client_builder()
        .user_agent("bob-phone/1")
        .build()
        .unwrap();
    assert_eq!(s.login(&phone, "bob", "bob-password-1").await.status(), 200);
    let laptop = s
        .client_builder()
        .user_agent("bob-laptop/1")
        .build()
        .unwrap();
    assert_eq!(
        s.login(&laptop, "bob", "bob-password-1").await.status(),
        200
    );

    let r = admin
        .get(s.url("/api/admin/sessions?user=bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let list = body["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{body}");
    let mut agents: Vec<_> = list
        .iter()
        .map(|x| x["user_agent"].as_str().unwrap())
        .collect();
    agents.sort();
    assert_eq!(agents, ["bob-laptop/1", "bob-phone/1"]);
    for x in list {
        let id = x["id"].as_str().unwrap();
        assert_eq!(id.len(), 16);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(x["username"], "bob");
        assert_eq!(x["ip"], "127.0.0.1");
        assert_eq!(x["current"], false);
        for k in ["created_at", "last_seen", "expires_at"] {
            assert!(x[k].as_str().unwrap().ends_with('Z'), "{x}");
        }
    }
    let phone_id = list
        .iter()
        .find(|x| x["user_agent"] == "bob-phone/1")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = admin
        .delete(s.url(&format!("/api/admin/sessions/{phone_id}")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        phone.get(s.url("/api/me")).send().await.unwrap(),
        401,
        "login_required",
    )
    .await;
    assert_eq!(
        laptop.get(s.url("/api/me")).send().await.unwrap().status(),
        200
    );

    let gone = admin
        .delete(s.url(&format!("/api/admin/sessions/{phone_id}")))
        .header("origin", s.origin())
        .send();
    assert_error(gone.await.unwrap(), 404, "not_found").await;
    let nobody = admin.get(s.url("/api/admin/sessions?user=nobody")).send();
    assert_error(nobody.await.unwrap(), 404, "not_found").await;
    // Without `user`, every live session (bob's laptop and the admin's own).
    let all: Value = admin
        .get(s.url("/api/admin/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["sessions"].as_array().unwrap().len(), 2, "{all}");
}

#[tokio::test]
async fn users_see_and_revoke_only_their_own_sessions() {
    let s = Server::start();
    let admin = s.admin_client().await;
    add_user(&s, &admin, "bob", "bob-password-1", "user").await;
    let bob1 = signed_in_as(&s, "bob", "bob-password-1").await;
    let bob2 = signed_in_as(&s, "bob", "bob-password-1").await;

    let mine: Value = bob1
        .get(s.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = mine["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{mine}");
    assert!(list.iter().all(|x| x["username"] == "bob"));
    assert_eq!(list.iter().filter(|x| x["current"] == true).count(), 1);
    let other = list.iter().find(|x| x["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The admin's session id is not bob's to revoke: 404, as if it did not exist.
    let admin_sessions: Value = admin
        .get(s.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin_id = admin_sessions["sessions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = bob1
        .delete(s.url(&format!("/api/sessions/{admin_id}")))
        .header("origin", s.origin())
        .send();
    assert_error(r.await.unwrap(), 404, "not_found").await;
    assert_eq!(
        admin.get(s.url("/api/me")).send().await.unwrap().status(),
        200
    );

    let r = bob1
        .delete(s.url(&format!("/api/sessions/{other}")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        bob2.get(s.url("/api/me")).send().await.unwrap(),
        401,
        "login_required",
    )
    .await;
    assert_eq!(
        bob1.get(s.url("/api/me")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn admin_reads_the_sign_in_audit_newest_first() {
    let s = Server::start();
    let c = s.client();
    let r = json_login(
        &s,
        &c,
        json!({"username": "admin", "password": "wrong-password"}),
    )
    .await;
    assert_eq!(r.status(), 401);
    let admin = s.admin_client().await;
    let r = admin
        .get(s.url("/api/admin/audit?limit=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let entries = body["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{body}");
    assert_eq!(entries[0]["username"], "admin");
    assert_eq!(entries[0]["ip"], "127.0.0.1");
    assert_eq!(entries[0]["success"], true);
    assert_eq!(entries[1]["success"], false);
    assert!(entries[0]["at"].as_str().unwrap().ends_with('Z'));
    let one: Value = admin
        .get(s.url("/api/admin/audit?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["entries"].as_array().unwrap().len(), 1);
    let bad = admin.get(s.url("/api/admin/audit?limit=0")).send();
    assert_error(bad.await.unwrap(), 400, "bad_limit").await;
}

// ---------------------------------------------------------------------------------------------
// Redirects and CSRF

#[tokio::test]
async fn open_redirect_attempts_in_next_stay_on_site_after_login() {
    let s = start_with_config("[auth]\nlogin_attempts_per_minute_per_ip = 100\nlogin_attempts_per_minute_per_account = 100\n");
    let hostile = [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "%2F%2Fevil.com",
        "/%2F%2Fevil.com",
        "/%2Fevil.com",
        "/%5Cevil.com",
        "%5C%5Cevil.com",
        "/%255C%255Cevil.com",
        "/%252F%252Fevil.com",
        "//%09/evil.com",
        "/\t/evil.com",
        "javascript:alert(1)",
        "evil.com",
        "/login?next=//evil.com",
        "/ünicode",
    ];
    for next in hostile {
        let r = form_login(
            &s,
            &s.client(),
            &[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", next),
            ],
        )
        .await;
        assert_eq!(r.status(), 303, "{next}");
        assert_eq!(location(&r), "/", "{next}");
        let r = json_login(
            &s,
            &s.client(),
            json!({"username": "admin", "password": ADMIN_PASSWORD, "next": next}),
        )
        .await;
        assert_eq!(r.json::<Value>().await.unwrap()["next"], "/", "{next}");
    }
}

#[tokio::test]
async fn unauthenticated_pages_redirect_303_to_login_with_a_same_site_next() {
    let s = Server::start();
    let c = s.client();
    let cases = [
        ("/c/123?x=1", "/login?next=%2Fc%2F123%3Fx%3D1"),
        ("/", "/login?next=%2F"),
        // The URL parser turns `/\evil.com` into `//evil.com` before it is sent.
        ("//evil.com", "/login?next=%2F"),
        ("/\\evil.com", "/login?next=%2F"),
        ("/%2F%2Fevil.com", "/login?next=%2F"),
        ("/%2Fevil.com", "/login?next=%2F"),
        ("/%5Cevil.com", "/login?next=%2F"),
        ("/%5C%5Cevil.com", "/login?next=%2F"),
        ("/%252F%252Fevil.com", "/login?next=%2F"),
        ("/%09/evil.com", "/login?next=%2F"),
    ];
    for (path, expected) in cases {
        let r = c.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(location(&r), expected, "{path}");
        assert!(r.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}

#[tokio::test]
async fn unauthenticated_api_gets_401_login_required_json_and_no_basic_auth() {
    let s = Server::start();
    let c = s.client();
    for path in [
        "/api/me",
        "/api/conversations",
        "/api/admin/users",
        "/v1/models",
    ] {
        let r = c.get(s.url(path)).send().await.unwrap();
        let body = assert_error(r, 401, "login_required").await;
        assert_eq!(
            body["error"]["message"],
            "Sign in first: your session is missing or has expired."
        );
    }
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "login_required").await;
    // A made-up cookie is no better than none.
    let r = me_with_token(&s, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_error(r, 401, "login_required").await;
    // Basic credentials are ignored, never asked for.
    let r = c
        .get(s.url("/api/me"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "login_required").await;
}

#[tokio::test]
async fn cross_origin_login_post_is_refused_with_403() {
    let s = Server::start();
    let c = s.client();
    let r = c
        .post(s.url("/login"))
        .header("origin", "https://evil.example")
        .header("accept", "application/json")
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&r).is_none());
    assert_error(r, 403, "cross_origin").await;
    let r = c
        .post(s.url("/login"))
        .header("sec-fetch-site", "cross-site")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&r).is_none());
    assert_error(r, 403, "cross_origin").await;
    // Same host on another port is another origin.
    let r = c
        .post(s.url("/login"))
        .header("origin", "https://localhost:1")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "cross_origin").await;
}

#[tokio::test]
async fn cross_origin_post_from_a_signed_in_browser_is_refused_with_403() {
    let s = Server::start();
    let c = s.admin_client().await;
    let r = c
        .post(s.url("/logout"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "cross_origin").await;
    let r = c
        .post(s.url("/api/admin/users"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"username": "eve", "password": "eve-password-1", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "cross_origin").await;
    // Still signed in, and eve was not created.
    assert_eq!(c.get(s.url("/api/me")).send().await.unwrap().status(), 200);
    let users: Value = c
        .get(s.url("/api/admin/users"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn post_with_neither_origin_nor_sec_fetch_site_is_refused() {
    let s = Server::start();
    let c = s.client();
    let r = c
        .post(s.url("/login"))
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "cross_origin").await;
    // `Sec-Fetch-Site: same-origin` alone is enough.
    let r = c
        .post(s.url("/login"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let r = c.post(s.url("/logout")).send().await.unwrap();
    assert_error(r, 403, "cross_origin").await;
    assert_eq!(c.get(s.url("/api/me")).send().await.unwrap().status(), 200);
}

// ---------------------------------------------------------------------------------------------
// Brute force

#[tokio::test]
async fn sixth_rapid_wrong_password_from_one_ip_gets_429_with_retry_after() {
    let s = Server::start();
    let c = s.client();
    for i in 1..=5 {
        let r = json_login(
            &s,
            &c,
            json!({"username": "admin", "password": "wrong-password"}),
        )
        .await;
        assert_eq!(r.status(), 401, "attempt {i}");
    }
    let r = json_login(
        &s,
        &c,
        json!({"username": "admin", "password": "wrong-password"}),
    )
    .await;
    let retry = retry_after_secs(&r);
    assert!((1..=60).contains(&retry), "{retry}");
    let body = assert_error(r, 429, "rate_limited").await;
    assert_eq!(body["error"]["retry_after"], retry);
    // The right password is refused too until the wait is over.
    let r = json_login(
        &s,
        &c,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert!(set_cookie(&r).is_none());
    assert_error(r, 429, "rate_limited").await;
}

#[tokio::test]
async fn rate_limited_form_login_goes_back_to_the_login_page_with_the_wait() {
    let s = Server::start();
    let c = s.client();
    for _ in 1..=5 {
        let r = form_login(&s, &c, &[("username", "admin"), ("password", "wrong")]).await;
        assert_eq!(location(&r), "/login?error=invalid");
    }
    let r = form_login(
        &s,
        &c,
        &[
            ("username", "admin"),
            ("password", "wrong"),
            ("next", "/c/9"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    let rest = loc
        .strip_prefix("/login?error=rate_limited&retry_after=")
        .unwrap_or_else(|| panic!("{loc}"));
    let (secs, next) = rest.split_once('&').unwrap();
    assert!((1..=60).contains(&secs.parse::<u64>().unwrap()), "{loc}");
    assert_eq!(next, "next=%2Fc%2F9");
}

#[tokio::test]
async fn a_flood_from_one_ip_does_not_lock_out_another_ip() {
    let s = start_with_config("[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let attacker = client_from(&s, "203.0.113.10");
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = json_login(
            &s,
            &attacker,
            json!({"username": "admin", "password": "guess"}),
        )
        .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses,
        [401, 401, 401, 401, 401, 429, 429, 429, 429, 429, 429, 429]
    );
    let owner = client_from(&s, "198.51.100.20");
    let r = json_login(
        &s,
        &owner,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    // The audit shows the forwarded addresses, so the limits really saw two clients.
    let audit: Value = owner
        .get(s.url("/api/admin/audit?limit=2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["entries"][0]["ip"], "198.51.100.20");
    assert_eq!(audit["entries"][1]["ip"], "203.0.113.10");
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let s = Server::start();
    for i in 0..5 {
        let c = client_from(&s, &format!("203.0.113.{}", 10 + i));
        let r = json_login(&s, &c, json!({"username": "admin", "password": "guess"})).await;
        assert_eq!(r.status(), 401);
    }
    // A sixth "address" is still the same socket peer, 127.0.0.1, and is limited.
    let c = client_from(&s, "198.51.100.20");
    let r = json_login(
        &s,
        &c,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_error(r, 429, "rate_limited").await;
}

#[tokio::test]
async fn account_limit_slows_a_distributed_flood_but_spares_the_owners_known_network() {
    let s = start_with_config(
        "[limits]\ntrusted_proxies = [\"127.0.0.1\"]\n\
         [auth]\nlogin_attempts_per_minute_per_account = 3\n",
    );
    // The owner signed in from home before (this uses one of the account's 3 attempts).
    let home = client_from(&s, "198.51.100.7");
    let r = json_login(
        &s,
        &home,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
    // Attackers each use a fresh address, so the per-address limit never triggers.
    let mut statuses = Vec::new();
    for i in 1..=4 {
        let c = client_from(&s, &format!("203.0.113.{i}"));
        let r = json_login(&s, &c, json!({"username": "ADMIN", "password": "guess"})).await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
    // A network the account never used is slowed down as well, even with the right password...
    let cafe = client_from(&s, "192.0.2.55");
    let r = json_login(
        &s,
        &cafe,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_error(r, 429, "rate_limited").await;
    // ...but the owner's own network still gets in, from a new device.
    let home2 = client_from(&s, "198.51.100.7");
    let r = json_login(
        &s,
        &home2,
        json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// The `user` command

fn cli(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .current_dir(dir)
        .arg("user")
        .args(args)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env_remove("HERMES_EDGE_ADMIN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn user_command_adds_lists_changes_and_removes_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with(Start::default().in_dir(dir.path()));
    let d = dir.path();

    let out = cli(
        d,
        &["add", "bob", "--password-stdin"],
        Some("bob-password-1\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "added user `bob`\n");
    let out = cli(
        d,
        &["add", "root2", "--role", "admin", "--password-stdin"],
        Some("root-password-1\n"),
    );
    assert_eq!(text(&out.stdout), "added admin `root2`\n");
    let out = cli(d, &["list"], None);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "admin\tadmin\nbob\tuser\nroot2\tadmin\n");

    // Refusals exit non-zero with a reason.
    let out = cli(
        d,
        &["add", "bob", "--password-stdin"],
        Some("bob-password-2\n"),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "hermes-edge: a user named `bob` already exists\n"
    );
    let out = cli(d, &["add", "eve", "--password-stdin"], Some("short\n"));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "hermes-edge: passwords must be at least 8 characters\n"
    );
    let out = cli(
        d,
        &["add", "eve", "--role", "root", "--password-stdin"],
        Some("eve-password-1\n"),
    );
    assert_eq!(out.status.code(), Some(1));

    // The running server sees the new account.
    let c = s.client();
    let r = s.login(&c, "bob", "bob-password-1").await;
    assert_eq!(r.status(), 200);
    let token = token_of(&set_cookie(&r).unwrap(), 86_400);

    // A new password signs bob out everywhere and replaces the old one.
    let out = cli(
        d,
        &["passwd", "bob", "--password-stdin"],
        Some("bob-password-NEW\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .starts_with("password of `bob` changed; it was signed out everywhere and its 0 API"),
        "{}",
        text(&out.stdout)
    );
    assert_error(me_with_token(&s, &token).await, 401, "login_required").await;
    assert_eq!(
        s.login(&s.client(), "bob", "bob-password-1").await.status(),
        401
    );
    assert_eq!(
        s.login(&s.client(), "bob", "bob-password-NEW")
            .await
            .status(),
        200
    );

    let out = cli(d, &["remove", "bob"], None);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "removed `bob`\n");
    assert_eq!(
        s.login(&s.client(), "bob", "bob-password-NEW")
            .await
            .status(),
        401
    );
    let out = cli(d, &["remove", "bob"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "hermes-edge: no user named `bob`\n");
    let out = cli(d, &["list"], None);
    assert_eq!(text(&out.stdout), "admin\tadmin\nroot2\tadmin\n");
}

#[tokio::test]
async fn origin_null_from_a_no_referrer_page_is_judged_by_sec_fetch_site() {
    let s = Server::start();
    let c = s.client();
    // What Chromium sends for a same-site form post under Referrer-Policy: no-referrer.
    let r = c
        .post(s.url("/login"))
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(set_cookie(&r).is_some());
    // A sandboxed or cross-site document also says `null`, but the browser marks it cross-site.
    let r = s
        .client()
        .post(s.url("/login"))
        .header("origin", "null")
        .header("sec-fetch-site", "cross-site")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&r).is_none());
    assert_error(r, 403, "cross_origin").await;
    // `null` with nothing else is refused.
    let r = s
        .client()
        .post(s.url("/login"))
        .header("origin", "null")
        .form(&[("username", "admin"), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "cross_origin").await;
}
