//! Two-factor sign-in against the real binary: enrolment from the account API with codes computed
//! here (RFC 6238 with HMAC-SHA-1, independently of the server's crate), a code never accepted
//! twice, single-use recovery codes, wrong codes limited and audited, `user 2fa enable/reset` on
//! the command line, the `require_second_factor` policy holding a session to enrolment, and the
//! trusted sign-in header believed only from a trusted proxy (and never passed on to the dashboard).

mod common;
mod fake_upstream;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

const PASSWORD: &str = "password-of-alice";

/// Enough sign-in attempts per address and account for a test that signs in many times.
const ROOMY: &str =
    "[auth]\nlogin_attempts_per_minute_per_ip = 200\nlogin_attempts_per_minute_per_account = 100\n";

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u64, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_uppercase())
            .expect("base32") as u64;
        value = (value << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

/// The RFC 6238 code (SHA-1, 6 digits, 30 s) of `secret` at Unix time `at`.
fn totp_at(secret: &[u8], at: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&(at / 30).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0x0f) as usize;
    let n = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]) % 1_000_000;
    format!("{n:06}")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn the_code_computation_here_matches_rfc_6238() {
    // Appendix B, SHA-1, the last six digits.
    assert_eq!(totp_at(b"12345678901234567890", 59), "287082");
    assert_eq!(totp_at(b"12345678901234567890", 1_111_111_109), "081804");
    assert_eq!(base32_decode("GEZDGNBV"), b"12345");
}

async fn login_with(
    s: &Server,
    c: &reqwest::Client,
    user: &str,
    password: &str,
    code: Option<&str>,
) -> (u16, Value) {
    let mut body = json!({"username": user, "password": password, "remember": true});
    if let Some(code) = code {
        body["code"] = json!(code);
    }
    let r = c
        .post(s.url("/login"))
        .header("origin", s.origin())
        .header("accept", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn post_json(s: &Server, c: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    let r = c
        .post(s.url(path))
        .header("origin", s.origin())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(s: &Server, c: &reqwest::Client, path: &str) -> reqwest::Response {
    c.get(s.url(path)).send().await.unwrap()
}

/// Enrols the user of `c` through the account API; returns the secret and the recovery codes.
async fn enrol(s: &Server, c: &reqwest::Client) -> (Vec<u8>, Vec<String>) {
    let (status, started) = post_json(s, c, "/api/account/2fa/totp", json!({})).await;
    assert_eq!(status, 200, "{started}");
    let uri = started["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Hermes:"), "{uri}");
    let secret_text = started["secret"].as_str().unwrap();
    assert!(uri.contains(&format!("secret={secret_text}")), "{uri}");
    assert!(started["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret = base32_decode(secret_text);
    assert_eq!(secret.len(), 20);
    // A wrong first code does not turn it on.
    let wrong = if totp_at(&secret, unix_now()) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (status, body) = post_json(
        s,
        c,
        "/api/account/2fa/totp/confirm",
        json!({"code": wrong}),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "invalid_code"), "{body}");
    let code = totp_at(&secret, unix_now());
    let (status, done) =
        post_json(s, c, "/api/account/2fa/totp/confirm", json!({"code": code})).await;
    assert_eq!(status, 200, "{done}");
    let codes: Vec<String> = done["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

#[tokio::test]
async fn enrolment_then_sign_in_with_a_code_each_accepted_once_and_recovery_codes_once() {
    let s = start_with_config(ROOMY);
    let admin = s.admin_client().await;
    add_user(&s, &admin, "alice", PASSWORD, "user").await;
    let alice = s.client();
    assert_eq!(login_with(&s, &alice, "alice", PASSWORD, None).await.0, 200);
    let status: Value = get(&s, &alice, "/api/account/2fa")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["totp"], false);
    let (secret, recovery) = enrol(&s, &alice).await;
    let status: Value = get(&s, &alice, "/api/account/2fa")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            status["totp"].clone(),
            status["recovery_codes_left"].clone()
        ),
        (json!(true), json!(10))
    );
    // A second enrolment is refused while one is on.
    let (st, body) = post_json(&s, &alice, "/api/account/2fa/totp", json!({})).await;
    assert_eq!((st, error_code(&body)), (409, "already_enrolled"));

    // Password alone: a code is needed (and no cookie is set).
    let c = s.client();
    let r = c
        .post(s.url("/login"))
        .header("origin", s.origin())
        .header("accept", "application/json")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    assert_eq!(error_code(&r.json().await.unwrap()), "code_required");
    // A wrong password says nothing about codes, with or without one.
    let code_next = totp_at(&secret, unix_now() + 30);
    for code in [None, Some(code_next.as_str())] {
        let (st, body) = login_with(&s, &c, "alice", "not-her-password", code).await;
        assert_eq!(
            (st, error_code(&body)),
            (401, "invalid_credentials"),
            "{body}"
        );
    }
    assert_eq!(get(&s, &c, "/api/me").await.status(), 401);

    // The next step's code (within the skew) signs in once; the same code again is refused. (The
    // current step's code was used up by the confirmation.)
    let (st, body) = login_with(&s, &c, "alice", PASSWORD, Some(&code_next)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(get(&s, &c, "/api/me").await.status(), 200);
    let again = s.client();
    let (st, body) = login_with(&s, &again, "alice", PASSWORD, Some(&code_next)).await;
    assert_eq!((st, error_code(&body)), (401, "invalid_code"), "{body}");
    let now_code = totp_at(&secret, unix_now());
    let (st, body) = login_with(&s, &again, "alice", PASSWORD, Some(&now_code)).await;
    assert_eq!(
        (st, error_code(&body)),
        (401, "invalid_code"),
        "an older step after a newer one: {body}"
    );

    // A recovery code works once, typed in any case; a form post with `code` works too.
    let shouted = recovery[0].to_uppercase();
    let (st, body) = login_with(&s, &again, "alice", PASSWORD, Some(&shouted)).await;
    assert_eq!(st, 200, "{body}");
    let third = s.client();
    let (st, body) = login_with(&s, &third, "alice", PASSWORD, Some(&recovery[0])).await;
    assert_eq!((st, error_code(&body)), (401, "invalid_code"), "{body}");
    let r = third
        .post(s.url("/login"))
        .header("origin", s.origin())
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("code", recovery[1].as_str()),
            ("next", "/c/x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/c/x");
    let status: Value = get(&s, &third, "/api/account/2fa")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["recovery_codes_left"], 8);
    // A form post without a code goes back to the login page, which asks for it.
    let r = s
        .client()
        .post(s.url("/login"))
        .header("origin", s.origin())
        .form(&[("username", "alice"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/login?error=code_required"));

    // New recovery codes (with the password as proof) replace the old ones.
    let (st, body) = post_json(
        &s,
        &third,
        "/api/account/2fa/recovery-codes",
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let renewed: Vec<String> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(renewed.len(), 10);
    let (st, body) = login_with(&s, &s.client(), "alice", PASSWORD, Some(&recovery[2])).await;
    assert_eq!(
        (st, error_code(&body)),
        (401, "invalid_code"),
        "an old code: {body}"
    );
    assert_eq!(
        login_with(&s, &s.client(), "alice", PASSWORD, Some(&renewed[0]))
            .await
            .0,
        200
    );

    // Turning it off needs a code or the password; then the password alone signs in.
    let (st, body) = post_json(
        &s,
        &third,
        "/api/account/2fa/disable",
        json!({"password": "wrong-one"}),
    )
    .await;
    assert_eq!((st, error_code(&body)), (403, "invalid_proof"), "{body}");
    let (st, _) = post_json(
        &s,
        &third,
        "/api/account/2fa/disable",
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(
        login_with(&s, &s.client(), "alice", PASSWORD, None).await.0,
        200
    );
}

#[tokio::test]
async fn wrong_codes_count_against_the_account_limit_even_from_a_known_network_and_are_audited() {
    let s = start_with_config(
        "[auth]\nlogin_attempts_per_minute_per_ip = 200\nlogin_attempts_per_minute_per_account = 3\n",
    );
    let admin = s.admin_client().await;
    add_user(&s, &admin, "alice", PASSWORD, "user").await;
    let (ok, out, err) = cli(&s.dir, &["user", "2fa", "enable", "alice"]);
    assert!(ok, "{out}\n{err}");
    let secret = secret_of(&out);
    let c = s.client();
    // 1: no code (asked for one); 2: the right code signs in, so this network is known from now on.
    assert_eq!(
        error_code(&login_with(&s, &c, "alice", PASSWORD, None).await.1),
        "code_required"
    );
    let code = totp_at(&secret, unix_now());
    assert_eq!(
        login_with(&s, &c, "alice", PASSWORD, Some(&code)).await.0,
        200
    );
    // 3: a wrong code still counts; 4: the limit holds, though this network is known.
    let (st, body) = login_with(&s, &c, "alice", PASSWORD, Some("123-456")).await;
    assert_eq!((st, error_code(&body)), (401, "invalid_code"), "{body}");
    let r = c
        .post(s.url("/login"))
        .header("origin", s.origin())
        .header("accept", "application/json")
        .json(&json!({"username": "alice", "password": PASSWORD, "code": "654321"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(retry_after_secs(&r) >= 1);
    // The audit says what happened to each attempt.
    let audit: Value = get(&s, &admin, "/api/admin/audit")
        .await
        .json()
        .await
        .unwrap();
    let details: Vec<(&str, bool)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["username"] == "alice")
        .map(|e| {
            (
                e["detail"].as_str().unwrap(),
                e["success"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            ("wrong_code", false),
            ("totp", true),
            ("code_required", false)
        ],
        "{audit}"
    );
}

/// Runs `hermes-edge --data-dir <dir>/data ARGS`; returns (success, stdout, stderr).
fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .current_dir(dir)
        .args(["--data-dir", &dir.join("data").display().to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The secret of the `otpauth://` URI `user 2fa enable` printed.
fn secret_of(out: &str) -> Vec<u8> {
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap_or_else(|| panic!("no otpauth URI in {out}"));
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    base32_decode(secret)
}

#[tokio::test]
async fn the_command_line_enables_and_resets_two_factor() {
    let s = start_with_config(ROOMY);
    let admin = s.admin_client().await;
    add_user(&s, &admin, "alice", PASSWORD, "user").await;
    let (ok, out, err) = cli(&s.dir, &["user", "2fa", "enable", "alice"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("otpauth://totp/Hermes:alice?secret="), "{out}");
    let recovery: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("  ")).collect();
    assert_eq!(recovery.len(), 10, "{out}");
    let secret = secret_of(&out);
    // Enabling again is refused and says how to start over.
    let (ok, _, err) = cli(&s.dir, &["user", "2fa", "enable", "alice"]);
    assert!(!ok && err.contains("user 2fa reset alice"), "{err}");
    let (ok, _, err) = cli(&s.dir, &["user", "2fa", "enable", "nobody"]);
    assert!(!ok && err.contains("no user named `nobody`"), "{err}");

    let c = s.client();
    assert_eq!(
        error_code(&login_with(&s, &c, "alice", PASSWORD, None).await.1),
        "code_required"
    );
    let code = totp_at(&secret, unix_now());
    assert_eq!(
        login_with(&s, &c, "alice", PASSWORD, Some(&code)).await.0,
        200
    );
    let recovered = s.client();
    assert_eq!(
        login_with(&s, &recovered, "alice", PASSWORD, Some(recovery[3]))
            .await
            .0,
        200
    );

    // Reset: signed out everywhere at once, and the password alone signs in again.
    let (ok, out, err) = cli(&s.dir, &["user", "2fa", "reset", "alice"]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("signed out everywhere"), "{out}");
    assert_eq!(get(&s, &c, "/api/me").await.status(), 401);
    assert_eq!(get(&s, &recovered, "/api/me").await.status(), 401);
    assert_eq!(login_with(&s, &c, "alice", PASSWORD, None).await.0, 200);
    let status: Value = get(&s, &c, "/api/account/2fa").await.json().await.unwrap();
    assert_eq!(
        (
            status["totp"].clone(),
            status["recovery_codes_left"].clone()
        ),
        (json!(false), json!(0))
    );
}

#[tokio::test]
async fn under_policy_all_a_user_without_a_second_factor_reaches_only_enrolment() {
    let s = start_with_config(
        "[auth]\nlogin_attempts_per_minute_per_ip = 200\nrequire_second_factor = \"all\"\n",
    );
    let c = s.client();
    let (st, body) = login_with(&s, &c, "admin", ADMIN_PASSWORD, None).await;
    assert_eq!(st, 200);
    assert_eq!(
        (body["next"].as_str(), body["enrol"].as_bool()),
        (Some("/account?enrol=1"), Some(true))
    );

    // Open: who am I, the account page, the enrolment API.
    assert_eq!(get(&s, &c, "/api/me").await.status(), 200);
    assert_eq!(get(&s, &c, "/account").await.status(), 200);
    let status: Value = get(&s, &c, "/api/account/2fa").await.json().await.unwrap();
    assert_eq!(
        (status["required"].clone(), status["totp"].clone()),
        (json!(true), json!(false))
    );
    // Closed: every other API, the dashboard, media, even for an admin.
    for path in [
        "/api/conversations",
        "/api/admin/users",
        "/api/sessions",
        "/dashboard/",
        "/media/x.png",
    ] {
        let r = get(&s, &c, path).await;
        assert_eq!(r.status(), 403, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(error_code(&body), "second_factor_required", "{path}");
    }
    for (path, body) in [
        ("/api/chat", json!({"message": "hi"})),
        ("/api/tokens", json!({"name": "t"})),
    ] {
        let (st, b) = post_json(&s, &c, path, body).await;
        assert_eq!(
            (st, error_code(&b)),
            (403, "second_factor_required"),
            "{path}"
        );
    }
    // Pages go to enrolment.
    for path in ["/", "/c/abc", "/view"] {
        let r = get(&s, &c, path).await;
        assert_eq!(r.status(), 303, "{path}");
        assert_eq!(r.headers()["location"], "/account?enrol=1", "{path}");
    }
    // Once enrolled, the same session reaches everything.
    enrol(&s, &c).await;
    assert_eq!(get(&s, &c, "/api/conversations").await.status(), 200);
    assert_eq!(get(&s, &c, "/").await.status(), 200);
    // Sign-out stays open for a held session too.
    let held = s.client();
    add_user(&s, &c, "bob", PASSWORD, "user").await;
    assert_eq!(login_with(&s, &held, "bob", PASSWORD, None).await.0, 200);
    let r = held
        .post(s.url("/logout"))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(get(&s, &held, "/api/me").await.status(), 401);
}

#[tokio::test]
async fn policy_admins_holds_admins_only() {
    let s = start_with_config(
        "[auth]\nlogin_attempts_per_minute_per_ip = 200\nrequire_second_factor = \"admins\"\n",
    );
    let admin = s.client();
    assert_eq!(
        login_with(&s, &admin, "admin", ADMIN_PASSWORD, None)
            .await
            .0,
        200
    );
    assert_eq!(get(&s, &admin, "/api/conversations").await.status(), 403);
    add_user_cli(&s, "carol", PASSWORD);
    let carol = s.client();
    let (st, body) = login_with(&s, &carol, "carol", PASSWORD, None).await;
    assert_eq!((st, body.get("enrol")), (200, None));
    assert_eq!(get(&s, &carol, "/api/conversations").await.status(), 200);
}

/// A client whose connections come from `source` (an address of the loopback network).
fn client_from(s: &Server, source: &str) -> reqwest::Client {
    s.client_builder()
        .local_address(source.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_trusted_header_is_believed_only_from_a_trusted_proxy() {
    let s = start_with_config(
        "[limits]\ntrusted_proxies = [\"127.0.0.2\"]\n\
         [auth]\nlogin_attempts_per_minute_per_ip = 200\ntrusted_header = \"Remote-User\"\n\
         require_second_factor = \"all\"\n",
    );
    let proxy = client_from(&s, "127.0.0.2");
    let r = proxy
        .get(s.url("/api/me"))
        .header("remote-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "signed in for this request only"
    );
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["username"], "admin");
    // The proxy did the sign-in: the second-factor policy does not hold its users to enrolment.
    let r = proxy
        .get(s.url("/api/conversations"))
        .header("remote-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Without the header, the proxy's request is an ordinary signed-out one.
    assert_eq!(get(&s, &proxy, "/api/me").await.status(), 401);
    // A name with no account is refused (accounts are not made unless configured).
    let r = proxy
        .get(s.url("/api/me"))
        .header("remote-user", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(&r.json().await.unwrap()), "unknown_account");

    // From anyone else the header is refused, on any route, and logged.
    let direct = client_from(&s, "127.0.0.1");
    for path in ["/api/me", "/login", "/healthz"] {
        let r = direct
            .get(s.url(path))
            .header("remote-user", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert_eq!(
            error_code(&r.json().await.unwrap()),
            "untrusted_sign_in_header"
        );
    }
    assert!(s.wait_for_log("refused a request with the trusted sign-in header", 5));
    // A forwarded address does not make a direct client a proxy.
    let r = direct
        .get(s.url("/api/me"))
        .header("remote-user", "admin")
        .header("x-forwarded-for", "127.0.0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_trusted_header_is_not_passed_on_to_the_dashboard() {
    let fake = fake_upstream::Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        "[limits]\ntrusted_proxies = [\"127.0.0.2\"]\n[auth]\ntrusted_header = \"Remote-User\"\n",
        Start::default().arg("--dashboard-upstream").arg(fake.url()),
    );
    fake.push(fake_upstream::Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        steps: vec![fake_upstream::Step::Data("{}".into())],
        silent: false,
    });
    let r = client_from(&s, "127.0.0.2")
        .get(s.url("/dashboard/api/status"))
        .header("remote-user", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = fake.requests().pop().expect("the dashboard was asked");
    assert_eq!(got.path, "/api/status");
    assert!(
        got.headers.get("remote-user").is_none(),
        "{:?}",
        got.headers
    );
}

#[tokio::test]
async fn the_trusted_header_can_create_plain_accounts_when_configured() {
    let s = start_with_config(
        "[limits]\ntrusted_proxies = [\"127.0.0.2\"]\n\
         [auth]\ntrusted_header = \"X-Remote-User\"\ntrusted_header_create = true\n",
    );
    let proxy = client_from(&s, "127.0.0.2");
    for _ in 0..2 {
        let r = proxy
            .get(s.url("/api/me"))
            .header("x-remote-user", "dave@example.org")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let me: Value = r.json().await.unwrap();
        assert_eq!(
            (me["username"].as_str(), me["role"].as_str()),
            (Some("dave@example.org"), Some("user"))
        );
    }
    let r = proxy
        .get(s.url("/api/me"))
        .header("x-remote-user", "not a name")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let (ok, out, _) = cli(&s.dir, &["user", "list"]);
    assert!(ok && out.contains("dave@example.org\tuser"), "{out}");
}

#[test]
fn a_trusted_header_without_trusted_proxies_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("edge.toml"),
        "[auth]\ntrusted_header = \"Remote-User\"\n",
    )
    .unwrap();
    let err = Server::try_start(
        Start::default()
            .in_dir(dir.path())
            .arg("--config")
            .arg(dir.path().join("edge.toml").display().to_string()),
    )
    .err()
    .expect("the start is refused");
    assert!(err.contains("limits.trusted_proxies"), "{err}");
}
