//! Why an order failed, in plain words: the CA's problem documents and rustls-acme's errors sorted into
//! causes the user can act on (DNS, port not reachable, rate limit...), and how long to wait before
//! the next attempt.

use std::time::Duration;

use rustls_acme::acme::{AuthStatus, Problem};
use rustls_acme::OrderError;

use crate::config::AcmeChallenge;

use super::job::AcmeJob;

/// The longest wait between two attempts after repeated failures.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);

/// Why an attempt to obtain a certificate failed, in terms of what the user can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FailureCause {
    /// The CA could not find the domain in DNS (no A/AAAA record, NXDOMAIN, SERVFAIL).
    DnsNotFound { domain: String, detail: String },
    /// The CA reached an address for the domain, but not hermes-edge (wrong IP, another server or a proxy).
    DnsNotPointingHere { domain: String, detail: String },
    /// The CA could not connect to the challenge port (firewall, NAT, nothing listening publicly).
    PortUnreachable { domain: String, detail: String },
    /// The CA's rate limit.
    RateLimited { detail: String },
    /// The CA refused the contact email.
    ContactRejected { detail: String },
    /// The CA will not issue for this name (e.g. a private or reserved domain) or a CAA record forbids it.
    NameRefused { detail: String },
    /// The ACME directory could not be reached or its TLS certificate is not trusted.
    CaUnreachable { detail: String },
    /// Anything else, with the CA's or library's own words.
    Other { detail: String },
}

impl FailureCause {
    /// One sentence for the log, saying what happened and what to do.
    pub(super) fn explain(&self, job: &AcmeJob) -> String {
        let port = match job.challenge {
            AcmeChallenge::TlsAlpn01 => "443 (HTTPS, TLS-ALPN-01 challenge)",
            AcmeChallenge::Http01 => "80 (HTTP, HTTP-01 challenge)",
        };
        match self {
            Self::DnsNotFound { domain, detail } => format!(
                "the CA found no DNS record for {domain}: create an A (and/or AAAA) record pointing to this \
                 server's public address [{detail}]"
            ),
            Self::DnsNotPointingHere { domain, detail } => format!(
                "the CA reached {domain} but it was not this server answering: check that the domain's DNS \
                 points to this server and that no proxy or CDN sits in front of port {port} [{detail}]"
            ),
            Self::PortUnreachable { domain, detail } => format!(
                "the CA could not connect to {domain} on port {port}: the port is not reachable from the \
                 internet (firewall, cloud security group, router port forwarding) or the DNS record points \
                 elsewhere [{detail}]"
            ),
            Self::RateLimited { detail } => format!(
                "the CA's rate limit was reached: hermes-edge keeps retrying with longer waits; use \
                 --acme-staging while testing [{detail}]"
            ),
            Self::ContactRejected { detail } => {
                let email = job.email.as_deref().unwrap_or("(none)");
                format!("the CA rejected the contact email {email}: set a real address with --email [{detail}]")
            }
            Self::NameRefused { detail } => format!(
                "the CA refuses to issue for {}: it must be a public domain name you control (and any CAA \
                 record must allow this CA) [{detail}]",
                job.domains.join(", ")
            ),
            Self::CaUnreachable { detail } => format!(
                "could not talk to the ACME directory {}: check this server's outgoing network access, and \
                 --acme-ca-root if the CA uses a private root [{detail}]",
                job.directory
            ),
            Self::Other { detail } => format!("the CA did not issue a certificate: {detail}"),
        }
    }

    /// Whether waiting longer than usual before the next attempt is wise.
    pub(super) fn is_rate_limit(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }
}

/// Classifies an ACME problem document (RFC 8555 section 6.7) about `domain`.
pub(super) fn classify_problem(problem: &Problem, domain: &str) -> FailureCause {
    let typ = problem.typ.as_deref().unwrap_or("");
    let detail = problem.detail.clone().unwrap_or_else(|| typ.to_string());
    let kind = typ.rsplit(':').next().unwrap_or("");
    let domain = domain.to_string();
    let words = detail.to_ascii_lowercase();
    let said = |needles: &[&str]| needles.iter().any(|n| words.contains(n));
    // CAs differ in the type they give a failed connection (Let's Encrypt: `connection`, Pebble:
    // `unauthorized`), so the detail decides first.
    if said(&[
        "dns problem",
        "nxdomain",
        "no valid a records",
        "no valid ip addresses",
        "servfail",
    ]) {
        return FailureCause::DnsNotFound { domain, detail };
    }
    if matches!(
        kind,
        "connection" | "unauthorized" | "incorrectResponse" | "tls"
    ) && said(&[
        "failed to connect",
        "connection refused",
        "timeout",
        "timed out",
        "unreachable",
        "connection reset",
    ]) {
        return FailureCause::PortUnreachable { domain, detail };
    }
    match kind {
        "dns" => FailureCause::DnsNotFound { domain, detail },
        "connection" => FailureCause::PortUnreachable { domain, detail },
        "unauthorized" | "incorrectResponse" | "tls" => {
            FailureCause::DnsNotPointingHere { domain, detail }
        }
        "rateLimited" => FailureCause::RateLimited { detail },
        "invalidContact" | "unsupportedContact" | "invalidEmail" => {
            FailureCause::ContactRejected { detail }
        }
        "rejectedIdentifier" | "caa" | "unsupportedIdentifier" => {
            FailureCause::NameRefused { detail }
        }
        _ => FailureCause::Other {
            detail: format!("{typ}: {detail}"),
        },
    }
}

/// Finds the ACME problem document inside an error from an HTTP exchange with the CA. rustls-acme only
/// exposes it as text, with the body Debug-quoted: `non 2xx http status: 429 "{\n  \"type\": ...}"`.
fn problem_in_text(text: &str) -> Option<Problem> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    let raw = text.get(start..=end)?;
    serde_json::from_str::<Problem>(raw)
        .ok()
        .or_else(|| serde_json::from_str::<Problem>(&unescape_debug(raw)).ok())
        .filter(|p| p.typ.is_some())
}

/// Undoes Rust's `{:?}` escaping of a string (`\"`, `\\`, `\n`, `\t`, `\r`, `\u{..}`).
fn unescape_debug(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('u') => {
                let hex: String = chars.by_ref().skip(1).take_while(|&h| h != '}').collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Turns an order failure from rustls-acme into a [`FailureCause`].
pub(super) fn classify_order_error(err: &OrderError, domains: &[String]) -> FailureCause {
    let first = domains.first().cloned().unwrap_or_default();
    match err {
        OrderError::BadAuth(auth) => {
            let rustls_acme::acme::Identifier::Dns(domain) = &auth.identifier;
            let problem = auth.challenges.iter().find_map(|c| c.error.as_ref());
            match (problem, &auth.status) {
                (Some(problem), _) => classify_problem(problem, domain),
                (None, AuthStatus::Expired) => FailureCause::Other {
                    detail: format!("the authorization for {domain} expired"),
                },
                (None, status) => FailureCause::Other {
                    detail: format!("authorization for {domain}: {status:?}"),
                },
            }
        }
        OrderError::BadOrder(order) => match &order.error {
            Some(problem) => classify_problem(problem, &first),
            None => FailureCause::Other {
                detail: "the CA marked the order invalid".into(),
            },
        },
        OrderError::TooManyAttemptsAuth(domain) => FailureCause::PortUnreachable {
            domain: domain.clone(),
            detail: "the CA did not finish validating within 31 s".into(),
        },
        OrderError::Acme(acme) => {
            let text = acme.to_string();
            if let Some(problem) = problem_in_text(&text) {
                return classify_problem(&problem, &first);
            }
            match acme {
                rustls_acme::acme::AcmeError::HttpRequest(_)
                | rustls_acme::acme::AcmeError::Io(_) => {
                    FailureCause::CaUnreachable { detail: text }
                }
                _ => FailureCause::Other { detail: text },
            }
        }
        other => FailureCause::Other {
            detail: other.to_string(),
        },
    }
}

pub(super) fn retry_delay(job: &AcmeJob, failures: u32, cause: &FailureCause) -> Duration {
    let doubled = job
        .retry_initial
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    let delay = doubled.min(MAX_RETRY);
    if cause.is_rate_limit() {
        delay.max(Duration::from_secs(3600))
    } else {
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::super::job::tests::job;
    use super::*;

    fn problem(typ: &str, detail: &str) -> Problem {
        Problem {
            typ: Some(format!("urn:ietf:params:acme:error:{typ}")),
            detail: Some(detail.into()),
        }
    }

    #[test]
    fn ca_problems_become_plain_causes() {
        let d = "chat.example.com";
        // Pebble reports a refused connection as `unauthorized`, Let's Encrypt as `connection`.
        assert!(matches!(
            classify_problem(
                &problem(
                    "unauthorized",
                    "Failed to connect to 127.0.0.1:1 for the tls-alpn-01 challenge"
                ),
                d
            ),
            FailureCause::PortUnreachable { .. }
        ));
        assert!(matches!(
            classify_problem(
                &problem(
                    "connection",
                    "203.0.113.9: Timeout during connect (likely firewall problem)"
                ),
                d
            ),
            FailureCause::PortUnreachable { .. }
        ));
        assert!(matches!(
            classify_problem(
                &problem(
                    "dns",
                    "DNS problem: NXDOMAIN looking up A for chat.example.com"
                ),
                d
            ),
            FailureCause::DnsNotFound { .. }
        ));
        assert!(matches!(
            classify_problem(
                &problem(
                    "unauthorized",
                    "Incorrect validation certificate for tls-alpn-01 challenge"
                ),
                d
            ),
            FailureCause::DnsNotPointingHere { .. }
        ));
        assert!(matches!(
            classify_problem(
                &problem("rateLimited", "too many certificates already issued"),
                d
            ),
            FailureCause::RateLimited { .. }
        ));
        assert!(matches!(
            classify_problem(
                &problem("invalidContact", "contact email has forbidden domain"),
                d
            ),
            FailureCause::ContactRejected { .. }
        ));
        assert!(matches!(
            classify_problem(
                &problem("rejectedIdentifier", "Invalid identifier: chat.local"),
                d
            ),
            FailureCause::NameRefused { .. }
        ));
        assert!(matches!(
            classify_problem(&problem("serverInternal", "oops"), d),
            FailureCause::Other { .. }
        ));
    }

    #[test]
    fn explanations_say_what_to_do() {
        let tls = job(AcmeChallenge::TlsAlpn01);
        let http = job(AcmeChallenge::Http01);
        let unreachable = FailureCause::PortUnreachable {
            domain: "chat.example.com".into(),
            detail: "x".into(),
        };
        assert_eq!(
            unreachable.explain(&tls),
            "the CA could not connect to chat.example.com on port 443 (HTTPS, TLS-ALPN-01 challenge): the port \
             is not reachable from the internet (firewall, cloud security group, router port forwarding) or the \
             DNS record points elsewhere [x]"
        );
        assert!(unreachable
            .explain(&http)
            .contains("on port 80 (HTTP, HTTP-01 challenge)"));
        let dns = FailureCause::DnsNotFound {
            domain: "chat.example.com".into(),
            detail: "NXDOMAIN".into(),
        };
        assert!(dns
            .explain(&tls)
            .starts_with("the CA found no DNS record for chat.example.com: create an A"));
        let email = FailureCause::ContactRejected {
            detail: "forbidden".into(),
        };
        assert_eq!(
            email.explain(&tls),
            "the CA rejected the contact email me@example.com: set a real address with --email [forbidden]"
        );
        let limit = FailureCause::RateLimited {
            detail: "slow down".into(),
        };
        assert!(limit
            .explain(&tls)
            .starts_with("the CA's rate limit was reached"));
    }

    #[test]
    fn problem_documents_are_found_in_http_error_text() {
        // The shape of rustls-acme's `HttpsRequestError::Non2xxStatus` text: the body Debug-quoted.
        let body = "{\n  \"type\": \"urn:ietf:params:acme:error:rateLimited\",\n  \"detail\": \"too many \\\"certs\\\"\",\n  \"status\": 429\n}";
        let text = format!("acme error: http request error: non 2xx http status: 429 {body:?}");
        let found = problem_in_text(&text).unwrap();
        assert_eq!(
            found.typ.as_deref(),
            Some("urn:ietf:params:acme:error:rateLimited")
        );
        assert_eq!(found.detail.as_deref(), Some("too many \"certs\""));
        assert!(problem_in_text("io error: connection refused").is_none());
    }

    #[test]
    fn a_failed_authorization_is_classified_from_its_challenge_error() {
        let auth: rustls_acme::acme::Auth = serde_json::from_value(serde_json::json!({
            "status": "invalid",
            "identifier": {"type": "dns", "value": "b.example.com"},
            "challenges": [{
                "type": "tls-alpn-01", "url": "https://ca/chall/1", "token": "t",
                "error": {"type": "urn:ietf:params:acme:error:connection", "detail": "Connection refused"}
            }]
        }))
        .unwrap();
        let cause = classify_order_error(&OrderError::BadAuth(auth), &["a.example.com".into()]);
        assert_eq!(
            cause,
            FailureCause::PortUnreachable {
                domain: "b.example.com".into(),
                detail: "Connection refused".into()
            }
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_six_hours_and_an_hour_after_a_rate_limit() {
        let j = job(AcmeChallenge::TlsAlpn01);
        let other = FailureCause::Other {
            detail: String::new(),
        };
        let secs = |n| retry_delay(&j, n, &other).as_secs();
        assert_eq!([secs(1), secs(2), secs(3), secs(4)], [300, 600, 1200, 2400]);
        assert_eq!(secs(8), 6 * 3600);
        assert_eq!(secs(40), 6 * 3600);
        let limited = FailureCause::RateLimited {
            detail: String::new(),
        };
        assert_eq!(retry_delay(&j, 1, &limited).as_secs(), 3600);
    }
}
