//! What every response gets and every client is held to: the security headers, the general
//! per-IP request limit, and the client address (from the socket; `X-Forwarded-For` only from a
//! trusted proxy).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderMap, HeaderName, HeaderValue};

/// The Content-Security-Policy of every page: no inline script or style, nothing from elsewhere.
pub const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

/// The headers put on every response, errors included.
pub struct SecurityHeaders {
    /// Static text, so copying it onto a response touches no reference count: both threads
    /// answering requests would otherwise share that count's cache line on every response.
    hsts: HeaderValue,
    /// A map holding the six already, for responses built on the hot path (see `map`).
    prepared: HeaderMap,
}

impl SecurityHeaders {
    pub fn new(hsts_max_age: u64) -> Self {
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
    /// grew the map (524 instructions more per proxied request, by callgrind, even though the
    /// clone's first added header grows it once).
    pub fn map(&self) -> HeaderMap {
        self.prepared.clone()
    }

    /// Whether `apply` has already been run on these headers (or on the map they were cloned
    /// from): their HSTS value is this very text, by address. Nothing outside this type can
    /// make that value (a header read from Hermes is a copy elsewhere), so a response built from
    /// a prepared map (see `files::SmallFiles`) skips the six inserts (and the map's growth).
    fn applied(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::STRICT_TRANSPORT_SECURITY)
            .is_some_and(|v| std::ptr::eq(v.as_bytes().as_ptr(), self.hsts.as_bytes().as_ptr()))
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
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
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
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

/// A per-key token bucket that answers how long to wait when a key is over its limit.
pub struct KeyedLimit<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedLimit<K> {
    /// `per_period` events each `period`, with up to `burst` at once.
    pub fn new(per_period: u32, period: Duration, burst: u32) -> Self {
        let per = NonZeroU32::new(per_period.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let replenish = period / per.get();
        let quota = Quota::with_period(replenish.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(per))
            .allow_burst(burst);
        KeyedLimit {
            limiter: RateLimiter::keyed(quota),
        }
    }

    /// `Ok` when allowed; `Err(seconds to wait)` when over the limit.
    pub fn check(&self, key: &K) -> Result<(), u64> {
        self.limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// Forgets keys that are back to a full bucket (keeps memory bounded under a flood of IPs).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// Periodically drops idle keys of the given limits.
pub fn spawn_limit_gc(clean: Vec<Arc<dyn Fn() + Send + Sync>>) {
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
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
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
