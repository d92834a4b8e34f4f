//! `hermes-edge cert status`: for each name, which certificate the server presents, who issued it, the
//! names it covers, when it expires and where its files are. Reads the certs directory only; it never
//! creates, orders or changes anything, so it is safe to run beside a running server.

use std::fmt::Write as _;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::acme::{self, AcmeJob};
use super::cert_info::CertInfo;
use super::local_ca;
use crate::config::{Config, TlsMode};

/// The whole report, ready to print.
pub(crate) fn report(config: &Config) -> String {
    report_at(config, crate::store::now())
}

fn report_at(config: &Config, now: i64) -> String {
    let mut out = String::new();
    let dir = &config.certs_dir;
    let _ = writeln!(out, "certs directory: {}", dir.display());
    match &config.tls {
        TlsMode::LocalCa => {
            let _ = writeln!(out, "TLS mode: local CA");
            local_ca_section(&mut out, dir, now, "local CA leaf");
        }
        TlsMode::Files { cert, key } => {
            let _ = writeln!(
                out,
                "TLS mode: certificate files (reloaded when they change)"
            );
            cert_section(&mut out, "certificate files", cert, Some(key), now);
        }
        TlsMode::Acme(settings) => {
            let job = AcmeJob::from_config(settings, dir);
            let _ = writeln!(
                out,
                "TLS mode: ACME from {} ({} challenge); the local CA serves until a certificate arrives",
                job.directory,
                acme::challenge_name(&job.challenge)
            );
            acme_section(&mut out, &job, now);
            local_ca_section(
                &mut out,
                dir,
                now,
                "local CA leaf (names without an ACME certificate)",
            );
        }
    }
    out
}

/// One certificate the server has, for `/status`, `/metrics` and `hermes-edge status`.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct CertSummary {
    /// `acme`, `files`, `local_ca_leaf` or `local_ca_root`.
    pub role: &'static str,
    /// The name it is known by: the ACME domain, else its first SAN, else its subject.
    pub name: String,
    /// The names it covers.
    pub names: Vec<String>,
    pub issuer: String,
    /// Seconds since the Unix epoch; `None` when there is no readable certificate.
    pub not_after: Option<i64>,
    /// Why there is none: not created yet, unreadable, not covering the name.
    pub problem: Option<String>,
}

impl CertSummary {
    fn of(role: &'static str, name: Option<&str>, found: Option<Result<CertInfo, String>>) -> Self {
        let mut s = CertSummary {
            role,
            name: name.unwrap_or(role).to_string(),
            names: Vec::new(),
            issuer: String::new(),
            not_after: None,
            problem: None,
        };
        match found {
            Some(Ok(info)) => {
                if name.is_none() {
                    s.name = short_name(&info);
                }
                s.names = info.sans;
                s.issuer = info.issuer;
                s.not_after = Some(info.not_after);
            }
            Some(Err(e)) => s.problem = Some(format!("unreadable: {e}")),
            None => s.problem = Some("not created yet".into()),
        }
        s
    }
}

/// A certificate's name at a glance: its first DNS name, else its subject's common name, else
/// its first SAN or whole subject.
fn short_name(info: &CertInfo) -> String {
    if let Some(dns) = info
        .sans
        .iter()
        .find(|n| n.parse::<std::net::IpAddr>().is_err())
    {
        return dns.clone();
    }
    let cn = info
        .subject
        .split(", ")
        .find_map(|part| part.strip_prefix("CN="));
    cn.or(info.sans.first().map(String::as_str))
        .unwrap_or(&info.subject)
        .to_string()
}

/// The certificates of the configured TLS mode, read from disk (the files the server loads).
pub(crate) fn certificates(config: &Config) -> Vec<CertSummary> {
    let dir = &config.certs_dir;
    let mut out = Vec::new();
    match &config.tls {
        TlsMode::Files { cert, .. } => {
            out.push(CertSummary::of("files", None, read_first_cert(cert)))
        }
        TlsMode::Acme(settings) => {
            let job = AcmeJob::from_config(settings, dir);
            let cached = std::fs::read(job.cert_cache_path())
                .ok()
                .and_then(|pem| acme::parse_acme_pem(&pem).ok());
            for domain in &job.domains {
                let found = match &cached {
                    Some(cert) if cert.info.covers(domain) => Some(Ok(cert.info.clone())),
                    _ => None,
                };
                let mut s = CertSummary::of("acme", Some(domain), found);
                if s.not_after.is_none() {
                    s.problem =
                        Some("no ACME certificate yet; the local CA serves this name".into());
                }
                out.push(s);
            }
        }
        TlsMode::LocalCa => {}
    }
    if !matches!(config.tls, TlsMode::Files { .. }) {
        out.push(CertSummary::of(
            "local_ca_leaf",
            None,
            read_first_cert(&dir.join(local_ca::LEAF_CERT)),
        ));
        out.push(CertSummary::of(
            "local_ca_root",
            None,
            read_first_cert(&dir.join(local_ca::CA_CERT)),
        ));
    }
    out
}

fn acme_section(out: &mut String, job: &AcmeJob, now: i64) {
    let cert_path = job.cert_cache_path();
    let cached = std::fs::read(&cert_path)
        .ok()
        .and_then(|pem| acme::parse_acme_pem(&pem).ok());
    for domain in &job.domains {
        let _ = writeln!(out, "\n{domain}");
        match &cached {
            Some(cert) if cert.info.covers(domain) && now < cert.info.not_after => {
                let _ = writeln!(out, "  served by: ACME certificate");
                info_lines(out, &cert.info, now);
                let _ = writeln!(out, "  file:      {}", file_line(&cert_path));
            }
            Some(cert) if cert.info.covers(domain) => {
                let _ = writeln!(
                    out,
                    "  served by: local CA (the ACME certificate expired on {}; a new one is ordered at start-up)",
                    crate::store::human_utc(cert.info.not_after)
                );
                let _ = writeln!(out, "  file:      {}", file_line(&cert_path));
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  served by: local CA (no ACME certificate yet; it will be kept in {})",
                    cert_path.display()
                );
            }
        }
    }
    let account = job.account_cache_path();
    let note = if account.exists() {
        ""
    } else {
        "; created with the first order"
    };
    let _ = writeln!(out, "\nACME account key: {}{note}", file_line(&account));
}

fn local_ca_section(out: &mut String, dir: &Path, now: i64, leaf_label: &str) {
    let leaf = dir.join(local_ca::LEAF_CERT);
    cert_section(
        out,
        leaf_label,
        &leaf,
        Some(&dir.join(local_ca::LEAF_KEY)),
        now,
    );
    let _ = writeln!(
        out,
        "\nlocal CA root (devices trust it once via GET /ca.crt)"
    );
    let root = dir.join(local_ca::CA_CERT);
    match read_first_cert(&root) {
        Some(Ok(info)) => {
            let _ = writeln!(out, "  subject:   {}", info.subject);
            let _ = writeln!(out, "  expires:   {}", expiry_text(&info, now));
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "  unreadable: {e}");
        }
        None => {}
    }
    let _ = writeln!(out, "  file:      {}", file_line(&root));
    let _ = writeln!(
        out,
        "  key:       {}",
        file_line(&dir.join(local_ca::CA_KEY))
    );
}

/// A certificate file: its names as the heading, then what serves them, issuer, SANs, expiry, files.
fn cert_section(out: &mut String, served_by: &str, path: &Path, key: Option<&Path>, now: i64) {
    match read_first_cert(path) {
        Some(Ok(info)) => {
            let _ = writeln!(out, "\n{}", heading(&info));
            let _ = writeln!(out, "  served by: {served_by}");
            info_lines(out, &info, now);
        }
        Some(Err(e)) => {
            let _ = writeln!(out, "\n{served_by}");
            let _ = writeln!(out, "  unreadable: {e}");
        }
        None => {
            let _ = writeln!(
                out,
                "\n{served_by} (not created yet; made at the first start)"
            );
        }
    }
    let _ = writeln!(out, "  file:      {}", file_line(path));
    if let Some(key) = key {
        let _ = writeln!(out, "  key:       {}", file_line(key));
    }
}

fn heading(info: &CertInfo) -> String {
    if info.sans.is_empty() {
        info.subject.clone()
    } else {
        info.sans.join(", ")
    }
}

/// The first certificate of a PEM file; `None` if the file does not exist.
fn read_first_cert(path: &Path) -> Option<Result<CertInfo, String>> {
    let pem = match std::fs::read(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(e.to_string())),
    };
    Some(
        CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or_else(|| "no certificate in the file".to_string())
            .and_then(|der| der.map_err(|e| e.to_string()))
            .and_then(|der| CertInfo::from_der(&der)),
    )
}

fn info_lines(out: &mut String, info: &CertInfo, now: i64) {
    let _ = writeln!(out, "  issuer:    {}", info.issuer);
    let sans = if info.sans.is_empty() {
        "(none)".to_string()
    } else {
        info.sans.join(", ")
    };
    let _ = writeln!(out, "  SANs:      {sans}");
    let _ = writeln!(out, "  expires:   {}", expiry_text(info, now));
}

fn expiry_text(info: &CertInfo, now: i64) -> String {
    let when = crate::store::human_utc(info.not_after);
    if now >= info.not_after {
        return format!("{when} (EXPIRED)");
    }
    let days = (info.not_after - now) / 86_400;
    if acme::needs_renewal(info.not_before, info.not_after, now) {
        format!("{when} (in {days} days; due for renewal)")
    } else {
        format!("{when} (in {days} days)")
    }
}

/// `path (mode 0600)` or `path (missing)`.
fn file_line(path: &Path) -> String {
    match std::fs::metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            format!(
                "{} (mode {:04o})",
                path.display(),
                meta.permissions().mode() & 0o7777
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("{} (missing)", path.display())
        }
        Err(e) => format!("{} ({e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_says_expired_renewal_due_or_days_left() {
        let info = CertInfo {
            subject: String::new(),
            issuer: "CN=x".into(),
            sans: vec!["a.example".into()],
            not_before: 0,
            not_after: 90 * 86_400,
            serial: String::new(),
        };
        assert_eq!(
            expiry_text(&info, 10 * 86_400),
            "1970-04-01 00:00:00 UTC (in 80 days)"
        );
        assert_eq!(
            expiry_text(&info, 61 * 86_400),
            "1970-04-01 00:00:00 UTC (in 29 days; due for renewal)"
        );
        assert_eq!(
            expiry_text(&info, 90 * 86_400),
            "1970-04-01 00:00:00 UTC (EXPIRED)"
        );
    }
}
