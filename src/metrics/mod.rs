//! Prometheus metrics: what the server counts, and the text a scrape gets.
//!
//! The counters that change with every request live in [`COUNTERS`], a process-wide static of
//! atomics in a few cache-line-aligned shards: each HTTPS thread (one current-thread runtime per
//! CPU) adds to its own shard with relaxed atomics and no lock, so two threads never fight over a
//! cache line, and a scrape adds the shards up. Everything else (runs, sessions, open connections,
//! certificates) is read from where the server already keeps it, at scrape time
//! ([`render`], fed by `listener`).
//!
//! Every label comes from a fixed list (route group, status code or class, protocol, error kind):
//! nothing a client sends becomes a label, so no request can add a series.
//!
//! - `listener.rs`: the plain-HTTP listener (`/metrics`, `/status`) and who may read them, also
//!   on the HTTPS port.
//! - `status.rs`: the `/status` document and the `hermes-edge status` command.

pub(crate) mod listener;
pub(crate) mod status;

use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The route groups requests are counted by, in the order of [`GROUP_NAMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    V1,
    Chat,
    Conversations,
    Runs,
    Tokens,
    Admin,
    Login,
    Media,
    Dashboard,
    Static,
    Page,
    Ops,
    Other,
}

const GROUPS: usize = 13;
const GROUP_NAMES: [&str; GROUPS] = [
    "v1",
    "chat",
    "conversations",
    "runs",
    "tokens",
    "admin",
    "login",
    "media",
    "dashboard",
    "static",
    "page",
    "ops",
    "other",
];

/// The route group of a request path: prefix tests only, mirroring `router::route`.
pub(crate) fn group(path: &str) -> Group {
    if path.starts_with("/v1/") {
        return Group::V1;
    }
    if let Some(api) = path.strip_prefix("/api/") {
        return if api == "chat" {
            Group::Chat
        } else if let Some(c) = api.strip_prefix("conversations") {
            if c.ends_with("/run") || c.contains("/run/") {
                Group::Runs
            } else {
                Group::Conversations
            }
        } else if api == "search" || api == "attachments" {
            // Finding conversations and the files of their messages.
            Group::Conversations
        } else if api.starts_with("tokens") {
            Group::Tokens
        } else if api.starts_with("admin/") || api.starts_with("sessions") || api == "me" {
            Group::Admin
        } else {
            Group::Other
        };
    }
    match path {
        "/login" | "/logout" => return Group::Login,
        "/healthz" | "/ca.crt" | "/metrics" => return Group::Ops,
        _ => {}
    }
    if path == "/media" || path.starts_with("/media/") {
        Group::Media
    } else if path == "/dashboard" || path.starts_with("/dashboard/") {
        Group::Dashboard
    } else if path == "/" || path.ends_with(".html") || !last_segment_has_dot(path) {
        // The chat page and its client-side routes, `/view`, `[[routes]]` pages.
        Group::Page
    } else {
        Group::Static
    }
}

fn last_segment_has_dot(path: &str) -> bool {
    path.rsplit('/').next().unwrap_or("").contains('.')
}

/// The status codes counted by their own number; any other is counted by its class (`4xx`).
const CODES: [u16; 30] = [
    200, 201, 204, 206, 301, 302, 303, 304, 307, 308, 400, 401, 403, 404, 405, 408, 409, 411, 413,
    414, 415, 416, 422, 429, 431, 500, 501, 502, 503, 504,
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
const STATUSES: usize = CODES.len() + CLASSES.len();

fn status_index(code: u16) -> usize {
    match CODES.binary_search(&code) {
        Ok(i) => i,
        Err(_) => CODES.len() + usize::from(code / 100).clamp(1, 5) - 1,
    }
}

fn status_label(index: usize) -> String {
    match CODES.get(index) {
        Some(code) => code.to_string(),
        None => CLASSES[index - CODES.len()].to_string(),
    }
}

/// Upper bounds of the latency buckets in microseconds (1 ms to 10 s): a file from the cache takes
/// well under a millisecond, a chat answer's head waits for Hermes.
const BUCKETS_US: [u64; 12] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    10_000_000,
];
/// The buckets above and the one past the last (`+Inf`).
const SLOTS: usize = BUCKETS_US.len() + 1;

/// One thread's share of the per-request counters, alone on its cache lines.
#[repr(align(128))]
struct Shard {
    requests: [[AtomicU64; STATUSES]; GROUPS],
    /// Requests per latency bucket (not cumulative: each request adds to one slot).
    latency: [[AtomicU64; SLOTS]; GROUPS],
    latency_sum_us: [AtomicU64; GROUPS],
}

impl Shard {
    const fn new() -> Shard {
        Shard {
            requests: [const { [const { AtomicU64::new(0) }; STATUSES] }; GROUPS],
            latency: [const { [const { AtomicU64::new(0) }; SLOTS] }; GROUPS],
            latency_sum_us: [const { AtomicU64::new(0) }; GROUPS],
        }
    }
}

/// Shards of the per-request counters. Threads beyond this many share them round-robin, which
/// costs only some contention.
const SHARDS: usize = 8;

/// The kinds of upstream error counted, as `hermes::UpstreamError::code` names them.
pub(crate) const UPSTREAM_ERRORS: [&str; 7] = [
    "api_key_missing",
    "upstream_unreachable",
    "upstream_auth",
    "rate_limited",
    "upstream_stalled",
    "upstream_error",
    "stream_broken",
];

/// Why a sign-in failed.
#[derive(Clone, Copy)]
pub(crate) enum LoginFailure {
    /// Wrong user name or password.
    Invalid = 0,
    /// Refused before the password was checked: too many attempts from the network or on the
    /// account.
    RateLimited = 1,
}
const LOGIN_FAILURES: [&str; 2] = ["invalid_credentials", "rate_limited"];

/// The counters and gauges that are not read from elsewhere at scrape time.
pub(crate) struct Counters {
    shards: [Shard; SHARDS],
    next_shard: AtomicUsize,
    /// Open HTTPS connections past their TLS handshake: HTTP/1.1, HTTP/2.
    connections: [AtomicI64; 2],
    /// Event streams being sent: a tab attached to a run, a streaming `/v1` answer.
    sse_streams: AtomicI64,
    upstream_errors: [AtomicU64; UPSTREAM_ERRORS.len()],
    /// `429`s from Hermes that were retried within the retry budget.
    upstream_retries: AtomicU64,
    login_failures: [AtomicU64; LOGIN_FAILURES.len()],
}

/// The one set of counters of the process.
pub(crate) static COUNTERS: Counters = Counters {
    shards: [const { Shard::new() }; SHARDS],
    next_shard: AtomicUsize::new(0),
    connections: [const { AtomicI64::new(0) }; 2],
    sse_streams: AtomicI64::new(0),
    upstream_errors: [const { AtomicU64::new(0) }; UPSTREAM_ERRORS.len()],
    upstream_retries: AtomicU64::new(0),
    login_failures: [const { AtomicU64::new(0) }; LOGIN_FAILURES.len()],
};

thread_local! {
    /// This thread's shard, chosen at its first request.
    static SHARD: Cell<Option<usize>> = const { Cell::new(None) };
}

impl Counters {
    fn shard(&self) -> &Shard {
        let i = SHARD.with(|s| match s.get() {
            Some(i) => i,
            None => {
                let i = self.next_shard.fetch_add(1, Relaxed) % SHARDS;
                s.set(Some(i));
                i
            }
        });
        &self.shards[i % SHARDS]
    }

    /// One request answered: its group, status, and the time until its response head.
    pub(crate) fn request(&self, group: Group, status: u16, took: Duration) {
        let shard = self.shard();
        let g = group as usize;
        shard.requests[g][status_index(status)].fetch_add(1, Relaxed);
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let slot = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        shard.latency[g][slot].fetch_add(1, Relaxed);
        shard.latency_sum_us[g].fetch_add(us, Relaxed);
    }

    /// An HTTPS connection that now speaks HTTP/1.1 or HTTP/2, counted until the guard drops.
    pub(crate) fn connection(&'static self, h2: bool) -> Open {
        let gauge = &self.connections[usize::from(h2)];
        gauge.fetch_add(1, Relaxed);
        Open(gauge)
    }

    /// An event stream being sent, counted until the guard drops.
    pub(crate) fn sse_stream(&'static self) -> Open {
        self.sse_streams.fetch_add(1, Relaxed);
        Open(&self.sse_streams)
    }

    /// An error between the edge and Hermes, by its `UpstreamError::code`.
    pub(crate) fn upstream_error(&self, code: &str) {
        if let Some(i) = UPSTREAM_ERRORS.iter().position(|c| *c == code) {
            self.upstream_errors[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn upstream_retry(&self) {
        self.upstream_retries.fetch_add(1, Relaxed);
    }

    pub(crate) fn login_failure(&self, why: LoginFailure) {
        self.login_failures[why as usize].fetch_add(1, Relaxed);
    }

    /// Open HTTPS connections by protocol (HTTP/1.1, HTTP/2).
    pub(crate) fn connections(&self) -> (i64, i64) {
        (
            self.connections[0].load(Relaxed),
            self.connections[1].load(Relaxed),
        )
    }

    pub(crate) fn sse_streams(&self) -> i64 {
        self.sse_streams.load(Relaxed)
    }
}

/// A gauge's share held by one connection or stream; given back when dropped.
pub(crate) struct Open(&'static AtomicI64);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// What `/metrics` and `/status` read of the running server besides `App`: set once the
/// listeners are bound (`App::ops`).
pub(crate) struct Ops {
    pub conns: std::sync::Arc<crate::conn_limits::ConnLimits>,
    pub listening: Listening,
    /// Seconds since the Unix epoch when the process started serving.
    pub started: i64,
}

/// The addresses the server listens on.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Listening {
    pub https: std::net::SocketAddr,
    pub http: Option<std::net::SocketAddr>,
    pub metrics: Option<std::net::SocketAddr>,
    /// What a person can open (`server::public_urls`).
    pub urls: Vec<String>,
}

/// What a scrape reads from the rest of the server at that moment.
#[derive(Debug, Default)]
pub(crate) struct Live {
    /// Seconds since the Unix epoch when the process started.
    pub start_time: i64,
    /// Connections holding a place under `limits.max_connections` (HTTPS in any state, port 80).
    pub connections_open: usize,
    pub connections_max: usize,
    pub runs: usize,
    /// Sessions not expired, and the accounts they belong to.
    pub sessions: u64,
    pub users_signed_in: u64,
    /// (role, name, seconds until it expires) of each certificate the server has.
    pub certificates: Vec<(String, String, i64)>,
}

/// The text of a scrape, in the Prometheus text format (version 0.0.4).
pub(crate) fn render(live: Live) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(live)));
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!("cannot write the metrics: {e}");
    }
    out
}

/// The content type of [`render`]'s text.
pub(crate) const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
struct Scrape(Live);

/// A family with one metric per label set of `(name, value)` pairs.
fn family<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = ([(&'static str, String); N], f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in series {
        let labels = labels.map(|(k, v)| (k, v));
        let mut m = family.encode_family(&labels)?;
        match kind {
            MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&(value as u64), None)?,
            _ => ConstGauge::new(value).encode(m)?,
        }
    }
    Ok(())
}

/// A metric without labels.
fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: f64,
) -> Result<(), std::fmt::Error> {
    family::<0>(encoder, name, help, kind, [([], value)])
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &COUNTERS;
        let live = &self.0;
        let sum = |f: &dyn Fn(&Shard) -> u64| c.shards.iter().map(f).sum::<u64>();

        let mut requests = Vec::new();
        for (g, group) in GROUP_NAMES.iter().enumerate() {
            for s in 0..STATUSES {
                let n = sum(&|sh| sh.requests[g][s].load(Relaxed));
                if n > 0 {
                    let labels = [("group", group.to_string()), ("code", status_label(s))];
                    requests.push((labels, n as f64));
                }
            }
        }
        family(
            &mut e,
            "hermes_edge_http_requests",
            "HTTPS requests answered, by route group and status code (or class)",
            MetricType::Counter,
            requests,
        )?;

        let mut latency = e.encode_descriptor(
            "hermes_edge_http_request_duration_seconds",
            "Time from a request's arrival to its response head, by route group",
            None,
            MetricType::Histogram,
        )?;
        for (g, group) in GROUP_NAMES.iter().enumerate() {
            let slots: Vec<u64> = (0..SLOTS)
                .map(|s| sum(&|sh| sh.latency[g][s].load(Relaxed)))
                .collect();
            // The count is the buckets' total, so `+Inf` and `_count` always agree.
            let count: u64 = slots.iter().sum();
            if count == 0 {
                continue;
            }
            let buckets: Vec<(f64, u64)> = BUCKETS_US
                .iter()
                .map(|&b| b as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(slots)
                .collect();
            let seconds = sum(&|sh| sh.latency_sum_us[g].load(Relaxed)) as f64 / 1e6;
            let labels = [("group", *group)];
            latency
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(seconds, count, &buckets, None)?;
        }

        let (h1, h2) = c.connections();
        family(
            &mut e,
            "hermes_edge_connections_active",
            "Open HTTPS connections past the TLS handshake, by protocol",
            MetricType::Gauge,
            [
                ([("protocol", "http1".to_string())], h1 as f64),
                ([("protocol", "http2".to_string())], h2 as f64),
            ],
        )?;
        single(
            &mut e,
            "hermes_edge_connections_open",
            "Connections holding a place under limits.max_connections (any listener, handshakes too)",
            MetricType::Gauge,
            live.connections_open as f64,
        )?;
        single(
            &mut e,
            "hermes_edge_connections_max",
            "limits.max_connections as fitted to the open-files limit",
            MetricType::Gauge,
            live.connections_max as f64,
        )?;
        single(
            &mut e,
            "hermes_edge_sse_streams_active",
            "Event streams being sent (tabs attached to an answer, streaming /v1 answers)",
            MetricType::Gauge,
            c.sse_streams() as f64,
        )?;
        single(
            &mut e,
            "hermes_edge_runs_active",
            "Answers being written now",
            MetricType::Gauge,
            live.runs as f64,
        )?;
        single(
            &mut e,
            "hermes_edge_sessions_active",
            "Sign-in sessions that have not expired",
            MetricType::Gauge,
            live.sessions as f64,
        )?;
        single(
            &mut e,
            "hermes_edge_users_signed_in",
            "Accounts with at least one session that has not expired",
            MetricType::Gauge,
            live.users_signed_in as f64,
        )?;
        family(
            &mut e,
            "hermes_edge_upstream_errors",
            "Errors between the edge and the Hermes API Server, by kind",
            MetricType::Counter,
            UPSTREAM_ERRORS
                .iter()
                .zip(&c.upstream_errors)
                .map(|(k, n)| ([("kind", k.to_string())], n.load(Relaxed) as f64)),
        )?;
        single(
            &mut e,
            "hermes_edge_upstream_retries",
            "Requests to Hermes sent again after a 429, within chat.retry_budget_secs",
            MetricType::Counter,
            c.upstream_retries.load(Relaxed) as f64,
        )?;
        family(
            &mut e,
            "hermes_edge_login_failures",
            "Sign-ins refused, by reason",
            MetricType::Counter,
            LOGIN_FAILURES
                .iter()
                .zip(&c.login_failures)
                .map(|(k, n)| ([("reason", k.to_string())], n.load(Relaxed) as f64)),
        )?;
        let now = crate::store::now();
        family(
            &mut e,
            "hermes_edge_certificate_expiry_seconds",
            "Seconds until each certificate expires (negative once expired)",
            MetricType::Gauge,
            live.certificates.iter().map(|(role, name, at)| {
                (
                    [("certificate", role.clone()), ("name", name.clone())],
                    (*at - now) as f64,
                )
            }),
        )?;
        single(
            &mut e,
            "hermes_edge_process_start_time_seconds",
            "When the server started, in seconds since the Unix epoch",
            MetricType::Gauge,
            live.start_time as f64,
        )?;
        family(
            &mut e,
            "hermes_edge_build_info",
            "The running build (always 1)",
            MetricType::Gauge,
            [([("version", env!("CARGO_PKG_VERSION").to_string())], 1.0)],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_fall_in_fixed_groups() {
        let cases = [
            ("/v1/chat/completions", Group::V1),
            ("/api/chat", Group::Chat),
            ("/api/conversations", Group::Conversations),
            ("/api/conversations/abc", Group::Conversations),
            ("/api/conversations/abc/export", Group::Conversations),
            ("/api/search", Group::Conversations),
            ("/api/attachments", Group::Conversations),
            ("/api/conversations/abc/run", Group::Runs),
            ("/api/conversations/abc/run/stop", Group::Runs),
            ("/api/tokens/3", Group::Tokens),
            ("/api/admin/users", Group::Admin),
            ("/api/sessions", Group::Admin),
            ("/api/nothing", Group::Other),
            ("/login", Group::Login),
            ("/metrics", Group::Ops),
            ("/media/a.jpg", Group::Media),
            ("/dashboard/x", Group::Dashboard),
            ("/", Group::Page),
            ("/c/123", Group::Page),
            ("/js/main.js", Group::Static),
        ];
        for (path, want) in cases {
            assert_eq!(group(path), want, "{path}");
        }
    }

    #[test]
    fn statuses_are_a_fixed_set_of_codes_or_a_class() {
        assert_eq!(status_label(status_index(404)), "404");
        assert_eq!(status_label(status_index(418)), "4xx");
        assert_eq!(status_label(status_index(599)), "5xx");
        assert_eq!(status_label(status_index(101)), "1xx");
        assert_eq!(status_label(status_index(0)), "1xx");
        assert_eq!(status_label(status_index(999)), "5xx");
    }

    #[test]
    fn a_scrape_has_cumulative_buckets_and_counts_requests() {
        COUNTERS.request(Group::Other, 418, Duration::from_millis(3));
        COUNTERS.request(Group::Other, 418, Duration::from_secs(30));
        let text = render(Live::default());
        assert!(
            text.contains("hermes_edge_http_requests_total{group=\"other\",code=\"4xx\"}"),
            "{text}"
        );
        assert!(text.contains(
            "hermes_edge_http_request_duration_seconds_bucket{group=\"other\",le=\"+Inf\"}"
        ));
        assert!(text.contains("hermes_edge_build_info{version="));
    }
}
