//! A scripted OpenAI-compatible stand-in for the Hermes API Server, for the chat proxy tests.
//!
//! It listens on 127.0.0.1:0, answers each request with the next scripted `Reply` (a default SSE
//! answer when the script is empty), records every request (method, path, headers, body), the
//! instant each scripted chunk was handed to the connection, and the instant it noticed that the
//! client went away. `DELETE /api/sessions/{id}` answers like Hermes 0.19 when nothing is scripted
//! (`{"object":"hermes.session.deleted","id":...,"deleted":true}`), and `stop` makes it unreachable.
// Included privately by the test files that use it; `pub` is how its items reach them.
#![allow(unreachable_pub)]
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub enum Step {
    /// Sends these bytes as one frame.
    Data(String),
    /// Waits (noticing a disconnect meanwhile).
    Sleep(u64),
    /// Sends nothing more until the client goes away (at most 30 s).
    Hang,
    /// Breaks the connection mid-body.
    Abort,
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub steps: Vec<Step>,
    /// Takes the request and sends nothing at all, not even the head, for 30 s.
    pub silent: bool,
}

impl Reply {
    /// A complete SSE answer made of these content deltas.
    pub fn sse(parts: &[&str]) -> Reply {
        let mut steps = vec![Step::Data(chunk_role())];
        for p in parts {
            steps.push(Step::Data(chunk(p)));
        }
        steps.push(Step::Data(finish()));
        steps.push(Step::Data("data: [DONE]\n\n".into()));
        Reply::stream(steps)
    }

    /// The bytes `sse(parts)` sends.
    pub fn sse_text(parts: &[&str]) -> String {
        let mut out = chunk_role();
        for p in parts {
            out.push_str(&chunk(p));
        }
        out.push_str(&finish());
        out.push_str("data: [DONE]\n\n");
        out
    }

    pub fn stream(steps: Vec<Step>) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            steps,
            silent: false,
        }
    }

    /// Takes the request and never starts its answer (at most 30 s).
    pub fn silent() -> Reply {
        Reply {
            silent: true,
            ..Reply::stream(Vec::new())
        }
    }

    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-length".into(), body.len().to_string()),
            ],
            steps: vec![Step::Data(body.into())],
            silent: false,
        }
    }

    /// Hermes' `404` for a session it does not have (`_get_existing_session_or_404`).
    pub fn session_not_found(id: &str) -> Reply {
        let body = serde_json::json!({"error": {"message": format!("Session not found: {id}"),
            "type": "invalid_request_error", "param": null, "code": "session_not_found"}});
        Reply::json(404, &body.to_string())
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

pub fn chunk_role() -> String {
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n".into()
}

pub fn chunk(text: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"id":"chatcmpl-1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
    )
}

pub fn finish() -> String {
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".into()
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Recorded {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<Recorded>,
    sent: Vec<(String, Instant)>,
    disconnects: Vec<Instant>,
    connections: usize,
}

#[derive(Clone)]
pub struct Fake {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// The accept loop and every connection task, aborted by `stop`.
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let conn_tasks = tasks.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                let conn = tokio::spawn(async move {
                    // Counted at its first request other than the capabilities probe, so that
                    // the probe hermes-edge makes at start is not taken for a chat connection.
                    let counted = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        if req.uri().path() != "/v1/capabilities"
                            && !counted.swap(true, std::sync::atomic::Ordering::Relaxed)
                        {
                            st.lock().unwrap().connections += 1;
                        }
                        async move { Ok::<_, Infallible>(handle(st, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
                conn_tasks.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        Fake { addr, state, tasks }
    }

    /// Closes the listener and every connection: from now on the address refuses connections.
    pub async fn stop(&self) {
        let tasks: Vec<_> = self.tasks.lock().unwrap().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn push(&self, reply: Reply) {
        self.state.lock().unwrap().script.push_back(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// When each chunk containing `marker` was handed to the connection.
    pub fn sent_at(&self, marker: &str) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .sent
            .iter()
            .find(|(d, _)| d.contains(marker))
            .map(|(_, t)| *t)
    }

    pub fn disconnects(&self) -> Vec<Instant> {
        self.state.lock().unwrap().disconnects.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Waits up to `within` for a disconnect to be recorded.
    pub async fn wait_disconnect(&self, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(t) = self.disconnects().first() {
                return Some(*t);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }
}

async fn handle(
    st: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Response<http_body_util::combinators::BoxBody<Bytes, BoxError>> {
    if req.uri().path() == "/v1/capabilities" {
        // A Hermes without the runs API (before 0.19): the web chat uses chat completions. Not
        // recorded, so that the tests' request indexes stay those of the chat itself.
        let mut resp = Response::new(
            http_body_util::Full::new(Bytes::from_static(
                b"{\"error\":{\"message\":\"Not Found\"}}",
            ))
            .map_err(|never| match never {})
            .boxed(),
        );
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
        return resp;
    }
    let method = req.method().to_string();
    let method_is_delete = req.method() == http::Method::DELETE;
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let reply = {
        let mut s = st.lock().unwrap();
        s.requests.push(Recorded {
            method,
            path: path.clone(),
            headers,
            body,
            at: Instant::now(),
        });
        s.script.pop_front()
    };
    let reply = reply.unwrap_or_else(|| {
        if let Some(id) = path
            .strip_prefix("/api/sessions/")
            .filter(|_| method_is_delete)
        {
            let body =
                serde_json::json!({"object": "hermes.session.deleted", "id": id, "deleted": true});
            Reply::json(200, &body.to_string())
        } else if path == "/v1/models" {
            Reply::json(
                200,
                "{\"object\":\"list\",\"data\":[{\"id\":\"hermes-agent\",\"object\":\"model\"}]}",
            )
        } else {
            Reply::sse(&["Hello", " there"])
        }
    });
    if reply.silent {
        // The client giving up drops this future (and the connection) meanwhile.
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    *resp.status_mut() = http::StatusCode::from_u16(reply.status).unwrap();
    for (k, v) in &reply.headers {
        resp.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio::spawn(async move {
        let gone = |st: &Arc<Mutex<State>>| st.lock().unwrap().disconnects.push(Instant::now());
        for step in reply.steps {
            match step {
                Step::Data(d) => {
                    let at = Instant::now();
                    if tx
                        .send(Ok(Frame::data(Bytes::from(d.clone()))))
                        .await
                        .is_err()
                    {
                        gone(&st);
                        return;
                    }
                    st.lock().unwrap().sent.push((d, at));
                }
                Step::Sleep(ms) => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                        _ = tx.closed() => { gone(&st); return; }
                    }
                }
                Step::Hang => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                        _ = tx.closed() => { gone(&st); return; }
                    }
                }
                Step::Abort => {
                    let _ = tx.send(Err("scripted abort".into())).await;
                    return;
                }
            }
        }
    });
    resp
}
