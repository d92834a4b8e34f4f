//! Request bodies. Every body the server reads or forwards goes through here, so each one has a
//! size limit, a read timeout and a place under the memory budgets:
//!
//! - a body that stops arriving for `limits.body_read_timeout_secs` is answered `408` (HTTP/1.1:
//!   and the connection closed; HTTP/2: the stream reset). Without it a client that sent a head
//!   with a `Content-Length` and then nothing held its connection, and its place under
//!   `max_connections`, for as long as it liked, without signing in;
//! - the bytes of the bodies held at once are counted per connection
//!   (`limits.body_memory_per_connection`, `413` beyond) and for the whole process
//!   (`limits.body_memory_total`, `503` beyond): HTTP/2 lets one connection send 128 bodies at
//!   once, each up to `max_body_bytes`.
//!
//! Routes that take no large body read at most [`SMALL_BODY_BYTES`], within one read timeout for
//! the whole body (a form or a small JSON object arrives at once), and reserve memory only as its
//! bytes arrive: a head that only declares a length reserves nothing. Large bodies (the chat send
//! with images, `/v1`) reserve their declared length before the first byte is read, so a body
//! that cannot fit is refused before the client sends it. Small bodies are counted apart from
//! large ones, so signed-in users sending large bodies never leave the login form without room:
//! per connection at most [`SMALL_BODIES_PER_CONNECTION`] of them at once, and in the process a
//! quarter of `body_memory_total` ([`SMALL_SHARE`]). Filling that quarter with login forms takes
//! thousands of connections that each keep sending bytes (a form that stops is dropped after the
//! read timeout), where without it they would simply cost the memory.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::config::Limits;
use crate::response::{self, Resp};

/// The largest body of a route that takes no large body (login, conversations, tokens, admin):
/// a login form, a title or an account is well under a kilobyte.
pub(crate) const SMALL_BODY_BYTES: usize = 16 * 1024;

/// The process budget of small bodies, as a divisor of `body_memory_total` (the budget of large
/// ones): room for thousands of login forms at once, whatever the large bodies hold.
const SMALL_SHARE: usize = 4;

/// Small bodies one connection may send at once (HTTP/2 allows 128 streams): a page sends one or
/// two at a time.
const SMALL_BODIES_PER_CONNECTION: usize = 16;

/// Bytes held by large and by small bodies: in the process (large ones under
/// `body_memory_total`, small ones under their share) and per connection (large ones under
/// `body_memory_per_connection`, small ones under [`SMALL_BODIES_PER_CONNECTION`]).
#[derive(Default)]
pub(crate) struct Budgets {
    large: Budget,
    small: Budget,
}

/// Where one request's body is counted: the process's budgets, its connection's (none for a
/// request that is not on an HTTPS client connection, as in tests of handlers) and the limits
/// that cap them. `App::body_room` builds it, so this module needs nothing of the `App`.
#[derive(Clone, Copy)]
pub(crate) struct Room<'a> {
    pub process: &'a Budgets,
    pub conn: Option<&'a Budgets>,
    pub limits: &'a Limits,
}

/// Bytes of request bodies held now.
#[derive(Default)]
pub(crate) struct Budget {
    used: AtomicUsize,
}

impl Budget {
    fn take(&self, n: usize, cap: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&t| t <= cap)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// Which budget refused a body.
#[derive(Debug, PartialEq)]
enum Full {
    Connection,
    Process,
}

/// A body's place under the budgets, given back when dropped.
struct Hold<'a> {
    total: &'a Budget,
    conn: Option<&'a Budget>,
    total_cap: usize,
    conn_cap: usize,
    bytes: usize,
}

impl<'a> Hold<'a> {
    fn new(room: Room<'a>, large: bool) -> Hold<'a> {
        let l = room.limits;
        Hold {
            total: if large {
                &room.process.large
            } else {
                &room.process.small
            },
            conn: room.conn.map(|c| if large { &c.large } else { &c.small }),
            total_cap: if large {
                l.body_memory_total
            } else {
                (l.body_memory_total / SMALL_SHARE).max(SMALL_BODY_BYTES)
            },
            conn_cap: if large {
                l.body_memory_per_connection
            } else {
                SMALL_BODIES_PER_CONNECTION * SMALL_BODY_BYTES
            },
            bytes: 0,
        }
    }

    /// Holds `n` more bytes, or says which budget is full (and holds nothing more).
    fn grow(&mut self, n: usize) -> Result<(), Full> {
        if n == 0 {
            return Ok(());
        }
        if let Some(conn) = self.conn {
            if !conn.take(n, self.conn_cap) {
                return Err(Full::Connection);
            }
        }
        if !self.total.take(n, self.total_cap) {
            if let Some(conn) = self.conn {
                conn.give(n);
            }
            return Err(Full::Process);
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.total.give(self.bytes);
            if let Some(conn) = self.conn {
                conn.give(self.bytes);
            }
        }
    }
}

/// A request body read whole; its bytes count under the memory budgets until it is dropped.
pub(crate) struct ReqBody<'a> {
    pub bytes: Bytes,
    _hold: Hold<'a>,
}

impl std::ops::Deref for ReqBody<'_> {
    type Target = Bytes;
    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

/// The error a [`Timed`] body ends with when its client stops sending.
#[derive(Debug)]
pub(crate) struct TimedOut(pub Duration);

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the request body stopped arriving for {} s",
            self.0.as_secs()
        )
    }
}

impl std::error::Error for TimedOut {}

/// True when `e` or one of its sources is a [`TimedOut`] (a forwarded body that stalled).
pub(crate) fn is_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<TimedOut>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A body that fails with [`TimedOut`] when it waits for its client longer than the timeout:
/// between two pieces, or (`whole`) for the whole body. Only the time spent waiting for the client
/// counts, not the time its reader (an upstream that is slow to take a forwarded body) left it
/// alone; and a body whose pieces are ready when asked for never starts a timer.
pub(crate) struct Timed<B> {
    inner: B,
    timeout: Duration,
    /// The deadline of the whole body, when it has one.
    whole: Option<tokio::time::Instant>,
    /// The deadline of the current wait, while the body is waiting for its client.
    waiting: Option<tokio::time::Instant>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> Timed<B> {
    pub(crate) fn new(inner: B, timeout: Duration, whole: bool) -> Timed<B> {
        Timed {
            inner,
            timeout,
            whole: whole.then(|| tokio::time::Instant::now() + timeout),
            waiting: None,
            sleep: None,
        }
    }
}

impl<B> Body for Timed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<response::BoxError>,
{
    type Data = Bytes;
    type Error = response::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = *this.waiting.get_or_insert_with(|| {
            let next = tokio::time::Instant::now() + this.timeout;
            this.whole.map_or(next, |whole| whole.min(next))
        });
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(TimedOut(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body` with the configured read timeout between two pieces (for bodies forwarded as they
/// arrive, such as the dashboard's).
pub(crate) fn timed(limits: &Limits, body: Incoming) -> Timed<Incoming> {
    Timed::new(body, limits.body_read_timeout, false)
}

/// `resp` with `Connection: close` for an HTTP/1.x request whose body is left unread (HTTP/2
/// resets only the stream).
fn closing(mut resp: Resp, version: Version) -> Resp {
    if version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

fn too_large(limit: usize) -> Resp {
    response::error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        &format!("The request body is larger than {limit} bytes."),
    )
}

fn full(which: Full) -> Resp {
    match which {
        Full::Connection => response::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "connection_bodies_too_large",
            "This connection is already sending as many request bodies as it may at once; wait for them to finish.",
        ),
        Full::Process => {
            let mut r = response::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "The server is receiving too many large requests right now; try again in a moment.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            r
        }
    }
}

/// The `408` for a body that stopped arriving.
pub(crate) fn timed_out_response(timeout: Duration) -> Resp {
    response::error(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        &format!(
            "The request body stopped arriving for {} seconds; send the request again.",
            timeout.as_secs()
        ),
    )
}

/// Reads a request body of at most `limit` bytes, within the read timeout and the memory budgets;
/// the error is the finished answer (`413`, `408`, `503` or `400`).
///
/// A body that arrives in one piece (a small JSON request usually does) is returned as that
/// piece, without a copy, and the end is taken from its declared length without another poll;
/// http-body-util's `Limited` + `collect` queued and walked every piece (measured on proxied
/// requests; see bench/README.md).
pub(crate) async fn read_body<'a>(
    room: Room<'a>,
    req: Request<Incoming>,
    limit: usize,
) -> Result<ReqBody<'a>, Resp> {
    use http_body_util::BodyExt;
    let version = req.version();
    let large = limit > SMALL_BODY_BYTES;
    let mut body = req.into_body();
    // Exact when the client declared a length.
    let declared = body.size_hint().lower();
    if declared > limit as u64 {
        return Err(closing(too_large(limit), version));
    }
    let declared = declared as usize;
    let mut hold = Hold::new(room, large);
    if large {
        hold.grow(declared)
            .map_err(|which| closing(full(which), version))?;
    }
    let timeout = room.limits.body_read_timeout;
    let mut body = Timed::new(&mut body, timeout, !large);
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while !body.is_end_stream() {
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) if e.is::<TimedOut>() => {
                return Err(closing(timed_out_response(timeout), version))
            }
            Err(_) => {
                return Err(closing(
                    response::error(
                        StatusCode::BAD_REQUEST,
                        "bad_body",
                        "The request body could not be read.",
                    ),
                    version,
                ))
            }
        };
        let Ok(data) = frame.into_data() else {
            // Trailers: nothing a route reads.
            continue;
        };
        let have = joined.as_ref().map_or(first.len(), |j| j.len());
        if data.len() > limit - have {
            return Err(closing(too_large(limit), version));
        }
        let want = have + data.len();
        if want > hold.bytes {
            hold.grow(want - hold.bytes)
                .map_err(|which| closing(full(which), version))?;
        }
        match &mut joined {
            Some(j) => j.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                // Sized for the declared length at once, so the copy is not grown (and held twice)
                // piece by piece.
                let mut j = BytesMut::with_capacity(want.max(declared));
                j.extend_from_slice(&first);
                j.extend_from_slice(&data);
                first = Bytes::new();
                joined = Some(j);
            }
        }
    }
    Ok(ReqBody {
        bytes: joined.map_or(first, BytesMut::freeze),
        _hold: hold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults;

    #[test]
    fn budgets_refuse_beyond_their_cap_and_take_back_what_a_refusal_held() {
        let total = Budget::default();
        let conn = Budget::default();
        let hold = |total_cap, conn_cap| Hold {
            total: &total,
            conn: Some(&conn),
            total_cap,
            conn_cap,
            bytes: 0,
        };
        let mut a = hold(100, 60);
        assert_eq!(a.grow(50), Ok(()));
        let mut b = hold(100, 60);
        assert_eq!(b.grow(20), Err(Full::Connection));
        assert_eq!(conn.used(), 50);
        let mut c = hold(55, 1000);
        assert_eq!(c.grow(10), Err(Full::Process));
        // The connection's share of the refused growth was given back.
        assert_eq!(conn.used(), 50);
        drop(a);
        assert_eq!((total.used(), conn.used()), (0, 0));
        assert_eq!(b.grow(60), Ok(()));
        drop(b);
        assert_eq!((total.used(), conn.used()), (0, 0));
    }

    fn limits(toml: &str) -> Result<Limits, String> {
        use crate::config::{CliOverrides, Config};
        let file = Config::parse_str(toml, std::path::Path::new("t.toml")).unwrap();
        Config::resolve(file, None, &CliOverrides::default())
            .map(|c| c.limits)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn budgets_left_unset_grow_with_max_body_bytes_and_set_ones_must_hold_it() {
        let l = limits("").unwrap();
        assert_eq!(l.body_read_timeout, defaults::BODY_READ_TIMEOUT);
        assert_eq!(
            (l.body_memory_per_connection, l.body_memory_total),
            (
                defaults::BODY_MEMORY_PER_CONNECTION,
                defaults::BODY_MEMORY_TOTAL
            )
        );
        let big = 300 * 1024 * 1024;
        let l = limits(&format!("[limits]\nmax_body_bytes = {big}")).unwrap();
        assert_eq!(
            (l.body_memory_per_connection, l.body_memory_total),
            (big, big)
        );
        let e = limits("[limits]\nmax_body_bytes = 2000\nbody_memory_per_connection = 1000")
            .unwrap_err();
        assert!(e.contains("body_memory_per_connection"), "{e}");
        let e = limits("[limits]\nbody_memory_total = 1000").unwrap_err();
        assert!(e.contains("body_memory_total"), "{e}");
        let e = limits("[limits]\nbody_read_timeout_secs = 0").unwrap_err();
        assert!(e.contains("body_read_timeout_secs"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_times_out_but_time_left_unpolled_does_not_count() {
        use http_body_util::BodyExt;
        let (mut tx, rx) = futures_channel_body();
        let mut body = Timed::new(rx, Duration::from_secs(5), false);
        tx.send(Bytes::from_static(b"a"));
        assert!(body.frame().await.unwrap().is_ok());
        // Not polled for a minute (its reader was busy): that is not the client's delay.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let started = tokio::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<TimedOut>());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_deadline_is_not_moved_by_a_trickle() {
        use http_body_util::BodyExt;
        let (mut tx, rx) = futures_channel_body();
        let started = tokio::time::Instant::now();
        let mut body = Timed::new(rx, Duration::from_secs(5), true);
        let sender = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tx.send(Bytes::from_static(b"a"));
            }
            tx
        });
        loop {
            match body.frame().await.unwrap() {
                Ok(_) => continue,
                Err(e) => {
                    assert!(e.is::<TimedOut>());
                    break;
                }
            }
        }
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        drop(sender.await);
    }

    /// A body fed by hand.
    struct Fed {
        rx: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    }
    struct Feeder(tokio::sync::mpsc::UnboundedSender<Bytes>);
    impl Feeder {
        fn send(&mut self, b: Bytes) {
            let _ = self.0.send(b);
        }
    }
    impl Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
        }
    }
    fn futures_channel_body() -> (Feeder, Fed) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Feeder(tx), Fed { rx })
    }
}
