//! A client connection's own connection to Hermes, run inside that client connection's task.
//!
//! Why: through the shared pool every proxied request crossed tasks (and often threads) four
//! times: the request to the pool connection's task, the response head back, each body chunk,
//! the end. With the upstream connection polled by the same task as the client connection that
//! uses it, those hand-offs are plain function calls on one thread, as in nginx's worker loop.
//!
//! A client connection opens its own upstream connection at its first proxied request and keeps it
//! while it lives; requests on it go one after another, which is how HTTP/1.1 clients send them
//! anyway. When it is busy (several HTTP/2 streams at once) or not ready, the request takes the
//! shared pool instead. When the client connection ends, its upstream connection is closed with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::header_timer::MovingSleep;
use crate::response::Body;

/// A future to run inside the client connection's task.
pub type ConnTask = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct OwnUpstream {
    /// Hands a future to the client connection's task.
    run: Box<dyn Fn(ConnTask) + Send + Sync>,
    slot: Mutex<Slot>,
}

enum Slot {
    /// Not opened yet, or closed.
    Empty,
    Idle(Link),
    /// In use by a request right now (another HTTP/2 stream of the same client connection).
    Busy,
}

/// The open connection, and the one timer its answers are waited for with.
struct Link {
    sender: SendRequest<Body>,
    /// Moved only when it goes off (see `header_timer`): a tokio timeout per exchange was a
    /// timer-wheel insert and removal, and a move of the whole request future, on every request
    /// (1,866 instructions per proxied request by callgrind, about a tenth of what hermes-edge
    /// then added to a bare hyper proxy).
    timer: MovingSleep,
}

/// What became of a request offered to [`OwnUpstream::send`].
pub enum Tried {
    /// It went over the own connection.
    Answered(Result<Response<Incoming>, hyper::Error>),
    /// It was not sent: use the shared pool.
    NotSent(Request<Body>),
    /// Hermes' address refused the connection or did not answer within 5 s (the pool would only
    /// try the same again).
    Unreachable(std::io::Error),
    /// Sent, but no answer came within the wait given to `send`.
    Stalled,
}

impl OwnUpstream {
    pub fn new(run: impl Fn(ConnTask) + Send + Sync + 'static) -> OwnUpstream {
        OwnUpstream {
            run: Box::new(run),
            slot: Mutex::new(Slot::Empty),
        }
    }

    /// Sends `req` (absolute URI, `http://host:port/path`) over this client connection's own
    /// upstream connection, opening it first if needed, and waits up to `wait` for the head of
    /// the answer.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        host: Option<&HeaderValue>,
        wait: Duration,
    ) -> Tried {
        let Some(host) = host else {
            return Tried::NotSent(req);
        };
        let ready = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            match std::mem::replace(&mut *slot, Slot::Busy) {
                Slot::Busy => return Tried::NotSent(req),
                Slot::Idle(s) if s.sender.is_ready() => Some(s),
                Slot::Empty => None,
                Slot::Idle(s) if s.sender.is_closed() => None,
                Slot::Idle(s) => {
                    // Still reading an earlier answer (another stream of an HTTP/2 client).
                    *slot = Slot::Idle(s);
                    return Tried::NotSent(req);
                }
            }
        };
        // From here the slot is `Busy`; the guard frees it however this ends (a client that goes
        // away drops this future mid-request, and the connection with it).
        let mut guard = Busy {
            owner: self,
            back: None,
        };
        let mut link = match ready {
            Some(s) => s,
            None => match self.open(req.uri()).await {
                Ok(Some(sender)) => Link {
                    sender,
                    timer: MovingSleep::default(),
                },
                Ok(None) => return Tried::NotSent(req),
                Err(e) => return Tried::Unreachable(e),
            },
        };
        let absolute = req.uri().clone();
        origin_form(&mut req, host);
        let answer = Within {
            answer: std::pin::pin!(link.sender.try_send_request(req)),
            timer: &mut link.timer,
            wait,
            until: None,
        };
        let out = match answer.await {
            // Dropping the request closes this connection (hyper cannot reuse it mid-answer).
            None => Tried::Stalled,
            Some(Ok(resp)) => Tried::Answered(Ok(resp)),
            Some(Err(mut e)) => match e.take_message() {
                // Never written: the connection had closed meanwhile. The pool (which wants the
                // absolute form) gets it.
                Some(mut req) => {
                    *req.uri_mut() = absolute;
                    req.headers_mut().remove(header::HOST);
                    Tried::NotSent(req)
                }
                None => Tried::Answered(Err(e.into_error())),
            },
        };
        // Ready for the next request once the body of this answer has been read to the end.
        if !link.sender.is_closed() {
            guard.back = Some(link);
        }
        out
    }

    /// Connects to the host and port of `uri` and hands the connection's driver to the client
    /// connection's task. `Err`: the connection failed; `Ok(None)`: anything else went wrong (the
    /// pool then tries and reports it).
    async fn open(&self, uri: &Uri) -> std::io::Result<Option<SendRequest<Body>>> {
        let Some(authority) = uri.authority().map(|a| a.as_str().to_string()) else {
            return Ok(None);
        };
        let tcp = match tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(authority),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        };
        let _ = tcp.set_nodelay(true);
        let Ok((sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await
        else {
            return Ok(None);
        };
        (self.run)(Box::pin(async move {
            if let Err(e) = conn.await {
                tracing::debug!("upstream connection ended: {e}");
            }
        }));
        Ok(Some(sender))
    }
}

/// `answer`, or `None` when it has not come within `wait` of its first wait. The timer is looked
/// at only when the answer is not there yet.
struct Within<'t, F> {
    answer: F,
    timer: &'t mut MovingSleep,
    wait: Duration,
    until: Option<tokio::time::Instant>,
}

impl<F: Future + Unpin> Future for Within<'_, F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<F::Output>> {
        let this = &mut *self;
        if let Poll::Ready(out) = Pin::new(&mut this.answer).poll(cx) {
            return Poll::Ready(Some(out));
        }
        let wait = this.wait;
        let until = *this
            .until
            .get_or_insert_with(|| tokio::time::Instant::now() + wait);
        match this.timer.poll_until(until, cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Frees the slot when a request is done with it: the connection goes back, or the slot is
/// emptied.
struct Busy<'a> {
    owner: &'a OwnUpstream,
    back: Option<Link>,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut slot = self.owner.slot.lock().unwrap_or_else(|e| e.into_inner());
        *slot = self.back.take().map_or(Slot::Empty, Slot::Idle);
    }
}

/// `http://host:port/path?q` → `/path?q` with `Host: host:port`, as an origin server expects.
fn origin_form(req: &mut Request<Body>, host: &HeaderValue) {
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(
        req.uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
    );
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    req.headers_mut().insert(header::HOST, host.clone());
}
