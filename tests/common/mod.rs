//! Shared test harness: starts the real `hermes-edge` binary on loopback port 0 in a temporary
//! directory, waits for its `ready` line, and builds HTTPS clients that trust only its local CA.
#![allow(dead_code)]
// Each test file includes this module privately; `pub` is how its items reach the tests.
#![allow(unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "admin-password-1";

pub struct Server {
    child: Option<Child>,
    pub https: SocketAddr,
    pub http: Option<SocketAddr>,
    /// The `/metrics` and `/status` listener, when on.
    pub metrics: Option<SocketAddr>,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Options for starting the server; every path defaults into a fresh temporary directory.
pub struct Start {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: Option<PathBuf>,
    pub http_listen: bool,
    pub upstream: String,
    pub listen: String,
    /// A fixed `--http-listen` address (overrides `http_listen`); ACME HTTP-01 tests need the port first.
    pub http_addr: Option<String>,
    /// The open-files limit (soft and hard) the server starts with.
    pub nofile: Option<u64>,
    /// `--metrics-listen`: by default a free loopback port (`127.0.0.1:0`), so that test servers
    /// never fight over the default port; `None` passes no flag (the config file decides).
    pub metrics_listen: Option<String>,
}

impl Default for Start {
    fn default() -> Self {
        Start {
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            http_listen: false,
            // Port 9 (discard) on loopback is closed here: a dead upstream unless a test sets one.
            upstream: "http://127.0.0.1:9".into(),
            listen: "127.0.0.1:0".into(),
            http_addr: None,
            nofile: None,
            metrics_listen: Some("127.0.0.1:0".into()),
        }
    }
}

impl Start {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_path_buf());
        self
    }
    pub fn upstream(mut self, url: impl Into<String>) -> Self {
        self.upstream = url.into();
        self
    }
    /// No `--upstream`: the server finds Hermes itself (its settings in `HERMES_HOME`, or the
    /// default).
    pub fn without_upstream(mut self) -> Self {
        self.upstream = String::new();
        self
    }
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }
    pub fn with_http(mut self) -> Self {
        self.http_listen = true;
        self
    }
    pub fn with_http_on(mut self, addr: impl Into<String>) -> Self {
        self.http_addr = Some(addr.into());
        self
    }
    pub fn nofile(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }
    /// `--metrics-listen ADDR` (or `off`); `None`: no flag, the config file or the default decides.
    pub fn metrics_listen(mut self, addr: Option<&str>) -> Self {
        self.metrics_listen = addr.map(str::to_string);
        self
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hermes-edge")
}

/// Spawns the binary with the harness defaults plus `extra`, without waiting for `ready`. The
/// metrics listener is off unless `extra` sets it, so no test takes the default port.
pub fn spawn_raw(dir: &Path, extra: &[String], env: &[(String, String)]) -> Child {
    let mut args = extra.to_vec();
    if !args.iter().any(|a| a == "--metrics-listen") {
        args.extend(["--metrics-listen".into(), "off".into()]);
    }
    spawn_limited(dir, &args, env, None)
}

/// [`spawn_raw`] with the open-files limit (soft and hard) set to `nofile` in the child.
pub fn spawn_limited(
    dir: &Path,
    extra: &[String],
    env: &[(String, String)],
    nofile: Option<u64>,
) -> Child {
    let mut cmd = Command::new(bin());
    if let Some(n) = nofile {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit, async-signal-safe, runs between fork and exec.
        #[allow(unsafe_code)] // `pre_exec` has no safe form; the test harness's only unsafe.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n as libc::rlim_t,
                    rlim_max: n as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.current_dir(dir)
        .args(extra)
        .env("HERMES_EDGE_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "info")
        .env_remove("HERMES_EDGE_API_KEY")
        .env_remove("API_SERVER_KEY")
        // An empty Hermes home unless a test gives one: the settings of whoever runs the tests
        // (their ~/.hermes/.env) must not reach the server.
        .env("HERMES_HOME", dir.join("no-hermes-home"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn hermes-edge")
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(Start::default())
    }

    pub fn start_with(opts: Start) -> Server {
        Self::try_start(opts).unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Starts the server; `Err` carries what it printed when it exited or never became ready.
    // The child is either waited for on each error path or moved into `Server`, whose Drop waits.
    #[allow(clippy::zombie_processes)]
    pub fn try_start(opts: Start) -> Result<Server, String> {
        let (tmp, dir) = match &opts.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        std::fs::create_dir_all(dir.join("media")).expect("media dir");
        let mut args: Vec<String> = vec![
            "--listen".into(),
            opts.listen.clone(),
            "--http-listen".into(),
            match (&opts.http_addr, opts.http_listen) {
                (Some(addr), _) => addr.clone(),
                (None, true) => "127.0.0.1:0".into(),
                (None, false) => "off".into(),
            },
            "--certs-dir".into(),
            dir.join("certs").display().to_string(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--media".into(),
            dir.join("media").display().to_string(),
        ];
        if !opts.upstream.is_empty() {
            args.extend(["--upstream".into(), opts.upstream.clone()]);
        }
        if let Some(addr) = &opts.metrics_listen {
            args.extend(["--metrics-listen".into(), addr.clone()]);
        }
        args.extend(opts.args.iter().cloned());
        let mut child = spawn_limited(&dir, &args, &opts.env, opts.nofile);
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        pump(child.stdout.take().expect("stdout"), stdout.clone());
        pump(child.stderr.take().expect("stderr"), stderr.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = stdout
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.starts_with("ready "))
                .cloned();
            if let Some(line) = ready {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(&format!("{name}=")).map(str::to_string))
                };
                let https = field("https_addr")
                    .and_then(|a| a.parse().ok())
                    .ok_or("no https_addr")?;
                let http = field("http_addr").and_then(|a| a.parse().ok());
                let metrics = field("metrics_addr").and_then(|a| a.parse().ok());
                return Ok(Server {
                    child: Some(child),
                    https,
                    http,
                    metrics,
                    dir,
                    _tmp: tmp,
                    stdout,
                    stderr,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "exited with {status}\nstdout:\n{}\nstderr:\n{}",
                    stdout.lock().unwrap().join("\n"),
                    stderr.lock().unwrap().join("\n")
                ));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("no ready line within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.https.port()
    }

    /// `https://localhost:PORT<path>` (the client resolves localhost to 127.0.0.1).
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.port(), path)
    }

    pub fn origin(&self) -> String {
        format!("https://localhost:{}", self.port())
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("certs/local-ca.crt")).expect("local CA file")
    }

    /// A client that trusts only this server's local root, keeps cookies, follows no redirects.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let root = reqwest::Certificate::from_pem(&self.ca_pem()).expect("root pem");
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .resolve("localhost", self.https)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
    }

    /// Signs in through the JSON login and returns the response (the client keeps the cookie).
    pub async fn login(
        &self,
        client: &reqwest::Client,
        user: &str,
        password: &str,
    ) -> reqwest::Response {
        client
            .post(self.url("/login"))
            .header("origin", self.origin())
            .header("accept", "application/json")
            .json(&serde_json::json!({"username": user, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// A client already signed in as `admin`.
    pub async fn admin_client(&self) -> reqwest::Client {
        let c = self.client();
        let r = self.login(&c, "admin", ADMIN_PASSWORD).await;
        assert_eq!(r.status(), 200, "admin login failed");
        c
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits up to `secs` for a log line (stdout or stderr) containing `needle`.
    pub fn wait_for_log(&self, needle: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.stdout().contains(needle) || self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.pid() as i32;
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }

    /// Waits up to `secs` for the process to exit.
    pub fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.terminate();
        self.wait_exit(40)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pump(stream: impl std::io::Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(l) => into.lock().unwrap().push(l),
                Err(_) => break,
            }
        }
    });
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A raw TLS connection to the server trusting only its local root (for tests that need the
/// certificate, ALPN, or bytes that an HTTP client would refuse to send).
pub async fn tls_connect(
    s: &Server,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    tls_connect_with_root(s.https, "localhost", &s.ca_pem(), alpn)
        .await
        .expect("TLS connect")
}

pub async fn tls_connect_with_root(
    addr: SocketAddr,
    server_name: &str,
    root_pem: &[u8],
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem) {
        roots.add(cert.expect("root pem")).expect("add root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    connector.connect(name, tcp).await
}

/// Sends raw bytes over TLS and returns everything the server answers until it closes or
/// `secs` pass.
pub async fn raw_exchange(s: &Server, request: &[u8], secs: u64) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(s, &[b"http/1.1"]).await;
    // The server may answer and close before a large request is fully sent (that is the point of
    // a size limit), so a failed write is not an error here: what it answered is.
    let _ = tls.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(secs), tls.read_to_end(&mut out)).await;
    out
}

/// Colon-separated SHA-256 as the server prints it.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Stops what a `tests/hermes/` script started in a work folder (`stop.sh`, by the PIDs it
/// recorded) when dropped, so a failing test does not leave Hermes running.
pub struct StopGuard(pub PathBuf);

impl Drop for StopGuard {
    fn drop(&mut self) {
        let dir = self.0.display().to_string();
        let _ = run_script("stop.sh", &[&dir], Duration::from_secs(30));
    }
}

/// Runs a script of `tests/hermes/` with a time bound; returns (success, stdout, stderr). The
/// environment is inherited (so `HERMES_VENV` reaches it).
/// Installs the peers a test needs that no other test's own script installs (the OpenID
/// provider from npm, `systemd-analyze`, pebble-challtestsrv), so that a plain `cargo test` on a
/// fresh machine works as `.ci/run` does: `tests/install-peers.sh`, idempotent, once per test binary.
pub fn ensure_peers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/install-peers.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .expect("bash runs tests/install-peers.sh");
        assert!(
            out.status.success(),
            "tests/install-peers.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

pub fn run_script(script: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    run_script_with(script, args, &[], limit)
}

/// `run_script` with extra environment variables for the script.
pub fn run_script_with(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (bool, String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hermes")
        .join(script);
    let mut child = Command::new("bash")
        .arg(path)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let err_t = std::thread::spawn(move || std::io::read_to_string(err).unwrap_or_default());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    (status.is_some_and(|s| s.success()), stdout, stderr)
}

/// A service that a script of `tests/hermes/` starts (`script PORT DIR`, tried twice) in a fresh
/// directory: the directory, the port, and the last line the script printed (its URL). It keeps
/// running until a `StopGuard` on that directory is dropped.
pub fn start_by_script(script: &str, what: &str) -> (tempfile::TempDir, String, String) {
    start_by_script_with(script, what, &[])
}

/// `start_by_script` with extra environment variables for the script.
pub fn start_by_script_with(
    script: &str,
    what: &str,
    env: &[(&str, &str)],
) -> (tempfile::TempDir, String, String) {
    let mut last_err = String::new();
    for _ in 0..2 {
        let work = tempfile::tempdir().unwrap();
        let port = free_port().to_string();
        let dir = work.path().display().to_string();
        let guard = StopGuard(work.path().to_path_buf());
        let (ok, out, err) = run_script_with(script, &[&port, &dir], env, Duration::from_secs(150));
        if ok {
            std::mem::forget(guard);
            let url = out.lines().last().unwrap_or("").trim().to_string();
            return (work, port, url);
        }
        last_err = format!("{out}\n{err}");
    }
    panic!("{what} did not start:\n{last_err}");
}

/// `DELETE /api/conversations/{conv}` from the site's own page: the status and the JSON answer
/// (`null` when there is none).
pub async fn delete_conversation(
    s: &Server,
    c: &reqwest::Client,
    conv: &str,
) -> (u16, serde_json::Value) {
    let r = c
        .delete(s.url(&format!("/api/conversations/{conv}")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// What [`h2_request_then_idle`] saw.
pub struct H2Idle {
    /// Every byte the server sent (frames, undecoded).
    pub got: Vec<u8>,
    /// (type, flags) of each whole frame received.
    pub frames: Vec<(u8, u8)>,
    /// How long after the request the server closed the connection; `None`: still open.
    pub closed_after: Option<Duration>,
}

impl H2Idle {
    /// Asserts the answer held `answered`, then a GOAWAY came and the connection closed; returns
    /// how long after the request.
    pub fn assert_closed_with_goaway(&self, answered: &str) -> Duration {
        let text = String::from_utf8_lossy(&self.got);
        let Some(open) = self.closed_after else {
            panic!(
                "an idle HTTP/2 connection was kept open (got {} bytes, answered: {})",
                self.got.len(),
                text.contains(answered)
            );
        };
        assert!(
            text.contains(answered),
            "the request was answered before the close"
        );
        assert!(
            self.frames.iter().any(|f| f.0 == 7),
            "no GOAWAY before the close: {:?}",
            self.frames
        );
        open
    }
}

/// One HTTP/2 `GET path` (plus `headers`, lower-case names) in raw frames over a fresh h2 TLS
/// connection, then nothing but PING acks (as any HTTP/2 client sends; a graceful close waits
/// for one) until the server closes or `wait` passes.
pub async fn h2_request_then_idle(
    s: &Server,
    path: &str,
    headers: &[(&str, &str)],
    wait: Duration,
) -> H2Idle {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_connect(s, &[b"h2"]).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
                                                         // HPACK: :method GET, :scheme https (static table), :authority and :path as literals, then
                                                         // each extra header as a literal with a new name; every length here is below 127.
    let mut block = vec![0x82, 0x87, 0x41, 9];
    block.extend_from_slice(b"localhost");
    block.extend_from_slice(&[0x04, path.len() as u8]);
    block.extend_from_slice(path.as_bytes());
    for (name, value) in headers {
        block.extend_from_slice(&[0x00, name.len() as u8]);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    // HEADERS on stream 1, END_STREAM | END_HEADERS.
    out.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    out.extend_from_slice(&block);
    tls.write_all(&out).await.unwrap();
    let sent = Instant::now();
    let mut got = Vec::new();
    let mut frames = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = tokio::time::timeout(wait, async {
        let mut at = 0;
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            while let Some((kind, flags, _, len)) = h2_frame_at(&got, at) {
                frames.push((kind, flags));
                if kind == 6 && flags & 1 == 0 {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&got[at + 9..at + 17]);
                    let _ = tls.write_all(&ack).await;
                }
                at += 9 + len;
            }
        }
    })
    .await;
    H2Idle {
        got,
        frames,
        closed_after: closed.ok().map(|()| sent.elapsed()),
    }
}

/// The head of the HTTP/2 frame at `at` in `got` (type, flags, stream, payload length) once the
/// whole frame has arrived.
pub fn h2_frame_at(got: &[u8], at: usize) -> Option<(u8, u8, u32, usize)> {
    let head = got.get(at..at + 9)?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    if got.len() < at + 9 + len {
        return None;
    }
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], stream, len))
}

/// The whole seconds of a response's `Retry-After`, which the edge always sends as a number.
pub fn retry_after_secs(r: &reqwest::Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .expect("Retry-After is text")
        .parse()
        .expect("Retry-After is whole seconds")
}

/// The Hermes memory scope the server at `s` keeps for `user` (`web:<scope>` is its
/// `X-Hermes-Session-Key`), read from its database.
pub fn memory_scope(s: &Server, user: &str) -> String {
    let db = rusqlite::Connection::open(s.dir.join("data/hermes-edge.db")).expect("open database");
    db.query_row("SELECT scope FROM users WHERE username = ?1", [user], |r| {
        r.get(0)
    })
    .expect("the user's scope")
}

// Helpers that several test files use.

/// A server started with `toml` as its config file. The server is dropped (killed) before its
/// directory because fields drop in order.
pub struct Configured {
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Configured {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

pub fn start_with_config(toml: &str) -> Configured {
    let dir = tempfile::tempdir().unwrap();
    let server = start_in_with_config(dir.path(), toml, Start::default());
    Configured { server, _dir: dir }
}

/// The server with `toml` as its config file, its files in `dir`, and `start`'s other options.
pub fn start_in_with_config(dir: &Path, toml: &str, start: Start) -> Server {
    let config = dir.join("edge.toml");
    std::fs::write(&config, toml).unwrap();
    Server::start_with(
        start
            .in_dir(dir)
            .arg("--config")
            .arg(config.display().to_string()),
    )
}

/// Adds an account through the admin API, as `admin`.
pub async fn add_user(s: &Server, admin: &reqwest::Client, name: &str, password: &str, role: &str) {
    let r = admin
        .post(s.url("/api/admin/users"))
        .header("origin", s.origin())
        .json(&serde_json::json!({"username": name, "password": password, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Adds an account with the command line (`hermes-edge user add`) in the server's data directory.
pub fn add_user_cli(s: &Server, name: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(bin())
        .current_dir(&s.dir)
        .args(["--data-dir", &s.dir.join("data").display().to_string()])
        .args(["user", "add", name, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

/// Signs in and returns the session cookie (`name=value`) for hand-made requests.
pub async fn session_cookie(s: &Server, user: &str, password: &str) -> String {
    let r = s.login(&s.client(), user, password).await;
    assert_eq!(r.status(), 200);
    cookie_of(&r)
}

/// `name=value` of the session cookie a login answer sets.
pub fn cookie_of(login: &reqwest::Response) -> String {
    let set = login.headers()["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// A new personal API token of the user of `c`.
pub async fn new_token(s: &Server, c: &reqwest::Client) -> String {
    let r = c
        .post(s.url("/api/tokens"))
        .header("origin", s.origin())
        .json(&serde_json::json!({"name": "test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Writes a new self-signed certificate for `localhost` (common name `name`) as `chain.pem` and
/// `key.pem` in `dir`, and returns its DER.
pub fn write_cert_pair(dir: &Path, name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    // Write to temporary names and rename, as a deploy tool would.
    std::fs::write(dir.join("chain.pem.new"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem.new"), key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("chain.pem.new"), dir.join("chain.pem")).unwrap();
    cert.der().to_vec()
}

/// The VmRSS of process `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A tab's view of a run's stream (docs/http-api.md, "Runs"), fed as it arrives: the answer text
/// (the snapshot's, then the deltas), the steps by id, the approval waiting and how the last one
/// was answered, the `edge.error` code, and whether it ended with `[DONE]`.
#[derive(Debug, Default)]
pub struct RunView {
    raw: String,
    pub text: String,
    pub steps: Vec<serde_json::Value>,
    pub approval: Option<serde_json::Value>,
    pub approval_done: Option<String>,
    pub error: Option<String>,
    pub done: bool,
    pub snapshots: usize,
}

impl RunView {
    /// The view of a whole stream.
    pub fn of(body: &str) -> RunView {
        let mut v = RunView::default();
        v.feed(body.as_bytes());
        v
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.raw.push_str(std::str::from_utf8(bytes).unwrap());
        while let Some(end) = self.raw.find("\n\n") {
            let event: String = self.raw.drain(..end + 2).collect();
            self.apply(&event);
        }
    }

    fn apply(&mut self, event: &str) {
        let mut name = "";
        let mut data = String::new();
        for line in event.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n;
            } else if let Some(d) = line.strip_prefix("data: ") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d);
            }
        }
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        let d: serde_json::Value = serde_json::from_str(&data).unwrap();
        match name {
            "edge.run" => {
                self.snapshots += 1;
                self.text = d["text"].as_str().unwrap().to_string();
                self.steps = d["steps"].as_array().unwrap().clone();
                self.approval = (!d["approval"].is_null()).then(|| d["approval"].clone());
            }
            "hermes.tool.progress" => match self.steps.iter_mut().find(|s| s["id"] == d["id"]) {
                Some(s) => *s = d,
                None => self.steps.push(d),
            },
            "edge.approval" => self.approval = Some(d),
            "edge.approval.done" => {
                self.approval = None;
                self.approval_done = Some(d["choice"].as_str().unwrap().to_string());
            }
            "edge.error" => self.error = Some(d["code"].as_str().unwrap().to_string()),
            "" => {
                if let Some(t) = d
                    .pointer("/choices/0/delta/content")
                    .and_then(|t| t.as_str())
                {
                    self.text.push_str(t);
                }
            }
            _ => {}
        }
    }

    /// Reads `r` until `until` holds (or the stream ends), within 60 s.
    pub async fn read_until(
        &mut self,
        r: &mut reqwest::Response,
        until: impl Fn(&RunView) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !until(self) && !self.done {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, r.chunk()).await {
                Ok(Ok(Some(b))) => self.feed(&b),
                Ok(Ok(None)) => break,
                Ok(Err(e)) => panic!("stream failed: {e}"),
                Err(_) => panic!("nothing within 60 s; so far: {:?}", self.steps),
            }
        }
    }
}

/// The real Hermes API Server with the fake model provider (`tests/hermes/start.sh`); both
/// stopped (by their recorded PIDs) on drop.
pub struct RealHermes {
    pub work: tempfile::TempDir,
    pub url: String,
    pub key: String,
}

impl RealHermes {
    pub fn start() -> RealHermes {
        RealHermes::start_with(&[])
    }

    /// With extra environment for `start.sh` (e.g. `HERMES_APPROVAL_MODE`).
    pub fn start_with(env: &[(&str, &str)]) -> RealHermes {
        let (work, _port, url) = start_by_script_with("start.sh", "the Hermes API Server", env);
        let key = std::fs::read_to_string(work.path().join("api_key"))
            .unwrap()
            .trim()
            .to_string();
        RealHermes { work, url, key }
    }

    /// Every request body Hermes sent to the model.
    pub fn provider_requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.work.path().join("provider.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// What else the fake provider saw (streams started, ended, cut).
    pub fn provider_events(&self) -> String {
        std::fs::read_to_string(self.work.path().join("provider.events")).unwrap_or_default()
    }
}

impl Drop for RealHermes {
    fn drop(&mut self) {
        drop(StopGuard(self.work.path().to_path_buf()));
    }
}

/// `POST /api/conversations/{conv}/run/stop` from the site's own page: the status.
pub async fn stop_run(s: &Server, c: &reqwest::Client, conv: &str) -> u16 {
    c.post(s.url(&format!("/api/conversations/{conv}/run/stop")))
        .header("origin", s.origin())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `GET /api/conversations/{conv}`: the conversation with its messages.
pub async fn conversation(s: &Server, c: &reqwest::Client, conv: &str) -> serde_json::Value {
    let r = c
        .get(s.url(&format!("/api/conversations/{conv}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}
