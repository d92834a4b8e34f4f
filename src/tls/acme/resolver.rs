//! What the HTTPS listener presents while ACME is on: the challenge answers, the ACME certificate for
//! its names once one is installed, and otherwise nothing, which hands the handshake to the local-CA
//! certificate of [`CertResolver`](crate::tls::CertResolver).

use std::fmt;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_acme::{is_tls_alpn_challenge, ResolvesServerCertAcme};

use super::cert::InstalledCert;

/// The TLS listener's certificate resolver while ACME is on. See the module documentation.
pub(crate) struct AcmeResolver {
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
    /// A resolver with no certificate yet, answering the challenges of rustls-acme's `acme`.
    pub(super) fn new(acme: Arc<ResolvesServerCertAcme>) -> Self {
        AcmeResolver {
            acme,
            current: RwLock::new(None),
        }
    }

    /// The certificate currently served for the ACME domains, if any.
    pub(crate) fn current(&self) -> Option<Arc<InstalledCert>> {
        self.current.read().ok().and_then(|slot| slot.clone())
    }

    /// Swaps in a new certificate: the next handshake uses it; open connections are untouched.
    pub(crate) fn install(&self, cert: InstalledCert) {
        if let Ok(mut slot) = self.current.write() {
            *slot = Some(Arc::new(cert));
        }
    }

    /// The body for `GET /.well-known/acme-challenge/<token>` on the HTTP listener, or `None` (→ 404).
    pub(crate) fn http01_answer(&self, token: &str) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::super::cert::parse_acme_pem;
    use super::super::cert::tests::{acme_pem, DAY};
    use super::super::job::AcmeJob;
    use super::super::{prepare, ACME_TLS_ALPN_PROTOCOL};
    use crate::config::{AcmeChallenge, AcmeSettings};
    use crate::tls::CertResolver;

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
