//! The TOML file's shape, one struct per `[section]`. An unknown key stops the start with its name
//! (serde's message names it and the keys expected there); a missing one is `None` and its default
//! comes from `defaults.rs` in the section's resolver.

use std::path::PathBuf;

use serde::Deserialize;

/// The file as written by the user: every field optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
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
    pub metrics: FileMetrics,
    #[serde(default)]
    pub push: FilePush,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTls {
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
pub(crate) struct FileLimits {
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
pub(crate) struct FileMedia {
    pub dir: Option<PathBuf>,
    pub public: Option<bool>,
    pub listing: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileAuth {
    pub session_hours: Option<u64>,
    pub remember_days: Option<u64>,
    /// The same lifetimes in seconds (for short-lived deployments and tests); exclusive with the above.
    pub session_secs: Option<u64>,
    pub remember_secs: Option<u64>,
    pub login_attempts_per_minute_per_ip: Option<u32>,
    pub login_attempts_per_minute_per_account: Option<u32>,
    pub chat_sends_per_minute_per_user: Option<u32>,
    pub login_audit_days: Option<u64>,
    /// `[[auth.oidc]]`: single sign-on providers (see `oidc.rs`).
    #[serde(default)]
    pub oidc: Vec<FileOidc>,
    pub require_second_factor: Option<String>,
    pub trusted_header: Option<String>,
    pub trusted_header_create: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileChat {
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub idle_timeout_secs: Option<u64>,
    pub memory_inject: Option<bool>,
    pub hermes_home: Option<PathBuf>,
    pub memory_max_bytes: Option<usize>,
    pub max_image_bytes: Option<usize>,
    pub max_images: Option<usize>,
    pub max_attachment_bytes: Option<usize>,
    pub attachment_quota_bytes: Option<u64>,
    pub retry_budget_secs: Option<u64>,
    pub max_runs_per_user: Option<usize>,
    pub max_runs: Option<usize>,
    pub approvals: Option<String>,
    pub approval_timeout_secs: Option<u64>,
}

/// `[dashboard]`: Hermes' own web dashboard (`hermes dashboard`), proxied at `/dashboard/`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDashboard {
    pub upstream: Option<String>,
}

/// `[metrics]`: the loopback listener of `/metrics` and `/status`, and its token.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileMetrics {
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
}

/// `[push]`: Web Push notifications of finished answers and waiting approvals.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilePush {
    pub enabled: Option<bool>,
    pub subject: Option<String>,
    pub max_subscriptions_per_user: Option<usize>,
    pub ttl_secs: Option<u64>,
    pub allow_private_endpoints: Option<bool>,
}

/// A custom page: `[[routes]] path = "/video" file = "www/video.html"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RouteEntry {
    pub path: String,
    pub file: PathBuf,
}

/// One OpenID Connect provider: `[[auth.oidc]] name = "corp" issuer = "https://id.example.com" ...`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileOidc {
    pub name: String,
    pub label: Option<String>,
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub client_secret_env: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub allowed_email_domains: Option<Vec<String>>,
    pub allowed_emails: Option<Vec<String>>,
    pub admin_claim: Option<String>,
    pub admin_values: Option<Vec<String>>,
    pub create_accounts: Option<bool>,
}
