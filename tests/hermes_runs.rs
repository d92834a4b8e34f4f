//! The agent's tool steps and approvals, end to end with the real Hermes Agent API Server (PyPI
//! `hermes-agent`, installed by `tests/hermes/setup.sh`; never skipped when missing) and the fake
//! model provider in its tool modes: a harmless command shows its step as done; a dangerous one
//! (`rm -rf` of a test folder) waits for the person, and their answer decides whether the folder
//! goes; unanswered, Hermes' timeout denies it. The page's events are read as a tab reads them (docs/http-api.md, "Runs").

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

async fn ask(s: &Server, c: &reqwest::Client, message: &str) -> (String, reqwest::Response) {
    let r = c
        .post(s.url("/api/chat"))
        .header("origin", s.origin())
        .json(&json!({ "message": message }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let conv = r.headers()["x-conversation-id"]
        .to_str()
        .unwrap()
        .to_string();
    (conv, r)
}

async fn answer(s: &Server, c: &reqwest::Client, conv: &str, choice: &str) -> (u16, Value) {
    let r = c
        .post(s.url(&format!("/api/conversations/{conv}/run/approval")))
        .header("origin", s.origin())
        .json(&json!({ "choice": choice }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A folder under /tmp named as the fake provider's dangerous mode accepts (`/tmp/hermes-...`).
fn victim() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("hermes-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::write(dir.path().join("keep.txt"), "data").unwrap();
    dir
}

#[tokio::test]
async fn approvals_from_the_page_decide_whether_the_agents_dangerous_command_runs() {
    let (ok, out, err) = run_script("setup.sh", &[], Duration::from_secs(900));
    assert!(ok, "tests/hermes/setup.sh failed:\n{out}\n{err}");
    // Manual approvals (no model review first) and Hermes' timeout as the edge is told.
    let hermes = RealHermes::start_with(&[
        ("HERMES_APPROVAL_MODE", "manual"),
        ("HERMES_APPROVAL_TIMEOUT", "8"),
    ]);
    let cfg = tempfile::tempdir().unwrap();
    let config = cfg.path().join("hermes-edge.toml");
    std::fs::write(&config, "[chat]\napproval_timeout_secs = 8\n").unwrap();
    let s = Server::start_with(
        Start::default()
            .upstream(hermes.url.clone())
            .env("HERMES_EDGE_API_KEY", hermes.key.clone())
            .arg("--config")
            .arg(config.display().to_string()),
    );
    let c = s.admin_client().await;

    // `doctor` says this Hermes has what the page's runs need.
    let out = std::process::Command::new(bin())
        .current_dir(cfg.path())
        .args([
            "doctor",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &hermes.url,
        ])
        .env("HERMES_EDGE_API_KEY", &hermes.key)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.lines()
            .any(|l| l.contains("Agent runs") && l.contains("runs with approvals")),
        "{out}"
    );

    // A harmless command: its step shows the command, ran, and how long it took.
    let (_, mut r) = ask(&s, &c, "toolecho").await;
    let mut tab = RunView::default();
    tab.read_until(&mut r, |_| false).await;
    assert!(tab.done && tab.error.is_none(), "{:?}", tab.error);
    assert_eq!(tab.steps.len(), 1, "{:?}", tab.steps);
    let step = &tab.steps[0];
    assert_eq!(step["tool"], "terminal");
    assert_eq!(step["preview"], "echo hermes-tool-ok");
    assert_eq!(step["status"], "completed");
    assert!(step["duration"].as_f64().is_some(), "{step}");
    assert!(tab.text.contains("hermes-tool-ok"), "{}", tab.text);
    // What the command printed, from Hermes' transcript, once the answer has ended.
    assert_eq!(step["output"], "hermes-tool-ok", "{step}");

    // A dangerous command, denied: the folder stays, the step says denied, never done.
    let kept = victim();
    let path = kept.path().display().to_string();
    let (conv, mut r) = ask(&s, &c, &format!("tooldanger {path}")).await;
    let mut tab = RunView::default();
    tab.read_until(&mut r, |t| t.approval.is_some()).await;
    let approval = tab.approval.clone().expect("an approval request");
    assert_eq!(approval["command"], format!("rm -rf {path}"));
    assert_eq!(approval["choices"], json!(["once", "session", "deny"]));
    assert_eq!(approval["timeout_secs"], 8);
    assert!(!approval["description"].as_str().unwrap().is_empty());
    assert_eq!(tab.steps.last().unwrap()["status"], "waiting_approval");
    // Marked in the conversation list, and visible to a second tab that attaches.
    let list: Value = c
        .get(s.url("/api/conversations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["conversations"][0]["run"],
        json!({"status": "waiting_approval"})
    );
    let mut second = c
        .get(s.url(&format!("/api/conversations/{conv}/run")))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let mut other = RunView::default();
    other
        .read_until(&mut second, |t| t.approval.is_some())
        .await;
    assert_eq!(
        other.approval.as_ref().unwrap()["command"],
        approval["command"]
    );
    drop(second);

    assert_eq!(answer(&s, &c, &conv, "deny").await.0, 200);
    tab.read_until(&mut r, |_| false).await;
    assert!(tab.done, "the answer did not end");
    assert_eq!(tab.approval_done.as_deref(), Some("deny"));
    assert_eq!(tab.steps.last().unwrap()["status"], "denied");
    assert!(
        kept.path().join("keep.txt").exists(),
        "a denied command ran"
    );
    assert!(tab.text.contains("BLOCKED"), "{}", tab.text);
    // Answering again: nothing waits.
    assert_eq!(answer(&s, &c, &conv, "once").await.0, 409);
    let stored = conversation(&s, &c, &conv).await;
    let m = &stored["messages"][1];
    assert_eq!(m["state"], "done");
    assert_eq!(m["tool_steps"][0]["status"], "denied");
    let said = m["tool_steps"][0]["output"].as_str().unwrap();
    assert!(said.contains("BLOCKED"), "{said}");

    // The same, allowed once: the folder goes, and the step says it ran.
    let gone = victim();
    let path = gone.path().display().to_string();
    let (conv, mut r) = ask(&s, &c, &format!("tooldanger {path}")).await;
    let mut tab = RunView::default();
    tab.read_until(&mut r, |t| t.approval.is_some()).await;
    assert_eq!(answer(&s, &c, &conv, "once").await.0, 200);
    tab.read_until(&mut r, |_| false).await;
    assert!(tab.done && tab.error.is_none(), "{:?}", tab.error);
    assert_eq!(tab.approval_done.as_deref(), Some("once"));
    assert_eq!(tab.steps.last().unwrap()["status"], "completed");
    assert!(!gone.path().exists(), "an approved command did not run");

    // Nobody answers: Hermes denies it after its timeout; the page is told, and the step says
    // denied, never done.
    let kept3 = victim();
    let path = kept3.path().display().to_string();
    let (_, mut r) = ask(&s, &c, &format!("tooldanger {path}")).await;
    let mut tab = RunView::default();
    tab.read_until(&mut r, |t| t.approval.is_some()).await;
    let asked = Instant::now();
    tab.read_until(&mut r, |_| false).await;
    assert!(tab.done);
    assert!(
        asked.elapsed() >= Duration::from_secs(6),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(tab.approval_done.as_deref(), Some("timeout"));
    assert_eq!(tab.steps.last().unwrap()["status"], "denied");
    assert!(
        kept3.path().join("keep.txt").exists(),
        "an unanswered command ran"
    );

    // Another user cannot answer or stop someone else's run.
    let kept2 = victim();
    let path = kept2.path().display().to_string();
    let (conv, mut r) = ask(&s, &c, &format!("tooldanger {path}")).await;
    let mut tab = RunView::default();
    tab.read_until(&mut r, |t| t.approval.is_some()).await;
    add_user_cli(&s, "bob", "bob-password-1");
    let bob = s.client();
    assert_eq!(s.login(&bob, "bob", "bob-password-1").await.status(), 200);
    assert_eq!(answer(&s, &bob, &conv, "once").await.0, 409);
    // Stop while it waits: the command does not run, and Hermes ends the run.
    assert_eq!(stop_run(&s, &c, &conv).await, 200);
    tab.read_until(&mut r, |_| false).await;
    assert!(tab.done);
    assert_eq!(tab.error.as_deref(), Some("stopped"));
    assert!(kept2.path().join("keep.txt").exists());
    assert_ne!(tab.steps.last().unwrap()["status"], "completed");

    // No further model request for the stopped turn.
    let asked = hermes.provider_requests().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hermes.provider_requests().len(), asked);

    // Stop in the middle of a streaming answer: Hermes ends the run at once (its `run.cancelled`,
    // well before the edge would give up waiting for it), the agent asks the model nothing more,
    // the tab and the stored answer say stopped, and the text so far is kept. (Hermes 0.19 does
    // not cut the model's own stream, docs/hermes-notes.md section d; it discards it.)
    let (conv, mut r) = ask(&s, &c, "slow").await;
    let mut tab = RunView::default();
    tab.read_until(&mut r, |t| t.text.contains("tick 2")).await;
    assert!(!hermes.provider_events().contains("client_disconnected"));
    assert_eq!(stop_run(&s, &c, &conv).await, 200);
    let stopped = Instant::now();
    let asked = hermes.provider_requests().len();
    tab.read_until(&mut r, |_| false).await;
    assert_eq!(tab.error.as_deref(), Some("stopped"));
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "Hermes did not end the run: {:?}",
        stopped.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hermes.provider_requests().len(), asked);
    let stored = conversation(&s, &c, &conv).await;
    let m = &stored["messages"][1];
    assert_eq!(m["error"]["code"], "stopped");
    assert!(m["content"].as_str().unwrap().contains("tick 1"), "{m}");
}
