//! Passkeys over HTTP against the real binary: what the browser tests (tests/browser/
//! passkeys.test.mjs, with Chromium's virtual authenticator) do not reach: the options the server
//! sends, the same-origin checks, sign-in needed to register, and failed passkey sign-ins
//! counted against the same per-address limit as passwords.
mod common;
use common::*;

use serde_json::{json, Value};

async fn start_signin(s: &Server, c: &reqwest::Client) -> reqwest::Response {
    c.post(s.url("/login/passkey"))
        .header("origin", s.origin())
        .json(&json!({}))
        .send()
        .await
        .unwrap()
}

/// A made-up assertion: well-formed JSON, signed by nobody.
fn forged_assertion() -> Value {
    json!({"credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"authenticatorData": "AAAA", "clientDataJSON": "AAAA", "signature": "AAAA",
                     "userHandle": "AAAAAAAAAAAAAAAAAAAAAA"},
        "extensions": {}
    }})
}

#[tokio::test]
async fn registration_options_ask_for_a_discoverable_user_verified_passkey_for_this_name() {
    let s = Server::start();
    let anon = s.client();
    let r = anon
        .post(s.url("/api/passkeys/register"))
        .header("origin", s.origin())
        .json(&json!({"name": "Laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "registering needs a session");

    let c = s.admin_client().await;
    let r = c
        .post(s.url("/api/passkeys/register"))
        .header("origin", "https://evil.example")
        .json(&json!({"name": "Laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "another origin is refused");

    let r = c
        .post(s.url("/api/passkeys/register"))
        .header("origin", s.origin())
        .json(&json!({"name": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "bad_name"
    );

    let r = c
        .post(s.url("/api/passkeys/register"))
        .header("origin", s.origin())
        .json(&json!({"name": "Laptop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["ceremony"].as_str().unwrap().len(), 43);
    let pk = &body["options"]["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost");
    assert_eq!(pk["user"]["name"], "admin");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");

    // A finish with a made-up answer is refused, and the ceremony is gone after one try.
    let finish = json!({"ceremony": body["ceremony"], "credential": {
        "id": "AAAA", "rawId": "AAAA", "type": "public-key",
        "response": {"attestationObject": "AAAA", "clientDataJSON": "AAAA"}, "extensions": {}
    }});
    for code in ["passkey_refused", "ceremony_expired"] {
        let r = c
            .post(s.url("/api/passkeys/register/finish"))
            .header("origin", s.origin())
            .json(&finish)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    let list: Value = c
        .get(s.url("/api/passkeys"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["available"], true);
    assert_eq!(list["rp_id"], "localhost");
    assert_eq!(list["passkeys"], json!([]));
}

#[tokio::test]
async fn failed_passkey_sign_ins_share_the_per_address_limit_with_passwords() {
    let s = Server::start();
    let c = s.client();
    let r = c
        .post(s.url("/login/passkey"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let r = start_signin(&s, &c).await;
    assert_eq!(r.status(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("__Host-hermes_passkey=")
            && cookie.ends_with("; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=300"),
        "{cookie}"
    );
    let options: Value = r.json().await.unwrap();
    assert_eq!(options["options"]["publicKey"]["rpId"], "localhost");
    assert_eq!(
        options["options"]["publicKey"]["allowCredentials"],
        json!([]),
        "username-less: any passkey of this site"
    );

    // The default allows 5 attempts a minute from one address.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        start_signin(&s, &c).await;
        let r = c
            .post(s.url("/login/passkey/finish"))
            .header("origin", s.origin())
            .json(&forged_assertion())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429]);
    // Passwords from the same address wait too.
    let r = s.login(&s.client(), "admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), 429);
    assert!(s.wait_for_log("passkey sign-in refused", 5));
}
