//! Automatic HTTPS: certificates from an ACME CA (Let's Encrypt by default, or any RFC 8555 CA such as
//! Pebble, step-ca or a company CA), obtained and renewed in the background with rustls-acme.
//!
//! How an order flows:
//! 1. **Prepare** ([`prepare`], at start-up): the settings become an [`AcmeJob`] (`job.rs`), checked
//!    before anything talks to the CA, and an [`AcmeResolver`] (`resolver.rs`) is installed as the
//!    overlay of the TLS listener's [`CertResolver`].
//! 2. **Serve the local certificate meanwhile**: the resolver presents an ACME certificate only to a
//!    client asking (SNI) for one of its domains, once one is installed and while it is valid; for
//!    every other handshake it answers `None` and the `CertResolver` presents the local-CA
//!    certificate. So the server is usable from the first second and stays usable while issuance
//!    fails; a client reaching it by IP address or `localhost` gets the local-CA certificate, which
//!    covers those names.
//! 3. **Order** ([`Acme::spawn`], once the listeners are bound): one task (`driver.rs`) drives
//!    rustls-acme's `AcmeState`. It loads the cache first: a valid cached certificate is served at once
//!    and **no** order is placed; otherwise it orders.
//! 4. **Validate**: the CA connects back, TLS-ALPN-01 on port 443 (answered by the resolver during the
//!    handshake, ALPN [`ACME_TLS_ALPN_PROTOCOL`]) or HTTP-01 on port 80 (the port-80 listener asks
//!    [`AcmeResolver::http01_answer`] through [`Acme::http01_responder`]).
//! 5. **Store** (`cache.rs`): the account key and the certificate go to `<certs-dir>/acme/`, files
//!    0600, written atomically (temporary file + rename).
//! 6. **Swap live**: the new certificate is installed in the resolver
//!    ([`InstalledCert`](cert::InstalledCert), `cert.rs`); open connections keep the certificate they
//!    negotiated, the next handshake gets the new one.
//! 7. **Renew at two thirds** of the lifetime (rustls-acme's schedule, see [`needs_renewal`]), back
//!    to 3.
//!
//! A failed order is logged with its cause in plain words ([`FailureCause`](failure::FailureCause),
//! `failure.rs`) and retried after an exponential backoff. (rustls-acme also keeps its own, shorter
//! backoff, 1 s doubling up to 2^16 s; ours is the longer of the two until about fifteen failures in
//! a row.)
//!
//! Where to add things: a new setting goes to `job.rs` (and `crate::config`), a new kind of CA error to
//! `failure.rs`, a new log line about the order's progress to `driver.rs`.

mod cache;
mod cert;
mod driver;
mod failure;
mod job;
mod resolver;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use rustls_acme::{AcmeConfig, UseChallenge};

use crate::config::AcmeChallenge;
use crate::tls::CertResolver;

use cache::AcmeCache;

// What the rest of the server uses; the other items stay in their files.
pub(crate) use cert::{needs_renewal, parse_acme_pem};
pub(crate) use job::{challenge_name, AcmeJob, AcmeSetupError};
pub(crate) use resolver::AcmeResolver;

/// The ALPN protocol name of TLS-ALPN-01 challenge handshakes (RFC 8737). The TLS listener must offer it
/// while ACME uses TLS-ALPN-01, and must close a connection that negotiated it without serving HTTP.
pub(crate) const ACME_TLS_ALPN_PROTOCOL: &[u8] = b"acme-tls/1";

/// The ACME client: what the listeners need from it, and the work to start once they are bound.
pub(crate) struct Acme {
    pub resolver: Arc<AcmeResolver>,
    pub job: AcmeJob,
    run: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Acme {
    /// ALPN protocols the HTTPS listener must offer in addition to h2 and http/1.1.
    pub(crate) fn extra_alpn(&self) -> &'static [&'static [u8]] {
        match self.job.challenge {
            AcmeChallenge::TlsAlpn01 => &[ACME_TLS_ALPN_PROTOCOL],
            AcmeChallenge::Http01 => &[],
        }
    }

    /// Starts obtaining and renewing the certificate in the background. Call it once the listeners are
    /// bound: the CA may connect back for the challenge within milliseconds of the order.
    pub(crate) fn spawn(&mut self) -> Option<tokio::task::JoinHandle<()>> {
        self.run.take().map(tokio::spawn)
    }

    /// The port-80 listener's answer for `/.well-known/acme-challenge/<token>`.
    pub(crate) fn http01_responder(&self) -> crate::app::Http01Responder {
        let resolver = self.resolver.clone();
        Arc::new(move |token: &str| resolver.http01_answer(token))
    }
}

/// Sets up automatic HTTPS: installs the ACME resolver in front of `certs` (which keeps serving the
/// local-CA certificate until an ACME certificate is installed). Nothing is ordered until
/// [`Acme::spawn`].
pub(crate) fn prepare(job: AcmeJob, certs: &CertResolver) -> Result<Acme, AcmeSetupError> {
    job.validate()?;
    let client = job::client_config(&job)?;
    let cache = AcmeCache::new(job.cache_dir.clone());
    let challenge = match job.challenge {
        AcmeChallenge::TlsAlpn01 => UseChallenge::TlsAlpn01,
        AcmeChallenge::Http01 => UseChallenge::Http01,
    };
    let config = match client {
        Some(client) => AcmeConfig::new_with_client_config(&job.domains, client),
        None => AcmeConfig::new_with_provider(&job.domains, crate::tls::crypto_provider()),
    };
    let state = config
        .directory(&job.directory)
        .contact(job.contacts())
        .challenge_type(challenge)
        .cache(cache.clone())
        .state();
    let resolver = Arc::new(AcmeResolver::new(state.resolver()));
    certs.set_overlay(resolver.clone());
    let run = Box::pin(driver::drive(state, cache, resolver.clone(), job.clone()));
    Ok(Acme {
        resolver,
        job,
        run: Some(run),
    })
}
