//! Every default, named once: the resolvers use these, and so does the command-line help, so the
//! two cannot disagree. `config/hermes-edge.example.toml` shows the same values; a test in
//! `mod.rs` uncomments it and compares what it resolves to with the defaults.

use std::time::Duration;

/// Read when it exists and no `--config` was given, so a plain `hermes-edge` in its folder works.
pub(crate) const CONFIG_PATH: &str = "config/hermes-edge.toml";

// --- Top level ---

/// An unprivileged port, so a first start needs no root and no domain.
pub(crate) const LISTEN: &str = "0.0.0.0:8443";
/// With an ACME domain the site is public: browsers expect the standard HTTPS port.
pub(crate) const LISTEN_WITH_DOMAIN: &str = "0.0.0.0:443";
/// With an ACME domain, port 80 redirects to HTTPS and answers HTTP-01; without one it stays closed.
pub(crate) const HTTP_LISTEN_WITH_DOMAIN: &str = "0.0.0.0:80";
/// Beside the binary's working directory, where the example service files run it.
pub(crate) const CERTS_DIR: &str = "certs";
pub(crate) const DATA_DIR: &str = "data";
/// Where `hermes gateway run` puts its API Server (API_SERVER_PORT's default).
pub(crate) const UPSTREAM: &str = "http://127.0.0.1:8642";
/// Text logs for a terminal or journald; JSON only when asked for by a log collector.
pub(crate) const LOG_JSON: bool = false;

// --- [metrics] ---

/// Loopback only: the counters say who is active and which names the server has, which is not
/// the internet's business. Port 8643: beside Hermes' own ports on this machine (8642 for its API
/// server, 8644 for its webhook adapter, 9119 for its dashboard) but used by none of them, outside
/// the Prometheus exporter range 9100-9999 (fully allocated, so any port there is some exporter's),
/// and no common development port. If it is taken anyway, the server logs a warning and serves.
pub(crate) const METRICS_LISTEN: &str = "127.0.0.1:8643";

// --- [tls] ---

/// Often enough that a renewed certificate file is served within seconds, cheap (one stat).
pub(crate) const CERT_RELOAD_INTERVAL_SECS: u64 = 2;
/// The first wait after a failed ACME attempt stays under Let's Encrypt's limit of 5 failed
/// validations per name per hour; it doubles after each further failure.
pub(crate) const ACME_RETRY_INITIAL_SECS: u64 = 300;
/// One year, what browsers' HSTS preload lists ask for, with a real (public) certificate.
pub(crate) const HSTS_MAX_AGE_SECS: u64 = 31_536_000;
/// One day with the local CA: a LAN name may later be served without it, and must not be locked.
pub(crate) const HSTS_MAX_AGE_LOCAL_CA_SECS: u64 = 86_400;

// --- [limits] ---

/// Long enough for a slow mobile client to send a request head, short enough that idle
/// connections do not pile up (also the keep-alive idle limit).
pub(crate) const HEADER_READ_TIMEOUT_SECS: u64 = 20;
/// A TLS handshake is a few round trips; a client that takes longer is gone or stalling.
pub(crate) const TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// Room for large cookies and headers of real browsers; beyond it 431/400.
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Lowered at start to fit the open-files limit (see `conn_limits::fit_limits`).
pub(crate) const MAX_CONNECTIONS: usize = 4096;
/// Enough for a page's parallel requests on one HTTP/2 connection.
pub(crate) const H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// A chat message with its images (`chat.max_images` of `chat.max_image_bytes`, base64) fits.
pub(crate) const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// `limits.body_read_timeout_secs`: nginx's `client_body_timeout` is 60 s between two reads; half
/// of it here, because every waiting body also holds its place under the memory budgets. A real
/// upload pauses that long only when its network is gone.
pub(crate) const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// `limits.body_memory_per_connection`: two chat messages of the largest default size
/// (`max_body_bytes`, 25 MiB) at once, as from two tabs sharing one HTTP/2 connection, with room
/// to spare; never less than `max_body_bytes`.
pub(crate) const BODY_MEMORY_PER_CONNECTION: usize = 64 * 1024 * 1024;
/// `limits.body_memory_total`: about ten of the largest chat messages at once, affordable on a
/// small server that also runs the agent; never less than the per-connection budget.
pub(crate) const BODY_MEMORY_TOTAL: usize = 256 * 1024 * 1024;
/// Time for a streaming chat answer in progress to finish after SIGTERM before it is cut.
pub(crate) const SHUTDOWN_GRACE_SECS: u64 = 30;
/// Far above what one person's browser sends, low enough to slow a single flooding address.
pub(crate) const REQUESTS_PER_SECOND_PER_IP: u32 = 50;
/// A page load's burst of requests passes at once.
pub(crate) const REQUEST_BURST_PER_IP: u32 = 200;
/// Open connections one client network may hold. A browser opens at most six HTTP/1.1
/// connections per site (one with HTTP/2), so this leaves room for a whole office or a carrier's
/// NAT behind one IPv4 address, while one address alone can no longer take all of
/// `max_connections`.
pub(crate) const MAX_CONNECTIONS_PER_IP: usize = 256;
/// nginx's `send_timeout`: a minute without a byte taken by the client is a client that is gone
/// or holding the response (and its file or upstream stream) on purpose.
pub(crate) const SEND_TIMEOUT_SECS: u64 = 60;

// --- [media] ---

/// Served at /media/ from the working directory, like `certs` and `data`.
pub(crate) const MEDIA_DIR: &str = "media";
/// Private unless the operator says otherwise: files may be personal.
pub(crate) const MEDIA_PUBLIC: bool = false;
/// Folder listings show names the operator may not mean to publish.
pub(crate) const MEDIA_LISTING: bool = false;

// --- [auth] ---

/// A working day, then sign in again (without "keep me signed in").
pub(crate) const SESSION_HOURS: u64 = 24;
/// "Keep me signed in": a month, well under the 400 days browsers keep a cookie.
pub(crate) const REMEMBER_DAYS: u64 = 30;
/// The longest session a browser keeps a cookie for (Chrome caps `Max-Age` at 400 days).
pub(crate) const MAX_LIFETIME_SECS: u64 = 400 * 86_400;
/// A person mistyping a password a few times passes; password guessing from one address does not.
pub(crate) const LOGIN_ATTEMPTS_PER_MINUTE_PER_IP: u32 = 5;
/// Guessing one account's password from many addresses is slowed too.
pub(crate) const LOGIN_ATTEMPTS_PER_MINUTE_PER_ACCOUNT: u32 = 10;
/// Faster than anyone types, slow enough that one account cannot flood the agent.
pub(crate) const CHAT_SENDS_PER_MINUTE_PER_USER: u32 = 30;
/// Sign-in attempts kept for `GET /api/admin/audit`: a quarter covers looking back at an
/// incident noticed late, while the table stops growing with every attempt ever made.
pub(crate) const LOGIN_AUDIT_DAYS: u64 = 90;
/// No second factor is demanded until the operator decides to: turning it on for everyone at
/// once would send each user through enrolment at their next sign-in.
pub(crate) const REQUIRE_SECOND_FACTOR: &str = "off";
/// A name in the trusted header must be an existing account: a proxy that lets anyone sign up
/// would otherwise make accounts here too.
pub(crate) const TRUSTED_HEADER_CREATE: bool = false;

// --- [[auth.oidc]] ---

/// The identity and the address, nothing more: `groups` (for `admin_claim`) is asked for only
/// when the operator lists it.
pub(crate) const OIDC_SCOPES: &[&str] = &["openid", "email", "profile"];
/// Only accounts an administrator made (or linked before) may sign in with a provider: a provider
/// such as a public Google or GitHub would otherwise let anyone in the world make an account.
pub(crate) const OIDC_CREATE_ACCOUNTS: bool = false;

// --- [chat] ---

/// Hermes sends a keepalive every 30 s; four missed ones mean the stream is dead.
pub(crate) const IDLE_TIMEOUT_SECS: u64 = 120;
/// The agent's memory files go into every message only when the operator asks for it.
pub(crate) const MEMORY_INJECT: bool = false;
/// Enough for USER.md and MEMORY.md as Hermes writes them, small beside the model's context.
pub(crate) const MEMORY_MAX_BYTES: usize = 32 * 1024;
/// A phone photo fits; larger images cost the model more than they add.
pub(crate) const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// A few images per message; together they stay under `max_body_bytes`.
pub(crate) const MAX_IMAGES: usize = 4;
/// `chat.max_attachment_bytes`: a file attached to a message (a PDF, a spreadsheet, a log) that the
/// agent reads with its tools. Read into memory while it arrives, so well under `max_body_bytes`.
pub(crate) const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;
/// `chat.attachment_quota_bytes`: what one account may keep in its folder of the media directory
/// (ten of the largest attachments); a shared disk is not filled by one person.
pub(crate) const ATTACHMENT_QUOTA_BYTES: u64 = 100 * 1024 * 1024;
/// Answers one user may have going at once: a few conversations side by side, not a flood of
/// agents each holding one of Hermes' `max_concurrent_runs` (10 by default).
pub(crate) const MAX_RUNS_PER_USER: usize = 3;
/// Answers going at once on the whole server; each holds its text and a short event buffer.
pub(crate) const MAX_RUNS: usize = 100;
/// Who may answer an approval: the conversation's owner (the person who asked the agent).
pub(crate) const APPROVALS: &str = "owner";
/// Hermes' own default `approvals.timeout`; the page counts down from this.
pub(crate) const APPROVAL_TIMEOUT_SECS: u64 = 60;
/// Hermes' 429 usually clears within seconds; after this long the user is told when to retry.
pub(crate) const RETRY_BUDGET_SECS: u64 = 20;

// --- [push] ---

/// On: nothing is sent until a person turns notifications on for a device, and a push says only
/// which conversation and why (docs/security.md).
pub(crate) const PUSH_ENABLED: bool = true;
/// A person's phones, laptops and browsers, with room for old subscriptions a browser replaced.
pub(crate) const PUSH_MAX_SUBSCRIPTIONS_PER_USER: usize = 10;
/// An hour: a device offline longer would announce an answer already read elsewhere, or an
/// approval long timed out.
pub(crate) const PUSH_TTL_SECS: u64 = 3600;
/// Off: a push endpoint is a URL the server requests, so one on this machine or a private network
/// would let a user make it reach inside (SSRF). Only tests, which play the push service here,
/// turn it on.
pub(crate) const PUSH_ALLOW_PRIVATE_ENDPOINTS: bool = false;
