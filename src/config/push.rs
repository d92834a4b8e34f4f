//! `[push]`: Web Push notifications (`crate::push`): on or off, the VAPID subject, how many
//! devices an account may subscribe, how long a push service keeps an undelivered push, and the
//! test-only escape hatch for push endpoints on this machine or a private network.

use std::time::Duration;

use super::file::FilePush;
use super::{defaults, invalid, ConfigError};

#[derive(Clone, Debug)]
pub(crate) struct PushConfig {
    pub enabled: bool,
    /// The VAPID `sub` claim (`mailto:` or `https:`), how a push service reaches the operator.
    pub subject: Option<String>,
    pub max_subscriptions_per_user: usize,
    /// The `TTL` of a push: how long a push service keeps it for a device that is offline.
    pub ttl: Duration,
    /// Endpoints on loopback or private addresses, and plain `http://`, are accepted. Only for
    /// tests, which play the push service on this machine; never on a real server (SSRF).
    pub allow_private_endpoints: bool,
}

pub(super) fn resolve(p: &FilePush) -> Result<PushConfig, ConfigError> {
    if let Some(s) = &p.subject {
        if !(s.starts_with("mailto:") || s.starts_with("https://")) || s.len() > 200 {
            return Err(invalid(
                "push.subject",
                format!("`{s}` must be a mailto: or https: URL (at most 200 characters), e.g. mailto:admin@example.com"),
            ));
        }
    }
    let max = p
        .max_subscriptions_per_user
        .unwrap_or(defaults::PUSH_MAX_SUBSCRIPTIONS_PER_USER);
    if max == 0 || max > 1000 {
        return Err(invalid(
            "push.max_subscriptions_per_user",
            "must be between 1 and 1000 (turn push off with `enabled = false`)",
        ));
    }
    let ttl = p.ttl_secs.unwrap_or(defaults::PUSH_TTL_SECS);
    if ttl > 4 * 7 * 24 * 3600 {
        return Err(invalid(
            "push.ttl_secs",
            "must be at most 2419200 (four weeks, what push services keep)",
        ));
    }
    Ok(PushConfig {
        enabled: p.enabled.unwrap_or(defaults::PUSH_ENABLED),
        subject: p.subject.clone(),
        max_subscriptions_per_user: max,
        ttl: Duration::from_secs(ttl),
        allow_private_endpoints: p
            .allow_private_endpoints
            .unwrap_or(defaults::PUSH_ALLOW_PRIVATE_ENDPOINTS),
    })
}
