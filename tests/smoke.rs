mod common;
use common::*;

#[tokio::test]
async fn healthz_answers_over_https_with_the_local_root() {
    let s = Server::start();
    let r = s.client().get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["upstream"]["reachable"], false);
}
