//! `[tls]` and the listeners: which way the HTTPS listener gets its certificate (local CA, files,
//! ACME), and the addresses it and the plain-HTTP redirect listener take, which follow from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::{FileConfig, FileTls};
use super::{defaults, invalid, parse_addr, CliOverrides, ConfigError};

/// How the HTTPS listener gets its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// A root CA generated once and kept in the certs directory signs a leaf for the local names.
    LocalCa,
    /// A PEM chain and key from files, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// Certificates from an ACME CA (Let's Encrypt by default) for these domains.
    Acme(AcmeSettings),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AcmeChallenge {
    TlsAlpn01,
    Http01,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AcmeSettings {
    pub domains: Vec<String>,
    pub email: Option<String>,
    pub challenge: AcmeChallenge,
    pub staging: bool,
    pub directory: Option<String>,
    pub ca_root: Option<PathBuf>,
    /// First wait after a failed attempt to get a certificate; doubles after each further failure.
    pub retry_initial: Duration,
}

/// The ACME domains (`--domain` replaces the file's list), each checked.
pub(super) fn domains(t: &FileTls, cli: &CliOverrides) -> Result<Vec<String>, ConfigError> {
    let mut domains = t.domains.clone().unwrap_or_default();
    if !cli.domains.is_empty() {
        domains = cli.domains.clone();
    }
    for d in &domains {
        validate_domain(d)?;
    }
    Ok(domains)
}

pub(super) fn mode(
    t: &FileTls,
    cli: &CliOverrides,
    domains: &[String],
) -> Result<TlsMode, ConfigError> {
    let cert = cli.cert.clone().or(t.cert.clone());
    let key = cli.key.clone().or(t.key.clone());
    let self_signed = cli.self_signed || t.self_signed.unwrap_or(false);

    Ok(match (cert, key) {
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
                .or(t.acme_challenge.clone())
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
                domains: domains.to_vec(),
                email: cli.email.clone().or(t.email.clone()),
                challenge,
                staging: cli.acme_staging || t.acme_staging.unwrap_or(false),
                directory: cli.acme_directory.clone().or(t.acme_directory.clone()),
                ca_root: cli.acme_ca_root.clone().or(t.acme_ca_root.clone()),
                retry_initial: Duration::from_secs(
                    t.acme_retry_initial_secs
                        .unwrap_or(defaults::ACME_RETRY_INITIAL_SECS)
                        .max(1),
                ),
            })
        }
        (None, None) => TlsMode::LocalCa,
    })
}

/// The HTTPS listener and the plain-HTTP one (redirects and HTTP-01), whose defaults depend on
/// whether an ACME domain is served.
pub(super) fn listeners(
    file: &FileConfig,
    cli: &CliOverrides,
    tls: &TlsMode,
) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let has_domain = matches!(tls, TlsMode::Acme(_));
    let listen_text = cli
        .listen
        .clone()
        .or(file.listen.clone())
        .unwrap_or_else(|| {
            if has_domain {
                defaults::LISTEN_WITH_DOMAIN.into()
            } else {
                defaults::LISTEN.into()
            }
        });
    let listen = parse_addr("listen", &listen_text)?;
    let http_text = cli.http_listen.clone().or(file.http_listen.clone());
    let http_listen = match http_text.as_deref() {
        Some("off") | Some("") => None,
        Some(text) => Some(parse_addr("http_listen", text)?),
        None if has_domain => Some(parse_addr(
            "http_listen",
            defaults::HTTP_LISTEN_WITH_DOMAIN,
        )?),
        None => None,
    };
    if let TlsMode::Acme(a) = tls {
        if a.challenge == AcmeChallenge::Http01 && http_listen.is_none() {
            return Err(invalid(
                "http_listen",
                "the http-01 ACME challenge needs the port-80 listener; remove `--http-listen off` or use tls-alpn-01",
            ));
        }
    }
    Ok((listen, http_listen))
}

/// Names the local-CA leaf covers besides localhost and the machine's own addresses.
pub(super) fn extra_names(t: &FileTls, cli: &CliOverrides, domains: &[String]) -> Vec<String> {
    let mut extra_names = t.hostnames.clone().unwrap_or_default();
    extra_names.extend(t.san.clone().unwrap_or_default());
    extra_names.extend(cli.san.iter().cloned());
    extra_names.extend(domains.iter().cloned());
    extra_names
}

pub(super) fn hsts_max_age(t: &FileTls, tls: &TlsMode) -> u64 {
    t.hsts_max_age_secs.unwrap_or(match tls {
        TlsMode::LocalCa => defaults::HSTS_MAX_AGE_LOCAL_CA_SECS,
        _ => defaults::HSTS_MAX_AGE_SECS,
    })
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
