//! A client connection's own connection to Hermes: hyper's HTTP/1.1 client connection, opened at
//! the client connection's first request to Hermes and kept while it lives, as hyper's gateway
//! example keeps one upstream connection per client connection.
//!
//! Why not only the shared pool: its connections' tasks run on whichever HTTPS thread opened
//! them, so most proxied requests crossed threads (request, answer, each body chunk), and the
//! pool's checkout sat on every request. This connection's task runs on the client connection's
//! own thread (each HTTPS thread has its own runtime); bench/README.md has what it is worth.
//!
//! Requests on it go one after another, as HTTP/1.1 clients send them anyway; while an answer is
//! still being read (several HTTP/2 streams at once) the next request takes the shared pool. When
//! the client connection ends, or drops an answer before its end (the browser went away), hyper
//! closes the connection, which stops the agent.

use std::sync::Mutex;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::response::Body;

/// How long opening the connection may take (the shared pool's connector has the same).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of a request offered to [`OwnUpstream::send`].
#[allow(clippy::large_enum_variant)] // taken apart at once; boxing would cost an allocation
pub(crate) enum Tried {
    Answered(Response<Incoming>),
    /// Not sent (this connection is busy, or closed before the request left): the request back,
    /// for the shared pool.
    NotSent(Request<Body>),
    /// Hermes could not be reached at all.
    Unreachable(std::io::Error),
    /// The exchange failed after the request left.
    Failed(hyper::Error),
}

/// The client connection's own connection to Hermes, if it has one.
#[derive(Default)]
pub(crate) struct OwnUpstream {
    sender: Mutex<Option<SendRequest<Body>>>,
}

impl OwnUpstream {
    /// Sends `req` (origin form, with `Host`) to `authority` over this connection, opening it
    /// first if there is none.
    pub(crate) async fn send(&self, authority: &str, req: Request<Body>) -> Tried {
        let mut sender = match self.take() {
            Taken::Ready(s) => s,
            Taken::Busy => return Tried::NotSent(req),
            Taken::None => match open(authority).await {
                Ok(s) => s,
                Err(e) => return Tried::Unreachable(e),
            },
        };
        let answer = sender.try_send_request(req).await;
        // Back in its place at once: it is ready again when this answer's body has been read.
        if !sender.is_closed() {
            *self.lock() = Some(sender);
        }
        match answer {
            Ok(resp) => Tried::Answered(resp),
            Err(mut e) => match e.take_message() {
                Some(req) => Tried::NotSent(req),
                None => Tried::Failed(e.into_error()),
            },
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<SendRequest<Body>>> {
        self.sender.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self) -> Taken {
        let mut slot = self.lock();
        match slot.as_ref() {
            None => Taken::None,
            Some(s) if s.is_closed() => {
                *slot = None;
                Taken::None
            }
            Some(s) if !s.is_ready() => Taken::Busy,
            Some(_) => slot.take().map_or(Taken::None, Taken::Ready),
        }
    }
}

enum Taken {
    Ready(SendRequest<Body>),
    Busy,
    None,
}

/// Opens a connection to Hermes; its task runs on the calling thread's runtime.
async fn open(authority: &str) -> std::io::Result<SendRequest<Body>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("connection to Hermes ended: {e}");
        }
    });
    Ok(sender)
}
