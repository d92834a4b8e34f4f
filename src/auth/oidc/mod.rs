//! Single sign-on with OpenID Connect: the authorization code flow with PKCE, for each
//! `[[auth.oidc]]` provider. This file holds what `App` keeps (`Oidc`: the providers, their
//! discovered metadata, the HTTP client, the key that signs flow cookies) and never imports `App`;
//! `routes.rs` has the handlers (`GET /login/oidc`, `/login/oidc/NAME`, `.../callback`),
//! `flow.rs` the signed cookie that carries one sign-in from the start to the callback,
//! `accounts.rs` how a provider identity (`iss` + `sub`) finds its account.
//!
//! The provider's metadata and keys are read at start in the background; a provider that is down
//! then is asked again at the first sign-in (at most every few seconds), so the server starts
//! whatever the provider does. They are read again after an hour, and at once (unless read in the
//! last ten seconds) when an ID token is signed with a key not yet seen, so a key rotation at the
//! provider needs no restart.

pub(crate) mod accounts;
pub(crate) mod flow;
pub(crate) mod routes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use openidconnect::core::CoreProviderMetadata;
use openidconnect::{HttpRequest, HttpResponse, IssuerUrl};

use crate::config::OidcProvider;

/// Metadata older than this is read again at the next sign-in.
const METADATA_MAX_AGE: Duration = Duration::from_secs(3600);
/// A provider that could not be reached is not asked again sooner than this (each sign-in
/// attempt would otherwise wait for its timeout).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Keys read less than this long ago are not read again for a token that names an unknown key.
/// ID tokens come only from the provider's own token endpoint, so an unknown key means it has
/// rotated its keys; the bound only keeps a provider that signs with a key it never publishes
/// from being asked for its keys at every sign-in.
const KEY_REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// Each request to a provider (connect, answer, body) must finish within this.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// A discovery document, key set or token answer is a few KiB; more is not a provider.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What `App` holds for single sign-on.
pub(crate) struct Oidc {
    providers: Vec<Provider>,
    /// `Err` (why) when no TLS client could be made: every request to a provider then fails
    /// with that reason, and password sign-in goes on.
    http: Result<HttpsClient, String>,
    /// Signs flow cookies; new at each start (a sign-in in progress across a restart starts over).
    key: [u8; 32],
}

struct Provider {
    config: OidcProvider,
    cache: tokio::sync::Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    metadata: Option<(Arc<CoreProviderMetadata>, Instant)>,
    failed_at: Option<Instant>,
}

/// Why the provider's metadata is not at hand.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscoveryError {
    #[error("the provider could not be reached a moment ago; try again in a few seconds")]
    RecentlyFailed,
    #[error("{0}")]
    Failed(String),
}

/// An error of the HTTP client as `openidconnect` wants it (`std::error::Error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct HttpError(String);

impl Oidc {
    pub(crate) fn new(providers: &[OidcProvider]) -> Oidc {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let http = https_client();
        if let (Err(e), false) = (&http, providers.is_empty()) {
            tracing::error!("single sign-on cannot reach any provider: {e}");
        }
        Oidc {
            providers: providers
                .iter()
                .map(|p| Provider {
                    config: p.clone(),
                    cache: Default::default(),
                })
                .collect(),
            http,
            key,
        }
    }

    pub(crate) fn configs(&self) -> impl Iterator<Item = &OidcProvider> {
        self.providers.iter().map(|p| &p.config)
    }

    pub(crate) fn config(&self, name: &str) -> Option<&OidcProvider> {
        self.find(name).map(|p| &p.config)
    }

    fn find(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.config.name == name)
    }

    pub(crate) fn key(&self) -> &[u8; 32] {
        &self.key
    }

    /// Reads every provider's metadata in the background, when there is a runtime (not in the
    /// command-line tools), and says in the log which providers are ready.
    pub(crate) fn spawn_discovery(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        for p in &self.providers {
            let (me, name) = (self.clone(), p.config.name.clone());
            runtime.spawn(async move {
                // On failure `metadata` has said why in the log already.
                if me.metadata(&name, false).await.is_ok() {
                    tracing::info!(provider = %name, "single sign-on provider ready");
                }
            });
        }
    }

    /// The provider's metadata (with its signing keys), read when missing, older than an hour,
    /// or (`refresh_keys`) when a token was signed with a key not in it.
    pub(crate) async fn metadata(
        &self,
        name: &str,
        refresh_keys: bool,
    ) -> Result<Arc<CoreProviderMetadata>, DiscoveryError> {
        let p = self
            .find(name)
            .ok_or_else(|| DiscoveryError::Failed(format!("no provider named {name}")))?;
        let mut cache = p.cache.lock().await;
        if let Some((meta, at)) = &cache.metadata {
            let fresh = at.elapsed() < METADATA_MAX_AGE;
            let keys_recent = at.elapsed() < KEY_REFRESH_MIN_INTERVAL;
            if (fresh && !refresh_keys) || (refresh_keys && keys_recent) {
                return Ok(meta.clone());
            }
        }
        if cache
            .failed_at
            .is_some_and(|t| t.elapsed() < RETRY_AFTER_FAILURE)
        {
            return match &cache.metadata {
                Some((meta, _)) => Ok(meta.clone()),
                None => Err(DiscoveryError::RecentlyFailed),
            };
        }
        match self.discover(&p.config).await {
            Ok(meta) => {
                let meta = Arc::new(meta);
                cache.metadata = Some((meta.clone(), Instant::now()));
                cache.failed_at = None;
                Ok(meta)
            }
            Err(e) => {
                cache.failed_at = Some(Instant::now());
                match &cache.metadata {
                    Some((meta, _)) => {
                        tracing::warn!(provider = %name, issuer = %p.config.issuer,
                            "cannot read the single sign-on provider's metadata again ({e}); using what was read before");
                        Ok(meta.clone())
                    }
                    None => {
                        tracing::warn!(provider = %name, issuer = %p.config.issuer,
                            "cannot reach the single sign-on provider ({e}); sign-in with it fails until it answers (asked again at the next attempt)");
                        Err(DiscoveryError::Failed(e))
                    }
                }
            }
        }
    }

    async fn discover(&self, p: &OidcProvider) -> Result<CoreProviderMetadata, String> {
        let issuer = IssuerUrl::new(p.issuer.clone()).map_err(|e| format!("bad issuer: {e}"))?;
        let http = self.http_fn();
        CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| error_chain(&e))
    }

    /// The HTTP client `openidconnect` calls: hyper with rustls, no redirects followed (a
    /// provider that redirects its token endpoint is refused rather than followed to wherever),
    /// plain http only to this machine, a timeout and a size limit on every answer.
    pub(crate) fn http_fn(
        &self,
    ) -> impl Fn(
        HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpError>> + Send>,
    > {
        let http = self.http.clone();
        move |req| {
            let http = http.clone();
            Box::pin(async move { send(&http, req).await })
        }
    }
}

/// Every cause of an error on one line (the library's top-level messages are generic).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(cause) = cur {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        cur = cause.source();
    }
    text
}

/// The client for providers: the system's roots (Mozilla's when it has none), the listener's
/// crypto provider, HTTP/1.1 (what providers' endpoints all speak). `Err` only if that crypto
/// provider supports no TLS version, which the listener would have found first.
fn https_client() -> Result<HttpsClient, String> {
    let tls = crate::tls::client_config()?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(HTTP_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector))
}

/// True for a URL to this machine (`localhost`, a loopback address).
fn is_loopback(uri: &http::Uri) -> bool {
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

async fn send(
    client: &Result<HttpsClient, String>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let client = client.as_ref().map_err(|e| HttpError(e.clone()))?;
    let (parts, body) = req.into_parts();
    match parts.uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(&parts.uri) => {}
        _ => {
            return Err(HttpError(format!(
                "refusing {}: the provider's endpoints must be https:// (plain http only on this machine)",
                parts.uri
            )))
        }
    }
    let uri = parts.uri.clone();
    let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| HttpError(format!("{uri}: {}", error_chain(&e))))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| HttpError(format!("{uri}: reading the answer: {e}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    };
    tokio::time::timeout(HTTP_TIMEOUT, fetch)
        .await
        .map_err(|_| HttpError(format!("{uri}: no answer within {HTTP_TIMEOUT:?}")))?
}
