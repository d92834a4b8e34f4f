//! `limits.send_timeout`: a connection whose response makes no progress towards the client for
//! that long is closed (nginx's `send_timeout`).
//!
//! Two ways a response stops moving, both watched per connection with one timer:
//! - the socket: a write the kernel refused (the client stopped reading and its window and our
//!   send buffer are full) with no byte written since ([`WatchedIo`], beneath TLS). This covers
//!   HTTP/1.1, including the end of a response that hyper holds after the body is done.
//! - a response body that hyper was handed data from and has not asked for more since
//!   ([`WatchedBody`]): over HTTP/2 one stream can be held by a zero flow-control window while
//!   the client answers pings and the socket stays busy, so the socket alone looks healthy. A
//!   body that is waiting for its own data (a chat answer still being written) is not stalled:
//!   hyper asked, the body has nothing yet.
//!
//! Without this a client that stopped reading held its connection, and the file or upstream
//! stream behind the response, for as long as it liked.
//!
//! A stalled HTTP/2 stream is reset alone (its task is dropped, so h2 sends `RST_STREAM`): the
//! other streams of the connection (a chat answer beside a paused video) go on. Anything else
//! that stalls closes the connection.
//!
//! The hot path only stores timestamps in atomics the connection's own thread uses; the timer is
//! armed only while something is still waiting when the connection's poll ends, so a response
//! that leaves in one go arms nothing.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{AbortHandle, AbortRegistration};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn_limits::clock_ms;

/// What one connection's responses and socket are waiting on. Timestamps are
/// [`clock_ms`] + 1, with 0 for "not waiting".
pub(crate) struct SendWatch {
    timeout: Duration,
    /// Since when a write to the socket has been refused with nothing written since.
    write_blocked: AtomicU64,
    /// How many bodies are waiting for hyper to ask for more.
    waiting: AtomicUsize,
    /// One slot per response in progress (reused once its request is gone).
    bodies: Mutex<Vec<Arc<BodySlot>>>,
    /// The slot of the HTTP/2 stream whose request was just taken in, with the abort pair the
    /// executor that runs that stream next takes up (`take_stream_abort`).
    next_stream: Mutex<Option<(Arc<BodySlot>, AbortHandle, AbortRegistration)>>,
}

/// What the connection knows of one response body.
pub(crate) struct BodySlot {
    /// Since when the body has waited for hyper to ask for more; 0: not waiting.
    since: AtomicU64,
    /// Ends the HTTP/2 stream the body belongs to, once its task is known to be wrapped to obey
    /// it; `None` over HTTP/1.1 (or if the stream was run some other way): then a stall closes
    /// the connection.
    abort: Mutex<Option<AbortHandle>>,
}

/// What a look at the connection's responses found.
enum Look {
    /// Something that can only be ended with the connection has waited for the timeout.
    Close,
    /// The earliest stamp of what still waits, if anything does.
    Waiting(Option<u64>),
}

fn stamp() -> u64 {
    clock_ms().saturating_add(1)
}

impl SendWatch {
    pub(crate) fn new(timeout: Duration) -> Arc<SendWatch> {
        Arc::new(SendWatch {
            timeout,
            write_blocked: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
            next_stream: Mutex::new(None),
        })
    }

    /// Whether anything is waiting on the client now.
    fn anything_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 || self.write_blocked.load(Ordering::Relaxed) != 0
    }

    /// Resets the HTTP/2 streams that have waited for the whole timeout; says whether anything
    /// else has (then the connection must close), or since when the rest waits.
    fn look(&self) -> Look {
        let now = stamp();
        let timeout = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let expired = |since: u64| since != 0 && now.saturating_sub(since) >= timeout;
        let blocked = self.write_blocked.load(Ordering::Relaxed);
        if expired(blocked) {
            return Look::Close;
        }
        let mut earliest = (blocked != 0).then_some(blocked);
        let bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        for body in bodies.iter() {
            let since = body.since.load(Ordering::Relaxed);
            if since == 0 {
                continue;
            }
            if expired(since) {
                let abort = body.abort.lock().unwrap_or_else(|e| e.into_inner());
                let Some(stream) = abort.as_ref() else {
                    return Look::Close;
                };
                // Its task ends at its next poll, and the body with it.
                tracing::debug!(
                    "an HTTP/2 response made no progress for the send timeout; stream reset"
                );
                stream.abort();
                body.since.store(0, Ordering::Relaxed);
                continue;
            }
            earliest = Some(earliest.map_or(since, |e: u64| e.min(since)));
        }
        Look::Waiting(earliest)
    }

    /// A slot for the response to a request being taken in. For an HTTP/2 stream it comes with
    /// an abort registration for [`take_stream_abort`](Self::take_stream_abort): hyper hands the
    /// stream to the executor right after calling the service for its request.
    pub(crate) fn body_slot(&self, h2: bool) -> Arc<BodySlot> {
        let slot = self.free_slot();
        *slot.abort.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if h2 {
            let (handle, registration) = AbortHandle::new_pair();
            *self.next_stream.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((slot.clone(), handle, registration));
        }
        slot
    }

    fn free_slot(&self) -> Arc<BodySlot> {
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        // A slot whose request is gone (only this list holds it) is free.
        match bodies.iter().find(|b| Arc::strong_count(b) == 1) {
            Some(free) => free.clone(),
            None => {
                let slot = Arc::new(BodySlot {
                    since: AtomicU64::new(0),
                    abort: Mutex::new(None),
                });
                bodies.push(slot.clone());
                slot
            }
        }
    }

    /// The abort registration for the HTTP/2 stream being started (see `body_slot`); its
    /// response's slot can reset it from now on.
    pub(crate) fn take_stream_abort(&self) -> Option<AbortRegistration> {
        let (slot, handle, registration) = self
            .next_stream
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        *slot.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Some(registration)
    }
}

/// A response body whose connection notices when hyper stops asking it for data; `G` is held as
/// long as the body (the connection's mark that a request is in progress).
pub(crate) struct WatchedBody<B, G> {
    inner: B,
    watch: Arc<SendWatch>,
    slot: Arc<BodySlot>,
    waiting: bool,
    _hold: G,
}

impl<B: Body, G> WatchedBody<B, G> {
    pub(crate) fn new(inner: B, watch: Arc<SendWatch>, slot: Arc<BodySlot>, hold: G) -> Self {
        let mut body = WatchedBody {
            slot,
            watch,
            waiting: false,
            inner,
            _hold: hold,
        };
        // Handed to hyper with data to send: waiting until hyper first asks (over HTTP/2 it may
        // never, with no window).
        if !body.inner.is_end_stream() {
            body.set_waiting(true);
        }
        body
    }

    fn set_waiting(&mut self, waiting: bool) {
        if waiting {
            self.slot.since.store(stamp(), Ordering::Relaxed);
            if !self.waiting {
                self.waiting = true;
                self.watch.waiting.fetch_add(1, Ordering::Relaxed);
            }
        } else if self.waiting {
            self.waiting = false;
            self.slot.since.store(0, Ordering::Relaxed);
            self.watch.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<B, G> Body for WatchedBody<B, G>
where
    B: Body<Data = Bytes> + Unpin,
    G: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // A frame handed over: waiting for hyper to ask again (it will once it has sent it).
        // Anything else: hyper is waiting for the body, or it is done.
        this.set_waiting(matches!(polled, Poll::Ready(Some(Ok(_)))));
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, G> Drop for WatchedBody<B, G> {
    fn drop(&mut self) {
        if self.waiting {
            self.slot.since.store(0, Ordering::Relaxed);
            self.watch.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The client's socket, noting since when a write has been refused with nothing written since.
pub(crate) struct WatchedIo<T> {
    inner: T,
    watch: Arc<SendWatch>,
    blocked: bool,
}

impl<T> WatchedIo<T> {
    pub(crate) fn new(inner: T, watch: &Arc<SendWatch>) -> Self {
        WatchedIo {
            inner,
            watch: watch.clone(),
            blocked: false,
        }
    }

    fn wrote(&mut self, polled: &Poll<std::io::Result<usize>>) {
        match polled {
            Poll::Pending if !self.blocked => {
                self.blocked = true;
                self.watch.write_blocked.store(stamp(), Ordering::Relaxed);
            }
            Poll::Ready(Ok(n)) if *n > 0 && self.blocked => {
                self.blocked = false;
                self.watch.write_blocked.store(0, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.wrote(&polled);
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T> Drop for WatchedIo<T> {
    fn drop(&mut self) {
        if self.blocked {
            self.watch.write_blocked.store(0, Ordering::Relaxed);
        }
    }
}

/// The connection's side: one timer, armed while something waits on the client.
pub(crate) struct SendCheck {
    watch: Arc<SendWatch>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When to look again; `None` while nothing waits.
    deadline: Option<tokio::time::Instant>,
}

impl SendCheck {
    pub(crate) fn new(watch: &Arc<SendWatch>) -> SendCheck {
        SendCheck {
            watch: watch.clone(),
            sleep: None,
            deadline: None,
        }
    }

    /// Ready once something has waited on the client for the whole timeout and the connection
    /// must close (an HTTP/2 stream that has is reset here instead). Polled with the connection
    /// (each time its task wakes); the task is woken when the deadline comes.
    pub(crate) fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.stalled(cx) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if self.deadline.is_none() {
            if !self.watch.anything_waiting() {
                return false;
            }
            // What waits began during this poll (or is older, and then the look below finds
            // it): the earliest it can be due.
            self.deadline = Some(tokio::time::Instant::now() + self.watch.timeout);
        }
        while let Some(deadline) = self.deadline {
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if std::future::Future::poll(sleep.as_mut(), cx).is_pending() {
                return false;
            }
            let since = match self.watch.look() {
                Look::Close => return true,
                Look::Waiting(None) => {
                    self.deadline = None;
                    return false;
                }
                Look::Waiting(Some(since)) => since,
            };
            let waited = Duration::from_millis(stamp().saturating_sub(since));
            let left = self.watch.timeout.saturating_sub(waited);
            self.deadline = Some(tokio::time::Instant::now() + left.max(Duration::from_millis(1)));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn check_now(check: &mut SendCheck) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        check.stalled(&mut cx)
    }

    #[tokio::test]
    async fn a_body_not_asked_for_more_is_stalled_and_one_waiting_for_its_own_data_is_not() {
        let watch = SendWatch::new(Duration::from_millis(200));
        let mut check = SendCheck::new(&watch);
        assert!(!check_now(&mut check));

        // A body with nothing to send yet: hyper asked, the body has nothing; not stalled.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut slow = WatchedBody::new(
            StreamBody::new(Box::pin(stream)),
            watch.clone(),
            watch.body_slot(false),
            (),
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut slow).poll_frame(&mut cx).is_pending());
        assert!(!watch.anything_waiting());

        // A body handed over and never asked for: stalled after the timeout.
        let held = WatchedBody::new(
            Full::new(Bytes::from_static(b"data")),
            watch.clone(),
            watch.body_slot(false),
            (),
        );
        assert!(!check_now(&mut check));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!check_now(&mut check));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(check_now(&mut check));
        drop(held);

        // Once it is gone nothing waits, and the slot is reused.
        let mut check = SendCheck::new(&watch);
        assert!(!check_now(&mut check));
        let mut quick = WatchedBody::new(
            Full::new(Bytes::from_static(b"x")),
            watch.clone(),
            watch.body_slot(false),
            (),
        );
        assert!(quick.frame().await.is_some());
        assert!(watch.anything_waiting());
        assert!(quick.frame().await.is_none());
        assert!(!watch.anything_waiting());
        drop(quick);
        assert_eq!(watch.bodies.lock().unwrap().len(), 2);
        drop((tx, slow));
    }

    #[tokio::test]
    async fn a_stalled_http2_stream_is_reset_alone_and_the_connection_kept() {
        use futures_util::future::Abortable;
        let watch = SendWatch::new(Duration::from_millis(100));
        let mut check = SendCheck::new(&watch);
        let slot = watch.body_slot(true);
        let stream = Abortable::new(
            std::future::pending::<()>(),
            watch
                .take_stream_abort()
                .expect("a registration for the stream"),
        );
        assert!(watch.take_stream_abort().is_none());
        let held = WatchedBody::new(
            Full::new(Bytes::from_static(b"data")),
            watch.clone(),
            slot,
            (),
        );
        assert!(!check_now(&mut check));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!check_now(&mut check), "the connection was closed");
        let ended = tokio::time::timeout(Duration::from_secs(1), stream).await;
        assert!(matches!(ended, Ok(Err(_))), "the stream was not reset");
        drop(held);
        assert!(!watch.anything_waiting());
        assert!(!check_now(&mut check));

        // A stream whose task was never wrapped cannot be reset: its connection closes instead.
        let slot = watch.body_slot(true);
        let _held = WatchedBody::new(
            Full::new(Bytes::from_static(b"data")),
            watch.clone(),
            slot,
            (),
        );
        let mut check = SendCheck::new(&watch);
        assert!(!check_now(&mut check));
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(check_now(&mut check), "a stall nothing could end was kept");
    }
}
