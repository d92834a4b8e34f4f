//! Step 6: the answer. [`Reply`] holds the status, the headers and the pieces of the body (ranges
//! of the file, multipart separators) before any byte is read; the body then comes from memory
//! ([`memory_body`]) or from the open file ([`disk_body`]): read at once when small, else streamed
//! chunk by chunk as the connection asks for more.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::conditional::Plan;
use super::representation::Rep;
use super::Policy;
use crate::response::{self, Body, BoxError, Resp};

/// Size of one read from disk while streaming.
const CHUNK: usize = 64 * 1024;
/// Bodies up to this size are read in one go on the blocking thread that opened the file.
const SMALL: u64 = 128 * 1024;

/// A piece of a body: literal bytes (multipart headers) or a range of the file `[start, end)`.
#[derive(Debug, Clone)]
pub(super) enum Piece {
    Lit(Bytes),
    Range(u64, u64),
}

/// Status, headers and the pieces of the body, before the bytes are fetched.
pub(super) struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_length: Option<u64>,
    pub(super) pieces: Vec<Piece>,
    json: Option<serde_json::Value>,
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Reply {
    pub(super) fn new(rep: &Rep, plan: Plan, head: bool, policy: Policy) -> Reply {
        let mut headers = vec![
            (header::ETAG, hv(&format!("\"{}\"", rep.etag))),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(policy.cache_control),
            ),
        ];
        if let Some(m) = rep.modified {
            headers.push((header::LAST_MODIFIED, hv(&httpdate::fmt_http_date(m))));
        }
        if rep.vary {
            headers.push((header::VARY, HeaderValue::from_static("Accept-Encoding")));
        }
        let mut reply = Reply {
            status: StatusCode::OK,
            headers,
            content_length: None,
            pieces: Vec::new(),
            json: None,
        };
        let bytes = |v: &[(u64, u64)]| -> String {
            v.iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        match plan {
            Plan::NotModified => {
                reply.status = StatusCode::NOT_MODIFIED;
                return reply;
            }
            Plan::PreconditionFailed => {
                reply.status = StatusCode::PRECONDITION_FAILED;
                reply.json = Some(serde_json::json!({"error": {"code": "precondition_failed",
                    "message": "The file has changed since the version your request is conditional on."}}));
                return reply;
            }
            Plan::Unsatisfiable => {
                reply.status = StatusCode::RANGE_NOT_SATISFIABLE;
                reply
                    .headers
                    .push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
                reply
                    .headers
                    .push((header::CONTENT_RANGE, hv(&format!("bytes */{}", rep.len))));
                reply.json = Some(
                    serde_json::json!({"error": {"code": "range_not_satisfiable",
                    "message": format!("The requested byte range is outside the file, which has {} bytes.", rep.len)}}),
                );
                return reply;
            }
            Plan::Whole | Plan::Ranges(_) => {}
        }
        reply
            .headers
            .push((header::ACCEPT_RANGES, HeaderValue::from_static("bytes")));
        if let Some(c) = rep.coding {
            reply.headers.push((
                header::CONTENT_ENCODING,
                HeaderValue::from_static(c.token()),
            ));
        }
        let pieces = match plan {
            Plan::Ranges(ranges) if ranges.len() == 1 => {
                let (a, b) = ranges[0];
                reply.status = StatusCode::PARTIAL_CONTENT;
                reply.headers.push((
                    header::CONTENT_RANGE,
                    hv(&format!("bytes {}/{}", bytes(&ranges), rep.len)),
                ));
                reply
                    .headers
                    .push((header::CONTENT_TYPE, hv(&rep.content_type)));
                vec![Piece::Range(a, b + 1)]
            }
            Plan::Ranges(ranges) => {
                reply.status = StatusCode::PARTIAL_CONTENT;
                let boundary = format!("hermes-edge-{:016x}", rand::random::<u64>());
                reply.headers.push((
                    header::CONTENT_TYPE,
                    hv(&format!("multipart/byteranges; boundary={boundary}")),
                ));
                let mut pieces = Vec::with_capacity(ranges.len() * 2 + 1);
                for (i, (a, b)) in ranges.iter().enumerate() {
                    let lead = if i == 0 { "" } else { "\r\n" };
                    pieces.push(Piece::Lit(Bytes::from(format!(
                        "{lead}--{boundary}\r\nContent-Type: {}\r\nContent-Range: bytes {a}-{b}/{}\r\n\r\n",
                        rep.content_type, rep.len
                    ))));
                    pieces.push(Piece::Range(*a, b + 1));
                }
                pieces.push(Piece::Lit(Bytes::from(format!("\r\n--{boundary}--\r\n"))));
                pieces
            }
            _ => {
                reply
                    .headers
                    .push((header::CONTENT_TYPE, hv(&rep.content_type)));
                vec![Piece::Range(0, rep.len)]
            }
        };
        reply.content_length = Some(total_len(&pieces));
        if !head {
            reply.pieces = pieces.into_iter().filter(|p| !is_empty(p)).collect();
        }
        reply
    }

    pub(super) fn into_response(self, body: Body) -> Resp {
        let mut r = match &self.json {
            Some(v) => response::json(self.status, v),
            None => {
                let mut r = Response::new(body);
                *r.status_mut() = self.status;
                // Room for these and the security headers at once (growing the map by doubling
                // showed in profiles).
                *r.headers_mut() = HeaderMap::with_capacity(16);
                r
            }
        };
        let h = r.headers_mut();
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        if let Some(len) = self.content_length {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        }
        r
    }
}

fn total_len(pieces: &[Piece]) -> u64 {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Lit(b) => b.len() as u64,
            Piece::Range(a, b) => b - a,
        })
        .sum()
}

fn is_empty(p: &Piece) -> bool {
    match p {
        Piece::Lit(b) => b.is_empty(),
        Piece::Range(a, b) => a >= b,
    }
}

pub(super) fn memory_body(content: Bytes, pieces: &[Piece]) -> Body {
    let slice = |p: &Piece| match p {
        Piece::Lit(b) => b.clone(),
        Piece::Range(a, b) => content.slice(*a as usize..*b as usize),
    };
    match pieces {
        [] => response::empty(),
        [one] => response::full(slice(one)),
        many => {
            let mut all = Vec::new();
            for p in many {
                all.extend_from_slice(&slice(p));
            }
            response::full(all)
        }
    }
}

/// The body of a file: small bodies are read right away (this runs on the blocking thread that
/// opened the file); larger ones stream in chunks as the connection asks for them.
pub(super) fn disk_body(file: File, pieces: &[Piece]) -> Body {
    let total = total_len(pieces);
    if pieces.is_empty() {
        return response::empty();
    }
    if total <= SMALL {
        let mut all = Vec::with_capacity(total as usize);
        for p in pieces {
            match p {
                Piece::Lit(b) => all.extend_from_slice(b),
                Piece::Range(a, b) => {
                    if let Err(e) = read_range(&file, *a, *b, &mut all) {
                        return error_body(e);
                    }
                }
            }
        }
        return response::full(all);
    }
    let state = (Arc::new(file), VecDeque::from(pieces.to_vec()));
    let stream = futures_util::stream::unfold(state, |(file, mut queue)| async move {
        let piece = queue.pop_front()?;
        let item = match piece {
            Piece::Lit(b) => Ok(Frame::data(b)),
            Piece::Range(start, end) => {
                let n = (end - start).min(CHUNK as u64);
                if start + n < end {
                    queue.push_front(Piece::Range(start + n, end));
                }
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; n as usize];
                    f.read_exact_at(&mut buf, start).map(|()| Bytes::from(buf))
                })
                .await;
                match read {
                    Ok(Ok(bytes)) => Ok(Frame::data(bytes)),
                    Ok(Err(e)) => {
                        queue.clear();
                        tracing::warn!(
                            "a file being sent could not be read to its end (did it shrink?): {e}"
                        );
                        Err(BoxError::from(e))
                    }
                    Err(e) => {
                        queue.clear();
                        Err(BoxError::from(e))
                    }
                }
            }
        };
        Some((item, (file, queue)))
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Appends the bytes `[start, end)` of `file` to `out`. Read with `read_to_end`, which fills the
/// vector's spare room without zeroing it first: zeroing a 100 KiB buffer before reading over it
/// was a visible share of the CPU of small downloads over HTTP/2 (bench/README.md).
fn read_range(file: &File, start: u64, end: u64, out: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let want = end.saturating_sub(start);
    let mut f = file;
    f.seek(SeekFrom::Start(start))?;
    let got = f.take(want).read_to_end(out)?;
    if (got as u64) < want {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file is shorter than when it was opened",
        ));
    }
    Ok(())
}

/// A body that fails at once, so the connection is cut instead of sending a short file.
fn error_body(e: io::Error) -> Body {
    tracing::warn!("a file being sent could not be read: {e}");
    let failed = futures_util::stream::once(async move { Err::<Frame<Bytes>, BoxError>(e.into()) });
    StreamBody::new(failed).boxed_unsync()
}
