//! Web Push notifications: a device whose person turned them on is told when an answer finishes
//! or the agent waits for an approval while none of that person's tabs is attached to the run.
//!
//! - `mod.rs` (this file): what `App` holds (`Push`: the VAPID key, the HTTP client to push
//!   services, the bound on sends in flight) and `notify`, which the run task calls
//!   (`chat::runs::driver`); each send is its own task with a timeout, so a slow push service
//!   never holds a run.
//! - `crypto.rs`: RFC 8291 message encryption and the RFC 8292 VAPID token.
//! - `endpoint.rs`: which endpoints may be requested (https, public addresses: no SSRF).
//! - `routes.rs`: `GET /api/push/key`, `POST` / `DELETE /api/push/subscriptions`, and the
//!   `push_subscriptions` table.
//!
//! A push says which conversation and why (`{"conversation_id", "kind": "approval"|"done"}`);
//! the answer's first words or the command waiting only when the subscription allowed it
//! (`include_text`). A subscription the push service says is gone (404, 410) is deleted.

pub(crate) mod crypto;
pub(crate) mod endpoint;
pub(crate) mod routes;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::app::App;
use crate::config::push::PushConfig;
use crate::store::Store;

/// How long one push may take, connection included; a push service that is slower loses it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Pushes in flight at once on the whole server; more wait for a place (a burst of finished
/// runs must not open hundreds of connections).
const MAX_SENDS: usize = 16;
/// The VAPID token's lifetime (RFC 8292 allows at most 24 hours).
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How much of an answer or a command a push carries when the subscription allows text.
const EXCERPT_CHARS: usize = 200;

type PushClient =
    Client<hyper_rustls::HttpsConnector<HttpConnector<endpoint::PublicResolver>>, Full<Bytes>>;

/// Why a push is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The agent waits for the person to approve a command.
    Approval,
    /// The answer is complete (or failed).
    Done,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Approval => "approval",
            Kind::Done => "done",
        }
    }
}

/// What `App` holds for push: `None` parts when push is off or could not start.
pub(crate) struct Push {
    pub vapid: Option<crypto::Vapid>,
    client: Option<PushClient>,
    sends: Arc<tokio::sync::Semaphore>,
}

impl Push {
    /// Loads (or makes, at the first start) the VAPID key from the database. A failure is logged
    /// and leaves push off rather than stopping the server.
    pub(crate) fn new(config: &PushConfig, store: &Store) -> Push {
        let off = || Push {
            vapid: None,
            client: None,
            sends: Arc::new(tokio::sync::Semaphore::new(MAX_SENDS)),
        };
        if !config.enabled {
            return off();
        }
        let vapid = match store.call_blocking(routes::load_or_make_key) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::error!("push notifications are off: {e}");
                return off();
            }
            Err(e) => {
                tracing::error!(
                    "push notifications are off: cannot read or store the VAPID key: {e}"
                );
                return off();
            }
        };
        let tls = match crate::tls::client_config() {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("push notifications are off: {e}");
                return off();
            }
        };
        let mut http = HttpConnector::new_with_resolver(endpoint::PublicResolver {
            allow_private: config.allow_private_endpoints,
        });
        http.enforce_http(false);
        http.set_connect_timeout(Some(SEND_TIMEOUT));
        let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        // Plain http:// only with the tests' escape hatch; a real push service is https.
        let connector = if config.allow_private_endpoints {
            builder.https_or_http().enable_http1().wrap_connector(http)
        } else {
            builder.https_only().enable_http1().wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        Push {
            vapid: Some(vapid),
            client: Some(client),
            sends: Arc::new(tokio::sync::Semaphore::new(MAX_SENDS)),
        }
    }
}

/// Tells `user_id`'s devices about `conversation`, unless one of the user's tabs is attached
/// to the run (`tabs_attached`): that person sees it already. Returns at once; the sends are
/// tasks of their own. `excerpt` is sent only to subscriptions that allow text.
pub(crate) fn notify(
    app: &Arc<App>,
    user_id: i64,
    conversation: &str,
    kind: Kind,
    tabs_attached: usize,
    excerpt: &str,
) {
    if tabs_attached > 0 || app.push.client.is_none() {
        return;
    }
    let app = app.clone();
    let conversation = conversation.to_string();
    let excerpt: String = excerpt.chars().take(EXCERPT_CHARS).collect();
    tokio::spawn(async move {
        let subs = match app
            .store
            .call(move |c| routes::subscriptions_of(c, user_id))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot read push subscriptions: {e}");
                return;
            }
        };
        for sub in subs {
            let mut payload = serde_json::json!({
                "conversation_id": conversation,
                "kind": kind.as_str(),
            });
            if sub.include_text && !excerpt.is_empty() {
                payload["text"] = excerpt.clone().into();
            }
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(_place) = app.push.sends.clone().acquire_owned().await else {
                    return;
                };
                send_one(&app, &sub, &payload.to_string(), kind).await;
            });
        }
    });
}

/// Encrypts and sends one push; deletes the subscription when the push service says it is gone.
async fn send_one(app: &App, sub: &routes::Subscription, payload: &str, kind: Kind) {
    let (Some(client), Some(vapid)) = (&app.push.client, &app.push.vapid) else {
        return;
    };
    let config = &app.config.push;
    let (uri, origin) = match endpoint::check(&sub.endpoint, config.allow_private_endpoints) {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!("push subscription {} skipped: {e}", sub.id);
            return;
        }
    };
    let body = match crypto::encrypt(payload.as_bytes(), &sub.p256dh, &sub.auth) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("push subscription {} skipped: {e}", sub.id);
            return;
        }
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + TOKEN_LIFETIME;
    let auth = match vapid.authorization(&origin, exp.as_secs(), config.subject.as_deref()) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!("push not sent: {e}");
            return;
        }
    };
    let urgency = match kind {
        Kind::Approval => "high",
        Kind::Done => "normal",
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_ENCODING, "aes128gcm")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header("ttl", config.ttl.as_secs().to_string())
        .header("urgency", urgency)
        .body(Full::new(Bytes::from(body)));
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("push subscription {} skipped: {e}", sub.id);
            return;
        }
    };
    let status = match tokio::time::timeout(SEND_TIMEOUT, client.request(req)).await {
        Ok(Ok(resp)) => resp.status(),
        Ok(Err(e)) => {
            tracing::warn!(host = origin, "push not delivered: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!(
                host = origin,
                "push not delivered: no answer within {SEND_TIMEOUT:?}"
            );
            return;
        }
    };
    match status {
        s if s.is_success() => tracing::debug!(host = origin, "push sent"),
        StatusCode::NOT_FOUND | StatusCode::GONE => {
            let id = sub.id;
            match app.store.call(move |c| routes::delete_by_id(c, id)).await {
                Ok(_) => tracing::info!(
                    host = origin,
                    "push subscription gone (the push service said {}); deleted",
                    status.as_u16()
                ),
                Err(e) => tracing::warn!("cannot delete a gone push subscription: {e}"),
            }
        }
        s => tracing::warn!(
            host = origin,
            status = s.as_u16(),
            "push refused by the push service"
        ),
    }
}
