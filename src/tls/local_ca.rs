//! The local certificate authority: HTTPS on a LAN or by IP address without a public CA.
//!
//! A root CA is generated once and kept in the certs directory (`local-ca.crt`, key `local-ca.key`
//! with mode 0600), so its fingerprint stays the same across restarts and a phone or laptop that
//! trusted it once (`GET /ca.crt`) never sees a warning again. It signs a leaf for `localhost`, the
//! machine's own addresses and the configured names; the leaf is issued again by itself when those
//! names change or it comes within 30 days of expiry.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::{Duration as TimeDuration, OffsetDateTime};

use super::{fingerprint, read_file, write_private, write_public, TlsError};

pub(crate) const CA_CERT: &str = "local-ca.crt";
pub(crate) const CA_KEY: &str = "local-ca.key";
pub(crate) const LEAF_CERT: &str = "local-leaf.crt";
pub(crate) const LEAF_KEY: &str = "local-leaf.key";
/// Leaves live 180 days and are renewed 30 days before they expire.
const LEAF_DAYS: i64 = 180;
const RENEW_BEFORE_DAYS: i64 = 30;

/// What the local CA produced, for the server and the startup message.
pub(crate) struct LocalCa {
    pub ca_pem: String,
    pub ca_fingerprint: String,
    pub leaf_fingerprint: String,
    pub leaf_names: Vec<String>,
    pub leaf_reissued: bool,
    pub ca_created: bool,
    pub key: Arc<CertifiedKey>,
    pub ca_path: PathBuf,
}

/// One name the leaf covers: an IP address or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Name {
    Ip(IpAddr),
    Dns(String),
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Name::Ip(ip) => write!(f, "{ip}"),
            Name::Dns(d) => write!(f, "{d}"),
        }
    }
}

/// The names the leaf should cover: localhost, loopback, every local interface address, the
/// machine's hostname and the configured extras.
pub(crate) fn wanted_names(extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(ifaces) = if_addrs::get_if_addrs() {
        for iface in ifaces {
            let ip = iface.ip();
            // Link-local IPv6 addresses need a zone and change often; they only churn the leaf.
            if let IpAddr::V6(v6) = ip {
                if (v6.segments()[0] & 0xffc0) == 0xfe80 {
                    continue;
                }
            }
            names.push(ip.to_string());
        }
    }
    if let Ok(host) = std::fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            names.push(host.to_string());
        }
    }
    names.extend(extra.iter().cloned());
    names
}

fn normalise(names: &[String]) -> BTreeSet<Name> {
    names
        .iter()
        .filter_map(|n| {
            let n = n.trim().trim_end_matches('.');
            if n.is_empty() {
                return None;
            }
            Some(match n.parse::<IpAddr>() {
                Ok(ip) => Name::Ip(ip),
                Err(_) => Name::Dns(n.to_ascii_lowercase()),
            })
        })
        .collect()
}

impl LocalCa {
    /// Loads the root CA from `dir` (creating it on first run) and a leaf for `names`.
    pub(crate) fn load_or_create(dir: &Path, names: &[String]) -> Result<LocalCa, TlsError> {
        // `create_dir_all` on a file only says "File exists", which names neither the path nor
        // what is wrong with it.
        if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(bad(
                dir,
                "the certificates directory (--certs-dir / certs_dir) is not a directory: \
                 point it at a folder (it is created when missing), not at a file",
            ));
        }
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let wanted = normalise(names);
        let ca_cert_path = dir.join(CA_CERT);
        let ca_key_path = dir.join(CA_KEY);
        // A root whose other half is missing is never replaced silently: every device that
        // trusted it would stop trusting this server.
        match (ca_cert_path.exists(), ca_key_path.exists()) {
            (true, false) => return Err(half_ca(&ca_key_path, &ca_cert_path)),
            (false, true) => return Err(half_ca(&ca_cert_path, &ca_key_path)),
            _ => {}
        }
        let (ca_pem, ca_key_pem, ca_created) = if ca_cert_path.exists() && ca_key_path.exists() {
            let cert = String::from_utf8(read_file("local CA certificate", &ca_cert_path)?)
                .map_err(|_| bad(&ca_cert_path, "not a PEM text file"))?;
            let key = String::from_utf8(read_file("local CA key", &ca_key_path)?)
                .map_err(|_| bad(&ca_key_path, "not a PEM text file"))?;
            (cert, key, false)
        } else {
            let (cert, key) = generate_ca()?;
            write_private(&ca_key_path, key.as_bytes())?;
            write_public(&ca_cert_path, cert.as_bytes())?;
            (cert, key, true)
        };
        let ca_key = KeyPair::from_pem(&ca_key_pem)
            .map_err(|e| bad(&ca_key_path, &format!("not a usable private key ({e})")))?;
        let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem)
            .map_err(|e| bad(&ca_cert_path, &format!("not a usable CA certificate ({e})")))?;
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| bad(&ca_cert_path, &format!("not a PEM certificate ({e})")))?;
        // A valid key of another root would start "fine", print the old root's fingerprint and
        // issue leaves no device that trusted that root can verify.
        key_matches_cert(&ca_key, &ca_der, &ca_key_path, &ca_cert_path)?;
        // The issuer object rcgen signs with: same name and key as the persisted root.
        let issuer = ca_params
            .self_signed(&ca_key)
            .map_err(|e| TlsError::Generate(e.to_string()))?;

        let leaf_cert_path = dir.join(LEAF_CERT);
        let leaf_key_path = dir.join(LEAF_KEY);
        let existing = load_leaf(&leaf_cert_path, &leaf_key_path, &ca_der, &wanted);
        let (leaf_pem, leaf_key_pem, reissued) = match existing {
            Some((cert, key)) => (cert, key, false),
            None => {
                let (cert, key) = generate_leaf(&wanted, &issuer, &ca_key)?;
                write_private(&leaf_key_path, key.as_bytes())?;
                write_public(&leaf_cert_path, cert.as_bytes())?;
                (cert, key, true)
            }
        };
        let leaf_der = CertificateDer::from_pem_slice(leaf_pem.as_bytes())
            .map_err(|e| bad(&leaf_cert_path, &format!("not a PEM certificate ({e})")))?;
        let leaf_key = PrivateKeyDer::from_pem_slice(leaf_key_pem.as_bytes())
            .map_err(|e| bad(&leaf_key_path, &format!("not a PEM private key ({e})")))?;
        // The chain is the leaf alone. A client that trusts the local CA already holds the root,
        // and one that does not cannot use it (RFC 8446 4.4.2 lets the trust anchor be left out):
        // sending it cost every full handshake about 450 bytes and the client one more
        // certificate to parse (a quarter of h2load's CPU per connection, bench/README.md).
        let key = super::certified_key(vec![leaf_der.clone()], leaf_key)?;
        Ok(LocalCa {
            ca_fingerprint: fingerprint(&ca_der),
            leaf_fingerprint: fingerprint(&leaf_der),
            leaf_names: wanted.iter().map(|n| n.to_string()).collect(),
            leaf_reissued: reissued,
            ca_created,
            ca_pem,
            key,
            ca_path: ca_cert_path,
        })
    }
}

fn half_ca(missing: &Path, present: &Path) -> TlsError {
    bad(
        missing,
        &format!(
            "missing, but {} is there: the local CA needs both files. Restore it from a backup; \
             or remove both to create a new CA (every device must then trust the new root)",
            present.display()
        ),
    )
}

/// Whether `key` is the private half of the public key in the certificate `cert_der`.
fn key_matches_cert(
    key: &KeyPair,
    cert_der: &CertificateDer<'_>,
    key_path: &Path,
    cert_path: &Path,
) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| bad(cert_path, &format!("not a usable CA certificate ({e})")))?;
    if cert.public_key().raw != key.public_key_der().as_slice() {
        return Err(bad(
            key_path,
            &format!(
                "this key does not belong to the CA certificate {}: put back the key that \
                 was created with it (or remove both files to create a new CA, which every \
                 device must then trust again)",
                cert_path.display()
            ),
        ));
    }
    Ok(())
}

fn bad(path: &Path, message: &str) -> TlsError {
    TlsError::BadPem {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

fn generate_ca() -> Result<(String, String), TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = CertificateParams::default();
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        format!("hermes-edge local CA {}", host).trim().to_string(),
    );
    dn.push(DnType::OrganizationName, "hermes-edge");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - TimeDuration::days(1);
    params.not_after = now + TimeDuration::days(3650);
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn generate_leaf(
    names: &BTreeSet<Name>,
    issuer: &rcgen::Certificate,
    issuer_key: &KeyPair,
) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "hermes-edge");
    params.distinguished_name = dn;
    for name in names {
        let san = match name {
            Name::Ip(ip) => SanType::IpAddress(*ip),
            Name::Dns(d) => match d.clone().try_into() {
                Ok(ia5) => SanType::DnsName(ia5),
                Err(_) => continue,
            },
        };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - TimeDuration::hours(1);
    params.not_after = now + TimeDuration::days(LEAF_DAYS);
    let cert = params
        .signed_by(&key, issuer, issuer_key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The persisted leaf, if it is still good: signed by this CA, covering exactly the wanted names,
/// and more than 30 days from expiry.
fn load_leaf(
    cert_path: &Path,
    key_path: &Path,
    ca_der: &CertificateDer<'_>,
    wanted: &BTreeSet<Name>,
) -> Option<(String, String)> {
    let cert_pem = std::fs::read_to_string(cert_path).ok()?;
    let key_pem = std::fs::read_to_string(key_path).ok()?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).ok()?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&der).ok()?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).ok()?;
    leaf.verify_signature(Some(ca.public_key())).ok()?;
    let now = OffsetDateTime::now_utc();
    let not_after = leaf.validity().not_after.to_datetime();
    if not_after - now < TimeDuration::days(RENEW_BEFORE_DAYS) {
        return None;
    }
    let mut have = BTreeSet::new();
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for gn in &san.value.general_names {
            match gn {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    have.insert(Name::Dns(d.to_ascii_lowercase()));
                }
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        have.insert(Name::Ip(ip));
                    }
                }
                _ => {}
            }
        }
    }
    if &have != wanted {
        return None;
    }
    Some((cert_pem, key_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_kept_and_leaf_follows_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let a =
            LocalCa::load_or_create(dir.path(), &["localhost".into(), "10.1.2.3".into()]).unwrap();
        assert!(a.ca_created && a.leaf_reissued);
        let b =
            LocalCa::load_or_create(dir.path(), &["localhost".into(), "10.1.2.3".into()]).unwrap();
        assert!(!b.ca_created && !b.leaf_reissued);
        assert_eq!(a.ca_fingerprint, b.ca_fingerprint);
        assert_eq!(a.leaf_fingerprint, b.leaf_fingerprint);
        let c =
            LocalCa::load_or_create(dir.path(), &["localhost".into(), "10.9.9.9".into()]).unwrap();
        assert!(!c.ca_created && c.leaf_reissued);
        assert_eq!(a.ca_fingerprint, c.ca_fingerprint);
        assert_ne!(a.leaf_fingerprint, c.leaf_fingerprint);
        let mode = std::fs::metadata(dir.path().join(CA_KEY)).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }
}
