//! The ACME certificate itself: rustls-acme's cache format (key, then chain) turned into something to
//! serve, and the renewal schedule (two thirds of the lifetime).

use std::sync::Arc;

use rustls::sign::CertifiedKey;

use crate::tls::cert_info::{renewal_time, CertInfo};

/// Whether a certificate valid from `not_before` to `not_after` (Unix seconds) must be renewed at `now`.
pub(crate) fn needs_renewal(not_before: i64, not_after: i64, now: i64) -> bool {
    now >= renewal_time(not_before, not_after)
}

/// An ACME certificate ready to serve.
#[derive(Debug)]
pub(crate) struct InstalledCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Parses rustls-acme's cache format: a PKCS#8 private key, then the certificate chain (leaf first).
pub(crate) fn parse_acme_pem(pem: &[u8]) -> Result<InstalledCert, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let key =
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("no usable private key: {e}"))?;
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable certificate PEM: {e}"))?;
    let leaf = chain.first().ok_or("no certificate")?;
    let info = CertInfo::from_der(leaf)?;
    let signing_key = crate::tls::crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(InstalledCert {
        key: Arc::new(CertifiedKey::new(chain, signing_key)),
        info,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(crate) const DAY: i64 = 86_400;

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

    /// A self-signed certificate for `name` valid in [not_before, not_after], as rustls-acme caches it.
    pub(crate) fn acme_pem(name: &str, not_before: i64, not_after: i64) -> String {
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
}
