//! Certificate files: a PEM chain and key given by the user, reloaded when they change.
//!
//! The files are checked every few seconds (modification time and size); a new pair that loads
//! and matches is swapped in for new handshakes, a broken one is reported and the old one kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{read_file, CertResolver, TlsError};

/// Loads a PEM chain and its private key, checking that they belong together.
pub(crate) fn load_pair(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let cert_pem = read_file("certificate file", cert)?;
    let key_pem = read_file("key file", key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadPem {
            path: cert.to_path_buf(),
            message: format!("not a PEM certificate chain ({e})"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::BadPem {
            path: cert.to_path_buf(),
            message: "no CERTIFICATE block found".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadPem {
        path: key.to_path_buf(),
        message: format!("no usable PRIVATE KEY block ({e})"),
    })?;
    let certified = super::certified_key(chain, private).map_err(|e| TlsError::BadPem {
        path: key.to_path_buf(),
        message: format!("unsupported key ({e})"),
    })?;
    certified.keys_match().map_err(|_| TlsError::BadPem {
        path: key.to_path_buf(),
        message: format!(
            "this key does not belong to the certificate in {}",
            cert.display()
        ),
    })?;
    Ok(certified)
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Watches the two files and swaps the certificate in `resolver` when they change.
pub(crate) fn spawn_reloader(
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<CertResolver>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = (stamp(&cert), stamp(&key));
        let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // SIGHUP (`CertResolver::request_reload`) loads the files whatever their times say.
            let asked = tokio::select! {
                _ = ticker.tick() => false,
                _ = resolver.reload_requested() => true,
            };
            let now = (stamp(&cert), stamp(&key));
            if now == last && !asked {
                continue;
            }
            if !asked {
                // Give a writer that replaces both files a moment to finish the second one (an
                // operator sends SIGHUP after writing both).
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let now = (stamp(&cert), stamp(&key));
            let (c, k) = (cert.clone(), key.clone());
            match tokio::task::spawn_blocking(move || load_pair(&c, &k)).await {
                Ok(Ok(certified)) => {
                    resolver.replace(certified);
                    let why = if asked {
                        "reloaded on SIGHUP"
                    } else {
                        "changed"
                    };
                    tracing::info!(cert = %cert.display(), "certificate files {why}: new certificate loaded");
                    last = now;
                }
                Ok(Err(e)) => {
                    let why = if asked {
                        "reloaded on SIGHUP"
                    } else {
                        "changed"
                    };
                    tracing::warn!("certificate files {why} but could not be loaded, still serving the previous certificate: {e}");
                    last = now;
                }
                Err(e) => tracing::warn!("certificate reload task failed: {e}"),
            }
        }
    })
}
