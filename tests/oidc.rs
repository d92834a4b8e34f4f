//! Single sign-on against a real OpenID provider: panva's certified `oidc-provider` (npm, installed
//! by tests/install-peers.sh into tests/oidc/), started on loopback by each test from
//! tests/oidc/provider.mjs, driven with an HTTP client through the whole authorization code flow
//! (the provider requires PKCE of every client).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The provider process; killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Provider {
    fn start(clients: Value, accounts: Value, wrong_audience_client: &str) -> Provider {
        Self::start_with(
            clients,
            accounts,
            &[("OIDC_WRONG_AUDIENCE_CLIENT", wrong_audience_client)],
        )
    }

    /// The provider with more of provider.mjs's settings (`OIDC_PORT`, `OIDC_KEY_ID`, ...).
    fn start_with(clients: Value, accounts: Value, env: &[(&str, &str)]) -> Provider {
        let root = env!("CARGO_MANIFEST_DIR");
        ensure_peers();
        assert!(
            std::path::Path::new(root)
                .join("tests/oidc/node_modules/oidc-provider")
                .exists(),
            "oidc-provider is not installed: run tests/install-peers.sh"
        );
        let mut child = Command::new("node")
            .arg("tests/oidc/provider.mjs")
            .current_dir(root)
            .env("OIDC_CLIENTS", clients.to_string())
            .env("OIDC_ACCOUNTS", accounts.to_string())
            // A browser follows the edge's redirect as it is, without a `login_hint`.
            .env("OIDC_DEFAULT_ACCOUNT", "alice")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node (run tests/install-peers.sh)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end even after the ready line: a closed pipe would end the provider
            // at its next line of output.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(issuer) = line.strip_prefix("ready ") {
                        return Provider {
                            child,
                            issuer: issuer.trim().to_string(),
                        };
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the OpenID provider did not start within 60 s");
                }
            }
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SECRET: &str = "a-client-secret-for-tests";

fn accounts() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true},
        "carol": {"email": "carol@example.com", "email_verified": true, "groups": ["staff", "hermes-admins"]},
        "dan": {"email": "dan@example.com", "email_verified": true, "groups": ["staff"]},
        "bob": {"email": "bob@other.org", "email_verified": true},
        "eve": {"email": "eve@example.com", "email_verified": false},
        // Another identity claiming alice's (verified) address.
        "mallory": {"email": "alice@example.com", "email_verified": true},
    })
}

/// A provider with the edge's clients (redirect URIs on `edge_port`), and the edge configured
/// with them: `corp` (pre-created accounts only, example.com), `open` (creates accounts, maps
/// the `groups` claim to admin), `evil` (whose ID tokens the provider issues for another client).
fn start_pair(dir: &std::path::Path) -> (Provider, Server) {
    start_pair_with(dir, "")
}

/// `start_pair` with more lines in the `[auth]` section.
fn start_pair_with(dir: &std::path::Path, auth: &str) -> (Provider, Server) {
    let edge_port = free_port();
    let cb = |name: &str| format!("https://localhost:{edge_port}/login/oidc/{name}/callback");
    let clients = json!([
        {"client_id": "edge-corp", "client_secret": SECRET, "redirect_uris": [cb("corp")]},
        {"client_id": "edge-open", "client_secret": SECRET, "redirect_uris": [cb("open")]},
        {"client_id": "edge-evil", "client_secret": SECRET, "redirect_uris": [cb("evil")]},
    ]);
    let provider = Provider::start(clients, accounts(), "edge-evil");
    let secret_file = dir.join("oidc-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let issuer = &provider.issuer;
    let toml = format!(
        r#"
[auth]
# Each test signs in often from one address.
login_attempts_per_minute_per_ip = 100
{auth}

[[auth.oidc]]
name = "corp"
label = "Sign in with Corp"
issuer = "{issuer}"
client_id = "edge-corp"
client_secret_env = "TEST_OIDC_SECRET"
allowed_email_domains = ["example.com"]

[[auth.oidc]]
name = "open"
issuer = "{issuer}"
client_id = "edge-open"
client_secret_file = "{secret}"
scopes = ["openid", "email", "groups"]
allowed_email_domains = ["example.com"]
create_accounts = true
admin_claim = "groups"
admin_values = ["hermes-admins"]

[[auth.oidc]]
name = "evil"
issuer = "{issuer}"
client_id = "edge-evil"
client_secret_env = "TEST_OIDC_SECRET"
"#,
        secret = secret_file.display()
    );
    let server = start_in_with_config(
        dir,
        &toml,
        Start::default()
            .listen(format!("127.0.0.1:{edge_port}"))
            .env("TEST_OIDC_SECRET", SECRET),
    );
    (provider, server)
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location in a {} answer", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// Starts a sign-in with `provider` in the browser `c`, signs in at the provider as `account`,
/// and returns the callback URL the provider sends the browser back to (not yet visited).
async fn to_callback(s: &Server, c: &reqwest::Client, provider: &str, account: &str) -> String {
    let r = c
        .get(s.url(&format!("/login/oidc/{provider}?next=/c/abc&remember=1")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.starts_with("__Host-hermes_oidc=")
            && set.contains("HttpOnly")
            && set.contains("Secure")
            && set.contains("SameSite=Lax"),
        "{set}"
    );
    let authorize = location(&r);
    for needle in [
        "code_challenge_method=S256",
        "code_challenge=",
        "nonce=",
        "state=",
        "response_type=code",
    ] {
        assert!(
            authorize.contains(needle),
            "{needle} missing in {authorize}"
        );
    }
    let mut url = reqwest::Url::parse(&format!("{authorize}&login_hint={account}")).unwrap();
    for _ in 0..10 {
        let r = c.get(url.clone()).send().await.unwrap();
        assert!(
            r.status().is_redirection(),
            "{} at {url}: {}",
            r.status(),
            r.text().await.unwrap()
        );
        let next = url.join(&location(&r)).unwrap();
        if next.as_str().starts_with(&s.origin()) {
            return next.to_string();
        }
        url = next;
    }
    panic!("the provider never sent the browser back");
}

/// Visits the callback; returns the answer and its body.
async fn callback(c: &reqwest::Client, url: &str) -> (reqwest::StatusCode, String, Vec<String>) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status();
    let cookies = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (status, r.text().await.unwrap(), cookies)
}

async fn me(s: &Server, c: &reqwest::Client) -> Option<Value> {
    let r = c.get(s.url("/api/me")).send().await.unwrap();
    if r.status() == 401 {
        return None;
    }
    assert_eq!(r.status(), 200);
    Some(r.json().await.unwrap())
}

async fn audit(s: &Server) -> Vec<Value> {
    let admin = s.admin_client().await;
    let r = admin.get(s.url("/api/admin/audit")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["entries"].as_array().unwrap().clone()
}

/// `url` with the query parameter `key` set to `value` (the others kept, in order).
fn with_param(url: &str, key: &str, value: &str) -> reqwest::Url {
    let mut u = reqwest::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = u
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == key {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    u.query_pairs_mut().clear().extend_pairs(pairs);
    u
}

fn has_session_cookie(cookies: &[String]) -> bool {
    cookies
        .iter()
        .any(|c| c.starts_with("__Host-hermes_session=") && !c.contains("Max-Age=0"))
}

#[tokio::test]
async fn sign_in_makes_a_session_and_accounts_only_where_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (_provider, s) = start_pair(dir.path());
    let admin = s.admin_client().await;

    // The login page's buttons.
    let list: Value = s
        .client()
        .get(s.url("/login/oidc"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["providers"][0]["label"], "Sign in with Corp");
    assert_eq!(list["providers"][0]["url"], "/login/oidc/corp");
    assert_eq!(list["providers"].as_array().unwrap().len(), 3);

    // A pre-created account, named by its address: the first sign-in links it.
    add_user(&s, &admin, "alice@example.com", "a long password", "user").await;
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "alice").await;
    let (status, body, cookies) = callback(&c, &url).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("http-equiv=\"refresh\" content=\"0;url=/c/abc\""),
        "{body}"
    );
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-hermes_session="))
        .expect("session cookie");
    // The same cookie as a password sign-in, with the "keep me signed in" lifetime asked for.
    assert!(
        session.contains("Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000"),
        "{session}"
    );
    assert!(cookies
        .iter()
        .any(|c| c.starts_with("__Host-hermes_oidc=;")));
    let who = me(&s, &c).await.expect("signed in");
    assert_eq!(who["username"], "alice@example.com");
    assert_eq!(who["role"], "user");
    let r = c.get(s.url("/api/conversations")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // No account for carol and `corp` does not create one.
    let c2 = s.client();
    let url = to_callback(&s, &c2, "corp", "carol").await;
    let (status, body, cookies) = callback(&c2, &url).await;
    assert_eq!(status, 403);
    assert!(body.contains("oidc_no_account"), "{body}");
    assert!(
        body.contains("no account here for your email address"),
        "{body}"
    );
    assert!(!has_session_cookie(&cookies));
    assert!(me(&s, &c2).await.is_none());

    // `open` creates it, and its groups claim makes carol an admin; dan stays a user.
    let url = to_callback(&s, &c2, "open", "carol").await;
    let (status, body, _) = callback(&c2, &url).await;
    assert_eq!(status, 200, "{body}");
    let who = me(&s, &c2).await.expect("signed in");
    assert_eq!(
        (who["username"].as_str(), who["role"].as_str()),
        (Some("carol@example.com"), Some("admin"))
    );
    let c3 = s.client();
    let url = to_callback(&s, &c3, "open", "dan").await;
    assert_eq!(callback(&c3, &url).await.0, 200);
    assert_eq!(me(&s, &c3).await.unwrap()["role"], "user");
    // An account made by single sign-on has no password.
    let r = s.login(&s.client(), "carol@example.com", "!").await;
    assert_eq!(r.status(), 401);

    // Another identity with alice's verified address cannot take her linked account.
    let c4 = s.client();
    let url = to_callback(&s, &c4, "corp", "mallory").await;
    let (status, body, cookies) = callback(&c4, &url).await;
    assert_eq!(status, 403);
    assert!(body.contains("oidc_linked_to_another"), "{body}");
    assert!(!has_session_cookie(&cookies));

    // Alice again: the link finds her account.
    let c5 = s.client();
    let url = to_callback(&s, &c5, "corp", "alice").await;
    assert_eq!(callback(&c5, &url).await.0, 200);
    assert_eq!(me(&s, &c5).await.unwrap()["username"], "alice@example.com");

    let entries = audit(&s).await;
    let count = |name: &str, ok: bool| {
        entries
            .iter()
            .filter(|e| e["username"] == name && e["success"] == ok)
            .count()
    };
    assert_eq!(count("alice@example.com", true), 2, "{entries:?}");
    // Refused by `corp`, and the password attempt above.
    assert_eq!(count("carol@example.com", false), 2, "{entries:?}");
    assert_eq!(count("carol@example.com", true), 1, "{entries:?}");
    // mallory's identity is audited by the address it claimed.
    assert_eq!(count("alice@example.com", false), 1, "{entries:?}");
}

#[tokio::test]
async fn wrong_state_audience_or_email_is_refused_audited_and_makes_no_session() {
    let dir = tempfile::tempdir().unwrap();
    let (_provider, s) = start_pair(dir.path());
    let admin = s.admin_client().await;
    add_user(&s, &admin, "alice@example.com", "a long password", "user").await;
    add_user(&s, &admin, "eve@example.com", "a long password", "user").await;

    let refused = |status: reqwest::StatusCode, body: &str, cookies: &[String], code: &str| {
        assert!(status.is_client_error(), "{status}: {body}");
        assert!(body.contains(code), "{code} not in {body}");
        assert!(body.contains("Back to sign-in"), "{body}");
        assert!(!has_session_cookie(cookies), "{cookies:?}");
    };

    // A wrong `state`.
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "alice").await;
    assert!(url.contains("state="));
    let tampered = with_param(&url, "state", "not-the-state");
    let (status, body, cookies) = callback(&c, tampered.as_str()).await;
    refused(status, &body, &cookies, "oidc_state_mismatch");
    assert_eq!(status, 400);
    assert!(me(&s, &c).await.is_none());
    // The real callback after that finds its flow gone (each answer ends it).
    let (status, body, cookies) = callback(&c, &url).await;
    refused(status, &body, &cookies, "oidc_no_flow");

    // An answer naming another issuer (RFC 9207's `iss`), with the right state.
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "alice").await;
    assert!(url.contains("iss="), "oidc-provider names itself: {url}");
    let tampered = with_param(&url, "iss", "https://evil.example");
    let (status, body, cookies) = callback(&c, tampered.as_str()).await;
    refused(status, &body, &cookies, "oidc_wrong_issuer");
    assert!(me(&s, &c).await.is_none());

    // A callback in another browser (a link sent to someone): no flow cookie there.
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "alice").await;
    let other = s.client();
    let (status, body, cookies) = callback(&other, &url).await;
    refused(status, &body, &cookies, "oidc_no_flow");
    assert!(me(&s, &other).await.is_none());

    // An ID token the provider signed for another client.
    let c = s.client();
    let url = to_callback(&s, &c, "evil", "alice").await;
    let (status, body, cookies) = callback(&c, &url).await;
    refused(status, &body, &cookies, "oidc_invalid_token");
    assert_eq!(status, 403);
    assert!(me(&s, &c).await.is_none());
    assert!(
        s.wait_for_log("Invalid audiences", 5),
        "the log says why: {}",
        s.stdout()
    );

    // An address outside the allowed domains, and an unverified one inside them.
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "bob").await;
    let (status, body, cookies) = callback(&c, &url).await;
    refused(status, &body, &cookies, "oidc_email_not_allowed");
    assert_eq!(status, 403);
    assert!(body.contains("not among those allowed"), "{body}");
    assert!(me(&s, &c).await.is_none());
    // A new browser: the provider would otherwise still know bob.
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "eve").await;
    let (status, body, cookies) = callback(&c, &url).await;
    refused(status, &body, &cookies, "oidc_email_unverified");
    assert!(me(&s, &c).await.is_none());

    // A client that asks for JSON gets JSON.
    let r = s
        .client()
        .get(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "oidc_no_flow", "{v}");

    // Every refusal is in the audit, as a failure; none of them signed anyone in.
    let entries = audit(&s).await;
    let failed = |name: &str| {
        entries
            .iter()
            .filter(|e| e["username"] == name && e["success"] == false)
            .count()
    };
    // state, no flow, issuer, other browser, JSON
    assert_eq!(failed("oidc:corp"), 5, "{entries:?}");
    assert_eq!(failed("oidc:evil"), 1, "{entries:?}");
    assert_eq!(failed("bob@other.org"), 1, "{entries:?}");
    assert_eq!(failed("eve@example.com"), 1, "{entries:?}");
    assert!(!entries
        .iter()
        .any(|e| e["success"] == true && e["username"] != "admin"));
}

#[tokio::test]
async fn callbacks_count_against_the_sign_in_limit_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[auth]\nlogin_attempts_per_minute_per_ip = 2\n\n[[auth.oidc]]\nname = \"corp\"\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"edge\"\n";
    let s = start_in_with_config(dir.path(), toml, Start::default());
    let c = s.client();
    let url = s.url("/login/oidc/corp/callback?code=x&state=y");
    for _ in 0..2 {
        assert_eq!(callback(&c, &url).await.0, 400);
    }
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(retry_after_secs(&r) >= 1);
}

#[tokio::test]
async fn the_server_starts_while_the_provider_is_down_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = format!(
        "[[auth.oidc]]\nname = \"corp\"\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"edge\"\n"
    );
    let s = start_in_with_config(dir.path(), &toml, Start::default());
    assert!(
        s.wait_for_log("cannot reach the single sign-on provider", 15),
        "{}",
        s.stdout()
    );
    let r = s
        .client()
        .get(s.url("/login/oidc/corp"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "oidc_provider_unreachable");
    // Password sign-in is unaffected.
    assert_eq!(
        s.login(&s.client(), "admin", ADMIN_PASSWORD).await.status(),
        200
    );
    // An unknown provider is a clear 404.
    let r = s
        .client()
        .get(s.url("/login/oidc/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_redirect_uri_is_built_only_from_configured_names() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let toml = format!(
        "[[auth.oidc]]\nname = \"corp\"\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"edge\"\n"
    );
    let s = start_in_with_config(dir.path(), &toml, Start::default());
    let answer = raw_exchange(
        &s,
        b"GET /login/oidc/corp HTTP/1.1\r\nHost: evil.example\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        5,
    )
    .await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("oidc_unknown_host"), "{text}");
}

#[tokio::test]
async fn a_browser_signs_in_with_the_login_page_button_and_lands_signed_in() {
    let dir = tempfile::tempdir().unwrap();
    let (_provider, s) = start_pair(dir.path());
    let admin = s.admin_client().await;
    add_user(&s, &admin, "alice@example.com", "a long password", "user").await;
    let root = env!("CARGO_MANIFEST_DIR");
    let shot = std::path::Path::new(root).join("target/screenshots");
    std::fs::create_dir_all(&shot).unwrap();
    let out = tokio::task::spawn_blocking({
        let (origin, shot) = (s.origin(), shot.join("login-sso-mobile.png"));
        move || {
            Command::new("node")
                .arg("tests/oidc/browser.mjs")
                .arg(origin)
                .arg("Sign in with Corp")
                .arg(shot)
                .current_dir(root)
                .output()
                .expect("node (run tests/install-peers.sh)")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(
        v["buttons"],
        json!([
            "Sign in with Corp",
            "Sign in with open",
            "Sign in with evil"
        ])
    );
    assert_eq!(v["final"], format!("{}/view", s.origin()), "{v}");
    assert_eq!(v["me"], 200, "{v}");
}

#[tokio::test]
async fn doctor_checks_each_provider_and_names_the_redirect_uris() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Provider::start(json!([]), accounts(), "");
    let down = free_port();
    let config = dir.path().join("doctor.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\nhostnames = [\"chat.example.com\"]\n\n[[auth.oidc]]\nname = \"corp\"\nissuer = \"{}\"\nclient_id = \"edge-corp\"\n\n[[auth.oidc]]\nname = \"gone\"\nissuer = \"http://127.0.0.1:{down}\"\nclient_id = \"x\"\n",
            provider.issuer
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin())
            .current_dir(dir.path())
            .args(["--config", &config.display().to_string()])
            .args([
                "doctor",
                "--listen",
                "127.0.0.1:8443",
                "--upstream",
                "http://127.0.0.1:9",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "[ok  ] single sign-on `corp`: {} answers (1 signing keys)",
            provider.issuer
        )),
        "{text}"
    );
    assert!(
        text.contains("[warn] single sign-on `gone`: http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("redirect URIs to register: https://localhost:8443/login/oidc/corp/callback https://chat.example.com:8443/login/oidc/corp/callback"),
        "{text}"
    );
}

#[tokio::test]
async fn a_new_signing_key_at_the_provider_is_read_when_a_token_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let (port, edge_port) = (free_port().to_string(), free_port());
    let clients = json!([{
        "client_id": "edge-corp",
        "client_secret": SECRET,
        "redirect_uris": [format!("https://localhost:{edge_port}/login/oidc/corp/callback")],
    }]);
    let env = |kid| [("OIDC_PORT", port.as_str()), ("OIDC_KEY_ID", kid)];
    let first = Provider::start_with(clients.clone(), accounts(), &env("key-1"));
    let toml = format!(
        "[[auth.oidc]]\nname = \"corp\"\nissuer = \"{}\"\nclient_id = \"edge-corp\"\nclient_secret_env = \"TEST_OIDC_SECRET\"\n",
        first.issuer
    );
    let s = start_in_with_config(
        dir.path(),
        &toml,
        Start::default()
            .listen(format!("127.0.0.1:{edge_port}"))
            .env("TEST_OIDC_SECRET", SECRET),
    );
    let started = Instant::now();
    let admin = s.admin_client().await;
    add_user(&s, &admin, "alice@example.com", "a long password", "user").await;
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "alice").await;
    assert_eq!(callback(&c, &url).await.0, 200);

    // The provider comes back with a new key (and forgets the old one).
    drop(first);
    let _second = Provider::start_with(clients, accounts(), &env("key-2"));
    // Keys read in the last ten seconds are not read again.
    let wait = Duration::from_secs(12).saturating_sub(started.elapsed());
    tokio::time::sleep(wait).await;
    let c = s.client();
    let url = to_callback(&s, &c, "corp", "alice").await;
    let (status, body, _) = callback(&c, &url).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        s.wait_for_log("signing key not seen before", 5),
        "{}",
        s.stdout()
    );
    assert_eq!(me(&s, &c).await.unwrap()["username"], "alice@example.com");
}

#[tokio::test]
async fn a_provider_sign_in_meets_the_second_factor_policy_and_a_bare_password_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (_provider, s) = start_pair_with(dir.path(), r#"require_second_factor = "all""#);
    // The provider creates carol; her session came through it, which the policy takes as her
    // second factor.
    let c = s.client();
    let url = to_callback(&s, &c, "open", "carol").await;
    assert_eq!(callback(&c, &url).await.0, 200);
    let r = c.get(s.url("/api/conversations")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The administrator signed in with a password alone is held to enrolment.
    let admin = s.admin_client().await;
    let r = admin.get(s.url("/api/conversations")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("second_factor_required"));
}
