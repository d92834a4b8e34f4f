//! `/status` (what the running server says about itself) and `hermes-edge status` (which asks it
//! over the metrics listener, and says what it can read on its own when nothing answers).
//!
//! The command exits 0 only when the server answered and is healthy: Hermes reachable and no
//! certificate expired.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use crate::app::App;
use crate::config::Config;
use crate::response;

/// How long the command waits for the server, and each check for Hermes.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Sessions not expired at `now`, and the accounts they belong to.
pub(crate) fn sessions(c: &rusqlite::Connection, now: i64) -> rusqlite::Result<(u64, u64)> {
    c.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT user_id) FROM sessions WHERE expires_at > ?1",
        [now],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
}

fn accounts(c: &rusqlite::Connection) -> rusqlite::Result<u64> {
    c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
}

/// The `/status` document.
pub(crate) async fn document(app: &App) -> Value {
    let live = super::listener::live(app).await;
    let now = crate::store::now();
    let accounts = app.store.call(|c| accounts(c)).await.ok();
    let config = app.config.clone();
    let certificates =
        tokio::task::spawn_blocking(move || crate::tls::status::certificates(&config))
            .await
            .unwrap_or_default();
    let hermes = hermes_check(&app.config).await;
    let (h1, h2) = super::COUNTERS.connections();
    let ops = app.ops.get();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "started_at": live.start_time,
        "uptime_secs": (now - live.start_time).max(0),
        "listening": ops.map(|o| &o.listening),
        "tls_mode": tls_mode(&app.config),
        "certificates": certificates,
        "hermes": hermes,
        "connections": {"open": live.connections_open, "max": live.connections_max, "http1": h1, "http2": h2},
        "sse_streams": super::COUNTERS.sse_streams(),
        "runs": live.runs,
        "sessions": {"active": live.sessions, "users": live.users_signed_in},
        "accounts": accounts,
    })
}

fn tls_mode(config: &Config) -> &'static str {
    match config.tls {
        crate::config::TlsMode::LocalCa => "local CA",
        crate::config::TlsMode::Files { .. } => "certificate files",
        crate::config::TlsMode::Acme(_) => "ACME",
    }
}

/// Whether the Hermes API Server answers (`/health`, no key needed), its version when it says
/// one, and whether it accepts the key and has runs with approvals (`/v1/capabilities`).
pub(crate) async fn hermes_check(config: &Config) -> Value {
    let get = crate::hermes::probe;
    let up = config.upstream.as_str();
    let version_of = |v: &Value| v.get("version").and_then(Value::as_str).map(str::to_string);
    let mut out = json!({"url": config.upstream, "reachable": false});
    match get(up, "/health", None, ASK_TIMEOUT).await {
        Ok((s, v)) if s.is_success() => {
            out["reachable"] = json!(true);
            out["version"] = json!(version_of(&v));
        }
        Ok((s, _)) => out["error"] = json!(format!("/health answered {s}")),
        Err(e) => out["error"] = json!(e),
    }
    if out["reachable"] != json!(true) {
        return out;
    }
    let Some(key) = &config.chat.api_key else {
        out["api_key"] = json!("missing");
        return out;
    };
    match get(up, "/v1/capabilities", Some(key), ASK_TIMEOUT).await {
        Ok((s, v)) if s.is_success() => {
            out["api_key"] = json!("accepted");
            if let Some(version) = version_of(&v) {
                out["version"] = json!(version);
            }
            out["runs_api"] = json!(crate::hermes::missing_run_features(&v).is_empty());
        }
        Ok((StatusCode::UNAUTHORIZED, _)) => out["api_key"] = json!("refused"),
        Ok((StatusCode::NOT_FOUND, _)) => {
            out["api_key"] = json!("not checked");
            out["runs_api"] = json!(false);
        }
        Ok((s, _)) => {
            out["api_key"] = json!(format!("not checked (/v1/capabilities answered {s})"))
        }
        Err(e) => out["api_key"] = json!(format!("not checked ({e})")),
    }
    out
}

/// `hermes-edge status`: prints the report (JSON with `json`); `true` when the server answered
/// and is healthy.
pub(crate) async fn run(config: &Config, as_json: bool) -> bool {
    let asked = ask(config).await;
    let (doc, serving) = match asked {
        Ok(doc) => (doc, true),
        Err(why) => (offline(config, &why).await, false),
    };
    let problems = problems(&doc);
    let healthy = serving && problems.is_empty();
    if as_json {
        let mut doc = doc;
        doc["serving"] = json!(serving);
        doc["healthy"] = json!(healthy);
        doc["problems"] = json!(problems);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print!("{}", human(&doc, serving, &problems));
    }
    healthy
}

/// What keeps the server from being healthy: Hermes unreachable, a certificate expired.
fn problems(doc: &Value) -> Vec<String> {
    let now = crate::store::now();
    let mut out = Vec::new();
    if doc["hermes"]["reachable"] != json!(true) {
        out.push("Hermes is unreachable".to_string());
    }
    for c in doc["certificates"].as_array().into_iter().flatten() {
        if c["not_after"].as_i64().is_some_and(|at| at <= now) {
            out.push(format!(
                "the {} certificate of {} has expired",
                c["role"].as_str().unwrap_or("?"),
                c["name"].as_str().unwrap_or("?")
            ));
        }
    }
    out
}

/// The running server's `/status`, or a sentence saying why there is none.
async fn ask(config: &Config) -> Result<Value, String> {
    let Some(addr) = config.metrics.listen else {
        return Err("hermes-edge status cannot ask the running server: its metrics listener is off ([metrics] listen = \"off\")".into());
    };
    let addr = dialable(addr);
    let client: Client<HttpConnector, response::Body> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut req = Request::get(format!("http://{addr}/status"));
    if let Some(token) = &config.metrics.token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(response::empty()).map_err(|e| e.to_string())?;
    let resp = match tokio::time::timeout(ASK_TIMEOUT * 3, client.request(req)).await {
        Err(_) => return Err(format!("{addr} accepted the connection but sent no status within {} s", (ASK_TIMEOUT * 3).as_secs())),
        Ok(Err(e)) if e.is_connect() => {
            return Err(format!("hermes-edge is not running: nothing answers on {addr} (the metrics listener of this configuration)"))
        }
        Ok(Err(e)) => return Err(format!("asking {addr} failed: {}", crate::hermes::error_chain(&e))),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| e.to_string())?;
    match status {
        StatusCode::OK => serde_json::from_slice(&body)
            .map_err(|e| format!("{addr}/status did not answer JSON ({e}); is another program on that port?")),
        StatusCode::UNAUTHORIZED => Err(format!("{addr} refused the metrics token: this configuration's metrics.token_file differs from the running server's")),
        s => Err(format!("{addr}/status answered {s}; is another program on that port?")),
    }
}

/// An address to connect to for a listening one: `0.0.0.0` and `::` mean this machine.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

/// What can be known without the server: the configured addresses, the certificates on disk,
/// Hermes, the accounts in the database (opened read-only: nothing is created or changed).
async fn offline(config: &Config, why: &str) -> Value {
    let cfg = config.clone();
    let certificates = tokio::task::spawn_blocking(move || crate::tls::status::certificates(&cfg))
        .await
        .unwrap_or_default();
    let db = config.data_dir.join("hermes-edge.db");
    let counts = tokio::task::spawn_blocking(move || {
        let c =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let (sessions, users) = sessions(&c, crate::store::now())?;
        Ok::<_, rusqlite::Error>((accounts(&c)?, sessions, users))
    })
    .await
    .ok()
    .and_then(|r| r.ok());
    json!({
        "not_serving": why,
        "configured": {
            "https": config.listen,
            "http": config.http_listen,
            "metrics": config.metrics.listen,
        },
        "tls_mode": tls_mode(config),
        "certificates": certificates,
        "hermes": hermes_check(config).await,
        "accounts": counts.map(|c| c.0),
        "sessions": counts.map(|c| json!({"active": c.1, "users": c.2})),
    })
}

/// The report for a person.
fn human(doc: &Value, serving: bool, problems: &[String]) -> String {
    let mut out = String::new();
    let text = |v: &Value| {
        v.as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string())
    };
    if serving {
        let up = doc["uptime_secs"].as_i64().unwrap_or(0);
        let _ = writeln!(
            out,
            "hermes-edge {}: serving{} (pid {}, up {})",
            text(&doc["version"]),
            if problems.is_empty() {
                String::new()
            } else {
                format!(", NOT healthy: {}", problems.join("; "))
            },
            doc["pid"],
            duration(up)
        );
        let l = &doc["listening"];
        let _ = writeln!(
            out,
            "listening    https {}   {}",
            text(&l["https"]),
            l["urls"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            out,
            "             http  {}",
            l["http"].as_str().unwrap_or("off")
        );
        let _ = writeln!(
            out,
            "             metrics {}",
            l["metrics"].as_str().unwrap_or("off")
        );
    } else {
        let _ = writeln!(out, "{}", text(&doc["not_serving"]));
        let c = &doc["configured"];
        let _ = writeln!(
            out,
            "configured   https {}   http {}   metrics {}",
            text(&c["https"]),
            c["http"].as_str().unwrap_or("off"),
            c["metrics"].as_str().unwrap_or("off")
        );
    }
    let _ = writeln!(out, "certificates ({})", text(&doc["tls_mode"]));
    let now = crate::store::now();
    for c in doc["certificates"].as_array().into_iter().flatten() {
        let names = c["names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect::<Vec<_>>()
            .join(", ");
        let line = match c["not_after"].as_i64() {
            Some(at) if at <= now => format!("EXPIRED on {}", crate::store::human_utc(at)),
            Some(at) => format!(
                "expires {} (in {} days)",
                crate::store::human_utc(at),
                (at - now) / 86_400
            ),
            None => c["problem"].as_str().unwrap_or("none").to_string(),
        };
        let issuer = c["issuer"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| format!("   issuer {s}"))
            .unwrap_or_default();
        let names = if names.is_empty() {
            String::new()
        } else {
            format!(" [{names}]")
        };
        let _ = writeln!(
            out,
            "  {:<14} {}{names}   {line}{issuer}",
            text(&c["role"]),
            text(&c["name"])
        );
    }
    let h = &doc["hermes"];
    let mut hermes = if h["reachable"] == json!(true) {
        let version = h["version"]
            .as_str()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default();
        format!("{} reachable{version}", text(&h["url"]))
    } else {
        format!(
            "{} UNREACHABLE ({})",
            text(&h["url"]),
            h["error"].as_str().unwrap_or("no answer")
        )
    };
    if let Some(key) = h["api_key"].as_str() {
        let _ = write!(hermes, "; API key {key}");
    }
    match h["runs_api"].as_bool() {
        Some(true) => hermes.push_str("; runs with approvals"),
        Some(false) => hermes.push_str("; no runs API (chat completions only)"),
        None => {}
    }
    let _ = writeln!(out, "hermes       {hermes}");
    if serving {
        let c = &doc["connections"];
        let _ = writeln!(
            out,
            "activity     {} connections open (HTTP/1.1 {}, HTTP/2 {}; max {}), {} event streams, {} answers being written",
            c["open"], c["http1"], c["http2"], c["max"], doc["sse_streams"], doc["runs"]
        );
    }
    let s = &doc["sessions"];
    match (doc["accounts"].as_u64(), s["users"].as_u64()) {
        (Some(accounts), Some(users)) => {
            let _ = writeln!(
                out,
                "accounts     {accounts}; {users} signed in ({} sessions)",
                s["active"]
            );
        }
        _ => {
            let _ = writeln!(out, "accounts     unknown (no readable database)");
        }
    }
    out
}

fn duration(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m {}s", secs % 60),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_at_a_glance() {
        assert_eq!(duration(59), "0m 59s");
        assert_eq!(duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn unspecified_addresses_are_asked_on_loopback() {
        assert_eq!(
            dialable("0.0.0.0:8643".parse().unwrap()).to_string(),
            "127.0.0.1:8643"
        );
        assert_eq!(
            dialable("[::]:8643".parse().unwrap()).to_string(),
            "[::1]:8643"
        );
        assert_eq!(
            dialable("127.0.0.2:1".parse().unwrap()).to_string(),
            "127.0.0.2:1"
        );
    }
}
