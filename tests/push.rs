//! Web Push against the real binary, with the test playing the push service: a browser's key
//! pair and auth secret made here, a subscription through the API, a run that finishes with no
//! tab attached, and the push received on loopback: its VAPID token verified with the server's
//! public key, its body decrypted per RFC 8291 with the subscription's private key (written here
//! from the RFC, not with the server's code), its payload checked. Also: text only when the device
//! allowed it, no push while a tab reads the run, a 410 deletes the subscription, the count per
//! account is bounded, and endpoints inside the network are refused without the escape hatch.
//! With the real Hermes: an approval waiting is pushed with `Urgency: high`.

mod common;
mod fake_upstream;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::{aead, agreement, hkdf, signature};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use common::*;
use fake_upstream::{chunk, chunk_role, finish, Fake, Reply, Step};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};

const KEY: &str = "test-api-key-0123456789abcdef-do-not-leak";

/// One request the push service received.
#[derive(Debug)]
struct Pushed {
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// The push service: records each POST and answers with the next scripted status (201 when
/// none is scripted).
#[derive(Clone, Default)]
struct PushService {
    got: Arc<Mutex<Vec<Pushed>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl PushService {
    async fn start(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                        let me = me.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            me.got.lock().unwrap().push(Pushed {
                                path: parts.uri.path().to_string(),
                                headers: parts.headers,
                                body: body.to_vec(),
                            });
                            let status = me.answers.lock().unwrap().pop().unwrap_or(201);
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        addr
    }

    /// Waits up to `secs` for the `n`th push (counting from 1).
    async fn wait_for(&self, n: usize, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.got.lock().unwrap().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }
}

/// A browser's side of a subscription: its P-256 key pair and 16-byte auth secret.
struct Browser {
    key: agreement::PrivateKey,
    public: Vec<u8>,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Browser {
        let key = agreement::PrivateKey::generate(&agreement::ECDH_P256).unwrap();
        let public = key.compute_public_key().unwrap().as_ref().to_vec();
        let mut auth = [0u8; 16];
        aws_lc_rs::rand::fill(&mut auth).unwrap();
        Browser { key, public, auth }
    }

    /// `PushSubscription.toJSON()` for `endpoint`.
    fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "keys": {"p256dh": B64.encode(&self.public), "auth": B64.encode(self.auth)}})
    }

    /// RFC 8291 section 3 and RFC 8188, from the receiving end: the header (salt, record size,
    /// the sender's key), the key derivation, one record ending in the delimiter 2.
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        let salt = &body[..16];
        let rs = u32::from_be_bytes(body[16..20].try_into().unwrap());
        assert!(rs >= 18, "record size {rs}");
        let idlen = body[20] as usize;
        assert_eq!(idlen, 65, "the key id is the sender's public key");
        let as_public = &body[21..21 + idlen];
        let record = &body[21 + idlen..];
        assert!(record.len() <= rs as usize, "one record");
        let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, as_public);
        let ecdh = agreement::agree(&self.key, peer, (), |s| Ok::<_, ()>(s.to_vec())).unwrap();
        let key_info = [b"WebPush: info\0".as_slice(), &self.public, as_public].concat();
        let ikm = expand(&self.auth, &ecdh, &key_info, 32);
        let cek = expand(salt, &ikm, b"Content-Encoding: aes128gcm\0", 16);
        let nonce = expand(salt, &ikm, b"Content-Encoding: nonce\0", 12);
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &cek).unwrap());
        let mut data = record.to_vec();
        let plain = key
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                aead::Aad::empty(),
                &mut data,
            )
            .expect("the push decrypts with the subscription's keys")
            .to_vec();
        assert_eq!(plain.last(), Some(&2), "the last record's delimiter");
        plain[..plain.len() - 1].to_vec()
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA-256 extract and expand (RFC 5869).
fn expand(salt: &[u8], ikm: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(len)).unwrap();
    let mut out = vec![0u8; len];
    okm.fill(&mut out).unwrap();
    out
}

/// Checks the VAPID `Authorization` of a push (RFC 8292): the token's ES256 signature with the
/// server's public key, `aud` the endpoint's origin, `exp` within 24 hours.
fn check_vapid(p: &Pushed, server_key: &str, origin: &str) {
    let auth = p.headers["authorization"].to_str().unwrap();
    let rest = auth.strip_prefix("vapid ").expect("vapid scheme");
    let mut t = None;
    let mut k = None;
    for part in rest.split(',') {
        let (name, value) = part.trim().split_once('=').unwrap();
        match name {
            "t" => t = Some(value),
            "k" => k = Some(value),
            other => panic!("unexpected {other}"),
        }
    }
    let (t, k) = (t.unwrap(), k.unwrap());
    assert_eq!(k, server_key, "k= is the key of GET /api/push/key");
    let (input, sig) = t.rsplit_once('.').unwrap();
    let public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_FIXED,
        B64.decode(k).unwrap(),
    );
    public
        .verify(input.as_bytes(), &B64.decode(sig).unwrap())
        .expect("the VAPID token is signed with the server's key");
    let (head, claims) = input.split_once('.').unwrap();
    let head: Value = serde_json::from_slice(&B64.decode(head).unwrap()).unwrap();
    assert_eq!(head["alg"], "ES256");
    let claims: Value = serde_json::from_slice(&B64.decode(claims).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp}, now {now}");
    assert_eq!(claims["sub"], "mailto:ops@example.com");
}

fn start(fake: &Fake, config: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = start_in_with_config(
        dir.path(),
        config,
        Start::default()
            .upstream(fake.url())
            .env("HERMES_EDGE_API_KEY", KEY),
    );
    (s, dir)
}

async fn subscribe(s: &Server, c: &reqwest::Client, sub: &Value) -> reqwest::Response {
    c.post(s.url("/api/push/subscriptions"))
        .header("origin", s.origin())
        .json(sub)
        .send()
        .await
        .unwrap()
}

async fn server_key(s: &Server, c: &reqwest::Client) -> String {
    let r = c.get(s.url("/api/push/key")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An answer that takes a second, so a tab can go away before it ends.
fn slow_answer(text: &str) -> Reply {
    Reply::stream(vec![
        Step::Data(chunk_role()),
        Step::Data(chunk("Secret ")),
        Step::Sleep(1000),
        Step::Data(chunk(text)),
        Step::Data(finish()),
        Step::Data("data: [DONE]\n\n".into()),
    ])
}

/// Starts a run and closes its tab at once; returns the conversation id.
async fn run_without_tab(s: &Server, c: &reqwest::Client, fake: &Fake, text: &str) -> String {
    fake.push(slow_answer(text));
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "go"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(r);
    conv
}

fn subscriptions_in_db(s: &Server) -> i64 {
    let db = rusqlite::Connection::open(s.dir.join("data/hermes-edge.db")).unwrap();
    db.query_row("SELECT count(*) FROM push_subscriptions", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_finished_answer_is_pushed_encrypted_to_a_device_with_no_tab_open() {
    let service = PushService::default();
    let addr = service.start().await;
    let origin = format!("http://{addr}");
    let endpoint = format!("{origin}/push/device-1");
    let fake = Fake::start().await;
    let (s, _cfg) = start(
        &fake,
        "[push]\nallow_private_endpoints = true\nsubject = \"mailto:ops@example.com\"\nttl_secs = 600\n",
    );
    let c = s.admin_client().await;
    let key = server_key(&s, &c).await;
    assert_eq!(
        B64.decode(&key).unwrap().len(),
        65,
        "an uncompressed P-256 point"
    );
    let browser = Browser::new();
    let r = subscribe(&s, &c, &browser.subscription(&endpoint)).await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());

    // No tab: the push comes, and says which conversation and why, without the answer's text.
    let conv = run_without_tab(&s, &c, &fake, "answer").await;
    assert!(
        service.wait_for(1, 10).await,
        "no push arrived: {}",
        s.stderr()
    );
    {
        let got = service.got.lock().unwrap();
        let p = &got[0];
        assert_eq!(p.path, "/push/device-1");
        assert_eq!(p.headers["content-encoding"], "aes128gcm");
        assert_eq!(p.headers["ttl"], "600");
        assert_eq!(p.headers["urgency"], "normal");
        check_vapid(p, &key, &origin);
        let payload: Value = serde_json::from_slice(&browser.decrypt(&p.body)).unwrap();
        assert_eq!(payload, json!({"conversation_id": conv, "kind": "done"}));
    }

    // Allowed text (the same device posting again updates its row): the answer's first words.
    let mut with_text = browser.subscription(&endpoint);
    with_text["include_text"] = json!(true);
    assert_eq!(subscribe(&s, &c, &with_text).await.status(), 201);
    assert_eq!(subscriptions_in_db(&s), 1);
    // Posted again without the setting (as the page does at each visit): the setting stays.
    let r = subscribe(&s, &c, &browser.subscription(&endpoint)).await;
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"subscribed": true, "include_text": true})
    );
    let conv = run_without_tab(&s, &c, &fake, "answer two").await;
    assert!(service.wait_for(2, 10).await, "no second push");
    {
        let got = service.got.lock().unwrap();
        let payload: Value = serde_json::from_slice(&browser.decrypt(&got[1].body)).unwrap();
        assert_eq!(
            payload,
            json!({"conversation_id": conv, "kind": "done", "text": "Secret answer two"})
        );
    }

    // A tab reads the run to its end: no push.
    fake.push(slow_answer("seen"));
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": "go"}))
        .send()
        .await
        .unwrap();
    let body = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .unwrap()
        .unwrap();
    assert!(body.contains("[DONE]"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(service.count(), 2, "a push although a tab was attached");

    // The push service says the subscription is gone: it is deleted, and nothing more is sent.
    service.answers.lock().unwrap().push(410);
    run_without_tab(&s, &c, &fake, "gone").await;
    assert!(service.wait_for(3, 10).await, "no third push");
    let deadline = Instant::now() + Duration::from_secs(5);
    while subscriptions_in_db(&s) != 0 {
        assert!(Instant::now() < deadline, "the gone subscription was kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run_without_tab(&s, &c, &fake, "after").await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(service.count(), 3);
    assert!(!s.stderr().contains("ERROR"), "{}", s.stderr());
}

#[tokio::test]
async fn subscriptions_are_checked_bounded_and_deleted_by_endpoint() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[push]\nmax_subscriptions_per_user = 2\n");
    let c = s.admin_client().await;
    let browser = Browser::new();
    // Without the escape hatch, endpoints inside the network (and plain http) are refused.
    for bad in [
        "http://push.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://10.0.0.1/x",
        "https://[::1]:8443/x",
        "https://169.254.169.254/latest/meta-data",
    ] {
        let r = subscribe(&s, &c, &browser.subscription(bad)).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "bad_subscription"
        );
    }
    // Keys that cannot encrypt are refused when posted, not at every push.
    let mut bad_key = browser.subscription("https://push.example.com/k");
    bad_key["keys"]["p256dh"] = json!(B64.encode([4u8; 65]));
    assert_eq!(subscribe(&s, &c, &bad_key).await.status(), 400);
    let mut bad_auth = browser.subscription("https://push.example.com/k");
    bad_auth["keys"]["auth"] = json!("AAAA");
    assert_eq!(subscribe(&s, &c, &bad_auth).await.status(), 400);
    // Another site's page cannot subscribe someone.
    let r = c
        .post(s.url("/api/push/subscriptions"))
        .header("origin", "https://evil.example")
        .json(&browser.subscription("https://push.example.com/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Three devices with room for two: the oldest goes.
    for d in ["a", "b", "c"] {
        let r = subscribe(
            &s,
            &c,
            &browser.subscription(&format!("https://push.example.com/{d}")),
        )
        .await;
        assert_eq!(r.status(), 201);
    }
    let db = rusqlite::Connection::open(s.dir.join("data/hermes-edge.db")).unwrap();
    let endpoints = |db: &rusqlite::Connection| -> Vec<String> {
        let mut q = db
            .prepare("SELECT endpoint FROM push_subscriptions ORDER BY endpoint")
            .unwrap();
        q.query_map([], |r| r.get(0))
            .unwrap()
            .map(|e| e.unwrap())
            .collect()
    };
    assert_eq!(
        endpoints(&db),
        ["https://push.example.com/b", "https://push.example.com/c"]
    );
    // Another account cannot delete this one's subscription; its owner can.
    add_user_cli(&s, "bob", "password-of-bob-1");
    let bob = s.client();
    assert_eq!(
        s.login(&bob, "bob", "password-of-bob-1").await.status(),
        200
    );
    for (who, n) in [(&bob, 2), (&c, 1)] {
        let r = who
            .delete(s.url("/api/push/subscriptions"))
            .header("origin", s.origin())
            .json(&json!({"endpoint": "https://push.example.com/b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        assert_eq!(endpoints(&db).len(), n);
    }
    // The key pair is kept in the database (made once), and never logged.
    let key = server_key(&s, &c).await;
    let stored: Vec<u8> = db
        .query_row("SELECT pkcs8 FROM push_vapid", [], |r| r.get(0))
        .unwrap();
    assert!(!stored.is_empty());
    assert!(
        !s.stderr().contains(&key) && !s.stdout().contains(&key),
        "the key is not logged"
    );
}

#[tokio::test]
async fn push_can_be_turned_off() {
    let fake = Fake::start().await;
    let (s, _cfg) = start(&fake, "[push]\nenabled = false\n");
    let c = s.admin_client().await;
    let r = c.get(s.url("/api/push/key")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "push_off"
    );
    let r = subscribe(
        &s,
        &c,
        &Browser::new().subscription("https://push.example.com/a"),
    )
    .await;
    assert_eq!(r.status(), 404);
}

/// With the real Hermes (runs with approvals, `tests/hermes/setup.sh`): an approval waiting while
/// no tab is open is pushed with `Urgency: high`, then the denied run's end as `done`.
#[tokio::test]
async fn an_approval_waiting_with_no_tab_open_is_pushed_urgently() {
    let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
    assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
    let hermes = RealHermes::start_with(&[
        ("HERMES_APPROVAL_MODE", "manual"),
        ("HERMES_APPROVAL_TIMEOUT", "30"),
    ]);
    let service = PushService::default();
    let addr = service.start().await;
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("hermes-edge.toml");
    std::fs::write(
        &config,
        "[chat]\napproval_timeout_secs = 30\n[push]\nallow_private_endpoints = true\nsubject = \"mailto:ops@example.com\"\n",
    )
    .unwrap();
    let s = Server::start_with(
        Start::default()
            .upstream(hermes.url.clone())
            .env("HERMES_EDGE_API_KEY", hermes.key.clone())
            .arg("--config")
            .arg(config.display().to_string()),
    );
    let c = s.admin_client().await;
    let key = server_key(&s, &c).await;
    let browser = Browser::new();
    let sub = browser.subscription(&format!("http://{addr}/push/phone"));
    assert_eq!(subscribe(&s, &c, &sub).await.status(), 201);

    let kept = tempfile::Builder::new()
        .prefix("hermes-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({"message": format!("tooldanger {}", kept.path().display())}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(r);
    assert!(
        service.wait_for(1, 60).await,
        "no approval push: {}",
        s.stderr()
    );
    {
        let got = service.got.lock().unwrap();
        assert_eq!(got[0].headers["urgency"], "high");
        check_vapid(&got[0], &key, &format!("http://{addr}"));
        let payload: Value = serde_json::from_slice(&browser.decrypt(&got[0].body)).unwrap();
        assert_eq!(
            payload,
            json!({"conversation_id": conv, "kind": "approval"})
        );
    }
    let r = c
        .post(s.url(&format!("/api/conversations/{conv}/run/approval")))
        .header("origin", s.origin())
        .json(&json!({"choice": "deny"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert!(service.wait_for(2, 60).await, "no push at the end");
    let got = service.got.lock().unwrap();
    assert_eq!(got[1].headers["urgency"], "normal");
    let payload: Value = serde_json::from_slice(&browser.decrypt(&got[1].body)).unwrap();
    assert_eq!(payload, json!({"conversation_id": conv, "kind": "done"}));
    assert!(kept.path().exists(), "the denied command did not run");
}
