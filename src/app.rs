//! The shared state every request handler sees, built once at start-up.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::hermes::UpstreamClient;
use crate::security::{IpHold, IpLimit, KeyedLimit, NetLimit, SecurityHeaders};
use crate::store::Store;
use crate::www::Www;

/// Answers ACME HTTP-01 challenges: the key authorization for a token, if one is pending.
pub(crate) type Http01Responder = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub(crate) struct App {
    pub config: Config,
    pub store: Store,
    pub headers: SecurityHeaders,
    /// The headers of a `/v1` answer before the upstream's are put in (`hermes::answer_headers`).
    pub v1_headers: [http::HeaderMap; 8],
    pub www: Www,
    /// The local root CA in PEM, served at `/ca.crt` so devices can trust it once.
    pub ca_pem: Option<Bytes>,
    pub ip_limit: IpLimit,
    /// Sign-in attempts per client network (an IPv4 address, an IPv6 /64).
    pub login_ip_limit: NetLimit,
    pub login_account_limit: KeyedLimit<String>,
    /// Chat messages per user id (`auth.chat_sends_per_minute_per_user`); see `auth::chat_send_limited`.
    pub chat_limit: KeyedLimit<i64>,
    /// `USER.md` / `MEMORY.md` for the chat system message, re-read only when they change.
    pub memory: crate::memory::MemoryCache,
    /// Personal API tokens checked recently.
    pub tokens: Arc<crate::auth::token_cache::TokenCache>,
    pub decoy_hash: String,
    /// Single sign-on providers (`[[auth.oidc]]`), their metadata and the flow cookies' key.
    pub oidc: Arc<crate::auth::oidc::Oidc>,
    pub upstream: UpstreamClient,
    /// The fixed parts of every request to Hermes.
    pub target: Option<crate::hermes::Target>,
    /// ACME HTTP-01 answers, set at start in ACME mode.
    pub http01: std::sync::OnceLock<Http01Responder>,
    /// Bytes of request bodies held now: large ones under `limits.body_memory_total`, small ones
    /// under their share of it (see `body`).
    pub body_memory: crate::body::Budgets,
    /// The answers being written now (`chat::runs`).
    pub runs: crate::chat::runs::Runs,
    /// What `/metrics` and `/status` read of the listeners, set once they are bound.
    pub ops: std::sync::OnceLock<crate::metrics::Ops>,
    /// Passkey ceremonies in progress and the names they may be for (`auth::passkeys`).
    pub passkeys: crate::auth::passkeys::Passkeys,
    /// Web Push: the VAPID key and the client to push services (`crate::push`).
    pub push: crate::push::Push,
    /// This `App` itself, for the tasks a handler starts that outlive its request (a run).
    me: std::sync::Weak<App>,
}

/// Facts about one request that handlers need besides the request itself.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub client_ip: IpAddr,
    /// The direct peer of the connection (a trusted proxy's own address when `client_ip` came
    /// from its `X-Forwarded-For`).
    pub peer_ip: IpAddr,
    /// What the requests of this client connection share; `None` for requests that are not on
    /// an HTTPS client connection (tests of handlers).
    pub conn: Option<Arc<Conn>>,
}

/// What the requests of one client connection share.
pub(crate) struct Conn {
    /// Its own connection to Hermes (see `hermes::conn`).
    pub upstream: crate::hermes::conn::OwnUpstream,
    /// Its place under `limits.max_connections` and its network's cap, held while anything still
    /// uses the connection: an upgraded WebSocket outlives the HTTP connection it came on and
    /// keeps a clone.
    _slot: crate::conn_limits::Slot,
    /// The peer's address and its text as a header value, formatted once per connection for the
    /// `X-Forwarded-For` / `X-Real-IP` of every request sent on to Hermes.
    pub peer_ip: (std::net::IpAddr, http::HeaderValue),
    /// The peer's bucket of `limits.requests_per_second_per_ip`, looked up once.
    pub ip_limit: IpHold,
    /// Bytes of this connection's request bodies held now: large ones under
    /// `limits.body_memory_per_connection`, small ones under their own cap (see `body`).
    pub body_memory: crate::body::Budgets,
}

impl Conn {
    pub(crate) fn new(
        slot: crate::conn_limits::Slot,
        peer_ip: std::net::IpAddr,
        ip_limit: IpHold,
    ) -> Conn {
        Conn {
            upstream: Default::default(),
            _slot: slot,
            peer_ip: (peer_ip, crate::forwarded::ip_header(peer_ip)),
            ip_limit,
            body_memory: Default::default(),
        }
    }
}

impl crate::hermes::Client for Ctx {
    fn client_ip(&self) -> IpAddr {
        self.client_ip
    }

    fn conn(&self) -> Option<Arc<dyn crate::hermes::ClientConn>> {
        self.conn
            .clone()
            .map(|c| c as Arc<dyn crate::hermes::ClientConn>)
    }
}

impl crate::hermes::ClientConn for Conn {
    fn upstream(&self) -> &crate::hermes::conn::OwnUpstream {
        &self.upstream
    }

    fn peer_ip(&self) -> &(IpAddr, http::HeaderValue) {
        &self.peer_ip
    }
}

impl App {
    /// A shared handle to this `App` (`None` only while it is being dropped).
    pub(crate) fn arc(&self) -> Option<Arc<App>> {
        self.me.upgrade()
    }

    /// What the client of Hermes needs of this state (see `hermes::Hermes`).
    pub(crate) fn hermes(&self) -> crate::hermes::Hermes<'_> {
        crate::hermes::Hermes {
            target: self.target.as_ref(),
            pool: &self.upstream,
            chat: &self.config.chat,
            upstream: &self.config.upstream,
        }
    }

    /// Where the body of a request on `ctx` is counted (see `body::read_body`).
    pub(crate) fn body_room<'a>(&'a self, ctx: &'a Ctx) -> crate::body::Room<'a> {
        crate::body::Room {
            process: &self.body_memory,
            conn: ctx.conn.as_deref().map(|c| &c.body_memory),
            limits: &self.config.limits,
        }
    }

    pub(crate) fn new(config: Config, store: Store, ca_pem: Option<Bytes>) -> Arc<App> {
        let www = Www::new(config.www.clone());
        let l = &config.limits;
        let a = &config.auth;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build(connector);
        let headers = SecurityHeaders::new(config.hsts_max_age);
        let tokens = Arc::<crate::auth::token_cache::TokenCache>::default();
        crate::auth::spawn_upkeep(store.clone(), tokens.clone(), a.login_audit_keep);
        let oidc = Arc::new(crate::auth::oidc::Oidc::new(&config.oidc));
        oidc.spawn_discovery();
        let mut app = App {
            me: std::sync::Weak::new(),
            runs: Default::default(),
            push: crate::push::Push::new(&config.push, &store),
            v1_headers: crate::hermes::answer_headers(&headers),
            headers,
            ip_limit: IpLimit::new(
                l.requests_per_second_per_ip,
                Duration::from_secs(1),
                l.request_burst_per_ip,
            ),
            login_ip_limit: NetLimit::new(
                a.login_attempts_per_minute_per_ip,
                Duration::from_secs(60),
                a.login_attempts_per_minute_per_ip,
            ),
            login_account_limit: KeyedLimit::new(
                a.login_attempts_per_minute_per_account,
                Duration::from_secs(60),
                a.login_attempts_per_minute_per_account,
            ),
            chat_limit: KeyedLimit::new(
                a.chat_sends_per_minute_per_user,
                Duration::from_secs(60),
                a.chat_sends_per_minute_per_user,
            ),
            memory: crate::memory::MemoryCache::default(),
            tokens,
            decoy_hash: crate::auth::users::decoy_hash(),
            oidc,
            www,
            ca_pem,
            upstream,
            target: crate::hermes::Target::new(&config.upstream, config.chat.api_key.as_deref()),
            http01: std::sync::OnceLock::new(),
            ops: std::sync::OnceLock::new(),
            body_memory: Default::default(),
            passkeys: crate::auth::passkeys::Passkeys::new(&config),
            store,
            config,
        };
        Arc::new_cyclic(|me| {
            app.me = me.clone();
            app
        })
    }
}
