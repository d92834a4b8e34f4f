//! Automatic HTTPS: certificates from an ACME CA (Let's Encrypt by default, or any RFC 8555 CA such as
//! Pebble, step-ca or a company CA), obtained and renewed in the background with rustls-acme.
//!
//! How it fits together:
//! - [`AcmeResolver`] is the overlay of the TLS listener's [`CertResolver`]. It answers TLS-ALPN-01
//!   challenge handshakes, and serves the ACME certificate to clients asking (SNI) for one of the ACME
//!   domains once one is installed and not expired; for every other handshake it answers `None`, and the
//!   `CertResolver` presents the local-CA certificate. So the server is usable from the first second and
//!   stays usable while issuance fails; a client reaching it by IP address or `localhost` still gets the
//!   local-CA certificate, which covers those names.
//! - [`prepare`] builds it; [`Acme::spawn`], called once the listeners are bound, starts one task that
//!   drives rustls-acme's `AcmeState`: it loads the cached certificate (a valid cached certificate is
//!   served at once and **no** order is placed), orders when there is none, renews at two thirds of the
//!   lifetime (rustls-acme's schedule, see [`needs_renewal`]), and after a failure logs the cause in plain
//!   words ([`FailureCause`]) and waits with exponential backoff before the next attempt. (rustls-acme
//!   also keeps its own, shorter backoff, 1 s doubling up to 2^16 s; ours is the longer of the two until
//!   about fifteen failures in a row.)
//! - [`AcmeCache`] keeps the account key and the certificate in `<certs-dir>/acme/`, files 0600, written
//!   atomically (temporary file + rename).
//! - HTTP-01 answers are looked up with [`AcmeResolver::http01_answer`] by the port-80 listener.
//!
//! A renewed certificate is swapped in place: open connections keep the certificate they negotiated, the
//! next handshake gets the new one.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_acme::acme::{AuthStatus, Problem};
use rustls_acme::{
    is_tls_alpn_challenge, AccountCache, AcmeConfig, CertCache, EventError, EventOk, OrderError,
    ResolvesServerCertAcme, UseChallenge,
};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::config::{AcmeChallenge, AcmeSettings};
use crate::tls::CertResolver;

/// Let's Encrypt's production directory (browser-trusted certificates, strict rate limits).
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits): `--acme-staging`.
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";
/// The ALPN protocol name of TLS-ALPN-01 challenge handshakes (RFC 8737). The TLS listener must offer it
/// while ACME uses TLS-ALPN-01, and must close a connection that negotiated it without serving HTTP.
pub const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";

/// The longest wait between two attempts after repeated failures.
pub const MAX_RETRY: Duration = Duration::from_secs(6 * 3600);

/// The name of a challenge type in flags, config and logs.
pub fn challenge_name(challenge: &AcmeChallenge) -> &'static str {
    match challenge {
        AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        AcmeChallenge::Http01 => "http-01",
    }
}

/// Everything the ACME client needs, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct AcmeJob {
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
    /// First wait after a failed attempt; doubled after each further failure, up to [`MAX_RETRY`].
    pub retry_initial: Duration,
}

/// The ACME settings can't be used; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum AcmeSetupError {
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
    pub fn from_config(settings: &AcmeSettings, certs_dir: &Path) -> Self {
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
    pub fn validate(&self) -> Result<(), AcmeSetupError> {
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

    fn contacts(&self) -> Vec<String> {
        self.email.iter().map(|e| format!("mailto:{e}")).collect()
    }

    /// The cache file holding the certificate for these domains from this directory.
    pub fn cert_cache_path(&self) -> PathBuf {
        self.cache_dir
            .join(cert_file_name(&self.domains, &self.directory))
    }

    /// The cache file holding the account key for this contact at this directory.
    pub fn account_cache_path(&self) -> PathBuf {
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

fn short_hash(parts: &[String], directory: &str) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.update(directory.as_bytes());
    hex::encode(&hasher.finalize()[..8])
}

/// `cert-<first domain>-<hash of all domains and the directory>.pem`: readable, and a change of names or
/// CA never picks up the wrong certificate.
fn cert_file_name(domains: &[String], directory: &str) -> String {
    let first = domains.first().map(String::as_str).unwrap_or("none");
    let safe: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("cert-{safe}-{}.pem", short_hash(domains, directory))
}

fn account_file_name(contacts: &[String], directory: &str) -> String {
    format!("account-{}.key", short_hash(contacts, directory))
}

// ---------------------------------------------------------------------------------------------------
// Cache

/// The ACME cache in `<certs-dir>/acme/`: the account key (PKCS#8 DER) and the certificate (PEM: private
/// key first, then the chain), each file 0600 in a 0700 directory, replaced atomically. It also remembers
/// the last certificate it loaded or stored, which is how the manager learns what to install.
#[derive(Debug, Clone)]
pub struct AcmeCache {
    dir: PathBuf,
    last_pem: Arc<Mutex<Option<Vec<u8>>>>,
}

impl AcmeCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            last_pem: Arc::new(Mutex::new(None)),
        }
    }

    fn take_last_pem(&self) -> Option<Vec<u8>> {
        self.last_pem.lock().ok().and_then(|mut slot| slot.take())
    }

    fn remember(&self, pem: &[u8]) {
        if let Ok(mut slot) = self.last_pem.lock() {
            *slot = Some(pem.to_vec());
        }
    }

    async fn read(&self, name: String) -> io::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.dir.join(name)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn write(&self, name: String, contents: &[u8]) -> io::Result<()> {
        write_private_file(&self.dir, &name, contents).await
    }
}

/// Writes `dir/name` with mode 0600 (directory 0700) through a temporary file and a rename, so a crash
/// never leaves half a key behind and the file is never readable by others, not even briefly.
pub async fn write_private_file(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(&tmp).await?;
    #[cfg(unix)]
    {
        // The mode above only applies when the file is created; a left-over temporary file keeps its own.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .await?;
    }
    file.write_all(contents).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&tmp, dir.join(name)).await
}

#[async_trait::async_trait]
impl CertCache for AcmeCache {
    type EC = io::Error;
    async fn load_cert(
        &self,
        domains: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, io::Error> {
        let pem = self.read(cert_file_name(domains, directory_url)).await?;
        if let Some(pem) = &pem {
            self.remember(pem);
        }
        Ok(pem)
    }
    async fn store_cert(
        &self,
        domains: &[String],
        directory_url: &str,
        cert: &[u8],
    ) -> Result<(), io::Error> {
        // Remember first: the new certificate is installed even if saving it fails.
        self.remember(cert);
        self.write(cert_file_name(domains, directory_url), cert)
            .await
    }
}

#[async_trait::async_trait]
impl AccountCache for AcmeCache {
    type EA = io::Error;
    async fn load_account(
        &self,
        contact: &[String],
        directory_url: &str,
    ) -> Result<Option<Vec<u8>>, io::Error> {
        self.read(account_file_name(contact, directory_url)).await
    }
    async fn store_account(
        &self,
        contact: &[String],
        directory_url: &str,
        account: &[u8],
    ) -> Result<(), io::Error> {
        self.write(account_file_name(contact, directory_url), account)
            .await
    }
}

// ---------------------------------------------------------------------------------------------------
// Certificates

/// What a certificate says about itself, for logs and `hermes-edge cert status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// DNS names and IP addresses, in certificate order.
    pub sans: Vec<String>,
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    /// Seconds since the Unix epoch.
    pub not_after: i64,
    /// Hex, colon-separated.
    pub serial: String,
}

impl CertInfo {
    /// Reads the first certificate of a DER chain.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        sans.push((*dns).to_string())
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            sans.push(std::net::Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            sans.push(std::net::Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            sans,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: cert.raw_serial_as_string(),
        })
    }

    /// When rustls-acme starts renewing this certificate.
    pub fn renewal_due(&self) -> i64 {
        renewal_time(self.not_before, self.not_after)
    }

    /// Whether `name` (a TLS server name) is one of this certificate's DNS names.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name);
        self.sans.iter().any(|san| san.eq_ignore_ascii_case(name))
    }
}

/// The moment renewal starts: when two thirds of the lifetime have passed (30 days before expiry for a
/// 90-day Let's Encrypt certificate). This mirrors rustls-acme's own schedule, which is what actually
/// triggers the renewal order.
pub fn renewal_time(not_before: i64, not_after: i64) -> i64 {
    let lifetime = not_after.saturating_sub(not_before).max(0);
    not_after - lifetime / 3
}

/// Whether a certificate valid from `not_before` to `not_after` (Unix seconds) must be renewed at `now`.
pub fn needs_renewal(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= renewal_time(not_before, not_after)
}

/// An ACME certificate ready to serve.
#[derive(Debug)]
pub struct InstalledCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Parses rustls-acme's cache format: a PKCS#8 private key, then the certificate chain (leaf first).
pub fn parse_acme_pem(pem: &[u8]) -> Result<InstalledCert, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no usable private key: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable certificate PEM: {e}"))?;
    let leaf = chain.first().ok_or("no certificate")?;
    let info = CertInfo::from_der(leaf)?;
    let signing_key = super::crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(InstalledCert {
        key: Arc::new(CertifiedKey::new(chain, signing_key)),
        info,
    })
}

// ---------------------------------------------------------------------------------------------------
// Resolver

/// The TLS listener's certificate resolver while ACME is on. See the module documentation.
pub struct AcmeResolver {
    acme: Arc<ResolvesServerCertAcme>,
    current: RwLock<Option<Arc<InstalledCert>>>,
}

impl fmt::Debug for AcmeResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcmeResolver")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

impl AcmeResolver {
    /// The certificate currently served for the ACME domains, if any.
    pub fn current(&self) -> Option<Arc<InstalledCert>> {
        self.current.read().ok().and_then(|slot| slot.clone())
    }

    /// Swaps in a new certificate: the next handshake uses it; open connections are untouched.
    pub fn install(&self, cert: InstalledCert) {
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(Arc::new(cert));
        }
    }

    /// The body for `GET /.well-known/acme-challenge/<token>` on the HTTP listener, or `None` (→ 404).
    pub fn http01_answer(&self, token: &str) -> Option<String> {
        let answer = self.acme.get_http_01_key_auth(token)?;
        tracing::info!("ACME: answered the HTTP-01 challenge (token {token})");
        Some(answer)
    }
}

impl ResolvesServerCert for AcmeResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if is_tls_alpn_challenge(&client_hello) {
            let name = client_hello.server_name().unwrap_or("").to_string();
            let answer = self.acme.resolve(client_hello);
            if answer.is_some() {
                tracing::info!("ACME: answered the TLS-ALPN-01 challenge for {name}");
            } else {
                tracing::warn!(
                    "ACME: a TLS-ALPN-01 challenge for {name:?} arrived but none is pending"
                );
            }
            // With no answer the local-CA certificate is presented, which fails the validation as it should.
            return answer;
        }
        let name = client_hello.server_name()?;
        let cert = self.current()?;
        // `None` hands the handshake to the local-CA certificate (see `CertResolver`).
        (cert.info.covers(name) && crate::store::now() < cert.info.not_after)
            .then(|| cert.key.clone())
    }
}

// ---------------------------------------------------------------------------------------------------
// Errors in plain words

/// Why an attempt to obtain a certificate failed, in terms of what the user can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureCause {
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
    pub fn explain(&self, job: &AcmeJob) -> String {
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
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Self::RateLimited { .. })
    }
}

/// Classifies an ACME problem document (RFC 8555 section 6.7) about `domain`.
pub fn classify_problem(problem: &Problem, domain: &str) -> FailureCause {
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
pub fn classify_order_error(err: &OrderError, domains: &[String]) -> FailureCause {
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

// ---------------------------------------------------------------------------------------------------
// The manager

/// Reads `--acme-ca-root` into a client config trusting exactly those roots.
/// `None` without one: rustls-acme then uses the public Web PKI roots it bundles.
fn client_config(job: &AcmeJob) -> Result<Option<Arc<rustls::ClientConfig>>, AcmeSetupError> {
    let provider = super::crypto_provider();
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

/// The ACME client: what the listeners need from it, and the work to start once they are bound.
pub struct Acme {
    pub resolver: Arc<AcmeResolver>,
    pub job: AcmeJob,
    run: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Acme {
    /// ALPN protocols the HTTPS listener must offer in addition to h2 and http/1.1.
    pub fn extra_alpn(&self) -> &'static [&'static [u8]] {
        match self.job.challenge {
            AcmeChallenge::TlsAlpn01 => &[ACME_TLS_ALPN_PROTOCOL],
            AcmeChallenge::Http01 => &[],
        }
    }

    /// Starts obtaining and renewing the certificate in the background. Call it once the listeners are
    /// bound: the CA may connect back for the challenge within milliseconds of the order.
    pub fn spawn(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.run.take().map(tokio::spawn)
    }

    /// The port-80 listener's answer for `/.well-known/acme-challenge/<token>`.
    pub fn http01_responder(&self) -> crate::app::Http01Responder {
        let resolver = self.resolver.clone();
        Arc::new(move |token: &str| resolver.http01_answer(token))
    }
}

/// Sets up automatic HTTPS: installs the ACME resolver in front of `certs` (which keeps serving the
/// local-CA certificate until an ACME certificate is installed). Nothing is ordered until
/// [`Acme::spawn`].
pub fn prepare(job: AcmeJob, certs: &CertResolver) -> Result<Acme, AcmeSetupError> {
    job.validate()?;
    let client = client_config(&job)?;
    let cache = AcmeCache::new(job.cache_dir.clone());
    let challenge = match job.challenge {
        AcmeChallenge::TlsAlpn01 => UseChallenge::TlsAlpn01,
        AcmeChallenge::Http01 => UseChallenge::Http01,
    };
    let config = match client {
        Some(client) => AcmeConfig::new_with_client_config(&job.domains, client),
        None => AcmeConfig::new_with_provider(&job.domains, super::crypto_provider()),
    };
    let state = config
        .directory(&job.directory)
        .contact(job.contacts())
        .challenge_type(challenge)
        .cache(cache.clone())
        .state();
    let resolver = Arc::new(AcmeResolver {
        acme: state.resolver(),
        current: RwLock::new(None),
    });
    certs.set_overlay(resolver.clone());
    let run = Box::pin(drive(state, cache, resolver.clone(), job.clone()));
    Ok(Acme {
        resolver,
        job,
        run: Some(run),
    })
}

fn retry_delay(job: &AcmeJob, failures: u32, cause: &FailureCause) -> Duration {
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

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Installs the certificate the cache last saw; `new` says whether it was just issued.
fn install_from_cache(
    cache: &AcmeCache,
    resolver: &AcmeResolver,
    job: &AcmeJob,
    new: bool,
) -> bool {
    let Some(pem) = cache.take_last_pem() else {
        return false;
    };
    let cert = match parse_acme_pem(&pem) {
        Ok(cert) => cert,
        Err(reason) => {
            tracing::warn!(
                "ACME: the certificate in {} is unusable ({reason})",
                job.cert_cache_path().display()
            );
            return false;
        }
    };
    let now = crate::store::now();
    let info = cert.info.clone();
    if now >= info.not_after {
        tracing::warn!(
            "ACME: the cached certificate for {} expired on {}; serving the local-CA certificate until a new \
             one is issued",
            job.domains.join(", "),
            crate::store::human_utc(info.not_after)
        );
        return false;
    }
    resolver.install(cert);
    let how = if new { "installed new" } else { "using cached" };
    tracing::info!(
        "ACME: {how} certificate for {} (issuer {}, expires {}, renewal from {}){}",
        info.sans.join(", "),
        info.issuer,
        crate::store::human_utc(info.not_after),
        crate::store::human_utc(info.renewal_due()),
        if new {
            String::new()
        } else {
            "; no new order placed".to_string()
        }
    );
    true
}

/// How long until the Unix time `at` (zero if it has passed).
fn until_unix(at: i64) -> Duration {
    let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(at).unwrap_or(0));
    at.duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO)
}

fn announce_renewal(names: &str, current: Option<&InstalledCert>) {
    match current {
        Some(cert) => tracing::info!(
            "ACME: renewing the certificate for {names} (it expires {})",
            crate::store::human_utc(cert.info.not_after)
        ),
        None => tracing::info!("ACME: renewing the certificate for {names}"),
    }
}

async fn drive(
    mut state: rustls_acme::AcmeState<io::Error, io::Error>,
    cache: AcmeCache,
    resolver: Arc<AcmeResolver>,
    job: AcmeJob,
) {
    let names = job.domains.join(", ");
    let cached = tokio::fs::try_exists(job.cert_cache_path())
        .await
        .unwrap_or(false);
    if !cached {
        tracing::info!(
            "ACME: ordering a certificate for {names} from {} ({} challenge); serving the local-CA certificate \
             meanwhile",
            job.directory,
            challenge_name(&job.challenge)
        );
    }
    let mut failures: u32 = 0;
    // The renewal time of the certificate whose renewal has been announced on the console.
    let mut announced: Option<i64> = None;
    loop {
        let current = resolver.current();
        let renew_at = current.as_ref().map(|c| c.info.renewal_due());
        let wait = renew_at.filter(|at| announced != Some(*at)).map(until_unix);
        let event = tokio::select! {
            event = state.next() => event,
            // rustls-acme starts the renewal order at the same instant; this only says so.
            () = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                announced = renew_at;
                announce_renewal(&names, current.as_deref());
                continue;
            }
        };
        let Some(event) = event else { return };
        match event {
            Ok(EventOk::DeployedCachedCert) => {
                install_from_cache(&cache, &resolver, &job, false);
            }
            Ok(EventOk::DeployedNewCert) => {
                // A fast CA can finish the renewal before the timer above was polled.
                if current.is_some() && announced != renew_at {
                    announced = renew_at;
                    announce_renewal(&names, current.as_deref());
                }
                tracing::info!("ACME: certificate for {names} issued");
            }
            Ok(EventOk::CertCacheStore) => {
                failures = 0;
                install_from_cache(&cache, &resolver, &job, true);
                tracing::info!(
                    "ACME: certificate saved to {}",
                    job.cert_cache_path().display()
                );
            }
            Ok(EventOk::AccountCacheStore) => {
                tracing::info!(
                    "ACME: account key saved to {}",
                    job.account_cache_path().display()
                );
            }
            Err(EventError::CertCacheStore(err)) => {
                failures = 0;
                install_from_cache(&cache, &resolver, &job, true);
                tracing::warn!(
                    "ACME: could not save the certificate to {} ({err}); it is in use, but a restart will order \
                     a new one",
                    job.cert_cache_path().display()
                );
            }
            Err(EventError::AccountCacheStore(err)) => tracing::warn!(
                "ACME: could not save the account key to {} ({err})",
                job.account_cache_path().display()
            ),
            Err(EventError::CertCacheLoad(err)) => tracing::warn!(
                "ACME: could not read the cached certificate {} ({err}); ordering a new one",
                job.cert_cache_path().display()
            ),
            Err(EventError::AccountCacheLoad(err)) => tracing::warn!(
                "ACME: could not read the account key {} ({err}); creating a new account",
                job.account_cache_path().display()
            ),
            Err(EventError::CachedCertParse(err)) => tracing::warn!(
                "ACME: the cached certificate {} is unreadable ({err}); ordering a new one",
                job.cert_cache_path().display()
            ),
            Err(EventError::NewCertParse(err)) => {
                tracing::error!(
                    "ACME: the CA sent a certificate that cannot be used ({err}); retrying"
                )
            }
            Err(EventError::Order(err)) => {
                failures = failures.saturating_add(1);
                let cause = classify_order_error(&err, &job.domains);
                let delay = retry_delay(&job, failures, &cause);
                let serving = match resolver.current() {
                    Some(cert) if crate::store::now() < cert.info.not_after => {
                        format!(
                            "Still serving the current certificate (valid until {})",
                            crate::store::human_utc(cert.info.not_after)
                        )
                    }
                    _ => "Serving the local-CA certificate meanwhile".to_string(),
                };
                tracing::warn!(
                    "ACME: could not obtain a certificate for {names}: {}. {serving}; next attempt in {} \
                     (failure {failures})",
                    cause.explain(&job),
                    human_duration(delay)
                );
                tracing::debug!("ACME: order error detail: {err:?}");
                tokio::time::sleep(delay).await;
                tracing::info!(
                    "ACME: ordering a certificate for {names} again (attempt {})",
                    failures + 1
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn problem(typ: &str, detail: &str) -> Problem {
        Problem {
            typ: Some(format!("urn:ietf:params:acme:error:{typ}")),
            detail: Some(detail.into()),
        }
    }

    fn job(challenge: AcmeChallenge) -> AcmeJob {
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
    fn renewal_is_due_once_two_thirds_of_the_lifetime_have_passed() {
        // A 90-day Let's Encrypt certificate: renewal 30 days before expiry.
        assert_eq!(renewal_time(0, 90 * DAY), 60 * DAY);
        assert!(!needs_renewal(0, 90 * DAY, 0));
        assert!(!needs_renewal(0, 90 * DAY, 60 * DAY - 1));
        assert!(needs_renewal(0, 90 * DAY, 60 * DAY));
        assert!(needs_renewal(0, 90 * DAY, 95 * DAY));
        // A 30-second certificate (Pebble in the tests): after 20 s.
        assert!(!needs_renewal(1000, 1030, 1019));
        assert!(needs_renewal(1000, 1030, 1020));
    }

    #[test]
    fn dates_are_printed_in_utc() {
        assert_eq!(crate::store::human_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            crate::store::human_utc(951_782_400),
            "2000-02-29 00:00:00 UTC"
        );
        assert_eq!(
            crate::store::human_utc(1_700_000_000),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(
            crate::store::human_utc(4_102_444_799),
            "2099-12-31 23:59:59 UTC"
        );
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

    #[test]
    fn cache_file_names_depend_on_the_names_and_the_ca() {
        let prod = cert_file_name(&["chat.example.com".into()], LETS_ENCRYPT_PRODUCTION);
        let staging = cert_file_name(&["chat.example.com".into()], LETS_ENCRYPT_STAGING);
        let two = cert_file_name(
            &["chat.example.com".into(), "www.example.com".into()],
            LETS_ENCRYPT_PRODUCTION,
        );
        assert!(
            prod.starts_with("cert-chat.example.com-") && prod.ends_with(".pem"),
            "{prod}"
        );
        assert_ne!(prod, staging);
        assert_ne!(prod, two);
        assert_eq!(
            prod,
            cert_file_name(&["chat.example.com".into()], LETS_ENCRYPT_PRODUCTION)
        );
        let settings = AcmeSettings {
            domains: vec!["Chat.Example.com.".into()],
            email: None,
            challenge: AcmeChallenge::TlsAlpn01,
            staging: true,
            directory: None,
            ca_root: None,
            retry_initial: Duration::from_secs(300),
        };
        let j = AcmeJob::from_config(&settings, Path::new("/srv/certs"));
        assert_eq!(j.directory, LETS_ENCRYPT_STAGING);
        assert_eq!(j.domains, ["chat.example.com"]);
        assert_eq!(
            j.cert_cache_path().parent(),
            Some(Path::new("/srv/certs/acme"))
        );
    }

    #[tokio::test]
    async fn cache_files_are_private_even_over_a_world_readable_leftover() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("acme");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join(".k.tmp"), b"old").unwrap();
        std::fs::set_permissions(dir.join(".k.tmp"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        write_private_file(&dir, "k", b"secret").await.unwrap();
        let mode = std::fs::metadata(dir.join("k"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(dir.join("k")).unwrap(), b"secret");
        assert!(!dir.join(".k.tmp").exists());

        let fresh = tmp.path().join("new/acme");
        write_private_file(&fresh, "k", b"x").await.unwrap();
        assert_eq!(
            std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777,
            0o700
        );
    }

    /// A self-signed certificate for `name` valid in [not_before, not_after], as rustls-acme caches it.
    fn acme_pem(name: &str, not_before: i64, not_after: i64) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(not_before).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let cert = params.self_signed(&key).unwrap();
        format!("{}\n{}", key.serialize_pem(), cert.pem())
    }

    #[test]
    fn cached_pem_is_parsed_with_names_and_dates() {
        let now = crate::store::now();
        let cert =
            parse_acme_pem(acme_pem("chat.example.com", now - 10, now + 90 * DAY).as_bytes())
                .unwrap();
        assert_eq!(cert.info.sans, ["chat.example.com"]);
        assert_eq!(cert.info.not_after, now + 90 * DAY);
        assert!(cert.info.covers("CHAT.example.com."));
        assert!(!cert.info.covers("example.com"));
        let only_cert = acme_pem("a.example", now, now + DAY);
        let start = only_cert.find("-----BEGIN CERTIFICATE").unwrap();
        assert!(parse_acme_pem(&only_cert.as_bytes()[start..]).is_err());
        assert!(parse_acme_pem(b"garbage").is_err());
    }

    /// Handshakes with SNI `name` against `config` over an in-memory pipe; returns the presented
    /// certificate's DER and the open client stream.
    async fn handshake(
        config: Arc<rustls::ServerConfig>,
        roots: &[Vec<u8>],
        name: &str,
    ) -> (
        Vec<u8>,
        tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
    ) {
        use rustls::pki_types::pem::PemObject;
        let mut store = rustls::RootCertStore::empty();
        for pem in roots {
            store
                .add(rustls::pki_types::CertificateDer::from_pem_slice(pem).unwrap())
                .unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        // The server side echoes what it reads, so the test can show the connection still works later.
        let server = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let Ok(mut tls) = acceptor.accept(b).await else {
                return;
            };
            let mut buf = [0u8; 64];
            while let Ok(n) = tls.read(&mut buf).await {
                if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                let _ = tls.flush().await;
            }
        });
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(server_name, a)
            .await
            .unwrap();
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        (der, tls, server)
    }

    async fn echo(tls: &mut tokio_rustls::client::TlsStream<tokio::io::DuplexStream>) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        tls.write_all(b"ping").await.unwrap();
        tls.flush().await.unwrap();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.unwrap();
        buf.to_vec()
    }

    #[tokio::test]
    async fn installed_certificate_is_swapped_live_and_only_for_its_names_while_valid() {
        use rustls::pki_types::pem::PemObject;
        let now = crate::store::now();
        let local_pem = acme_pem("localhost", now - 10, now + DAY);
        let local_der = rustls::pki_types::CertificateDer::from_pem_slice(local_pem.as_bytes())
            .unwrap()
            .to_vec();
        let local = parse_acme_pem(local_pem.as_bytes()).unwrap();
        let certs = CertResolver::new(local.key.clone());

        let settings = AcmeSettings {
            domains: vec!["chat.example.com".into()],
            email: None,
            challenge: AcmeChallenge::TlsAlpn01,
            staging: true,
            directory: None,
            ca_root: None,
            retry_initial: Duration::from_secs(300),
        };
        let dir = tempfile::tempdir().unwrap();
        let acme = prepare(AcmeJob::from_config(&settings, dir.path()), &certs).unwrap();
        let config = crate::tls::server_config(certs.clone(), acme.extra_alpn()).unwrap();
        assert!(config
            .alpn_protocols
            .iter()
            .any(|p| p == ACME_TLS_ALPN_PROTOCOL));

        let first = acme_pem("chat.example.com", now - 10, now + 90 * DAY);
        let second = acme_pem("chat.example.com", now - 5, now + 90 * DAY);
        let expired = acme_pem("chat.example.com", now - 2 * DAY, now - DAY);
        let roots = [
            local_pem.clone().into_bytes(),
            first.clone().into_bytes(),
            second.clone().into_bytes(),
        ];
        let der = |pem: &str| {
            rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .to_vec()
        };

        // No ACME certificate yet: the local one, for every name.
        let (got, _, _) = handshake(
            config.clone(),
            &[local_pem.clone().into_bytes()],
            "localhost",
        )
        .await;
        assert_eq!(got, local_der);

        acme.resolver
            .install(parse_acme_pem(first.as_bytes()).unwrap());
        let (got, mut open, _server) = handshake(config.clone(), &roots, "chat.example.com").await;
        assert_eq!(got, der(&first));
        assert_eq!(echo(&mut open).await, b"ping");
        // Other names (localhost, an IP address) keep the local certificate.
        let (got, _, _) = handshake(config.clone(), &roots, "localhost").await;
        assert_eq!(got, local_der);

        // Renewal: new handshakes get the new certificate, the open connection carries on.
        acme.resolver
            .install(parse_acme_pem(second.as_bytes()).unwrap());
        let (got, _, _) = handshake(config.clone(), &roots, "chat.example.com").await;
        assert_eq!(got, der(&second));
        assert_eq!(echo(&mut open).await, b"ping");

        // An expired ACME certificate is never presented.
        acme.resolver
            .install(parse_acme_pem(expired.as_bytes()).unwrap());
        let mut with_local_for_domain = roots.to_vec();
        let local_for_domain = acme_pem("chat.example.com", now - 10, now + DAY);
        with_local_for_domain.push(local_for_domain.clone().into_bytes());
        let swapped = parse_acme_pem(local_for_domain.as_bytes()).unwrap();
        certs.replace(swapped.key.clone());
        let (got, _, _) = handshake(config, &with_local_for_domain, "chat.example.com").await;
        assert_eq!(got, der(&local_for_domain));
    }
}
