//! The one background task of ACME: it drives rustls-acme's `AcmeState` (load the cache, order, renew),
//! installs each certificate it yields in the [`AcmeResolver`], and after a failure logs the cause in
//! plain words and waits (see `failure`).

use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use rustls_acme::{EventError, EventOk};

use super::cache::AcmeCache;
use super::cert::{parse_acme_pem, InstalledCert};
use super::failure::{classify_order_error, retry_delay};
use super::job::{challenge_name, AcmeJob};
use super::resolver::AcmeResolver;

/// A wait as the log says it: `90 s`, `20 min`, `6 h 0 min`.
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

pub(super) async fn drive(
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
    // The dates in the log lines above (and in `cert status`) come from `store::human_utc`.
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
}
