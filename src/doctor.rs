//! `hermes-edge doctor`: checks the things that make a first start fail, and says what to do.
//!
//! Each check prints one line, `ok`, `warn` or `FAIL`, with the fix when there is one. It changes
//! nothing (it does not create the database or certificates), and exits 1 when a check failed.

use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::config::{Config, TlsMode};

enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: &str) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => {
                self.failed = true;
                "FAIL"
            }
        };
        println!("[{tag}] {what}: {detail}");
    }
}

/// Runs every check; `true` when nothing failed.
pub(crate) async fn run(config: &Config) -> bool {
    let mut r = Report { failed: false };
    match &config.source {
        Some(p) => r.line(Level::Ok, "config", &format!("{} parsed", p.display())),
        None => r.line(Level::Ok, "config", "no file; built-in defaults"),
    }
    hermes_settings(&mut r, config);

    for (name, addr) in [
        ("https listener", Some(config.listen)),
        ("http listener", config.http_listen),
        ("metrics listener", config.metrics.listen),
    ] {
        let Some(addr) = addr else { continue };
        match std::net::TcpListener::bind(addr) {
            Ok(_) => r.line(Level::Ok, name, &format!("{addr} is free")),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => r.line(
                Level::Warn,
                name,
                &format!("{addr} is in use (fine if hermes-edge is running; otherwise see: ss -tlnp 'sport = :{}')", addr.port()),
            ),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => r.line(
                Level::Fail,
                name,
                &format!("no permission for port {}: sudo setcap cap_net_bind_service=+ep $(command -v hermes-edge)", addr.port()),
            ),
            Err(e) => r.line(Level::Fail, name, &format!("{addr}: {e}")),
        }
    }

    let up = config.upstream.as_str();
    let get = |path: &'static str, key: Option<String>| async move {
        crate::hermes::probe(up, path, key.as_deref(), Duration::from_secs(3)).await
    };
    match get("/health", None).await {
        Ok((s, v)) if s.is_success() => {
            let version = v
                .get("version")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| "?".into());
            r.line(Level::Ok, "Hermes API Server", &format!("{} answers (version {version})", config.upstream));
        }
        Ok((s, _)) => r.line(Level::Fail, "Hermes API Server", &format!("{}/health answered {s}", config.upstream)),
        Err(e) => r.line(
            Level::Fail,
            "Hermes API Server",
            &format!("{} is not reachable ({e}); start it with: API_SERVER_ENABLED=true API_SERVER_KEY=<key> API_SERVER_PORT={} hermes gateway run --accept-hooks (it takes a few seconds to bind)", config.upstream, config.upstream.rsplit(':').next().unwrap_or("8642")),
        ),
    }
    match &config.chat.api_key {
        None => r.line(Level::Fail, "API key", &format!("not set: export HERMES_EDGE_API_KEY=<the API_SERVER_KEY Hermes was started with> (or chat.api_key_file); there is none in Hermes' settings in {} either", config.hermes.home.display())),
        Some(key) => match get("/v1/models", Some(key.clone())).await {
            Ok((s, _)) if s.is_success() => r.line(Level::Ok, "API key", "accepted by Hermes"),
            Ok((s, _)) if s.as_u16() == 401 => r.line(Level::Fail, "API key", "Hermes refused it (401): it must equal the API_SERVER_KEY Hermes was started with"),
            Ok((s, _)) => r.line(Level::Warn, "API key", &format!("/v1/models answered {s}")),
            Err(_) => r.line(Level::Warn, "API key", "not checked: Hermes is not reachable"),
        },
    }
    // What the web chat needs of Hermes beyond chat: runs with their events, approvals and stop.
    if let Some(key) = &config.chat.api_key {
        match get("/v1/capabilities", Some(key.clone())).await {
            Ok((s, v)) if s.is_success() => {
                let missing = crate::hermes::missing_run_features(&v);
                if missing.is_empty() {
                    r.line(Level::Ok, "Agent runs", "Hermes has runs with approvals: answers outlive the tab, dangerous commands are asked in the page");
                } else {
                    r.line(Level::Warn, "Agent runs", &format!("Hermes lacks {}: answers use chat completions, and dangerous commands cannot be approved from the web (update Hermes)", missing.join(", ")));
                }
            }
            Ok((s, _)) if s.as_u16() == 404 => r.line(Level::Warn, "Agent runs", "Hermes has no GET /v1/capabilities (older than 0.19): answers use chat completions, and dangerous commands cannot be approved from the web (update Hermes)"),
            Ok((s, _)) => r.line(Level::Warn, "Agent runs", &format!("/v1/capabilities answered {s}")),
            Err(_) => {}
        }
    }

    match &config.tls {
        TlsMode::LocalCa => {
            let ca = config.certs_dir.join("local-ca.crt");
            match std::fs::read(&ca) {
                Ok(pem) => {
                    use rustls_pki_types::pem::PemObject;
                    match rustls_pki_types::CertificateDer::from_pem_slice(&pem) {
                        Ok(der) => r.line(Level::Ok, "TLS (local CA)", &format!("root {} SHA-256 {}", ca.display(), crate::tls::fingerprint(&der))),
                        Err(e) => r.line(Level::Fail, "TLS (local CA)", &format!("{} is not a PEM certificate ({e}); move it away to create a new CA", ca.display())),
                    }
                }
                Err(_) => r.line(
                    Level::Ok,
                    "TLS (local CA)",
                    &format!(
                        "will be created in {} on first start",
                        config.certs_dir.display()
                    ),
                ),
            }
        }
        TlsMode::Files { cert, key } => match crate::tls::files::load_pair(cert, key) {
            Ok(_) => r.line(
                Level::Ok,
                "TLS (files)",
                &format!("{} and {} load and match", cert.display(), key.display()),
            ),
            Err(e) => r.line(Level::Fail, "TLS (files)", &e.to_string()),
        },
        TlsMode::Acme(acme) => {
            let local: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
                .map(|v| v.into_iter().map(|i| i.ip()).collect())
                .unwrap_or_default();
            for d in &acme.domains {
                match (d.as_str(), 443).to_socket_addrs() {
                    Ok(addrs) => {
                        let ips: Vec<_> = addrs.map(|a| a.ip()).collect();
                        if ips.iter().any(|ip| local.contains(ip)) {
                            r.line(Level::Ok, "DNS", &format!("{d} → {ips:?} (this machine)"));
                        } else {
                            r.line(Level::Warn, "DNS", &format!("{d} → {ips:?}, not an address of this machine; fine behind NAT if that address forwards ports 443/80 here, otherwise the certificate cannot be issued"));
                        }
                    }
                    Err(e) => r.line(Level::Fail, "DNS", &format!("{d} does not resolve ({e}); create an A/AAAA record pointing to this server")),
                }
            }
            if acme.email.is_none() {
                r.line(
                    Level::Warn,
                    "ACME",
                    "no --email: the CA cannot warn you about expiry problems",
                );
            }
        }
    }

    oidc_providers(&mut r, config).await;

    match std::fs::create_dir_all(&config.data_dir).and_then(|_| {
        let probe = config.data_dir.join(".doctor-probe");
        std::fs::write(&probe, b"x").and_then(|_| std::fs::remove_file(&probe))
    }) {
        Ok(()) => r.line(
            Level::Ok,
            "data directory",
            &format!("{} is writable", config.data_dir.display()),
        ),
        Err(e) => r.line(
            Level::Fail,
            "data directory",
            &format!("{}: {e}", config.data_dir.display()),
        ),
    }
    !r.failed
}

/// Each single sign-on provider: whether its discovery document and keys can be read (a warning,
/// not a failure: the server starts without them), and the redirect URIs to register there.
async fn oidc_providers(r: &mut Report, config: &Config) {
    let oidc = crate::auth::oidc::Oidc::new(&config.oidc);
    let port = match config.listen.port() {
        443 => String::new(),
        p => format!(":{p}"),
    };
    for p in &config.oidc {
        let what = format!("single sign-on `{}`", p.name);
        match oidc.metadata(&p.name, false).await {
            Ok(meta) => r.line(
                Level::Ok,
                &what,
                &format!(
                    "{} answers ({} signing keys)",
                    p.issuer,
                    meta.jwks().keys().len()
                ),
            ),
            Err(e) => r.line(
                Level::Warn,
                &what,
                &format!("{}: {e}; sign-in with it fails until it answers", p.issuer),
            ),
        }
        let mut names = vec!["localhost".to_string()];
        names.extend(config.extra_names.iter().cloned());
        let uris: Vec<String> = names
            .iter()
            .map(|n| match n.parse::<std::net::Ipv6Addr>() {
                Ok(_) => format!("https://[{n}]{port}/login/oidc/{}/callback", p.name),
                Err(_) => format!("https://{n}{port}/login/oidc/{}/callback", p.name),
            })
            .collect();
        r.line(
            Level::Ok,
            &what,
            &format!("redirect URIs to register: {}", uris.join(" ")),
        );
    }
}

/// Where the upstream and the key came from (never the key), and whether Hermes' own settings,
/// when hermes-edge relies on them, turn its API server on.
fn hermes_settings(r: &mut Report, config: &Config) {
    r.line(
        Level::Ok,
        "upstream",
        &format!("{} from {}", config.upstream, config.upstream_source),
    );
    if let Some(source) = &config.chat.api_key_source {
        r.line(Level::Ok, "API key source", source);
    }
    let h = &config.hermes;
    let explicit_upstream = matches!(
        config.upstream_source.as_str(),
        "--upstream" | "config file upstream"
    );
    let key_from_hermes =
        h.key.is_some() && h.key.as_ref().map(|k| &k.source) == config.chat.api_key_source.as_ref();
    if explicit_upstream && !key_from_hermes {
        return;
    }
    if let (Some(path), Some(e)) = (&h.yaml_file, &h.yaml_error) {
        r.line(
            Level::Warn,
            "Hermes settings",
            &format!(
                "{} is not valid YAML ({e}); Hermes ignores it too",
                path.display()
            ),
        );
    }
    if !h.found_any() {
        r.line(
            Level::Ok,
            "Hermes settings",
            &format!(
                "no .env or config.yaml in {} (chat.hermes_home, $HERMES_HOME or ~/.hermes)",
                h.home.display()
            ),
        );
    } else if !h.enabled.value {
        r.line(
            Level::Warn,
            "Hermes settings",
            &format!(
                "the API server is off in Hermes' settings ({}): add API_SERVER_ENABLED=true to {} and restart the gateway (hermes gateway restart, or stop and start `hermes gateway run`)",
                h.enabled.source,
                h.home.join(".env").display()
            ),
        );
    } else {
        r.line(
            Level::Ok,
            "Hermes settings",
            &format!("the API server is on ({})", h.enabled.source),
        );
    }
}
