//! Zero config against the real Hermes API Server (PyPI `hermes-agent`, `tests/hermes/setup.sh`):
//! hermes-edge started with no key and no `--upstream` finds both in Hermes' `.env` (as when run
//! as Hermes' user), a chat message is answered through it, and `doctor` names that `.env`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The content deltas of an SSE chat stream, joined.
fn answer_of(sse: &str) -> String {
    sse.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn with_no_key_and_no_upstream_the_edge_uses_hermes_own_env_file() {
    let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
    assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
    let (work, port, _url) = start_by_script("start.sh", "the Hermes API Server");
    let _stop = StopGuard(work.path().to_path_buf());
    let key = std::fs::read_to_string(work.path().join("api_key"))
        .unwrap()
        .trim()
        .to_string();

    // A Hermes home as `hermes setup` leaves it: the API server's settings in its .env.
    let home = tempfile::tempdir().unwrap();
    let env_file = home.path().join(".env");
    std::fs::write(
        &env_file,
        format!(
            "# Hermes settings\nAPI_SERVER_ENABLED=true\nexport API_SERVER_KEY=\"{key}\"\nAPI_SERVER_HOST=0.0.0.0\nAPI_SERVER_PORT={port}  # the API server\n"
        ),
    )
    .unwrap();
    let env_file = env_file.display().to_string();

    let s = Server::start_with(
        Start::default()
            .without_upstream()
            .env("HERMES_HOME", home.path().display().to_string()),
    );
    assert!(
        s.stdout().contains(&format!(
            "hermes: http://127.0.0.1:{port} from host {env_file} (API_SERVER_HOST), port {env_file} (API_SERVER_PORT); API key from {env_file} (API_SERVER_KEY)"
        )),
        "{}",
        s.stdout()
    );
    assert!(
        !s.stdout().contains(&key) && !s.stderr().contains(&key),
        "the key reached the log"
    );

    let c = s.admin_client().await;
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .header("accept", "text/event-stream")
        .json(&json!({"message": "found you"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sse = tokio::time::timeout(Duration::from_secs(90), r.text())
        .await
        .expect("answer within 90 s")
        .unwrap();
    assert!(
        answer_of(&sse).starts_with("echo: found you"),
        "Hermes did not answer: {sse}"
    );

    let out = tokio::task::spawn_blocking({
        let home = home.path().to_path_buf();
        let dir = s.dir.clone();
        move || {
            std::process::Command::new(bin())
                .current_dir(dir)
                .args(["doctor", "--listen", "127.0.0.1:0"])
                .env_remove("HERMES_EDGE_API_KEY")
                .env_remove("API_SERVER_KEY")
                .env("HERMES_HOME", home)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "[ok  ] API key source: {env_file} (API_SERVER_KEY)"
        )),
        "{text}"
    );
    assert!(
        text.contains("[ok  ] API key: accepted by Hermes"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "[ok  ] upstream: http://127.0.0.1:{port} from host {env_file}"
        )),
        "{text}"
    );
    assert!(!text.contains(&key), "doctor printed the key: {text}");
}
