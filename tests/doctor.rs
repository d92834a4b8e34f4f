//! `hermes-edge doctor` names what is wrong and how to fix it.

mod common;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A fake Hermes API Server: `/health` answers, `/v1/models` wants `Bearer right-key`.
async fn fake_hermes() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let (status, body) = if req.starts_with("get /health") {
                    ("200 OK", r#"{"status":"ok","version":"0.19.0"}"#)
                } else if req.contains("authorization: bearer right-key") {
                    ("200 OK", r#"{"data":[]}"#)
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"error":{"message":"Invalid API key"}}"#,
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

fn doctor(dir: &std::path::Path, upstream: &str, key: Option<&str>) -> (i32, String) {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.current_dir(dir)
        .args(["doctor", "--listen", "127.0.0.1:0", "--upstream", upstream])
        .env_remove("HERMES_EDGE_API_KEY")
        .env_remove("API_SERVER_KEY")
        .env("HERMES_HOME", dir.join("no-hermes-home"));
    if let Some(k) = key {
        cmd.env("HERMES_EDGE_API_KEY", k);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn doctor_reports_a_dead_upstream_and_a_missing_key_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let (code, out) = doctor(dir.path(), &format!("http://127.0.0.1:{port}"), None);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "[FAIL] Hermes API Server: http://127.0.0.1:{port} is not reachable"
        )),
        "{out}"
    );
    assert!(out.contains("API_SERVER_ENABLED=true"), "{out}");
    assert!(
        out.contains("[FAIL] API key: not set: export HERMES_EDGE_API_KEY="),
        "{out}"
    );
}

#[tokio::test]
async fn doctor_tells_a_wrong_key_from_a_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let hermes = fake_hermes().await;
    let url = format!("http://{hermes}");
    let (code, out) = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let url = url.clone();
        move || doctor(&dir, &url, Some("wrong-key"))
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("answers (version 0.19.0)"), "{out}");
    assert!(
        out.contains("[FAIL] API key: Hermes refused it (401)"),
        "{out}"
    );
    let (code, out) = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || doctor(&dir, &url, Some("right-key"))
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[ok  ] API key: accepted by Hermes"), "{out}");
}

/// Hermes' settings found in `HERMES_HOME`: doctor names them as the source of the upstream and
/// the key, never prints the key, and says when they leave Hermes' API server off.
#[tokio::test]
async fn doctor_names_hermes_settings_as_the_source_and_says_when_they_turn_the_server_off() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("hermes-home");
    std::fs::create_dir(&home).unwrap();
    let hermes = fake_hermes().await;
    let run = |env_text: String| {
        std::fs::write(home.join(".env"), env_text).unwrap();
        let (dir, home) = (dir.path().to_path_buf(), home.clone());
        tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new(common::bin())
                .current_dir(&dir)
                .args(["doctor", "--listen", "127.0.0.1:0"])
                .env_remove("HERMES_EDGE_API_KEY")
                .env_remove("API_SERVER_KEY")
                .env("HERMES_HOME", &home)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        })
    };
    let env_file = home.join(".env").display().to_string();

    // Only a port: Hermes' API server is off (no API_SERVER_ENABLED, no key), and there is no key.
    let (code, out) = run(format!("API_SERVER_PORT={}\n", hermes.port()))
        .await
        .unwrap();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "[ok  ] upstream: http://127.0.0.1:{} from port {env_file} (API_SERVER_PORT), host Hermes' default",
            hermes.port()
        )),
        "{out}"
    );
    assert!(
        out.contains("[warn] Hermes settings: the API server is off in Hermes' settings"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "add API_SERVER_ENABLED=true to {env_file} and restart the gateway"
        )),
        "{out}"
    );
    assert!(out.contains("[FAIL] API key: not set"), "{out}");

    // The key there too (which turns the server on, as in Hermes).
    let (code, out) = run(format!(
        "export API_SERVER_KEY='right-key'  # for hermes-edge\nAPI_SERVER_PORT={}\n",
        hermes.port()
    ))
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "[ok  ] API key source: {env_file} (API_SERVER_KEY)"
        )),
        "{out}"
    );
    assert!(out.contains("[ok  ] API key: accepted by Hermes"), "{out}");
    assert!(
        out.contains(&format!(
            "[ok  ] Hermes settings: the API server is on ({env_file} (API_SERVER_KEY))"
        )),
        "{out}"
    );
    assert!(!out.contains("right-key"), "the key was printed: {out}");
}
