//! TLS termination: which certificate the HTTPS listener presents and the rustls settings it uses.
//!
//! Every mode (local CA, certificate files, ACME) ends in one [`CertResolver`]: a certificate that
//! can be swapped while the server runs, so a reload or a renewal never needs a restart, plus an
//! optional overlay resolver (ACME) that takes precedence once it has a certificate.
//!
//! Where things are:
//! - this file: the swappable [`CertResolver`], the rustls settings of the HTTPS listener
//!   ([`server_config`]), and small helpers the modes share (building a `CertifiedKey`,
//!   fingerprints, writing key and certificate files);
//! - `local_ca.rs`: the local CA (mode `local-ca`, and what ACME serves until it has a certificate);
//! - `files.rs`: certificate files given by the user (mode `files`), reloaded when they change;
//! - `acme/`: certificates from an ACME CA; its `mod.rs` says how an order flows;
//! - `cert_info.rs`: what a certificate says about itself (names, issuer, dates), whatever issued it;
//! - `status.rs`: `hermes-edge cert status`, which only reads the certs directory.

pub(crate) mod acme;
pub(crate) mod cert_info;
pub(crate) mod files;
pub(crate) mod local_ca;
pub(crate) mod status;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The certificate the server presents, replaceable at run time.
#[derive(Debug)]
pub(crate) struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
    overlay: RwLock<Option<Arc<dyn ResolvesServerCert>>>,
    /// Asks the reloader of the certificate files (if any) to load them now (SIGHUP), without
    /// waiting for its next look at their modification times.
    reload_now: tokio::sync::Notify,
}

impl CertResolver {
    pub(crate) fn new(initial: Arc<CertifiedKey>) -> Arc<Self> {
        Arc::new(CertResolver {
            current: RwLock::new(initial),
            overlay: RwLock::new(None),
            reload_now: tokio::sync::Notify::new(),
        })
    }

    /// Swaps the certificate: new handshakes get it, open connections keep theirs.
    pub(crate) fn replace(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut guard) = self.current.write() {
            *guard = key;
        }
    }

    pub(crate) fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|g| g.clone())
    }

    /// Has the certificate files loaded again at once (see `files::spawn_reloader`). Kept until
    /// the reloader takes it, so a request made while it is busy is not lost.
    pub(crate) fn request_reload(&self) {
        self.reload_now.notify_one();
    }

    pub(crate) async fn reload_requested(&self) {
        self.reload_now.notified().await;
    }

    /// Installs a resolver (ACME) asked first; when it has no certificate the current one is used.
    pub(crate) fn set_overlay(&self, overlay: Arc<dyn ResolvesServerCert>) {
        if let Ok(mut guard) = self.overlay.write() {
            *guard = Some(overlay);
        }
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let overlay = self.overlay.read().ok().and_then(|g| g.clone());
        if let Some(overlay) = overlay {
            if let Some(key) = overlay.resolve(hello) {
                return Some(key);
            }
        }
        self.current()
    }
}

/// The one crypto provider of every TLS config here, server and client (aws-lc-rs: rustls'
/// default, with assembly X25519, P-256 and AES-GCM; measured against ring in bench/README.md).
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// rustls settings for a client of servers on the internet (identity providers, push services):
/// the system's roots (Mozilla's when it has none), this crypto provider. `Err` only if the
/// provider supports no TLS version, which the listener would have found first.
pub(crate) fn client_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client settings: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// rustls settings for the HTTPS listener: TLS 1.2 and 1.3 only, ALPN h2 then http/1.1,
/// stateless resumption tickets plus a session cache.
pub(crate) fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
    extra_alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = (*crypto_provider()).clone();
    provider.cipher_suites.sort_by_key(server_suite_rank);
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    // The server's order (`server_suite_rank`) wins over the client's, so a client that lists a
    // weaker suite first cannot pick it when one the server prefers is there (testssl.sh
    // `cipher_order`).
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    for p in extra_alpn {
        config.alpn_protocols.push(p.to_vec());
    }
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()?;
    // Two tickets (rustls' default): a browser gets a spare for a second parallel connection.
    // The "stall" once blamed on the ticket count was the listen queue overflowing
    // (`server::LISTEN_BACKLOG`); with that fixed, 0, 1, 2 and 4 tickets measured the same.
    config.send_tls13_tickets = 2;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
    Ok(Arc::new(config))
}

/// The server's preference among the provider's suites (all AEAD with ECDHE): AES-128-GCM, then
/// AES-256-GCM, then ChaCha20-Poly1305, as in Mozilla's recommended server configurations and the
/// order browsers on AES-capable machines send. AES-128-GCM has no practical weakness and costs
/// less per byte than AES-256, and every response is encrypted with it: putting AES-256 first
/// slowed single-connection downloads (bench/README.md).
fn server_suite_rank(suite: &rustls::SupportedCipherSuite) -> u8 {
    use rustls::CipherSuite as C;
    match suite.suite() {
        C::TLS13_AES_128_GCM_SHA256
        | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        C::TLS13_AES_256_GCM_SHA384
        | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

/// Builds a rustls `CertifiedKey` from DER parts.
pub(crate) fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let signing = crypto_provider().key_provider.load_private_key(key)?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// Colon-separated upper-case SHA-256 of a DER certificate, as browsers show it.
pub(crate) fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes a file readable only by its owner (the local CA's keys). The ACME cache has its own
/// asynchronous writer, which also makes the directory private (`acme::cache::write_private_file`).
pub(crate) fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a public file (certificates).
pub(crate) fn write_public(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| TlsError::Write {
            path: path.to_path_buf(),
            source,
        })
}

pub(crate) fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}
