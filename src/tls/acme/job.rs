//! What to order, from which CA, with which challenge: the `tls` ACME settings of the configuration,
//! resolved into an [`AcmeJob`] and checked before anything talks to the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AcmeChallenge, AcmeSettings};

use super::cache::{account_file_name, cert_file_name};

/// Let's Encrypt's production directory (browser-trusted certificates, strict rate limits).
pub(super) const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits): `--acme-staging`.
pub(super) const LETS_ENCRYPT_STAGING: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";

/// The name of a challenge type in flags, config and logs.
pub(crate) fn challenge_name(challenge: &AcmeChallenge) -> &'static str {
    match challenge {
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        AcmeChallenge::Http01 => "http-01",
    }
}

/// Everything the ACME client needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct AcmeJob {
    /// Names the certificate is for (the first one is the certificate's primary name).
    pub domains: Vec<String>,
    /// Contact address given to the CA (expiry warnings, account recovery). Optional for most CAs.
    pub email: Option<String>,
    /// The challenge used to prove control of the domains.
    pub challenge: AcmeChallenge,
    /// The ACME directory URL.
    pub directory: String,
    /// PEM file with the root(s) the ACME client trusts for the directory; `None` = the public Web PKI.
    pub ca_root: Option<PathBuf>,
    /// Where the account key and certificates are cached (`<certs-dir>/acme`).
    pub cache_dir: PathBuf,
    /// First wait after a failed attempt; doubled after each further failure, up to
    /// [`MAX_RETRY`](super::failure::MAX_RETRY).
    pub retry_initial: Duration,
}

/// The ACME settings can't be used; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AcmeSetupError {
    #[error("invalid setting `tls.domains`: `{0}` is a wildcard; wildcard certificates need the DNS-01 challenge, which hermes-edge does not do (list each name with --domain)")]
    Wildcard(String),
    #[error(
        "invalid setting `tls.email`: `{0}` is not an email address (expected e.g. me@example.com)"
    )]
    BadEmail(String),
    #[error("invalid setting `tls.acme_ca_root`: {path}: {reason}")]
    CaRoot { path: PathBuf, reason: String },
    #[error("invalid setting `tls.acme_directory`: `{0}` must be an https:// URL")]
    BadDirectory(String),
}

impl AcmeJob {
    /// Resolves the configured ACME settings; the cache lives in `<certs_dir>/acme`.
    pub(crate) fn from_config(settings: &AcmeSettings, certs_dir: &Path) -> Self {
        let directory = match (&settings.directory, settings.staging) {
            (Some(url), _) => url.clone(),
            (None, true) => LETS_ENCRYPT_STAGING.to_string(),
            (None, false) => LETS_ENCRYPT_PRODUCTION.to_string(),
        };
        AcmeJob {
            domains: settings
                .domains
                .iter()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            email: settings.email.clone(),
            challenge: settings.challenge.clone(),
            directory,
            ca_root: settings.ca_root.clone(),
            cache_dir: certs_dir.join("acme"),
            retry_initial: settings.retry_initial,
        }
    }

    /// Checks what can be checked before talking to the CA.
    pub(crate) fn validate(&self) -> Result<(), AcmeSetupError> {
        if let Some(wild) = self.domains.iter().find(|d| d.contains('*')) {
            return Err(AcmeSetupError::Wildcard(wild.clone()));
        }
        if let Some(email) = &self.email {
            if !is_plausible_email(email) {
                return Err(AcmeSetupError::BadEmail(email.clone()));
            }
        }
        if !self.directory.starts_with("https://") {
            return Err(AcmeSetupError::BadDirectory(self.directory.clone()));
        }
        Ok(())
    }

    pub(super) fn contacts(&self) -> Vec<String> {
        self.email.iter().map(|e| format!("mailto:{e}")).collect()
    }

    /// The cache file holding the certificate for these domains from this directory.
    pub(crate) fn cert_cache_path(&self) -> PathBuf {
        self.cache_dir
            .join(cert_file_name(&self.domains, &self.directory))
    }

    /// The cache file holding the account key for this contact at this directory.
    pub(crate) fn account_cache_path(&self) -> PathBuf {
        self.cache_dir
            .join(account_file_name(&self.contacts(), &self.directory))
    }
}

fn is_plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',' || c == ':')
        }
        None => false,
    }
}

/// Reads `--acme-ca-root` into a client config trusting exactly those roots.
/// `None` without one: rustls-acme then uses the public Web PKI roots it bundles.
pub(super) fn client_config(
    job: &AcmeJob,
) -> Result<Option<Arc<rustls::ClientConfig>>, AcmeSetupError> {
    let provider = crate::tls::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    match &job.ca_root {
        Some(path) => {
            let bad = |reason: String| AcmeSetupError::CaRoot {
                path: path.clone(),
                reason,
            };
            use rustls::pki_types::pem::PemObject;
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            let mut count = 0;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("unreadable PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
                count += 1;
            }
            if count == 0 {
                return Err(bad("no PEM certificate in the file".into()));
            }
        }
        None => return Ok(None),
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AcmeSetupError::CaRoot {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The job the unit tests of this folder share.
    pub(crate) fn job(challenge: AcmeChallenge) -> AcmeJob {
        AcmeJob {
            domains: vec!["chat.example.com".into()],
            email: Some("me@example.com".into()),
            challenge,
            directory: LETS_ENCRYPT_PRODUCTION.into(),
            ca_root: None,
            cache_dir: PathBuf::from("certs/acme"),
            retry_initial: Duration::from_secs(300),
        }
    }

    #[test]
    fn settings_are_checked_before_talking_to_the_ca() {
        let mut j = job(AcmeChallenge::TlsAlpn01);
        assert!(j.validate().is_ok());
        for bad in [
            "me",
            "me@localhost",
            "@example.com",
            "me@example.com,you@example.com",
            "me @example.com",
        ] {
            j.email = Some(bad.into());
            assert!(
                matches!(j.validate(), Err(AcmeSetupError::BadEmail(_))),
                "{bad}"
            );
        }
        j.email = None;
        j.domains = vec!["*.example.com".into()];
        assert!(matches!(j.validate(), Err(AcmeSetupError::Wildcard(_))));
        j.domains = vec!["chat.example.com".into()];
        j.directory = "http://ca.example/dir".into();
        assert!(matches!(j.validate(), Err(AcmeSetupError::BadDirectory(_))));
    }
}
