//! Where every setting comes from: the built-in defaults, then the TOML file, then the command line.
//!
//! Every key is optional. A bad file stops startup with the file, the key and what was expected
//! (`ConfigError`), never with a panic or a half-applied configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The default config path, used when it exists and no `--config` was given.
pub const DEFAULT_CONFIG_PATH: &str = "config/hermes-edge.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting `{key}`: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// The file as written by the user: every field optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub certs_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub upstream: Option<String>,
    pub www: Option<PathBuf>,
    pub log_json: Option<bool>,
    #[serde(default)]
    pub tls: FileTls,
    #[serde(default)]
    pub limits: FileLimits,
    #[serde(default)]
    pub media: FileMedia,
    #[serde(default)]
    pub auth: FileAuth,
    #[serde(default)]
    pub chat: FileChat,
    #[serde(default)]
    pub dashboard: FileDashboard,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    pub self_signed: Option<bool>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub hostnames: Option<Vec<String>>,
    pub san: Option<Vec<String>>,
    pub reload_interval_secs: Option<u64>,
    pub domains: Option<Vec<String>>,
    pub email: Option<String>,
    pub acme_challenge: Option<String>,
    pub acme_staging: Option<bool>,
    pub acme_directory: Option<String>,
    pub acme_ca_root: Option<PathBuf>,
    pub acme_retry_initial_secs: Option<u64>,
    pub hsts_max_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub header_read_timeout_secs: Option<u64>,
    pub tls_handshake_timeout_secs: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub h2_max_concurrent_streams: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub body_read_timeout_secs: Option<u64>,
    pub body_memory_per_connection: Option<usize>,
    pub body_memory_total: Option<usize>,
    pub shutdown_grace_secs: Option<u64>,
    pub requests_per_second_per_ip: Option<u32>,
    pub request_burst_per_ip: Option<u32>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_connections_per_ip: Option<usize>,
    pub send_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMedia {
    pub dir: Option<PathBuf>,
    pub public: Option<bool>,
    pub listing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub session_hours: Option<u64>,
    pub remember_days: Option<u64>,
    /// The same lifetimes in seconds (for short-lived deployments and tests); exclusive with the above.
    pub session_secs: Option<u64>,
    pub remember_secs: Option<u64>,
    pub login_attempts_per_minute_per_ip: Option<u32>,
    pub login_attempts_per_minute_per_account: Option<u32>,
    pub chat_sends_per_minute_per_user: Option<u32>,
    pub login_audit_days: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileChat {
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub idle_timeout_secs: Option<u64>,
    pub memory_inject: Option<bool>,
    pub hermes_home: Option<PathBuf>,
    pub memory_max_bytes: Option<usize>,
    pub max_image_bytes: Option<usize>,
    pub max_images: Option<usize>,
    pub retry_budget_secs: Option<u64>,
}

/// `[dashboard]`: Hermes' own web dashboard (`hermes dashboard`), proxied at `/dashboard/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDashboard {
    pub upstream: Option<String>,
}

/// A custom page: `[[routes]] path = "/video" file = "www/video.html"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub path: String,
    pub file: PathBuf,
}

/// Settings given on the command line; each overrides the file.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub config: Option<PathBuf>,
    pub listen: Option<String>,
    pub http_listen: Option<String>,
    pub certs_dir: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub upstream: Option<String>,
    pub dashboard_upstream: Option<String>,
    pub www: Option<PathBuf>,
    pub media: Option<PathBuf>,
    pub self_signed: bool,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub san: Vec<String>,
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub acme_challenge: Option<String>,
    pub acme_staging: bool,
    pub acme_directory: Option<String>,
    pub acme_ca_root: Option<PathBuf>,
    pub log_json: bool,
}

/// How the HTTPS listener gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsMode {
    /// A root CA generated once and kept in the certs directory signs a leaf for the local names.
    LocalCa,
    /// A PEM chain and key from files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// Certificates from an ACME CA (Let's Encrypt by default) for these domains.
    Acme(AcmeSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeChallenge {
    TlsAlpn01,
    Http01,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub challenge: AcmeChallenge,
    pub staging: bool,
    pub directory: Option<String>,
    pub ca_root: Option<PathBuf>,
    /// First wait after a failed attempt to get a certificate; doubles after each further failure.
    pub retry_initial: Duration,
}

/// Open connections one client network may hold. A browser opens at most six HTTP/1.1
/// connections per site (one with HTTP/2), so this leaves room for a whole office or a carrier's
/// NAT behind one IPv4 address, while one address alone can no longer take all of
/// `max_connections`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;
/// nginx's `send_timeout`: a minute without a byte taken by the client is a client that is gone
/// or holding the response (and its file or upstream stream) on purpose.
pub const DEFAULT_SEND_TIMEOUT_SECS: u64 = 60;

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_connections: usize,
    pub h2_max_concurrent_streams: u32,
    pub max_body_bytes: usize,
    /// How long a request body may wait for its client (see `body`).
    pub body_read_timeout: Duration,
    /// Bytes of request bodies held at once per connection, and in the whole process.
    pub body_memory_per_connection: usize,
    pub body_memory_total: usize,
    pub shutdown_grace: Duration,
    pub requests_per_second_per_ip: u32,
    pub request_burst_per_ip: u32,
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Open connections from one client network (IPv4 address, IPv6 /64); trusted proxies are
    /// exempt (see `conn_limits`).
    pub max_connections_per_ip: usize,
    /// How long a response may make no progress towards the client before its connection is
    /// closed (see `send_timeout`).
    pub send_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub dir: PathBuf,
    pub public: bool,
    pub listing: bool,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub session_lifetime: Duration,
    pub remember_lifetime: Duration,
    pub login_attempts_per_minute_per_ip: u32,
    pub login_attempts_per_minute_per_account: u32,
    pub chat_sends_per_minute_per_user: u32,
    /// Sign-in audit rows older than this are deleted (at start and daily); never less than the
    /// "keep me signed in" lifetime, whose known-network check reads them.
    pub login_audit_keep: Duration,
}

#[derive(Clone)]
pub struct ChatConfig {
    /// The Hermes API Server key; never logged, never sent to a browser.
    pub api_key: Option<String>,
    pub idle_timeout: Duration,
    pub memory_inject: bool,
    pub hermes_home: PathBuf,
    pub memory_max_bytes: usize,
    pub max_image_bytes: usize,
    pub max_images: usize,
    pub retry_budget: Duration,
}

impl std::fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("idle_timeout", &self.idle_timeout)
            .field("memory_inject", &self.memory_inject)
            .field("hermes_home", &self.hermes_home)
            .finish_non_exhaustive()
    }
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub certs_dir: PathBuf,
    pub data_dir: PathBuf,
    pub upstream: String,
    pub www: Option<PathBuf>,
    pub log_json: bool,
    pub tls: TlsMode,
    /// Names (DNS or IP) the local-CA leaf covers in addition to localhost and local addresses.
    pub extra_names: Vec<String>,
    pub cert_reload_interval: Duration,
    pub hsts_max_age: u64,
    pub limits: Limits,
    pub media: MediaConfig,
    pub auth: AuthConfig,
    pub chat: ChatConfig,
    /// Hermes' dashboard, e.g. `http://127.0.0.1:9119`; `None` when `/dashboard/` is off.
    pub dashboard_upstream: Option<String>,
    pub routes: Vec<RouteEntry>,
}

impl Config {
    /// Loads the file (if any) and applies the command line on top.
    pub fn load(cli: &CliOverrides) -> Result<Config, ConfigError> {
        let (file, source) = match &cli.config {
            Some(path) => (read_file(path)?, Some(path.clone())),
            None => {
                let default = Path::new(DEFAULT_CONFIG_PATH);
                if default.exists() {
                    (read_file(default)?, Some(default.to_path_buf()))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        Self::resolve(file, source, cli)
    }

    /// Parses a config from a string (used by tests and `load`).
    pub fn parse_str(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    pub fn resolve(
        file: FileConfig,
        source: Option<PathBuf>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let mut domains = file.tls.domains.clone().unwrap_or_default();
        if !cli.domains.is_empty() {
            domains = cli.domains.clone();
        }
        for d in &domains {
            validate_domain(d)?;
        }
        let cert = cli.cert.clone().or(file.tls.cert.clone());
        let key = cli.key.clone().or(file.tls.key.clone());
        let self_signed = cli.self_signed || file.tls.self_signed.unwrap_or(false);

        let tls = match (cert, key) {
            (Some(cert), Some(key)) => {
                if self_signed || !domains.is_empty() {
                    return Err(invalid(
                        "tls.cert",
                        "certificate files cannot be combined with --self-signed or --domain; choose one TLS mode",
                    ));
                }
                TlsMode::Files { cert, key }
            }
            (Some(_), None) => {
                return Err(invalid(
                    "tls.key",
                    "--cert was given without --key; give both (PEM chain and private key)",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "tls.cert",
                    "--key was given without --cert; give both (PEM chain and private key)",
                ))
            }
            (None, None) if !domains.is_empty() && !self_signed => {
                let challenge = match cli
                    .acme_challenge
                    .clone()
                    .or(file.tls.acme_challenge.clone())
                    .as_deref()
                {
                    None | Some("tls-alpn-01") => AcmeChallenge::TlsAlpn01,
                    Some("http-01") => AcmeChallenge::Http01,
                    Some(other) => {
                        return Err(invalid(
                            "tls.acme_challenge",
                            format!(
                                "`{other}` is not a challenge type; use `tls-alpn-01` or `http-01`"
                            ),
                        ))
                    }
                };
                TlsMode::Acme(AcmeSettings {
                    domains: domains.clone(),
                    email: cli.email.clone().or(file.tls.email.clone()),
                    challenge,
                    staging: cli.acme_staging || file.tls.acme_staging.unwrap_or(false),
                    directory: cli
                        .acme_directory
                        .clone()
                        .or(file.tls.acme_directory.clone()),
                    ca_root: cli.acme_ca_root.clone().or(file.tls.acme_ca_root.clone()),
                    retry_initial: Duration::from_secs(
                        file.tls.acme_retry_initial_secs.unwrap_or(300).max(1),
                    ),
                })
            }
            (None, None) => TlsMode::LocalCa,
        };

        let has_domain = matches!(tls, TlsMode::Acme(_));
        let listen_text = cli
            .listen
            .clone()
            .or(file.listen.clone())
            .unwrap_or_else(|| {
                if has_domain {
                    "0.0.0.0:443".into()
                } else {
                    "0.0.0.0:8443".into()
                }
            });
        let listen = parse_addr("listen", &listen_text)?;
        let http_text = cli.http_listen.clone().or(file.http_listen.clone());
        let http_listen = match http_text.as_deref() {
            Some("off") | Some("") => None,
            Some(text) => Some(parse_addr("http_listen", text)?),
            None if has_domain => Some(parse_addr("http_listen", "0.0.0.0:80")?),
            None => None,
        };
        if let TlsMode::Acme(a) = &tls {
            if a.challenge == AcmeChallenge::Http01 && http_listen.is_none() {
                return Err(invalid(
                    "http_listen",
                    "the http-01 ACME challenge needs the port-80 listener; remove `--http-listen off` or use tls-alpn-01",
                ));
            }
        }

        let upstream = cli
            .upstream
            .clone()
            .or(file.upstream.clone())
            .unwrap_or_else(|| "http://127.0.0.1:8642".into());
        let upstream = upstream.trim_end_matches('/').to_string();
        if !upstream.starts_with("http://") {
            return Err(invalid(
                "upstream",
                format!("`{upstream}` is not an http:// URL; the Hermes API Server listens on loopback, e.g. http://127.0.0.1:8642"),
            ));
        }
        if upstream.parse::<http::Uri>().is_err() {
            return Err(invalid(
                "upstream",
                format!("`{upstream}` is not a valid URL"),
            ));
        }

        let mut extra_names = file.tls.hostnames.clone().unwrap_or_default();
        extra_names.extend(file.tls.san.clone().unwrap_or_default());
        extra_names.extend(cli.san.iter().cloned());
        extra_names.extend(domains.iter().cloned());

        let l = &file.limits;
        let secs = |v: Option<u64>, d: u64| Duration::from_secs(v.unwrap_or(d));
        let mut trusted_proxies = Vec::new();
        for p in l.trusted_proxies.clone().unwrap_or_default() {
            let ip = p.parse().map_err(|_| {
                invalid(
                    "limits.trusted_proxies",
                    format!("`{p}` is not an IP address"),
                )
            })?;
            trusted_proxies.push(ip);
        }
        let mut limits = Limits {
            header_read_timeout: secs(l.header_read_timeout_secs, 20),
            tls_handshake_timeout: secs(l.tls_handshake_timeout_secs, 10),
            max_header_bytes: l.max_header_bytes.unwrap_or(32 * 1024),
            max_connections: l.max_connections.unwrap_or(4096),
            h2_max_concurrent_streams: l.h2_max_concurrent_streams.unwrap_or(128),
            max_body_bytes: l.max_body_bytes.unwrap_or(25 * 1024 * 1024),
            body_read_timeout: l
                .body_read_timeout_secs
                .map_or(crate::body::DEFAULT_BODY_READ_TIMEOUT, Duration::from_secs),
            body_memory_per_connection: l
                .body_memory_per_connection
                .unwrap_or(crate::body::DEFAULT_BODY_MEMORY_PER_CONNECTION),
            body_memory_total: l
                .body_memory_total
                .unwrap_or(crate::body::DEFAULT_BODY_MEMORY_TOTAL),
            shutdown_grace: secs(l.shutdown_grace_secs, 30),
            requests_per_second_per_ip: l.requests_per_second_per_ip.unwrap_or(50),
            request_burst_per_ip: l.request_burst_per_ip.unwrap_or(200),
            trusted_proxies,
            max_connections_per_ip: l
                .max_connections_per_ip
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
            send_timeout: secs(l.send_timeout_secs, DEFAULT_SEND_TIMEOUT_SECS),
        };
        if limits.max_connections_per_ip == 0 {
            return Err(invalid(
                "limits.max_connections_per_ip",
                "must be at least 1",
            ));
        }
        if limits.send_timeout.is_zero() {
            return Err(invalid("limits.send_timeout_secs", "must be at least 1"));
        }
        if limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if limits.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "limits.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        // Budgets left unset grow with `max_body_bytes`; set ones must let the largest body in.
        if l.body_memory_per_connection.is_none() {
            limits.body_memory_per_connection =
                limits.body_memory_per_connection.max(limits.max_body_bytes);
        }
        if l.body_memory_total.is_none() {
            limits.body_memory_total = limits
                .body_memory_total
                .max(limits.body_memory_per_connection);
        }
        if limits.body_memory_per_connection < limits.max_body_bytes {
            return Err(invalid(
                "limits.body_memory_per_connection",
                "must be at least max_body_bytes",
            ));
        }
        if limits.body_memory_total < limits.body_memory_per_connection {
            return Err(invalid(
                "limits.body_memory_total",
                "must be at least body_memory_per_connection",
            ));
        }
        if limits.body_read_timeout.is_zero() {
            return Err(invalid(
                "limits.body_read_timeout_secs",
                "must be at least 1",
            ));
        }
        if limits.max_header_bytes < 1024 {
            return Err(invalid("limits.max_header_bytes", "must be at least 1024"));
        }
        if limits.requests_per_second_per_ip == 0 || limits.request_burst_per_ip == 0 {
            return Err(invalid(
                "limits.requests_per_second_per_ip",
                "rate limits must be at least 1",
            ));
        }

        let media = MediaConfig {
            dir: cli
                .media
                .clone()
                .or(file.media.dir.clone())
                .unwrap_or_else(|| PathBuf::from("media")),
            public: file.media.public.unwrap_or(false),
            listing: file.media.listing.unwrap_or(false),
        };
        let a = &file.auth;
        let auth = AuthConfig {
            session_lifetime: lifetime(
                ("auth.session_hours", a.session_hours, 3600),
                ("auth.session_secs", a.session_secs),
                24 * 3600,
            )?,
            remember_lifetime: lifetime(
                ("auth.remember_days", a.remember_days, 86_400),
                ("auth.remember_secs", a.remember_secs),
                30 * 86_400,
            )?,
            login_attempts_per_minute_per_ip: a.login_attempts_per_minute_per_ip.unwrap_or(5),
            login_attempts_per_minute_per_account: a
                .login_attempts_per_minute_per_account
                .unwrap_or(10),
            chat_sends_per_minute_per_user: a.chat_sends_per_minute_per_user.unwrap_or(30),
            login_audit_keep: Duration::ZERO,
        };
        /// Sign-in attempts kept for `GET /api/admin/audit`: a quarter covers looking back at an
        /// incident noticed late, while the table stops growing with every attempt ever made.
        const DEFAULT_LOGIN_AUDIT_DAYS: u64 = 90;
        let audit_days = a.login_audit_days.unwrap_or(DEFAULT_LOGIN_AUDIT_DAYS);
        if !(1..=36_500).contains(&audit_days) {
            return Err(invalid(
                "auth.login_audit_days",
                "must be a whole number of days from 1 to 36500",
            ));
        }
        let auth = AuthConfig {
            login_audit_keep: Duration::from_secs(audit_days * 86_400).max(auth.remember_lifetime),
            ..auth
        };
        if auth.login_attempts_per_minute_per_ip == 0
            || auth.login_attempts_per_minute_per_account == 0
            || auth.chat_sends_per_minute_per_user == 0
        {
            return Err(invalid("auth", "rate limits must be at least 1"));
        }

        let c = &file.chat;
        let api_key = match (&c.api_key, &c.api_key_file) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        "chat.api_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(text.trim().to_string())
            }
            (None, None) => std::env::var("HERMES_EDGE_API_KEY")
                .ok()
                .or_else(|| std::env::var("API_SERVER_KEY").ok())
                .filter(|k| !k.is_empty()),
        };
        let hermes_home = c.hermes_home.clone().unwrap_or_else(|| {
            std::env::var_os("HERMES_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".hermes")))
                .unwrap_or_else(|| PathBuf::from(".hermes"))
        });
        let chat = ChatConfig {
            api_key,
            idle_timeout: secs(c.idle_timeout_secs, 120),
            memory_inject: c.memory_inject.unwrap_or(false),
            hermes_home,
            memory_max_bytes: c.memory_max_bytes.unwrap_or(32 * 1024),
            max_image_bytes: c.max_image_bytes.unwrap_or(5 * 1024 * 1024),
            max_images: c.max_images.unwrap_or(4),
            retry_budget: secs(c.retry_budget_secs, 20),
        };
        if chat.idle_timeout.is_zero() {
            return Err(invalid("chat.idle_timeout_secs", "must be at least 1"));
        }

        let dashboard_upstream = match cli
            .dashboard_upstream
            .clone()
            .or(file.dashboard.upstream.clone())
        {
            None => None,
            Some(text) if text.is_empty() || text == "off" => None,
            Some(text) => Some(dashboard_url(&text)?),
        };

        for r in &file.routes {
            if !r.path.starts_with('/') || r.path.contains("..") {
                return Err(invalid(
                    "routes.path",
                    format!("`{}` must be an absolute path like /video", r.path),
                ));
            }
        }

        Ok(Config {
            source,
            listen,
            http_listen,
            certs_dir: cli
                .certs_dir
                .clone()
                .or(file.certs_dir.clone())
                .unwrap_or_else(|| PathBuf::from("certs")),
            data_dir: cli
                .data_dir
                .clone()
                .or(file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from("data")),
            upstream,
            www: cli.www.clone().or(file.www.clone()),
            log_json: cli.log_json || file.log_json.unwrap_or(false),
            hsts_max_age: file.tls.hsts_max_age_secs.unwrap_or(match tls {
                TlsMode::LocalCa => 86_400,
                _ => 31_536_000,
            }),
            tls,
            extra_names,
            cert_reload_interval: secs(file.tls.reload_interval_secs, 2),
            limits,
            media,
            auth,
            chat,
            dashboard_upstream,
            routes: file.routes,
        })
    }
}

/// The dashboard's base URL: `http://HOST:PORT` with no path, because the edge sends that
/// authority as `Host` (the dashboard refuses any other) and mounts it at `/dashboard/` itself.
fn dashboard_url(text: &str) -> Result<String, ConfigError> {
    const KEY: &str = "dashboard.upstream";
    let url = text.trim_end_matches('/');
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(invalid(
            KEY,
            format!("`{text}` is not an http:// URL; `hermes dashboard` listens on loopback, e.g. http://127.0.0.1:9119"),
        ));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(invalid(
            KEY,
            format!("`{text}` must be only a scheme, host and port, e.g. http://127.0.0.1:9119 (the edge serves it under /dashboard/ itself)"),
        ));
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => Ok(url.to_string()),
        _ => Err(invalid(KEY, format!("`{text}` is not a valid URL"))),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Config::parse_str(&text, path)
}

/// The longest session a browser keeps a cookie for (Chrome caps `Max-Age` at 400 days).
const MAX_LIFETIME_SECS: u64 = 400 * 86_400;

/// A session lifetime from a coarse key (hours or days) or its seconds twin, never both.
fn lifetime(
    (coarse_key, coarse, unit): (&str, Option<u64>, u64),
    (secs_key, secs): (&str, Option<u64>),
    default: u64,
) -> Result<Duration, ConfigError> {
    let (key, value) = match (coarse, secs) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                secs_key,
                format!("give either `{coarse_key}` or `{secs_key}`, not both"),
            ))
        }
        (Some(v), None) => (coarse_key, v.saturating_mul(unit)),
        (None, Some(v)) => (secs_key, v),
        (None, None) => return Ok(Duration::from_secs(default)),
    };
    if value == 0 || value > MAX_LIFETIME_SECS {
        return Err(invalid(
            key,
            "must be at least 1 second and at most 400 days (browsers drop longer cookies)",
        ));
    }
    Ok(Duration::from_secs(value))
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    // A bare port (":8443" or "8443") listens on every IPv4 address.
    let port_text = text.strip_prefix(':').unwrap_or(text);
    if let Ok(port) = port_text.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    Err(invalid(
        key,
        format!("`{text}` is not ADDRESS:PORT (for example 0.0.0.0:8443 or [::]:443)"),
    ))
}

fn validate_domain(d: &str) -> Result<(), ConfigError> {
    let ok = !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && d.parse::<std::net::IpAddr>().is_err()
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "tls.domains",
            format!("`{d}` is not a domain name like chat.example.com (ACME cannot issue for IP addresses; use --self-signed on a LAN)"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(text: &str, cli: CliOverrides) -> Result<Config, ConfigError> {
        let file = Config::parse_str(text, Path::new("t.toml"))?;
        Config::resolve(file, None, &cli)
    }

    #[test]
    fn empty_config_runs_local_ca_on_8443_without_redirect() {
        let c = resolve("", CliOverrides::default()).unwrap();
        assert_eq!(c.tls, TlsMode::LocalCa);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(c.http_listen, None);
        assert_eq!(c.upstream, "http://127.0.0.1:8642");
    }

    #[test]
    fn a_domain_selects_acme_on_443_with_redirect_on_80() {
        let cli = CliOverrides {
            domains: vec!["chat.example.com".into()],
            email: Some("me@example.com".into()),
            ..Default::default()
        };
        let c = resolve("", cli).unwrap();
        assert!(matches!(c.tls, TlsMode::Acme(ref a) if a.domains == ["chat.example.com"]));
        assert_eq!(c.listen.to_string(), "0.0.0.0:443");
        assert_eq!(c.http_listen.map(|a| a.port()), Some(80));
    }

    #[test]
    fn unknown_key_names_the_file_and_key() {
        let err = resolve("lisen = \"x\"", CliOverrides::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("t.toml"), "{text}");
        assert!(text.contains("lisen"), "{text}");
    }

    #[test]
    fn bad_listen_address_says_what_is_expected() {
        let err = resolve("listen = \"nowhere\"", CliOverrides::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting `listen`: `nowhere` is not ADDRESS:PORT (for example 0.0.0.0:8443 or [::]:443)"
        );
    }

    #[test]
    fn cert_without_key_is_refused() {
        let cli = CliOverrides {
            cert: Some("a.pem".into()),
            ..Default::default()
        };
        assert!(resolve("", cli).unwrap_err().to_string().contains("--key"));
    }

    #[test]
    fn ip_address_is_not_an_acme_domain() {
        let cli = CliOverrides {
            domains: vec!["192.0.2.1".into()],
            ..Default::default()
        };
        assert!(resolve("", cli)
            .unwrap_err()
            .to_string()
            .contains("--self-signed"));
    }

    #[test]
    fn session_lifetimes_default_to_a_day_and_thirty_days() {
        let c = resolve("", CliOverrides::default()).unwrap();
        assert_eq!(c.auth.session_lifetime, Duration::from_secs(86_400));
        assert_eq!(c.auth.remember_lifetime, Duration::from_secs(2_592_000));
        let c = resolve(
            "[auth]\nsession_secs = 5\nremember_days = 2",
            CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(c.auth.session_lifetime, Duration::from_secs(5));
        assert_eq!(c.auth.remember_lifetime, Duration::from_secs(172_800));
    }

    #[test]
    fn session_lifetime_keys_are_validated() {
        let err = |t: &str| resolve(t, CliOverrides::default()).unwrap_err().to_string();
        assert_eq!(
            err("[auth]\nsession_hours = 1\nsession_secs = 5"),
            "invalid setting `auth.session_secs`: give either `auth.session_hours` or `auth.session_secs`, not both"
        );
        assert!(err("[auth]\nsession_secs = 0").contains("`auth.session_secs`"));
        // Far beyond any cookie lifetime, and would overflow if multiplied naively.
        assert!(err("[auth]\nremember_days = 9223372036854775807").contains("`auth.remember_days`"));
    }

    #[test]
    fn wrong_type_is_reported_with_the_key() {
        let err = resolve(
            "[limits]\nmax_connections = \"many\"",
            CliOverrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn dashboard_is_off_by_default_and_set_from_file_or_flag() {
        assert_eq!(
            resolve("", CliOverrides::default())
                .unwrap()
                .dashboard_upstream,
            None
        );
        let c = resolve(
            "[dashboard]\nupstream = \"http://127.0.0.1:9119/\"\n",
            CliOverrides::default(),
        )
        .unwrap();
        assert_eq!(
            c.dashboard_upstream.as_deref(),
            Some("http://127.0.0.1:9119")
        );
        let cli = CliOverrides {
            dashboard_upstream: Some("http://localhost:9200".into()),
            ..Default::default()
        };
        let c = resolve("[dashboard]\nupstream = \"http://127.0.0.1:9119\"\n", cli).unwrap();
        assert_eq!(
            c.dashboard_upstream.as_deref(),
            Some("http://localhost:9200")
        );
        let cli = CliOverrides {
            dashboard_upstream: Some("off".into()),
            ..Default::default()
        };
        let c = resolve("[dashboard]\nupstream = \"http://127.0.0.1:9119\"\n", cli).unwrap();
        assert_eq!(c.dashboard_upstream, None);
    }

    #[test]
    fn dashboard_url_must_be_plain_http_host_and_port() {
        for bad in [
            "https://127.0.0.1:9119",
            "127.0.0.1:9119",
            "http://127.0.0.1:9119/ui",
            "http://",
        ] {
            let text = format!("[dashboard]\nupstream = \"{bad}\"\n");
            let e = resolve(&text, CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("invalid setting `dashboard.upstream`: "),
                "{bad}: {e}"
            );
            assert!(e.contains("http://127.0.0.1:9119"), "{bad}: {e}");
        }
    }
}
