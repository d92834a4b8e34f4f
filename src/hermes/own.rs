//! A client connection's own connection to Hermes, spoken by hand inside that client connection's
//! task.
//!
//! Why its own connection: through the shared pool every proxied request crossed tasks (and often
//! threads) four times: the request to the pool connection's task, the response head back, each
//! body chunk, the end. Here the request is written, and the answer read, by the future that asked
//! for it and then by the response body the client connection is sending; nothing is handed over.
//!
//! Why by hand and not with hyper's client connection: the requests are ours (a fixed set of
//! headers written straight into one buffer) and the peer is the Hermes API Server on loopback.
//! hyper's client paid for a request object, a header map, a dispatcher, a driver future and the
//! channels between them on every request: by callgrind, its connection alone cost about 12,600
//! instructions per proxied request, a fifth of what hermes-edge spent on one (59,272 then;
//! 47,741 in the first count with this module, `bench/instructions.sh`). Answers are parsed with
//! httparse, hyper's own parser; a head is capped at 64 KiB and 64 headers, and the body is framed
//! by `Transfer-Encoding: chunked`, `Content-Length` or the end of the connection, as RFC 9112
//! §6.3 orders them.
//!
//! A client connection opens its own upstream connection at its first proxied request and keeps it
//! while it lives; requests on it go one after another, which is how HTTP/1.1 clients send them
//! anyway. While an answer is being read (several HTTP/2 streams at once) the next request takes
//! the shared pool instead. When the client connection ends, or drops an answer before its end
//! (the browser went away), the connection to Hermes is closed, which stops the agent.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::header_timer::MovingSleep;
use crate::response::BoxError;

/// The largest answer head read (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers an answer may have.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size line, and the most trailer bytes, of a chunked answer.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 16 * 1024;
/// A connection idle for longer is not used again: the peer may be closing it (aiohttp, which the
/// Hermes API Server runs on, closes idle connections after 75 s).
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How much is asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

pub struct OwnUpstream {
    slot: Arc<Mutex<Slot>>,
}

enum Slot {
    /// Not opened yet, or closed.
    Empty,
    Idle(Link),
    /// Carrying an exchange right now (its answer may still be read by the client's response).
    Busy,
}

/// The open connection, what was read from it and not used yet, and the one timer its answers are
/// waited for with.
struct Link {
    tcp: TcpStream,
    buf: BytesMut,
    /// Moved only when it goes off (see `header_timer`): a tokio timeout per exchange was a
    /// timer-wheel insert and removal on every request.
    timer: MovingSleep,
    /// When it was handed back after its last answer.
    idle_since: Instant,
}

/// What became of a request offered to [`OwnUpstream::send`].
// Returned once per request and taken apart at once; boxing the answer would cost an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Tried {
    /// Hermes answered; the body is read as it is polled.
    Answered(Response<OwnBody>),
    /// It was not sent (the connection is busy): use the shared pool.
    NotSent,
    /// Hermes' address refused the connection or did not accept it within 5 s (the pool would
    /// only try the same again).
    Unreachable(io::Error),
    /// Sent, but no answer head came within the wait given to `send`.
    Stalled,
    /// The connection broke, or what came back is not an HTTP/1.1 answer.
    Failed(String),
}

/// Why one exchange failed.
enum Fault {
    Stalled,
    /// Nothing came back: the request could not be written, or the connection ended (or was
    /// reset) before the first byte of an answer. On a connection used before, the peer had most
    /// likely closed it while it was idle, and the request is sent again on a new one.
    NothingBack(io::Error),
    Failed(String),
}

impl Default for OwnUpstream {
    fn default() -> Self {
        OwnUpstream::new()
    }
}

impl OwnUpstream {
    pub fn new() -> OwnUpstream {
        OwnUpstream {
            slot: Arc::new(Mutex::new(Slot::Empty)),
        }
    }

    /// Sends `request` (a whole HTTP/1.1 request: head and body) to `authority` over this client
    /// connection's own upstream connection, opening it first if needed, and waits up to `wait`
    /// for the head of the answer.
    pub async fn send(&self, authority: &str, request: &[u8], wait: Duration) -> Tried {
        let mut idle = {
            let mut slot = lock(&self.slot);
            match std::mem::replace(&mut *slot, Slot::Busy) {
                Slot::Busy => return Tried::NotSent,
                Slot::Idle(link) if link.idle_since.elapsed() <= MAX_IDLE => Some(link),
                Slot::Idle(_) | Slot::Empty => None,
            }
        };
        // From here the slot is `Busy`; the guard empties it however this ends (a client that goes
        // away drops this future mid-request, and the connection with it), unless the answer's
        // body takes the connection over.
        let guard = Emptied(&self.slot);
        loop {
            let reused = idle.is_some();
            let mut link = match idle.take() {
                Some(link) => link,
                None => match open(authority).await {
                    Ok(link) => link,
                    Err(e) => return Tried::Unreachable(e),
                },
            };
            match exchange(&mut link, request, wait).await {
                Ok((head, framing, keep)) => {
                    std::mem::forget(guard);
                    let mut body = OwnBody {
                        link: Some(link),
                        framing,
                        keep,
                        home: self.slot.clone(),
                        done: false,
                    };
                    // Nothing to read (`Content-Length: 0`, `204`): hyper would not poll such a
                    // body, and dropping it unfinished would close the connection.
                    if matches!(body.framing, Framing::Length(0)) {
                        body.finish();
                    }
                    let mut resp = Response::new(body);
                    *resp.status_mut() = head.status;
                    *resp.version_mut() = head.version;
                    *resp.headers_mut() = head.headers;
                    return Tried::Answered(resp);
                }
                Err(Fault::Stalled) => return Tried::Stalled,
                Err(Fault::NothingBack(e)) if reused => {
                    tracing::debug!("idle connection to Hermes was closed ({e}); opening another");
                }
                Err(Fault::NothingBack(e)) => return Tried::Failed(e.to_string()),
                Err(Fault::Failed(e)) => return Tried::Failed(e),
            }
        }
    }
}

fn lock(slot: &Mutex<Slot>) -> std::sync::MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

/// Empties the slot when dropped.
struct Emptied<'a>(&'a Mutex<Slot>);

impl Drop for Emptied<'_> {
    fn drop(&mut self) {
        *lock(self.0) = Slot::Empty;
    }
}

/// Connects within 5 s.
async fn open(authority: &str) -> io::Result<Link> {
    let tcp =
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(authority)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
    let _ = tcp.set_nodelay(true);
    Ok(Link {
        tcp,
        buf: BytesMut::new(),
        timer: MovingSleep::default(),
        idle_since: Instant::now(),
    })
}

struct Head {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

/// Writes `request` and reads the answer's head, both within `wait` of the start.
async fn exchange(
    link: &mut Link,
    request: &[u8],
    wait: Duration,
) -> Result<(Head, Framing, bool), Fault> {
    let mut written = 0;
    let mut got_any = false;
    let mut until = None;
    let Link {
        tcp, buf, timer, ..
    } = link;
    poll_fn(|cx| {
        while written < request.len() {
            match Pin::new(&mut *tcp).poll_write(cx, &request[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Fault::NothingBack(io::ErrorKind::WriteZero.into())))
                }
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::NothingBack(e))),
                Poll::Pending => return stalled(timer, &mut until, wait, cx),
            }
        }
        loop {
            match poll_fill(tcp, buf, cx) {
                Poll::Ready(Ok(0)) if !got_any => {
                    let e =
                        io::Error::new(io::ErrorKind::UnexpectedEof, "closed without an answer");
                    return Poll::Ready(Err(Fault::NothingBack(e)));
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Fault::Failed(
                        "Hermes closed the connection in the middle of the answer's head".into(),
                    )))
                }
                Poll::Ready(Ok(_)) => got_any = true,
                Poll::Ready(Err(e)) if !got_any => return Poll::Ready(Err(Fault::NothingBack(e))),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Failed(e.to_string()))),
                Poll::Pending => return stalled(timer, &mut until, wait, cx),
            }
            // Informational answers (`100 Continue`, `103 Early Hints`) are passed over.
            while let Some((head, len)) = parse_head(buf).map_err(Fault::Failed)? {
                buf.advance(len);
                if head.status.is_informational() {
                    if head.status == StatusCode::SWITCHING_PROTOCOLS {
                        return Poll::Ready(Err(Fault::Failed(
                            "Hermes switched protocols without being asked".into(),
                        )));
                    }
                    continue;
                }
                let (framing, keep) = framing(&head).map_err(Fault::Failed)?;
                return Poll::Ready(Ok((head, framing, keep)));
            }
        }
    })
    .await
}

/// `Pending`, or `Stalled` once `wait` has passed since the first time an exchange had to wait.
fn stalled<T>(
    timer: &mut MovingSleep,
    until: &mut Option<Instant>,
    wait: Duration,
    cx: &mut Context<'_>,
) -> Poll<Result<T, Fault>> {
    let until = *until.get_or_insert_with(|| Instant::now() + wait);
    match timer.poll_until(until, cx) {
        Poll::Ready(()) => Poll::Ready(Err(Fault::Stalled)),
        Poll::Pending => Poll::Pending,
    }
}

/// Reads what the socket has into `buf`; `Ok(0)` at the end of the connection.
///
/// Through `AsyncRead`: tokio takes a read shorter than asked for as the socket being drained and
/// waits for the next readiness event, where `try_read` would try once more and meet `EAGAIN`
/// (`strace -c`, 4,000 proxied requests: 1,602 failed `recvfrom` that way, none this way).
fn poll_fill(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    buf.reserve(READ_SIZE);
    tokio_util::io::poll_read_buf(Pin::new(tcp), cx, buf)
}

/// The answer head at the start of `buf` and its length, `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => {
            return Err(format!(
                "Hermes sent an answer head larger than {} KiB",
                MAX_HEAD / 1024
            ))
        }
        Err(e) => return Err(format!("Hermes sent a malformed answer head ({e})")),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or("Hermes sent an answer without a valid status")?;
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let mut map = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Err(format!("Hermes sent a malformed header ({:?})", h.name));
        };
        map.append(name, value);
    }
    let head = Head {
        status,
        version,
        headers: map,
    };
    Ok(Some((head, len)))
}

/// How the body of an answer ends (RFC 9112 §6.3), and whether the connection can carry another
/// request after it.
fn framing(head: &Head) -> Result<(Framing, bool), String> {
    let h = &head.headers;
    let mut keep = head.version == Version::HTTP_11
        && !h
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| tokens(v).any(|t| t.eq_ignore_ascii_case(b"close")));
    if head.status == StatusCode::NO_CONTENT || head.status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), keep));
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        // Chunked only when it is the last coding; with a length beside it, the connection is not
        // trusted with another request.
        let last = h
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| tokens(v).last());
        keep &= !h.contains_key(header::CONTENT_LENGTH);
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => (Framing::Chunked(Chunk::Size), keep),
            _ => (Framing::Close, false),
        });
    }
    let mut length = None;
    for v in h.get_all(header::CONTENT_LENGTH) {
        for t in tokens(v) {
            let n = std::str::from_utf8(t)
                .ok()
                .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Err("Hermes sent an invalid Content-Length".into()),
            }
        }
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), keep),
        None => (Framing::Close, false),
    })
}

/// The comma-separated items of a header value, trimmed.
fn tokens(v: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    v.as_bytes()
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

enum Framing {
    /// This many bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the connection ends.
    Close,
}

/// Where a chunked body is.
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// This many bytes of chunk data still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one (this many bytes read so far).
    Trailers(usize),
}

/// The body of an answer read over the own connection, as the client's response polls it. At its
/// end the connection goes back to be used again; dropped before its end, it is closed.
pub struct OwnBody {
    link: Option<Link>,
    framing: Framing,
    keep: bool,
    home: Arc<Mutex<Slot>>,
    done: bool,
}

impl OwnBody {
    /// The body is over: read to its end (`complete`), broken, or dropped. The connection goes
    /// back to be used again when it can carry another request, and is closed otherwise.
    fn end(&mut self, complete: bool) {
        self.done = true;
        let link = self.link.take();
        *lock(&self.home) = match link {
            Some(mut link) if complete && self.keep && link.buf.is_empty() => {
                link.idle_since = Instant::now();
                Slot::Idle(link)
            }
            _ => Slot::Empty,
        };
    }

    fn finish(&mut self) {
        self.end(true);
    }

    fn fail(&mut self, why: &str) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.end(false);
        Poll::Ready(Some(Err(why.to_string().into())))
    }
}

impl http_body::Body for OwnBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(link) = this.link.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut link.buf;
            // What is in hand: a frame to send, the end, or a step of the chunked framing.
            match &mut this.framing {
                Framing::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) if !buf.is_empty() => {
                    let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let data = buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Close if !buf.is_empty() => {
                    let data = buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Framing::Chunked(chunk) if !buf.is_empty() => match step(chunk, buf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::More) => continue,
                    Ok(Step::NeedBytes) => {}
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Err(why) => return this.fail(why),
                },
                _ => {}
            }
            let Some(link) = this.link.as_mut() else {
                return Poll::Ready(None);
            };
            match poll_fill(&mut link.tcp, &mut link.buf, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(this.framing, Framing::Close) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    return this.fail("Hermes closed the connection before the end of the answer")
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    let why = format!("reading the answer failed: {e}");
                    return this.fail(&why);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || matches!(self.framing, Framing::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) if !self.done => SizeHint::with_exact(n),
            _ if self.done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Drop for OwnBody {
    fn drop(&mut self) {
        if !self.done {
            // Not read to the end: the connection is closed (Hermes stops the agent) and the next
            // request opens another.
            self.end(false);
        }
    }
}

enum Step {
    Data(Bytes),
    /// The framing moved on; look again.
    More,
    /// More bytes are needed.
    NeedBytes,
    End,
}

/// One step of decoding a chunked body (RFC 9112 §7.1) from the non-empty `buf`.
fn step(chunk: &mut Chunk, buf: &mut BytesMut) -> Result<Step, &'static str> {
    match chunk {
        Chunk::Size => {
            let Some(end) = find_crlf(buf) else {
                return if buf.len() > MAX_CHUNK_LINE {
                    Err("Hermes sent a chunk-size line that is too long")
                } else {
                    Ok(Step::NeedBytes)
                };
            };
            let line = &buf[..end];
            // The size, then optional whitespace and chunk extensions, which are ignored.
            let digits = line
                .iter()
                .position(|b| !b.is_ascii_hexdigit())
                .unwrap_or(line.len());
            let rest = &line[digits..];
            if digits == 0
                || digits > 15
                || !matches!(rest.first(), None | Some(b';' | b' ' | b'\t'))
            {
                return Err("Hermes sent a malformed chunk size");
            }
            let text = std::str::from_utf8(&line[..digits]).map_err(|_| "malformed chunk size")?;
            let size = u64::from_str_radix(text, 16).map_err(|_| "malformed chunk size")?;
            buf.advance(end + 2);
            *chunk = if size == 0 {
                Chunk::Trailers(0)
            } else {
                Chunk::Data(size)
            };
            Ok(Step::More)
        }
        Chunk::Data(left) => {
            let take = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
            let data = buf.split_to(take).freeze();
            *left -= take as u64;
            if *left == 0 {
                *chunk = Chunk::DataEnd;
            }
            Ok(Step::Data(data))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(Step::NeedBytes);
            }
            if &buf[..2] != b"\r\n" {
                return Err("Hermes sent chunk data longer than its size");
            }
            buf.advance(2);
            *chunk = Chunk::Size;
            Ok(Step::More)
        }
        Chunk::Trailers(seen) => {
            let Some(end) = find_crlf(buf) else {
                return if *seen + buf.len() > MAX_TRAILERS {
                    Err("Hermes sent trailers that are too long")
                } else {
                    Ok(Step::NeedBytes)
                };
            };
            buf.advance(end + 2);
            if end == 0 {
                return Ok(Step::End);
            }
            *seen += end + 2;
            if *seen > MAX_TRAILERS {
                return Err("Hermes sent trailers that are too long");
            }
            if buf.is_empty() {
                return Ok(Step::NeedBytes);
            }
            Ok(Step::More)
        }
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const REQUEST: &[u8] = b"POST /v1/x HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\nhi";

    /// What the peer of these tests sends for one request.
    struct Answer {
        pieces: Vec<&'static [u8]>,
        /// Close the connection after it (an answer of no pieces just closes it).
        close: bool,
    }

    fn keep(pieces: Vec<&'static [u8]>) -> Answer {
        Answer {
            pieces,
            close: false,
        }
    }

    fn then_close(pieces: Vec<&'static [u8]>) -> Answer {
        Answer {
            pieces,
            close: true,
        }
    }

    /// A peer on loopback that answers each request with the next of `answers`, written in the
    /// pieces given (a short pause between them), and counts the connections it accepted.
    async fn peer(answers: Vec<Answer>) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = Arc::new(AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            let mut answers = answers.into_iter();
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut seen = Vec::new();
                'requests: loop {
                    // Each request of these tests is REQUEST.
                    while seen.len() < REQUEST.len() {
                        let mut b = [0u8; 1024];
                        match tcp.read(&mut b).await {
                            Ok(0) | Err(_) => break 'requests,
                            Ok(n) => seen.extend_from_slice(&b[..n]),
                        }
                    }
                    assert_eq!(&seen[..REQUEST.len()], REQUEST);
                    seen.drain(..REQUEST.len());
                    let Some(answer) = answers.next() else {
                        break;
                    };
                    for piece in answer.pieces {
                        if tcp.write_all(piece).await.is_err() {
                            break 'requests;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    if answer.close {
                        break;
                    }
                }
            }
        });
        (addr, conns)
    }

    async fn body_of(own: &OwnUpstream, addr: &str) -> Result<(StatusCode, Vec<u8>), String> {
        match own.send(addr, REQUEST, Duration::from_secs(5)).await {
            Tried::Answered(resp) => {
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((status, body.to_bytes().to_vec()))
            }
            Tried::Failed(e) => Err(e),
            Tried::Stalled => Err("stalled".into()),
            Tried::Unreachable(e) => Err(format!("unreachable: {e}")),
            Tried::NotSent => Err("not sent".into()),
        }
    }

    /// Sends REQUEST once per expected answer, in order, checking each status and body.
    async fn expect(own: &OwnUpstream, addr: &str, answers: &[(StatusCode, &[u8])]) {
        for (status, body) in answers {
            assert_eq!(body_of(own, addr).await, Ok((*status, body.to_vec())));
        }
    }

    /// Plays `script` from a fresh peer to a fresh `OwnUpstream`, expects `answers` in order, and
    /// gives how many connections the peer saw.
    async fn connections_for(script: Vec<Answer>, answers: &[(StatusCode, &[u8])]) -> usize {
        let (addr, conns) = peer(script).await;
        expect(&OwnUpstream::new(), &addr, answers).await;
        conns.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn chunked_answers_are_decoded_across_reads_and_the_connection_is_used_again() {
        let seen = connections_for(
            vec![
                keep(vec![
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                    b"lo\r",
                    b"\n6\r\n world\r\n0\r\n",
                    b"trailer: x\r\n\r\n",
                ]),
                keep(vec![
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc",
                ]),
            ],
            &[(StatusCode::OK, b"hello world"), (StatusCode::OK, b"abc")],
        )
        .await;
        assert_eq!(seen, 1);
    }

    #[tokio::test]
    async fn answers_without_a_length_or_with_connection_close_end_the_connection() {
        // Each of the first three ends its connection: `Connection: close`, no length (the body
        // runs to the end of the connection), HTTP/1.0.
        let seen = connections_for(
            vec![
                keep(vec![
                    b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                ]),
                then_close(vec![b"HTTP/1.1 404 Not Found\r\n\r\nuntil ", b"the end"]),
                keep(vec![b"HTTP/1.0 204 No Content\r\n\r\n"]),
                keep(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nz"]),
            ],
            &[
                (StatusCode::OK, b"ok"),
                (StatusCode::NOT_FOUND, b"until the end"),
                (StatusCode::NO_CONTENT, b""),
                (StatusCode::OK, b"z"),
            ],
        )
        .await;
        assert_eq!(seen, 4);
    }

    #[tokio::test]
    async fn an_empty_answer_dropped_unread_leaves_the_connection_open() {
        let (addr, conns) = peer(vec![
            keep(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"]),
            keep(vec![b"HTTP/1.1 204 No Content\r\n\r\n"]),
            keep(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx"]),
        ])
        .await;
        let own = OwnUpstream::new();
        for _ in 0..2 {
            // As hyper does with a body that says it is at its end: never polled, dropped.
            let Tried::Answered(resp) = own.send(&addr, REQUEST, Duration::from_secs(5)).await
            else {
                panic!("no answer");
            };
            assert!(http_body::Body::is_end_stream(resp.body()));
        }
        expect(&own, &addr, &[(StatusCode::OK, b"x")]).await;
        assert_eq!(conns.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_and_the_request_sent_again() {
        // The peer closes the connection after its first answer, without saying so.
        let seen = connections_for(
            vec![
                then_close(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na"]),
                keep(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nb"]),
            ],
            &[(StatusCode::OK, b"a"), (StatusCode::OK, b"b")],
        )
        .await;
        assert_eq!(seen, 2);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors_that_say_what_was_wrong() {
        for (answer, expect) in [
            (
                &b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\nab"[..],
                "invalid Content-Length",
            ),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "malformed answer head"),
            (b"SSH-2.0-OpenSSH\r\n\r\n", "malformed answer head"),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "malformed chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
                "longer than its size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab",
                "closed the connection before the end",
            ),
            (
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                "switched protocols",
            ),
        ] {
            let (addr, _) = peer(vec![then_close(vec![answer])]).await;
            let own = OwnUpstream::new();
            let got = body_of(&own, &addr).await;
            assert!(
                got.as_ref().is_err_and(|e| e.contains(expect)),
                "{answer:?}: {got:?}"
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..70 {
            huge.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        huge.extend_from_slice(b"\r\n");
        let (addr, _) = peer(vec![keep(vec![Box::leak(huge.into_boxed_slice())])]).await;
        let got = body_of(&OwnUpstream::new(), &addr).await;
        assert!(
            got.as_ref()
                .is_err_and(|e| e.contains("malformed answer head")),
            "{got:?}"
        );
    }

    #[tokio::test]
    async fn no_answer_within_the_wait_is_stalled_and_a_dropped_body_closes_the_connection() {
        let (addr, conns) = peer(vec![
            keep(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab"]),
            keep(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nc"]),
        ])
        .await;
        let own = OwnUpstream::new();
        let Tried::Answered(resp) = own.send(&addr, REQUEST, Duration::from_secs(5)).await else {
            panic!("no answer");
        };
        let mut body = resp.into_body();
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"ab");
        // The rest never comes; the client went away.
        drop(body);
        expect(&own, &addr, &[(StatusCode::OK, b"c")]).await;
        assert_eq!(conns.load(Ordering::SeqCst), 2);

        // A peer that reads the request and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent = listener.local_addr().unwrap().to_string();
        let _held = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tcp);
        });
        let started = std::time::Instant::now();
        let tried = own.send(&silent, REQUEST, Duration::from_millis(300)).await;
        assert!(matches!(tried, Tried::Stalled));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
