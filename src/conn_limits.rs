//! Who may hold the server's connections.
//!
//! - A cap per client network on open connections (`limits.max_connections_per_ip`; an IPv4
//!   address or an IPv6 /64, see `security::ip_key`): one address alone once took every place
//!   under `max_connections` with idle TLS connections, and every other client was refused.
//!   Trusted proxies are exempt: every client behind one comes from its address, so a cap on it
//!   would be a cap on all of them together, and the proxy is the place that sees (and limits)
//!   each client's own connections. The request-level limits still count each forwarded client.
//! - When `max_connections` is full, the connection idle for longest (HTTP/1.1 waiting for a
//!   request head, HTTP/2 with no stream open, or still in its TLS handshake) is closed for the
//!   new client, as nginx reuses its idle keep-alive connections; a new client is refused only
//!   when no connection is idle. Those idle ones cost a client nothing to hold, so without this a
//!   few hosts could keep everyone else out.
//! - The open-files limit (`RLIMIT_NOFILE`), which is the real cap on connections: raised to its
//!   hard limit at start, and `max_connections` lowered to fit in it.
//! - [`next_connection`], the accept step every listener shares: a connection gets its place or
//!   is closed at once.
//! - [`Throttle`], so that a flood of refused connections or failing accepts writes a line every
//!   few seconds rather than one per connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::security::ip_key;

/// How long a new client waits for the place of the idle connection closed for it. That one
/// only has to notice and drop its socket, which takes its thread a moment; past this, something
/// else is wrong and the new client is closed instead.
const EVICTION_WAIT: Duration = Duration::from_secs(2);

/// How many of the longest-idle connections one look over all of them remembers, so that a run
/// of new clients at the cap does not walk every connection for each one.
const EVICTION_CANDIDATES: usize = 32;

/// The places under `max_connections` and per client network, and the registry of open
/// connections from which an idle one is chosen when they are all taken. One for the process,
/// shared by every listener thread.
pub(crate) struct ConnLimits {
    global: Arc<Semaphore>,
    max: usize,
    per_ip_max: usize,
    trusted: Vec<IpAddr>,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Open connections (and those waiting for a place) per client network.
    per_ip: HashMap<IpAddr, usize>,
    /// Every connection with a place, by id, from the end of its TCP accept to the end of its
    /// HTTP (an upgraded WebSocket keeps its place but is never idle, so it leaves here).
    conns: HashMap<u64, Arc<ConnEntry>>,
    /// (idle since, id) of the longest-idle connections the last look found, the longest last.
    candidates: Vec<(u64, u64)>,
}

/// Why a new connection was closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its client network holds `max_connections_per_ip` already.
    PerIp,
    /// `max_connections` are open and none of them is idle.
    Full,
}

/// The place a new connection was given.
pub(crate) enum Place {
    /// Free now.
    Now(Slot),
    /// The place of an idle connection that was just told to close.
    AfterEviction(Waiting),
}

impl Place {
    /// The place, once it is free; `None` if the idle connection did not close in time.
    pub(crate) async fn slot(self) -> Option<Slot> {
        match self {
            Place::Now(slot) => Some(slot),
            Place::AfterEviction(waiting) => waiting.slot().await,
        }
    }
}

/// A connection's place under `max_connections` and under its network's cap; given back when
/// dropped. Held as long as anything uses the connection (an upgraded WebSocket too).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    _ip: Option<IpCount>,
}

/// A new connection whose place is being freed by an idle one.
pub(crate) struct Waiting {
    global: Arc<Semaphore>,
    ip: Option<IpCount>,
}

impl Waiting {
    /// The place, once the idle connection has closed; `None` if it did not in time.
    pub(crate) async fn slot(self) -> Option<Slot> {
        let permit = tokio::time::timeout(EVICTION_WAIT, self.global.acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some(Slot {
            _permit: permit,
            _ip: self.ip,
        })
    }
}

/// One connection counted against its network; uncounted when dropped.
struct IpCount {
    limits: Arc<ConnLimits>,
    key: IpAddr,
}

impl Drop for IpCount {
    fn drop(&mut self) {
        let mut inner = self.limits.lock();
        if let Some(n) = inner.per_ip.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_ip.remove(&self.key);
            }
        }
    }
}

/// `state`: the number of requests in progress, and this bit once the connection was told to
/// close. One word, so that a connection is only ever closed while it has no request.
const EVICTED: u32 = 1 << 31;

/// What the registry knows of one open connection.
struct ConnEntry {
    state: AtomicU32,
    /// When the last request ended (or the connection was accepted), in milliseconds of
    /// [`clock_ms`]; meaningful while no request is in progress.
    idle_since: AtomicU64,
    /// The connection's task, woken when it is told to close.
    waker: Mutex<Option<Waker>>,
    /// Whether it ever had a request.
    ever: AtomicBool,
}

impl ConnEntry {
    /// Tells the connection to close if it is still idle since `since`; `true` if it was told.
    fn evict_if_idle_since(&self, since: u64) -> bool {
        if self.idle_since.load(Ordering::Acquire) != since {
            return false;
        }
        if self
            .state
            .compare_exchange(0, EVICTED, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return false;
        }
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = waker {
            w.wake();
        }
        true
    }
}

impl ConnLimits {
    pub(crate) fn new(
        max_connections: usize,
        per_ip_max: usize,
        trusted: &[IpAddr],
    ) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            global: Arc::new(Semaphore::new(max_connections)),
            max: max_connections,
            per_ip_max,
            trusted: trusted.iter().map(|ip| ip.to_canonical()).collect(),
            next_id: AtomicU64::new(0),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections holding a place now (for `/metrics` and `/status`).
    pub(crate) fn open(&self) -> usize {
        self.max.saturating_sub(self.global.available_permits())
    }

    /// A place for a new connection from `ip`, or why not.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Place, Refused> {
        let trusted = self.trusted.contains(&ip.to_canonical());
        let key = ip_key(ip);
        let permit = {
            let mut inner = self.lock();
            if !trusted && inner.per_ip.get(&key).copied().unwrap_or(0) >= self.per_ip_max {
                return Err(Refused::PerIp);
            }
            let permit = self.global.clone().try_acquire_owned().ok();
            if permit.is_none() && !evict_longest_idle(&mut inner) {
                return Err(Refused::Full);
            }
            if !trusted {
                *inner.per_ip.entry(key).or_insert(0) += 1;
            }
            permit
        };
        let ip = (!trusted).then(|| IpCount {
            limits: self.clone(),
            key,
        });
        Ok(match permit {
            Some(permit) => Place::Now(Slot {
                _permit: permit,
                _ip: ip,
            }),
            None => Place::AfterEviction(Waiting {
                global: self.global.clone(),
                ip,
            }),
        })
    }

    /// Enters a connection that has its place in the registry: idle (so it may be closed for a
    /// new client) until [`Registered::begin`] says a request is in progress.
    pub(crate) fn register(self: &Arc<Self>) -> Registered {
        let entry = Arc::new(ConnEntry {
            state: AtomicU32::new(0),
            idle_since: AtomicU64::new(clock_ms()),
            waker: Mutex::new(None),
            ever: AtomicBool::new(false),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().conns.insert(id, entry.clone());
        Registered {
            limits: self.clone(),
            id,
            entry,
            waker_left: false,
        }
    }

    #[cfg(test)]
    fn open_from(&self, ip: IpAddr) -> usize {
        self.lock().per_ip.get(&ip_key(ip)).copied().unwrap_or(0)
    }
}

/// Tells the connection idle for longest to close; `false` when none is idle.
fn evict_longest_idle(inner: &mut Inner) -> bool {
    for look in [false, true] {
        if look {
            inner.candidates = longest_idle(&inner.conns);
        }
        while let Some((since, id)) = inner.candidates.pop() {
            // A candidate may have had a request since, or be gone.
            if inner
                .conns
                .get(&id)
                .is_some_and(|e| e.evict_if_idle_since(since))
            {
                return true;
            }
        }
    }
    false
}

/// (idle since, id) of up to [`EVICTION_CANDIDATES`] idle connections, the longest idle last.
fn longest_idle(conns: &HashMap<u64, Arc<ConnEntry>>) -> Vec<(u64, u64)> {
    let mut idle: Vec<(u64, u64)> = conns
        .iter()
        .filter(|(_, e)| e.state.load(Ordering::Acquire) == 0)
        .map(|(id, e)| (e.idle_since.load(Ordering::Acquire), *id))
        .collect();
    if idle.len() > EVICTION_CANDIDATES {
        idle.select_nth_unstable(EVICTION_CANDIDATES - 1);
        idle.truncate(EVICTION_CANDIDATES);
    }
    idle.sort_unstable_by(|a, b| b.cmp(a));
    idle
}

/// A connection's entry in the registry, removed when dropped.
pub(crate) struct Registered {
    limits: Arc<ConnLimits>,
    id: u64,
    entry: Arc<ConnEntry>,
    waker_left: bool,
}

/// A request in progress on a connection; the connection is idle again once none is left.
pub(crate) struct Busy {
    entry: Arc<ConnEntry>,
}

impl Registered {
    /// `true` once the connection has been told to close for a new client. `waker` (its task's,
    /// which stays the same) is left at the first call only.
    pub(crate) fn evicted(&mut self, waker: &Waker) -> bool {
        if !self.waker_left {
            self.waker_left = true;
            *self.entry.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
        }
        self.entry.state.load(Ordering::SeqCst) & EVICTED != 0
    }

    /// Ready once the connection has been told to close (for a wait in an `async` block).
    pub(crate) async fn until_evicted(&mut self) {
        std::future::poll_fn(|cx| {
            if self.evicted(cx.waker()) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    /// What marks this connection's requests in progress (moved into its service).
    pub(crate) fn requests(&self) -> Requests {
        Requests {
            entry: self.entry.clone(),
        }
    }
}

/// Starts [`Busy`] guards for one connection's requests.
#[derive(Clone)]
pub(crate) struct Requests {
    entry: Arc<ConnEntry>,
}

impl Requests {
    /// Marks a request in progress until the returned guard is dropped (with its response).
    pub(crate) fn begin(&self) -> Busy {
        self.entry.ever.store(true, Ordering::Relaxed);
        self.entry.state.fetch_add(1, Ordering::SeqCst);
        Busy {
            entry: self.entry.clone(),
        }
    }
}

impl Requests {
    /// How long the connection has had no request in progress; `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        if self.entry.state.load(Ordering::Acquire) & !EVICTED != 0 {
            return None;
        }
        let since = self.entry.idle_since.load(Ordering::Acquire);
        Some(Duration::from_millis(clock_ms().saturating_sub(since)))
    }

    /// Whether the connection ever had a request.
    pub(crate) fn ever(&self) -> bool {
        self.entry.ever.load(Ordering::Relaxed)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Marked idle first, so that a look over the registry never sees this connection idle
        // with the time of an earlier idle spell.
        if self.entry.state.load(Ordering::Acquire) & !EVICTED == 1 {
            self.entry.idle_since.store(clock_ms(), Ordering::Release);
        }
        self.entry.state.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.limits.lock().conns.remove(&self.id);
    }
}

/// Milliseconds since the first call in this process: timestamps that fit one atomic word.
pub(crate) fn clock_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// At most one log line per period for a repeated event, with how many were left out.
pub(crate) struct Throttle {
    every_ms: u64,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new(every_secs: u64) -> Throttle {
        Throttle {
            every_ms: every_secs * 1000,
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(how many were left out since the last line)` when a line may be written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let now = clock_ms();
        let next = self.next_ms.load(Ordering::Acquire);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now + self.every_ms,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// Descriptors kept for everything but client connections: listeners, each thread's event
/// queue and wake-up, the database and its journal, certificate, site and media files being
/// read, the log, `doctor`-style checks. A running server used a few dozen before its first
/// client; the rest is headroom for files being sent.
pub(crate) const FD_RESERVE: u64 = 128;

/// Descriptors one client connection may take: its socket and its own connection to Hermes.
pub(crate) const FDS_PER_CONNECTION: u64 = 2;

/// Raises the soft open-files limit to the hard one (the soft one is often 1024 while systemd's
/// hard default is far higher) and returns the limit now in force; `None` when unlimited.
pub(crate) fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current?;
    // An unlimited hard limit is still capped by the kernel's `fs.nr_open` (a million by default).
    let hard = now.maximum.unwrap_or(1 << 20);
    if soft >= hard {
        return Some(soft);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some(hard),
        Err(e) => {
            tracing::debug!("open-files limit left at {soft}: {e}");
            Some(soft)
        }
    }
}

/// `max_connections` as configured, or lowered to what `open_files` descriptors can hold.
pub(crate) fn fit_to_open_files(max_connections: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return max_connections;
    };
    let room = open_files.saturating_sub(FD_RESERVE) / FDS_PER_CONNECTION;
    let room = usize::try_from(room).unwrap_or(usize::MAX).max(1);
    max_connections.min(room)
}

/// Raises the open-files limit and lowers `limits.max_connections` to fit it, saying so.
pub(crate) fn fit_limits(limits: &mut crate::config::Limits) {
    let open_files = raise_open_files_limit();
    let fitted = fit_to_open_files(limits.max_connections, open_files);
    if fitted < limits.max_connections {
        tracing::warn!(
            "max_connections lowered from {} to {} to fit the open-files limit of {} \
             ({} descriptors per connection, {} kept for files and the rest); raise \
             LimitNOFILE= in the systemd unit (or `ulimit -n`) to allow more",
            limits.max_connections,
            fitted,
            open_files.unwrap_or(0),
            FDS_PER_CONNECTION,
            FD_RESERVE,
        );
        limits.max_connections = fitted;
    }
}

/// The next accepted connection with its place under `max_connections` and its network's cap;
/// `None` once shutdown begins. A connection refused a place is closed at once; a failing accept
/// (out of file descriptors and the like) is retried after a short pause instead of spinning.
/// Both are logged at most every few seconds: under a flood a line per connection was itself
/// a flood.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    limits: &Arc<ConnLimits>,
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, Place)> {
    static ACCEPT_FAILED: Throttle = Throttle::new(5);
    static PER_IP_FULL: Throttle = Throttle::new(5);
    static ALL_BUSY: Throttle = Throttle::new(5);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return None,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    if let Some(left_out) = ACCEPT_FAILED.allow() {
                        tracing::warn!("accept failed: {e}{}", left_out_note(left_out));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        match limits.admit(peer.ip()) {
            Ok(place) => return Some((tcp, peer, place)),
            Err(Refused::PerIp) => {
                if let Some(left_out) = PER_IP_FULL.allow() {
                    tracing::warn!(
                        ip = %crate::security::ip_key(peer.ip()),
                        "too many connections from one address (limits.max_connections_per_ip); \
                         closing a new one{}",
                        left_out_note(left_out)
                    );
                }
            }
            Err(Refused::Full) => {
                if let Some(left_out) = ALL_BUSY.allow() {
                    tracing::warn!(
                        %peer,
                        "connection limit reached and no connection is idle; closing a new \
                         one{}",
                        left_out_note(left_out)
                    );
                }
            }
        }
        drop(tcp);
    }
}

/// The tail of a throttled log line: how many like it were left out.
fn left_out_note(left_out: u64) -> String {
    if left_out == 0 {
        String::new()
    } else {
        format!(" ({left_out} more since the last such line)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn slot(a: Result<Place, Refused>) -> Slot {
        match a {
            Ok(Place::Now(s)) => s,
            _ => panic!("no place given"),
        }
    }

    fn refused(a: Result<Place, Refused>) -> Refused {
        match a {
            Err(r) => r,
            Ok(_) => panic!("a place was given"),
        }
    }

    #[test]
    fn one_network_is_capped_and_others_and_trusted_proxies_are_not() {
        let proxy = ip("10.0.0.1");
        let l = ConnLimits::new(100, 2, &[proxy]);
        let a = slot(l.admit(ip("192.0.2.1")));
        let _b = slot(l.admit(ip("::ffff:192.0.2.1")));
        assert_eq!(refused(l.admit(ip("192.0.2.1"))), Refused::PerIp);
        let _c = slot(l.admit(ip("192.0.2.2")));
        // One IPv6 /64 is one client.
        let _d = slot(l.admit(ip("2001:db8::1")));
        let _e = slot(l.admit(ip("2001:db8::2")));
        assert_eq!(refused(l.admit(ip("2001:db8::3"))), Refused::PerIp);
        let _f = slot(l.admit(ip("2001:db8:0:1::3")));
        let through_proxy: Vec<Slot> = (0..5).map(|_| slot(l.admit(proxy))).collect();
        assert_eq!(l.open_from(proxy), 0);
        drop(a);
        assert_eq!(l.open_from(ip("192.0.2.1")), 1);
        let _g = slot(l.admit(ip("192.0.2.1")));
        drop(through_proxy);
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_idle_connection_makes_way_and_busy_ones_never_do() {
        let l = ConnLimits::new(3, 10, &[]);
        let waker = Waker::noop();
        let mut conns = Vec::new();
        for n in 0..3 {
            let s = slot(l.admit(ip(&format!("192.0.2.{n}"))));
            let mut r = l.register();
            assert!(!r.evicted(waker));
            conns.push((s, r));
            std::thread::sleep(Duration::from_millis(3));
        }
        // The oldest is busy: the second is the longest idle.
        let busy = conns[0].1.requests().begin();
        let waiting = match l.admit(ip("198.51.100.1")) {
            Ok(Place::AfterEviction(w)) => w,
            _ => panic!("no idle connection made way"),
        };
        assert!(!conns[0].1.evicted(waker));
        assert!(conns[1].1.evicted(waker));
        assert!(!conns[2].1.evicted(waker));
        // Its place goes to the new client once it has closed.
        let (s1, r1) = conns.remove(1);
        drop((s1, r1));
        let _new = waiting.slot().await.expect("the freed place");
        // The third is idle, then busy when the next client comes: nothing is idle, refused.
        let _busy2 = conns[1].1.requests().begin();
        assert_eq!(refused(l.admit(ip("198.51.100.2"))), Refused::Full);
        // A request ends: that connection is idle again and makes way.
        drop(busy);
        assert!(matches!(
            l.admit(ip("198.51.100.3")),
            Ok(Place::AfterEviction(_))
        ));
        assert!(conns[0].1.evicted(waker));
    }

    #[test]
    fn a_throttle_lets_one_line_through_per_period_and_counts_the_rest() {
        let t = Throttle::new(3600);
        assert_eq!(t.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(t.allow(), None);
        }
        let t = Throttle::new(0);
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), Some(0));
    }

    #[test]
    fn max_connections_fits_the_open_files_limit() {
        assert_eq!(fit_to_open_files(4096, None), 4096);
        assert_eq!(fit_to_open_files(4096, Some(1_048_576)), 4096);
        assert_eq!(fit_to_open_files(4096, Some(1024)), (1024 - 128) / 2);
        assert_eq!(fit_to_open_files(100, Some(1024)), 100);
        assert_eq!(fit_to_open_files(4096, Some(64)), 1);
    }
}
