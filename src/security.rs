//! What every response gets and every client is held to: the security headers, the general
//! per-IP request limit, and the client address (from the socket; `X-Forwarded-For` only from a
//! trusted proxy).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The Content-Security-Policy of every page: no inline script or style, nothing from elsewhere.
pub(crate) const CSP: &str =
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
style-src 'self'; script-src 'self'; connect-src 'self'; worker-src 'self'; manifest-src 'self'; \
object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The headers put on every response, errors included.
pub(crate) struct SecurityHeaders {
    /// Static text, so copying it onto a response touches no reference count: both threads
    /// answering requests would otherwise share that count's cache line on every response.
    hsts: HeaderValue,
    /// A map holding the six already, for responses built on the hot path (see `map`).
    prepared: HeaderMap,
}

impl SecurityHeaders {
    pub(crate) fn new(hsts_max_age: u64) -> Self {
        let text = format!("max-age={hsts_max_age}");
        let hsts = match HeaderValue::from_str(&text) {
            // One small string for the life of the process (one `App` per process).
            Ok(_) => HeaderValue::from_static(Box::leak(text.into_boxed_str())),
            Err(_) => HeaderValue::from_static("max-age=86400"),
        };
        let mut sec = SecurityHeaders {
            hsts,
            prepared: HeaderMap::new(),
        };
        let mut prepared = HeaderMap::with_capacity(12);
        sec.apply(&mut prepared);
        sec.prepared = prepared;
        sec
    }

    /// A new header map that holds the six headers already, for a response to fill in. Cloning
    /// it costs two allocations and copies; inserting the six into an empty map hashed each and
    /// grew the map (it showed in callgrind counts of proxied requests). A clone has no
    /// room to spare, so the first name added grows it: `/v1` answers start from copies with
    /// their slots made (`hermes::answer_headers`).
    pub(crate) fn map(&self) -> HeaderMap {
        self.prepared.clone()
    }

    /// Whether `apply` has already been run on these headers (or on the map they were cloned
    /// from): their HSTS value is this very text, by address. Nothing outside this type can
    /// make that value (a header read from Hermes is a copy elsewhere), so a response built from
    /// a prepared map (see `static_files::SmallFiles`) skips the six inserts (and the map's growth).
    fn applied(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::STRICT_TRANSPORT_SECURITY)
            .is_some_and(|v| std::ptr::eq(v.as_bytes().as_ptr(), self.hsts.as_bytes().as_ptr()))
    }

    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        if self.applied(headers) {
            return;
        }
        // One allocation for the six below instead of a grow every few inserts (the map's growth
        // showed in profiles of proxied requests).
        headers.reserve(6);
        headers.insert(header::STRICT_TRANSPORT_SECURITY, self.hsts.clone());
        headers
            .entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CSP));
        // A PDF from `/media/` (its own CSP, set just before) says `SAMEORIGIN`: the viewer page
        // frames it. Everything else, a proxied answer included, is `DENY`.
        let framable_pdf = headers
            .get(header::CONTENT_SECURITY_POLICY)
            .is_some_and(|v| v.as_bytes() == crate::static_files::MEDIA_PDF_CSP.as_bytes());
        if !framable_pdf {
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        );
    }
}

/// `per_period` events each `period`, with up to `burst` at once.
fn quota(per_period: u32, period: Duration, burst: u32) -> Quota {
    let per = NonZeroU32::new(per_period.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    let replenish = period / per.get();
    Quota::with_period(replenish.max(Duration::from_nanos(1)))
        .unwrap_or_else(|| Quota::per_second(per))
        .allow_burst(burst)
}

/// Whole seconds until a refused event would be allowed, rounded up.
fn seconds_to_wait(not_until: governor::NotUntil<<DefaultClock as Clock>::Instant>) -> u64 {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// A per-key token bucket that answers how long to wait when a key is over its limit.
pub(crate) struct KeyedLimit<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_period` events each `period`, with up to `burst` at once.
    pub(crate) fn new(per_period: u32, period: Duration, burst: u32) -> Self {
        KeyedLimit {
            limiter: RateLimiter::keyed(quota(per_period, period, burst)),
        }
    }

    /// `Ok` when allowed; `Err(seconds to wait)` when over the limit.
    pub(crate) fn check(&self, key: &K) -> Result<(), u64> {
        self.limiter.check_key(key).map_err(seconds_to_wait)
    }

    /// Forgets keys that are back to a full bucket (keeps memory bounded under a flood of IPs).
    pub(crate) fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The general per-address request limit (`limits.requests_per_second_per_ip`). Each address has
/// its own bucket, which a client connection looks up once and keeps ([`IpLimit::bucket`]), so a
/// request costs one compare-and-swap. Through the keyed map every request hashed the address and
/// took a shard lock, which showed in profiles of small pages. The bucket outlives the
/// connection, so a client that reconnects finds its bucket as it left it.
pub(crate) struct IpLimit {
    quota: Quota,
    /// How long an unused bucket takes to fill again; after that it is the same as a new one.
    refill: Duration,
    /// When the limit was made: the buckets' release times count from here.
    epoch: Instant,
    buckets: Mutex<HashMap<IpAddr, Arc<IpBucket>>>,
}

/// One address's bucket, shared by the connections from it.
pub(crate) struct IpBucket {
    limiter: DefaultDirectRateLimiter,
    /// When a holder last let go of it (nanoseconds from [`IpLimit::epoch`]).
    released: AtomicU64,
}

/// A hold on an address's bucket: a client connection keeps one for the address it comes from.
pub(crate) struct IpHold {
    bucket: Arc<IpBucket>,
    epoch: Instant,
}

impl IpLimit {
    /// `per_period` requests each `period`, with up to `burst` at once.
    pub(crate) fn new(per_period: u32, period: Duration, burst: u32) -> IpLimit {
        let quota = quota(per_period, period, burst);
        IpLimit {
            refill: quota
                .replenish_interval()
                .checked_mul(quota.burst_size().get())
                .unwrap_or(Duration::MAX),
            quota,
            epoch: Instant::now(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The bucket of `ip` (of its IPv6 /64, see [`ip_key`]), made if it has none.
    pub(crate) fn bucket(&self, ip: IpAddr) -> IpHold {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets
            .entry(ip_key(ip))
            .or_insert_with(|| {
                Arc::new(IpBucket {
                    limiter: RateLimiter::direct(self.quota),
                    released: AtomicU64::new(0),
                })
            })
            .clone();
        IpHold {
            bucket,
            epoch: self.epoch,
        }
    }

    /// `Ok` when a request from `ip` is allowed; `Err(seconds to wait)` when over the limit.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.bucket(ip).check()
    }

    /// Forgets the buckets nobody holds that have had time to fill again (keeps memory bounded
    /// under a flood of addresses; a forgotten bucket is the same as the new one made later).
    pub(crate) fn forget_idle(&self) {
        let now = self.epoch.elapsed();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.retain(|_, b| {
            let released = Duration::from_nanos(b.released.load(Ordering::Acquire));
            Arc::strong_count(b) > 1 || now.saturating_sub(released) < self.refill
        });
        buckets.shrink_to_fit();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }
}

impl IpHold {
    /// `Ok` when allowed; `Err(seconds to wait)` when over the limit.
    pub(crate) fn check(&self) -> Result<(), u64> {
        self.bucket.limiter.check().map_err(seconds_to_wait)
    }
}

impl Drop for IpHold {
    fn drop(&mut self) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.bucket.released.fetch_max(nanos, Ordering::AcqRel);
    }
}

/// The key a client address is counted under by the per-address limits (requests, sign-ins,
/// open connections): an IPv4 address itself (also when written IPv4-mapped, `::ffff:a.b.c.d`),
/// and for IPv6 its /64. One IPv6 host is normally given a whole /64 and may use any address in
/// it (privacy addresses change daily; a host can take thousands at once), so keyed on the whole
/// address each limit was multiplied by as many addresses as the client cared to use. The
/// "known network" rule of sign-in (`auth::same_network`) draws the same line.
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let net = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(net))
        }
    }
}

/// A keyed limit counted per client network ([`ip_key`]) rather than per exact address: the
/// per-IP sign-in limit (`auth.login_attempts_per_minute_per_ip`).
pub(crate) struct NetLimit(KeyedLimit<IpAddr>);

impl NetLimit {
    /// `per_period` events each `period`, with up to `burst` at once.
    pub(crate) fn new(per_period: u32, period: Duration, burst: u32) -> Self {
        NetLimit(KeyedLimit::new(per_period, period, burst))
    }

    /// `Ok` when an event from `ip` is allowed; `Err(seconds to wait)` when its network is over
    /// the limit.
    pub(crate) fn check(&self, ip: &IpAddr) -> Result<(), u64> {
        self.0.check(&ip_key(*ip))
    }

    pub(crate) fn forget_idle(&self) {
        self.0.forget_idle();
    }
}

/// Periodically drops idle keys of the given limits.
pub(crate) fn spawn_limit_gc(clean: Vec<Arc<dyn Fn() + Send + Sync>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            for f in &clean {
                f();
            }
        }
    });
}

/// The client's address: the socket peer, or the right-most untrusted `X-Forwarded-For` hop when
/// the peer is a configured trusted proxy.
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(&peer) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        if let Ok(text) = value.to_str() {
            for part in text.split(',') {
                if let Ok(ip) = part.trim().parse::<IpAddr>() {
                    hops.push(ip);
                }
            }
        }
    }
    hops.into_iter()
        .rev()
        .find(|ip| !trusted.contains(ip))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &[]), peer);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &h, &[proxy]), peer);
        assert_eq!(
            client_ip(proxy, &h, &[proxy]),
            "1.2.3.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn headers_are_applied_once_and_an_upstream_copy_of_hsts_is_not_taken_for_them() {
        let sec = SecurityHeaders::new(600);
        let mut prepared = HeaderMap::new();
        sec.apply(&mut prepared);
        assert_eq!(prepared.len(), 6);
        assert_eq!(prepared[header::STRICT_TRANSPORT_SECURITY], "max-age=600");
        let mut sent = prepared.clone();
        sec.apply(&mut sent);
        assert_eq!(sent, prepared);

        // The same text arriving from elsewhere (a proxied answer) does not count as applied.
        let mut proxied = HeaderMap::new();
        proxied.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_str("max-age=600").unwrap(),
        );
        sec.apply(&mut proxied);
        assert_eq!(proxied.len(), 6);
        assert_eq!(proxied[header::X_FRAME_OPTIONS], "DENY");
    }

    #[test]
    fn a_prepared_map_holds_the_six_and_counts_as_applied() {
        let sec = SecurityHeaders::new(600);
        let mut fresh = HeaderMap::new();
        sec.apply(&mut fresh);
        let mut map = sec.map();
        assert_eq!(map, fresh);
        assert!(sec.applied(&map));
        map.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        sec.apply(&mut map);
        assert_eq!(map.len(), 7);
    }

    #[test]
    fn an_address_keeps_its_bucket_across_connections_until_it_has_filled_again() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        // 1 request a minute, 2 at once.
        let l = IpLimit::new(1, Duration::from_secs(60), 2);
        let first = l.bucket(ip);
        assert!(first.check().is_ok());
        let second = l.bucket(ip);
        assert!(second.check().is_ok());
        let wait = first.check().unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(l.check(other).is_ok());
        // Both connections gone: the bucket is kept while it refills, so reconnecting does not
        // reset it.
        drop((first, second));
        l.forget_idle();
        assert!(l.bucket(ip).check().is_err());
        assert!(l.check(ip).is_err());

        // 1,000 a second, 2 at once: refilled within 2 ms of the last release.
        let l = IpLimit::new(1000, Duration::from_secs(1), 2);
        let held = l.bucket(ip);
        assert!(held.check().is_ok() && held.check().is_ok() && held.check().is_err());
        assert!(l.check(other).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        l.forget_idle();
        // `other` was released and has refilled; `ip` is still held.
        assert_eq!(l.len(), 1);
        drop(held);
        l.forget_idle();
        assert_eq!(l.len(), 1, "released just now: not yet refilled");
        std::thread::sleep(Duration::from_millis(20));
        l.forget_idle();
        assert_eq!(l.len(), 0);
        assert!(l.check(ip).is_ok());
    }

    #[test]
    fn ipv6_is_keyed_on_its_64_and_ipv4_on_the_address_also_when_mapped() {
        let key = |t: &str| ip_key(t.parse().unwrap());
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(key("192.0.2.7"), ip("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
        assert_eq!(key("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(
            key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:ffff:ffff:ffff")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::1"), ip("::"));
        // A flood from one /64 shares one sign-in bucket.
        let l = NetLimit::new(1, Duration::from_secs(60), 2);
        assert!(l.check(&ip("2001:db8::1")).is_ok());
        assert!(l.check(&ip("2001:db8::2")).is_ok());
        assert!(l.check(&ip("2001:db8::3")).is_err());
        assert!(l.check(&ip("2001:db8:0:1::1")).is_ok());
        // And one request bucket.
        let l = IpLimit::new(1, Duration::from_secs(60), 1);
        assert!(l.check(ip("2001:db8::1")).is_ok());
        assert!(l.check(ip("2001:db8::99")).is_err());
        assert!(l.check(ip("192.0.2.1")).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.1")).is_err());
    }

    #[test]
    fn limit_refuses_past_the_burst_and_says_how_long() {
        let l = KeyedLimit::new(1, Duration::from_secs(60), 2);
        let k = "a".to_string();
        assert!(l.check(&k).is_ok());
        assert!(l.check(&k).is_ok());
        let wait = l.check(&k).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(l.check(&"b".to_string()).is_ok());
    }
}
