//! `[limits]`: timeouts, sizes, connection and rate limits, each checked so a value that would
//! lock everyone out (a zero) or refuse the largest allowed body stops the start.

use std::time::Duration;

use super::file::FileLimits;
use super::{defaults, invalid, secs, ConfigError};

#[derive(Debug, Clone)]
pub(crate) struct Limits {
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

pub(super) fn resolve(l: &FileLimits) -> Result<Limits, ConfigError> {
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
        header_read_timeout: secs(
            l.header_read_timeout_secs,
            defaults::HEADER_READ_TIMEOUT_SECS,
        ),
        tls_handshake_timeout: secs(
            l.tls_handshake_timeout_secs,
            defaults::TLS_HANDSHAKE_TIMEOUT_SECS,
        ),
        max_header_bytes: l.max_header_bytes.unwrap_or(defaults::MAX_HEADER_BYTES),
        max_connections: l.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
        h2_max_concurrent_streams: l
            .h2_max_concurrent_streams
            .unwrap_or(defaults::H2_MAX_CONCURRENT_STREAMS),
        max_body_bytes: l.max_body_bytes.unwrap_or(defaults::MAX_BODY_BYTES),
        body_read_timeout: l
            .body_read_timeout_secs
            .map_or(defaults::BODY_READ_TIMEOUT, Duration::from_secs),
        body_memory_per_connection: l
            .body_memory_per_connection
            .unwrap_or(defaults::BODY_MEMORY_PER_CONNECTION),
        body_memory_total: l.body_memory_total.unwrap_or(defaults::BODY_MEMORY_TOTAL),
        shutdown_grace: secs(l.shutdown_grace_secs, defaults::SHUTDOWN_GRACE_SECS),
        requests_per_second_per_ip: l
            .requests_per_second_per_ip
            .unwrap_or(defaults::REQUESTS_PER_SECOND_PER_IP),
        request_burst_per_ip: l
            .request_burst_per_ip
            .unwrap_or(defaults::REQUEST_BURST_PER_IP),
        trusted_proxies,
        max_connections_per_ip: l
            .max_connections_per_ip
            .unwrap_or(defaults::MAX_CONNECTIONS_PER_IP),
        send_timeout: secs(l.send_timeout_secs, defaults::SEND_TIMEOUT_SECS),
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
    Ok(limits)
}
