//! Where every setting comes from: the built-in defaults, then the TOML file, then the command line.
//!
//! Every key is optional. A bad file stops startup with the file, the key and what was expected
//! (`ConfigError`), never with a panic or a half-applied configuration.
//!
//! Adding a key `[section] name` takes four edits, and a test fails if the last is forgotten:
//! 1. `file.rs`: an `Option<T>` field `name` in the section's `File*` struct (top-level keys in
//!    `FileConfig`); unknown keys are refused, so the file cannot use it before this.
//! 2. `defaults.rs`: `pub const NAME: T`, with one line on why that value.
//! 3. The section's resolver (`limits.rs`, `tls.rs`, `auth.rs`, `chat.rs`, `media.rs`,
//!    `dashboard.rs`; top-level keys in `Config::resolve` below): a field in the runtime struct,
//!    `file.name.unwrap_or(defaults::NAME)`, and a check that refuses a value that cannot work,
//!    with `invalid("section.name", ...)`.
//! 4. `config/hermes-edge.example.toml`: the key commented out with its default and a line on what
//!    it does. `example_file_parses_with_every_key_uncommented` below parses every commented key.
//!
//! A key that also has a flag: a field in `CliOverrides` below (clap derives the flag from it;
//! take a default in its help from `defaults`), and `cli.name.clone().or(file...)` in the resolver.

mod auth;
mod chat;
mod dashboard;
pub(crate) mod defaults;
mod file;
pub(crate) mod hermes_settings;
mod limits;
mod media;
mod metrics;
mod oidc;
pub(crate) mod push;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use auth::AuthConfig;
pub(crate) use chat::ChatConfig;
pub(crate) use file::{FileConfig, RouteEntry};
pub(crate) use hermes_settings::HermesSettings;
pub(crate) use limits::Limits;
pub(crate) use media::MediaConfig;
pub(crate) use metrics::MetricsConfig;
pub(crate) use oidc::OidcProvider;
pub(crate) use tls::{AcmeChallenge, AcmeSettings, TlsMode};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
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

/// A number of seconds from the file, or the default.
fn secs(value: Option<u64>, default: u64) -> Duration {
    Duration::from_secs(value.unwrap_or(default))
}

/// Settings given on the command line; each overrides the file. clap derives the flags from this
/// struct (flattened into `serve`'s arguments in `main.rs`), so a flag is one field here.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct CliOverrides {
    #[arg(long, global = true, help = format!(
        "Config file (TOML); default {} if it exists", defaults::CONFIG_PATH
    ))]
    pub config: Option<PathBuf>,
    #[arg(long, global = true, help = format!(
        "HTTPS listen address (default {}, or {} with --domain)",
        defaults::LISTEN, defaults::LISTEN_WITH_DOMAIN
    ))]
    pub listen: Option<String>,
    #[arg(long, global = true, help = format!(
        "Plain-HTTP redirect listener, ADDR:PORT or `off` (default {} with --domain, else off)",
        defaults::HTTP_LISTEN_WITH_DOMAIN
    ))]
    pub http_listen: Option<String>,
    #[arg(long, global = true, help = format!(
        "Directory for the local CA, leaf and ACME cache (default ./{})", defaults::CERTS_DIR
    ))]
    pub certs_dir: Option<PathBuf>,
    #[arg(long, global = true, help = format!(
        "Directory for the database (default ./{})", defaults::DATA_DIR
    ))]
    pub data_dir: Option<PathBuf>,
    #[arg(long, global = true, help = format!(
        "The Hermes API Server (default {})", defaults::UPSTREAM
    ))]
    pub upstream: Option<String>,
    /// Hermes' web dashboard to serve at /dashboard/ (admins only), e.g. http://127.0.0.1:9119.
    #[arg(long, global = true)]
    pub dashboard_upstream: Option<String>,
    /// Serve the site's files from this directory instead of the embedded copy.
    #[arg(long, global = true)]
    pub www: Option<PathBuf>,
    #[arg(long, global = true, help = format!(
        "Directory served at /media/ (default ./{})", defaults::MEDIA_DIR
    ))]
    pub media: Option<PathBuf>,
    /// Use the local CA even when a domain is configured.
    #[arg(long, global = true)]
    pub self_signed: bool,
    /// PEM certificate chain file (with --key).
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// PEM private key file (with --cert).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// Extra name or IP address for the local-CA certificate (repeatable).
    #[arg(long, global = true)]
    pub san: Vec<String>,
    /// Domain for an ACME (Let's Encrypt) certificate (repeatable).
    #[arg(long = "domain", value_name = "DOMAIN", global = true)]
    pub domains: Vec<String>,
    /// Contact email for the ACME account.
    #[arg(long, global = true)]
    pub email: Option<String>,
    /// ACME challenge: tls-alpn-01 (default) or http-01.
    #[arg(long, global = true)]
    pub acme_challenge: Option<String>,
    /// Use Let's Encrypt's staging directory.
    #[arg(long, global = true)]
    pub acme_staging: bool,
    /// ACME directory URL of another CA.
    #[arg(long, global = true)]
    pub acme_directory: Option<String>,
    /// PEM root the ACME client trusts for that directory.
    #[arg(long, global = true)]
    pub acme_ca_root: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[arg(long, global = true, help = format!(
        "Plain-HTTP listener of /metrics and /status, ADDR:PORT or `off` (default {})",
        defaults::METRICS_LISTEN
    ))]
    pub metrics_listen: Option<String>,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub certs_dir: PathBuf,
    pub data_dir: PathBuf,
    pub upstream: String,
    /// Where `upstream` came from: `--upstream`, `config file upstream`, Hermes' settings (e.g.
    /// `/home/u/.hermes/.env (API_SERVER_PORT)`) or `built-in default`.
    pub upstream_source: String,
    /// Hermes' API server settings in `chat.hermes_home` (read even when not used, for `doctor`).
    pub hermes: HermesSettings,
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
    /// `[[auth.oidc]]`: single sign-on providers, in the file's order (the login page's order).
    pub oidc: Vec<OidcProvider>,
    pub chat: ChatConfig,
    /// Hermes' dashboard, e.g. `http://127.0.0.1:9119`; `None` when `/dashboard/` is off.
    pub dashboard_upstream: Option<String>,
    pub metrics: MetricsConfig,
    pub push: push::PushConfig,
    pub routes: Vec<RouteEntry>,
}

impl Config {
    /// Loads the file (if any) and applies the command line on top.
    pub(crate) fn load(cli: &CliOverrides) -> Result<Config, ConfigError> {
        let (file, source) = match &cli.config {
            Some(path) => (read_file(path)?, Some(path.clone())),
            None => {
                let default = Path::new(defaults::CONFIG_PATH);
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
    pub(crate) fn parse_str(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// One resolver per section, in this order, so the first problem reported is always the same.
    pub(crate) fn resolve(
        file: FileConfig,
        source: Option<PathBuf>,
        cli: &CliOverrides,
    ) -> Result<Config, ConfigError> {
        let domains = tls::domains(&file.tls, cli)?;
        let tls = tls::mode(&file.tls, cli, &domains)?;
        let (listen, http_listen) = tls::listeners(&file, cli, &tls)?;
        let hermes_home = chat::hermes_home(&file.chat);
        let hermes = HermesSettings::read(&hermes_home);
        let (upstream, upstream_source) = upstream(&file, cli, &hermes)?;
        let extra_names = tls::extra_names(&file.tls, cli, &domains);
        let limits = limits::resolve(&file.limits)?;
        let media = media::resolve(&file.media, cli);
        let auth = auth::resolve(&file.auth)?;
        let oidc = oidc::resolve(&file.auth.oidc)?;
        if auth.trusted_header.is_some() && limits.trusted_proxies.is_empty() {
            return Err(invalid(
                "auth.trusted_header",
                "is believed only from `limits.trusted_proxies`, which is empty: list the \
                 address of the proxy that signs people in (or remove `trusted_header`)",
            ));
        }
        let mut chat = chat::resolve(&file.chat, hermes_home, &hermes)?;
        if file.chat.max_attachment_bytes.is_none() {
            // The default never asks for more than a smaller body limit allows.
            chat.max_attachment_bytes = chat.max_attachment_bytes.min(limits.max_body_bytes);
        } else if chat.max_attachment_bytes > limits.max_body_bytes {
            return Err(invalid(
                "chat.max_attachment_bytes",
                format!(
                    "must not be more than limits.max_body_bytes ({}): an attachment arrives as one request body",
                    limits.max_body_bytes
                ),
            ));
        }
        let dashboard_upstream = dashboard::resolve(&file.dashboard, cli)?;
        let metrics = metrics::resolve(&file.metrics, cli)?;
        let push = push::resolve(&file.push)?;
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
                .unwrap_or_else(|| PathBuf::from(defaults::CERTS_DIR)),
            data_dir: cli
                .data_dir
                .clone()
                .or(file.data_dir.clone())
                .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR)),
            upstream,
            upstream_source,
            hermes,
            www: cli.www.clone().or(file.www.clone()),
            log_json: cli.log_json || file.log_json.unwrap_or(defaults::LOG_JSON),
            hsts_max_age: tls::hsts_max_age(&file.tls, &tls),
            tls,
            extra_names,
            cert_reload_interval: secs(
                file.tls.reload_interval_secs,
                defaults::CERT_RELOAD_INTERVAL_SECS,
            ),
            limits,
            media,
            auth,
            oidc,
            chat,
            dashboard_upstream,
            metrics,
            push,
            routes: file.routes,
        })
    }
}

/// The Hermes API Server (plain http:// on loopback, without a trailing slash) and where it came
/// from: `--upstream`, the file's `upstream`, Hermes' own host and port, the default.
fn upstream(
    file: &FileConfig,
    cli: &CliOverrides,
    hermes: &HermesSettings,
) -> Result<(String, String), ConfigError> {
    let (upstream, source) = match (&cli.upstream, &file.upstream, hermes.upstream()) {
        (Some(u), _, _) => (u.clone(), "--upstream".to_string()),
        (None, Some(u), _) => (u.clone(), "config file upstream".to_string()),
        (None, None, Some(found)) => (found.value, found.source),
        (None, None, None) => (
            defaults::UPSTREAM.to_string(),
            "built-in default".to_string(),
        ),
    };
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
    Ok((upstream, source))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Config::parse_str(&text, path)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Hermes home with nothing in it, so that the settings of whoever runs the tests stay out.
    const NO_HERMES_HOME: &str = "/nonexistent/hermes-home";

    fn resolve(text: &str, cli: CliOverrides) -> Result<Config, ConfigError> {
        let mut file = Config::parse_str(text, Path::new("t.toml"))?;
        file.chat
            .hermes_home
            .get_or_insert_with(|| NO_HERMES_HOME.into());
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

    /// The example file with every commented `key = value` line and `[[routes]]` table
    /// uncommented: what a user gets by uncommenting any of them.
    fn example_uncommented() -> String {
        let example = include_str!("../../config/hermes-edge.example.toml");
        let mut out = String::new();
        for line in example.lines() {
            let body = line.strip_prefix('#').map(str::trim_start);
            let is_setting = body.is_some_and(|b| {
                b.starts_with("[[")
                    || b.split_once(" = ").is_some_and(|(key, _)| {
                        !key.is_empty()
                            && key
                                .chars()
                                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    })
            });
            match body {
                Some(b) if is_setting => out.push_str(b),
                _ => out.push_str(line),
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn example_file_parses_with_every_key_uncommented() {
        let text = example_uncommented();
        let mut file = Config::parse_str(&text, Path::new("hermes-edge.example.toml"))
            .unwrap_or_else(|e| panic!("{e}\n--- the example, uncommented:\n{text}"));
        // Every key of the file structs is shown in the example (the API key itself only as
        // `api_key_file`: the example steers secrets away from the config file).
        let shown = format!("{file:?}");
        let missing: Vec<&str> = shown
            .split([',', '{'])
            .filter_map(|field| field.trim().strip_suffix(": None"))
            .filter(|key| *key != "api_key")
            .collect();
        assert!(
            missing.is_empty(),
            "keys missing from the example file: {missing:?}"
        );
        assert_eq!(file.routes.len(), 1);
        // The example shows alternatives that exclude each other; keep one of each.
        file.tls.cert = None; // files, ACME (tls.domains) or the local CA
        file.tls.key = None;
        file.auth.session_secs = None; // hours/days or seconds
        file.auth.remember_secs = None;
        file.chat.api_key_file = None; // an example path, read at start
        file.metrics.token_file = None; // likewise
        assert_eq!(file.auth.oidc.len(), 1);
        file.auth.oidc[0].client_secret_file = None; // a file or the environment, not both
        file.auth.oidc[0].client_secret_env = None; // and an example variable, read at start
        file.auth.trusted_header = None; // off by default; needs trusted_proxies
        let c = Config::resolve(file, None, &CliOverrides::default()).unwrap();
        assert!(matches!(c.tls, TlsMode::Acme(_)));
        assert_eq!(c.routes[0].path, "/video");
        // The example shows the defaults (where they do not depend on the machine).
        let d = resolve("", CliOverrides::default()).unwrap();
        assert_eq!(format!("{:?}", c.limits), format!("{:?}", d.limits));
        assert_eq!(format!("{:?}", c.media), format!("{:?}", d.media));
        assert_eq!(format!("{:?}", c.auth), format!("{:?}", d.auth));
        let chat = |c: &Config| {
            let c = &c.chat;
            let sizes = (c.memory_max_bytes, c.max_image_bytes, c.max_images);
            let files = (c.max_attachment_bytes, c.attachment_quota_bytes);
            (
                c.idle_timeout,
                c.memory_inject,
                sizes,
                files,
                c.retry_budget,
            )
        };
        assert_eq!(chat(&c), chat(&d));
        assert_eq!(
            (c.cert_reload_interval, c.hsts_max_age, c.upstream, c.listen),
            (d.cert_reload_interval, 31_536_000, d.upstream, d.listen)
        );
    }

    #[test]
    fn unknown_key_in_a_section_is_refused_by_name() {
        for text in [
            "[limits]\nmax_conections = 10\n",
            "[chat]\nmax_conections = 10\n",
            "max_conections = 10\n",
            "[[routes]]\npath = \"/v\"\nfile = \"v.html\"\nmax_conections = 10\n",
        ] {
            let err = resolve(text, CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("invalid config file t.toml: "), "{err}");
            assert!(err.contains("unknown field `max_conections`"), "{err}");
        }
    }

    #[test]
    fn hermes_settings_fill_in_what_is_not_configured_and_nothing_else() {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join(".env"),
            "API_SERVER_ENABLED=true\nAPI_SERVER_KEY=from-hermes\nAPI_SERVER_PORT=8700\n",
        )
        .unwrap();
        let with_home = |extra: &str| {
            format!(
                "{extra}\n[chat]\nhermes_home = \"{}\"\n",
                home.path().display()
            )
        };
        let env_path = home.path().join(".env").display().to_string();

        let c = resolve(&with_home(""), CliOverrides::default()).unwrap();
        assert_eq!(c.upstream, "http://127.0.0.1:8700");
        assert_eq!(
            c.upstream_source,
            format!("port {env_path} (API_SERVER_PORT), host Hermes' default")
        );
        // The key from Hermes' home only when the environment of these tests gives none.
        if std::env::var_os("HERMES_EDGE_API_KEY").is_none()
            && std::env::var_os("API_SERVER_KEY").is_none()
        {
            assert_eq!(c.chat.api_key.as_deref(), Some("from-hermes"));
            assert_eq!(
                c.chat.api_key_source,
                Some(format!("{env_path} (API_SERVER_KEY)"))
            );
        }

        // What is configured wins: the file's upstream and key file, then --upstream.
        let key_file = home.path().join("key");
        std::fs::write(&key_file, "from-file\n").unwrap();
        let text = format!(
            "upstream = \"http://127.0.0.1:9000\"\n[chat]\nhermes_home = \"{}\"\napi_key_file = \"{}\"\n",
            home.path().display(),
            key_file.display()
        );
        let c = resolve(&text, CliOverrides::default()).unwrap();
        assert_eq!(
            (c.upstream.as_str(), c.upstream_source.as_str()),
            ("http://127.0.0.1:9000", "config file upstream")
        );
        assert_eq!(c.chat.api_key.as_deref(), Some("from-file"));
        assert_eq!(
            c.chat.api_key_source,
            Some(format!(
                "config file chat.api_key_file ({})",
                key_file.display()
            ))
        );
        let cli = CliOverrides {
            upstream: Some("http://127.0.0.1:9100".into()),
            ..Default::default()
        };
        let c = resolve(&text, cli).unwrap();
        assert_eq!(c.upstream_source, "--upstream");

        // No settings anywhere: the default, said so.
        let c = resolve("", CliOverrides::default()).unwrap();
        assert_eq!(c.upstream_source, "built-in default");
        assert!(!c.hermes.found_any());
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let c = resolve("", CliOverrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), defaults::LISTEN);
        assert_eq!(c.upstream, defaults::UPSTREAM);
        assert_eq!(c.limits.max_connections, defaults::MAX_CONNECTIONS);
        assert_eq!(c.hsts_max_age, defaults::HSTS_MAX_AGE_LOCAL_CA_SECS);
        assert_eq!(
            c.auth.login_audit_keep,
            Duration::from_secs(defaults::LOGIN_AUDIT_DAYS * 86_400)
        );
        assert_eq!(c.chat.max_images, defaults::MAX_IMAGES);
    }
}
