//! `[auth]`: session lifetimes, sign-in and chat rate limits, how long the sign-in audit is kept,
//! who must have a second factor, and the trusted sign-in header of a proxy in front.

use std::time::Duration;

use super::file::FileAuth;
use super::{defaults, invalid, ConfigError};

#[derive(Debug, Clone)]
pub(crate) struct AuthConfig {
    pub session_lifetime: Duration,
    pub remember_lifetime: Duration,
    pub login_attempts_per_minute_per_ip: u32,
    pub login_attempts_per_minute_per_account: u32,
    pub chat_sends_per_minute_per_user: u32,
    /// Sign-in audit rows older than this are deleted (at start and daily); never less than the
    /// "keep me signed in" lifetime, whose known-network check reads them.
    pub login_audit_keep: Duration,
    /// Who must have a second factor before reaching anything but enrolment.
    pub require_second_factor: SecondFactorPolicy,
    /// The header a trusted proxy names the signed-in user in (`Remote-User`); `None`: off.
    pub trusted_header: Option<http::HeaderName>,
    /// A name in `trusted_header` with no account here becomes a new plain user.
    pub trusted_header_create: bool,
}

/// `auth.require_second_factor`: whose accounts need a second factor (TOTP today; anything that
/// `auth::account::must_enrol` counts) before they can reach more than enrolment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecondFactorPolicy {
    Off,
    Admins,
    All,
}

impl SecondFactorPolicy {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "off" => Some(Self::Off),
            "admins" => Some(Self::Admins),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    /// True when an account of this kind must have a second factor.
    pub(crate) fn applies(self, is_admin: bool) -> bool {
        match self {
            Self::Off => false,
            Self::Admins => is_admin,
            Self::All => true,
        }
    }
}

pub(super) fn resolve(a: &FileAuth) -> Result<AuthConfig, ConfigError> {
    let session_lifetime = lifetime(
        ("auth.session_hours", a.session_hours, 3600),
        ("auth.session_secs", a.session_secs),
        defaults::SESSION_HOURS * 3600,
    )?;
    let remember_lifetime = lifetime(
        ("auth.remember_days", a.remember_days, 86_400),
        ("auth.remember_secs", a.remember_secs),
        defaults::REMEMBER_DAYS * 86_400,
    )?;
    let audit_days = a.login_audit_days.unwrap_or(defaults::LOGIN_AUDIT_DAYS);
    if !(1..=36_500).contains(&audit_days) {
        return Err(invalid(
            "auth.login_audit_days",
            "must be a whole number of days from 1 to 36500",
        ));
    }
    let policy = a
        .require_second_factor
        .as_deref()
        .unwrap_or(defaults::REQUIRE_SECOND_FACTOR);
    let require_second_factor = SecondFactorPolicy::parse(policy).ok_or_else(|| {
        invalid(
            "auth.require_second_factor",
            format!("`{policy}` is not one of \"off\", \"admins\", \"all\""),
        )
    })?;
    let trusted_header = match a.trusted_header.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(trusted_header_name(name)?),
    };
    let auth = AuthConfig {
        session_lifetime,
        remember_lifetime,
        login_attempts_per_minute_per_ip: a
            .login_attempts_per_minute_per_ip
            .unwrap_or(defaults::LOGIN_ATTEMPTS_PER_MINUTE_PER_IP),
        login_attempts_per_minute_per_account: a
            .login_attempts_per_minute_per_account
            .unwrap_or(defaults::LOGIN_ATTEMPTS_PER_MINUTE_PER_ACCOUNT),
        chat_sends_per_minute_per_user: a
            .chat_sends_per_minute_per_user
            .unwrap_or(defaults::CHAT_SENDS_PER_MINUTE_PER_USER),
        login_audit_keep: Duration::from_secs(audit_days * 86_400).max(remember_lifetime),
        require_second_factor,
        trusted_header,
        trusted_header_create: a
            .trusted_header_create
            .unwrap_or(defaults::TRUSTED_HEADER_CREATE),
    };
    if auth.login_attempts_per_minute_per_ip == 0
        || auth.login_attempts_per_minute_per_account == 0
        || auth.chat_sends_per_minute_per_user == 0
    {
        return Err(invalid("auth", "rate limits must be at least 1"));
    }
    Ok(auth)
}

/// The trusted sign-in header's name: a valid header name that is not one browsers or this server
/// give another meaning (a client could then name a user by sending, say, its own `Cookie`).
fn trusted_header_name(name: &str) -> Result<http::HeaderName, ConfigError> {
    let key = "auth.trusted_header";
    let header = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| invalid(key, format!("`{name}` is not a header name")))?;
    const TAKEN: &[&str] = &[
        "host",
        "cookie",
        "authorization",
        "origin",
        "referer",
        "user-agent",
        "content-type",
        "content-length",
        "transfer-encoding",
        "connection",
        "x-forwarded-for",
        "x-real-ip",
        "forwarded",
        "sec-fetch-site",
    ];
    if TAKEN.contains(&header.as_str()) {
        return Err(invalid(
            key,
            format!(
                "`{name}` already means something else; use the proxy's own, such as Remote-User"
            ),
        ));
    }
    Ok(header)
}

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
    if value == 0 || value > defaults::MAX_LIFETIME_SECS {
        return Err(invalid(
            key,
            "must be at least 1 second and at most 400 days (browsers drop longer cookies)",
        ));
    }
    Ok(Duration::from_secs(value))
}
