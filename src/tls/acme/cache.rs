//! The ACME cache in `<certs-dir>/acme/`: which file holds what, and how it is written (0600 files
//! in a 0700 directory, replaced atomically). rustls-acme reads and writes it through the
//! `CertCache` and `AccountCache` traits.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls_acme::{AccountCache, CertCache};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

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
pub(super) fn cert_file_name(domains: &[String], directory: &str) -> String {
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

pub(super) fn account_file_name(contacts: &[String], directory: &str) -> String {
    format!("account-{}.key", short_hash(contacts, directory))
}

/// The ACME cache in `<certs-dir>/acme/`: the account key (PKCS#8 DER) and the certificate (PEM: private
/// key first, then the chain), each file 0600 in a 0700 directory, replaced atomically. It also remembers
/// the last certificate it loaded or stored, which is how the manager learns what to install.
#[derive(Debug, Clone)]
pub(super) struct AcmeCache {
    dir: PathBuf,
    last_pem: Arc<Mutex<Option<Vec<u8>>>>,
}

impl AcmeCache {
    pub(super) fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            last_pem: Arc::new(Mutex::new(None)),
        }
    }

    pub(super) fn take_last_pem(&self) -> Option<Vec<u8>> {
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
pub(super) async fn write_private_file(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::super::job::{AcmeJob, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING};
    use super::*;
    use crate::config::{AcmeChallenge, AcmeSettings};
    use std::time::Duration;

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
}
