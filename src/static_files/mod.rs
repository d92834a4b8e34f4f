//! The static file engine: one implementation of HTTP file semantics, used for `/media/`, for the
//! site's own files (embedded in the binary, or a `--www DIR` on disk) and for the custom pages of
//! `[[routes]]`.
//!
//! What it does, per RFC 9110: `GET`/`HEAD`; `Content-Type` from the extension; strong `ETag`s and
//! `Last-Modified`; the preconditions in the order of RFC 9110 §13.2.2 (`If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`); byte ranges (single → `206` with
//! `Content-Range`, several → `multipart/byteranges`, unsatisfiable → `416`, guarded by `If-Range`);
//! precompressed `.br`/`.gz` siblings chosen by `Accept-Encoding`, each with its own `ETag`.
//!
//! Why one engine: video players and download managers depend on ranges and validators, the login
//! page's scripts on the same caching rules; one code path keeps them identical and keeps the
//! safety checks in one place.
//!
//! Safety for folders: the URL path is percent-decoded once; `..`, `.`, encoded dots, slashes and
//! backslashes, NUL and control characters, empty segments and absolute paths are refused (`400`);
//! hidden names are not found (`404`); the final path is canonicalized and must lie inside the
//! canonical root, so a symlink that leads out is not found either. Nothing answers `403`.
//!
//! Memory: files larger than [`SMALL`] stream from disk in [`CHUNK`] reads, one at a time, only
//! when the connection asks for more, so memory stays flat whatever the size. A client that goes
//! away simply drops the body; that is not an error.
//!
//! Threads: opening a file, its metadata and a body up to [`SMALL`] are done on the request's own
//! thread, as nginx does by default: on a local disk these are page-cache operations of a few
//! microseconds, and a hop to the blocking pool per request cost about 20 % of the CPU of a
//! 100 KiB asset (more under HTTP/2, where hundreds of streams each took a pool thread). Larger
//! bodies stream chunk by chunk from the blocking pool, so a big download never holds a worker.
//! A media folder on slow network storage would stall a worker per request; serve it through
//! nginx or move it to a local disk.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use crate::app::App;
use crate::disk_watch::DiskWatch;
use crate::response::{self, Body, BoxError, Resp};

/// Size of one read from disk while streaming.
const CHUNK: usize = 64 * 1024;
/// Bodies up to this size are read in one go on the blocking thread that opened the file.
const SMALL: u64 = 128 * 1024;
/// More ranges than this in one request are ignored (the whole file is sent instead).
const MAX_RANGES: usize = 16;
/// A directory listing shows at most this many entries.
const MAX_LISTING: usize = 10_000;

/// `/media/` behind the login.
pub const CACHE_PRIVATE: &str = "private, max-age=0, must-revalidate";
/// `/media/` when `media.public = true`.
pub const CACHE_PUBLIC: &str = "public, max-age=0, must-revalidate";
/// Site files whose name carries a content hash (`app.3f2a9c1b.js`).
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// HTML and every other site file: cache, but revalidate with the `ETag` each time.
pub const CACHE_REVALIDATE: &str = "no-cache";

/// Why a path is refused. Never says more than the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The path is malformed or tries to leave its folder (`400`).
    BadRequest,
    /// Nothing to serve there, or not to this client (`404`).
    NotFound,
}

impl Refusal {
    pub fn response(self) -> Resp {
        match self {
            Refusal::BadRequest => response::error(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "This address is not a valid file path.",
            ),
            Refusal::NotFound => response::not_found(),
        }
    }
}

/// How responses of one kind of file are cached and typed.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub cache_control: &'static str,
    /// `/media/`: types a browser would run as script or style are sent as text (see
    /// [`media_content_type`]).
    pub media: bool,
}

/// The `Content-Security-Policy` of every `/media/` answer. Anything that can write into the
/// media folder (the agent can) must not get a page that runs as the signed-in user: `sandbox`
/// puts an HTML, SVG or XML document opened from there in an opaque origin with no script, and
/// the rest lets the browser's own image, video and text views work and nothing else load.
pub const MEDIA_CSP: &str = "default-src 'none'; img-src 'self' data:; media-src 'self'; \
style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox";

/// The same for a PDF, without `sandbox`. Chromium 156 shows a PDF under either policy (tried
/// in headless Chromium); a viewer built as a plugin (older Chromium) may not load in a
/// sandboxed document, and leaving `sandbox` out costs nothing here: a PDF's own script runs in
/// the viewer's sandbox (PDFium's, pdf.js'), never with the page's origin, and with `nosniff` a
/// file sent as `application/pdf` is never read as HTML. `object-src 'self'` lets the viewer load
/// this very file.
pub const MEDIA_PDF_CSP: &str = "default-src 'none'; object-src 'self'; img-src 'self' data:; \
style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

// ---------------------------------------------------------------------------------------------
// Entry points used by the router.
// ---------------------------------------------------------------------------------------------

/// Whether a raw URL path belongs to `/media/` (including `/media` itself).
pub fn is_media(path: &str) -> bool {
    path == "/media" || path.starts_with("/media/")
}

/// `/media/...` from the configured folder. `Access-Control-Allow-Origin: *` when public.
pub async fn media<B>(app: &App, req: &Request<B>) -> Resp {
    let m = &app.config.media;
    let policy = Policy {
        cache_control: if m.public {
            CACHE_PUBLIC
        } else {
            CACHE_PRIVATE
        },
        media: true,
    };
    let mut resp = media_inner(&m.dir, m.listing, policy, req).await;
    // Every answer, errors and listings included: whatever a browser shows from here is sandboxed.
    let csp = if is_pdf(&resp) {
        MEDIA_PDF_CSP
    } else {
        MEDIA_CSP
    };
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if m.public {
        resp.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
    resp
}

async fn media_inner<B>(root: &Path, listing: bool, policy: Policy, req: &Request<B>) -> Resp {
    if let Some(resp) = only_get_head(req.method()) {
        return resp;
    }
    let path = req.uri().path();
    let Some(raw) = path.strip_prefix("/media/") else {
        // `/media` itself: the folder, named without its slash.
        return if listing {
            response::redirect(StatusCode::PERMANENT_REDIRECT, "/media/")
        } else {
            response::not_found()
        };
    };
    let rel = match parse_rel(raw) {
        Ok(rel) => rel,
        Err(refusal) => return refusal.response(),
    };
    let ask = Ask::new(req.method(), req.headers());
    // Resolved on this thread; see "Threads" at the top of the file.
    let outcome = serve_under(root, &rel, &ask, policy, listing);
    match outcome {
        Outcome::Reply(reply, body) => {
            let mut resp = reply.into_response(body);
            if !shown_inline(rel.last()) {
                resp.headers_mut().insert(
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_static("attachment"),
                );
            }
            resp
        }
        Outcome::Refused(refusal) => refusal.response(),
        Outcome::AddSlash => {
            response::redirect(StatusCode::PERMANENT_REDIRECT, &format!("{path}/"))
        }
        Outcome::Listing(entries) => listing_page(path, &entries, policy),
    }
}

/// A site file (`www/`) by its raw URL path relative to the site root, from the `--www` folder if
/// one is set, else from the copy embedded in the binary. HTML gets `no-cache`, hashed names a year.
pub async fn site<B>(app: &App, req: &Request<B>, raw_rel: &str) -> Result<Resp, Refusal> {
    if let Some(resp) = only_get_head(req.method()) {
        return Ok(resp);
    }
    let rel = parse_rel(raw_rel)?;
    if rel.dir || rel.as_str().is_empty() {
        return Err(Refusal::NotFound);
    }
    let name = rel.as_str();
    let ask = Ask::new(req.method(), req.headers());
    if let Some(dir) = app.www.disk_dir() {
        if let Some(resp) = app.www.small_files.serve(dir, &rel, &ask, &app.headers) {
            return Ok(resp);
        }
        let policy = site_policy(name);
        // Resolved on this thread; see "Threads" at the top of the file.
        return match serve_under(dir, &rel, &ask, policy, false) {
            Outcome::Reply(reply, body) => Ok(reply.into_response(body)),
            Outcome::Refused(r) => Err(r),
            Outcome::AddSlash | Outcome::Listing(_) => Err(Refusal::NotFound),
        };
    }
    let file = app.www.embedded(name).ok_or(Refusal::NotFound)?;
    let br = app.www.embedded(&format!("{name}.br"));
    let gz = app.www.embedded(&format!("{name}.gz"));
    let vary = br.is_some() || gz.is_some();
    let (coding, chosen) = match pick_coding(ask.accept_encoding.as_deref(), |c| match c {
        Coding::Br => br.is_some(),
        Coding::Gzip => gz.is_some(),
    }) {
        Some(Coding::Br) => (Some(Coding::Br), br.unwrap_or(file)),
        Some(Coding::Gzip) => (Some(Coding::Gzip), gz.unwrap_or(file)),
        None => (None, file),
    };
    let rep = Rep {
        len: chosen.contents.len() as u64,
        etag: chosen.etag.to_string(),
        modified: None,
        content_type: content_type(name),
        coding,
        vary,
    };
    let plan = decide(&rep, &ask);
    let reply = Reply::new(&rep, plan, ask.head, site_policy(name));
    let body = memory_body(Bytes::from_static(chosen.contents), &reply.pieces);
    Ok(reply.into_response(body))
}

/// A custom page of `[[routes]]`: one file named by the administrator, with the full semantics and
/// `no-cache`. `Err` when the file cannot be opened.
pub async fn route_file<B>(req: &Request<B>, file: &Path) -> io::Result<Resp> {
    if let Some(resp) = only_get_head(req.method()) {
        return Ok(resp);
    }
    let ask = Ask::new(req.method(), req.headers());
    let file = file.to_path_buf();
    let policy = Policy {
        cache_control: CACHE_REVALIDATE,
        media: false,
    };
    let result = blocking(move || {
        let (f, meta) = open_regular(&file)?;
        let name = file.to_string_lossy().into_owned();
        let siblings = |c: Coding| {
            let mut p = file.clone().into_os_string();
            p.push(c.suffix());
            let p = PathBuf::from(p);
            is_regular(&p).then_some(p)
        };
        Ok(serve_open(
            f,
            meta,
            &name,
            siblings,
            open_regular,
            &ask,
            policy,
        ))
    })
    .await;
    result.map(|(reply, body)| reply.into_response(body))
}

fn only_get_head(method: &Method) -> Option<Resp> {
    if *method == Method::GET || *method == Method::HEAD {
        return None;
    }
    let mut r = response::method_not_allowed();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    Some(r)
}

/// Runs file-system work on tokio's blocking pool.
async fn blocking<T>(f: impl FnOnce() -> T + Send + 'static) -> T
where
    T: From<JoinFailed> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| T::from(JoinFailed))
}

/// A blocking task that panicked or was cancelled (only at shutdown).
struct JoinFailed;

impl From<JoinFailed> for Outcome {
    fn from(_: JoinFailed) -> Outcome {
        Outcome::Refused(Refusal::NotFound)
    }
}

impl<T> From<JoinFailed> for io::Result<T> {
    fn from(_: JoinFailed) -> io::Result<T> {
        Err(io::Error::other("file task failed"))
    }
}

// ---------------------------------------------------------------------------------------------
// Paths.
// ---------------------------------------------------------------------------------------------

/// A URL path below a root, checked and decoded: the names to join (kept as one `/`-separated
/// string, so a request for a site file allocates once rather than once per name), and whether it
/// ended in `/`.
#[derive(Debug, PartialEq, Eq)]
pub struct RelPath {
    /// The decoded names joined by `/`, without the trailing one; empty for the root itself.
    path: String,
    pub dir: bool,
}

impl RelPath {
    /// The names from the root down; none for the root itself.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|_| !self.path.is_empty())
    }

    /// The decoded path relative to the root, `a/b.txt`; empty for the root itself.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The last name (the file's own); empty for the root itself.
    pub fn last(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// Decodes a raw (still percent-encoded) URL path relative to a root, refusing anything that could
/// name a place outside it or a hidden file. Decodes exactly once.
pub fn parse_rel(raw: &str) -> Result<RelPath, Refusal> {
    plain_rel(raw).unwrap_or_else(|| parse_rel_general(raw))
}

/// `parse_rel` for the usual path, ASCII without a `%`, in one pass over its bytes (the general
/// rules below took five, and showed in profiles of the site's files). `None`: a path with a `%`
/// or a byte above ASCII, for the general rules. Gives the same answer as they do (a test compares
/// the two over every short path of the characters that matter).
fn plain_rel(raw: &str) -> Option<Result<RelPath, Refusal>> {
    let bytes = raw.as_bytes();
    // Set by a hidden name that comes before any empty, `.` or `..` name: the answer is then
    // `NotFound`, unless a character of the path is refused (`BadRequest`).
    let mut hidden = false;
    let mut bad = bytes.first() == Some(&b'/');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | 0x80.. => return None,
            b'\\' | ..=0x1f | 0x7f => bad = true,
            b'/' => {
                // A name ends here; a `/` at the very end only marks a folder.
                bad |= check_name(&bytes[start..i], &mut hidden);
                start = i + 1;
            }
            _ => {}
        }
    }
    let dir = bytes.is_empty() || bytes.last() == Some(&b'/');
    if !dir {
        bad |= check_name(&bytes[start..], &mut hidden);
    }
    Some(if bad {
        Err(Refusal::BadRequest)
    } else if hidden {
        Err(Refusal::NotFound)
    } else {
        let len = if dir {
            raw.len().saturating_sub(1)
        } else {
            raw.len()
        };
        Ok(RelPath {
            path: raw[..len].to_owned(),
            dir,
        })
    })
}

/// One name of a path: `true` when it is refused outright (empty, `.` or `..`) and no hidden
/// name came before it; a hidden name (starting with a dot) sets `hidden`. So whichever of the two
/// comes first decides, as in the general rules, which stop at the first name they refuse.
fn check_name(name: &[u8], hidden: &mut bool) -> bool {
    match name {
        [] | [b'.'] | [b'.', b'.'] => !*hidden,
        [b'.', ..] => {
            *hidden = true;
            false
        }
        _ => false,
    }
}

fn parse_rel_general(raw: &str) -> Result<RelPath, Refusal> {
    if raw.contains('\\') {
        return Err(Refusal::BadRequest);
    }
    let mut text = if raw.contains('%') {
        // An encoded dot, slash, backslash or NUL is refused before decoding, whatever its case.
        let bytes = raw.as_bytes();
        let refused = bytes.iter().enumerate().any(|(i, b)| {
            *b == b'%'
                && matches!(
                    bytes
                        .get(i + 1..i + 3)
                        .map(|h| [h[0].to_ascii_lowercase(), h[1].to_ascii_lowercase()]),
                    Some([b'2', b'e'] | [b'2', b'f'] | [b'5', b'c'] | [b'0', b'0'])
                )
        });
        if refused {
            return Err(Refusal::BadRequest);
        }
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        String::from_utf8(decoded).map_err(|_| Refusal::BadRequest)?
    } else {
        raw.to_owned()
    };
    if text.chars().any(|c| c.is_control() || c == '\\') || text.starts_with('/') {
        return Err(Refusal::BadRequest);
    }
    if text.is_empty() {
        return Ok(RelPath {
            path: text,
            dir: true,
        });
    }
    let dir = text.ends_with('/');
    if dir {
        text.pop();
    }
    for seg in text.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(Refusal::BadRequest);
        }
        if seg.starts_with('.') {
            return Err(Refusal::NotFound);
        }
    }
    Ok(RelPath { path: text, dir })
}

/// The canonical form of a served folder, remembered per folder: resolving it again would cost a
/// `readlink` per path component on every request. A path that seems to fall outside the
/// remembered form is checked once more against a fresh one, so a folder that is moved or
/// re-pointed is followed (and files are always looked up through the configured path).
fn canonical_root(root: &Path, fresh: bool) -> Option<PathBuf> {
    static ROOTS: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let roots = ROOTS.get_or_init(Default::default);
    if !fresh {
        if let Some(c) = roots.lock().ok()?.get(root) {
            return Some(c.clone());
        }
    }
    let canonical = std::fs::canonicalize(root).ok()?;
    roots
        .lock()
        .ok()?
        .insert(root.to_path_buf(), canonical.clone());
    Some(canonical)
}

/// The canonical form of `path` (a path below the configured `root`), if it exists, lies inside
/// the canonical root and has no hidden component below it.
fn confine(root: &Path, path: &Path) -> Result<PathBuf, Refusal> {
    let canonical = std::fs::canonicalize(path).map_err(|_| Refusal::NotFound)?;
    let mut root_c = canonical_root(root, false).ok_or(Refusal::NotFound)?;
    if !canonical.starts_with(&root_c) {
        root_c = canonical_root(root, true).ok_or(Refusal::NotFound)?;
    }
    let inside = canonical
        .strip_prefix(&root_c)
        .map_err(|_| Refusal::NotFound)?;
    let hidden = inside.components().any(|c| match c {
        Component::Normal(name) => name.to_string_lossy().starts_with('.'),
        _ => true,
    });
    if hidden {
        return Err(Refusal::NotFound);
    }
    Ok(canonical)
}

/// Opens a regular file without blocking on FIFOs or devices, and reads its metadata from the
/// open handle (so what is checked is what is sent).
fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let (file, meta) = open_any(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "not a regular file",
        ));
    }
    Ok((file, meta))
}

/// Opens a file or directory for reading without blocking (FIFOs), with its metadata.
fn open_any(path: &Path) -> io::Result<(File, Metadata)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

enum NoFollow {
    Opened(File),
    /// A symbolic link is on the way (or the kernel cannot tell): resolve and check first.
    Symlink,
    Missing,
}

/// Set when the kernel has no `openat2` (before Linux 5.6) or a sandbox forbids it.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `path` for reading, refusing every symbolic link on the way, in one system call
/// (`openat2` with `RESOLVE_NO_SYMLINKS`).
fn open_no_symlinks(path: &Path) -> NoFollow {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return open_walk(path);
    }
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return NoFollow::Missing;
    };
    // SAFETY: `open_how` is plain data; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: a NUL-terminated path and a live `open_how` of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            cpath.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd >= 0 {
        // SAFETY: the kernel just gave us this descriptor and nothing else owns it.
        return NoFollow::Opened(unsafe { File::from_raw_fd(fd as i32) });
    }
    match io::Error::last_os_error().raw_os_error() {
        Some(libc::ELOOP) => NoFollow::Symlink,
        Some(libc::ENOSYS | libc::EPERM | libc::E2BIG | libc::EINVAL) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            open_walk(path)
        }
        _ => NoFollow::Missing,
    }
}

/// [`open_no_symlinks`] where `openat2` is missing (Linux before 5.6, some sandboxes, valgrind):
/// one `openat` per name, each with `O_NOFOLLOW`, so a link anywhere on the way is refused as it
/// would be there. Before, such a system resolved every path in full and kept no site file in
/// memory.
fn open_walk(path: &Path) -> NoFollow {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::path::Component;
    let start: &[u8] = if path.is_absolute() { b"/" } else { b"." };
    let open = |dir: libc::c_int, name: &[u8], flags: libc::c_int| -> Result<OwnedFd, i32> {
        let name = std::ffi::CString::new(name).map_err(|_| libc::ENOENT)?;
        // SAFETY: a live directory descriptor (or AT_FDCWD) and a NUL-terminated name.
        let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        // SAFETY: the kernel just gave us this descriptor and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let Ok(mut dir) = open(libc::AT_FDCWD, start, libc::O_PATH | libc::O_DIRECTORY) else {
        return NoFollow::Missing;
    };
    let names: Vec<&[u8]> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes()),
            Component::ParentDir => Some(&b".."[..]),
            _ => None,
        })
        .collect();
    for (i, name) in names.iter().enumerate() {
        let last = i + 1 == names.len();
        // Folders on the way need only be searchable (O_PATH); the file is opened to be read.
        let flags = if last {
            libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW
        };
        match open(dir.as_raw_fd(), name, flags) {
            Ok(fd) if last => return NoFollow::Opened(File::from(fd)),
            Ok(fd) => dir = fd,
            Err(libc::ENOENT) => return NoFollow::Missing,
            // A link gives ELOOP as the file, and ENOTDIR as a folder on the way (O_PATH opens
            // the link itself, which is no folder): ask what it is.
            Err(_) => {
                return if is_link_at(dir.as_raw_fd(), name) {
                    NoFollow::Symlink
                } else {
                    NoFollow::Missing
                };
            }
        }
    }
    NoFollow::Missing
}

/// Whether `name` in the folder `dir` is a symbolic link (not followed).
fn is_link_at(dir: libc::c_int, name: &[u8]) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else {
        return false;
    };
    // SAFETY: `stat` is plain data, filled in by the kernel on success.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live directory descriptor, a NUL-terminated name and a live `stat`.
    let r = unsafe { libc::fstatat(dir, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    r == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFLNK
}

/// Opens a canonical path (no symlinks in it by construction); a symlink swapped in after the
/// check is refused.
fn open_resolved(path: &Path) -> Option<File> {
    match open_no_symlinks(path) {
        NoFollow::Opened(f) => Some(f),
        _ => None,
    }
}

enum Outcome {
    Reply(Reply, Body),
    Refused(Refusal),
    /// A directory named without its trailing slash (listing on).
    AddSlash,
    /// A directory listing: (name, is_dir), sorted.
    Listing(Vec<(String, bool)>),
}

/// Resolves and serves `rel` below `root` (blocking).
fn serve_under(root: &Path, rel: &RelPath, ask: &Ask, policy: Policy, listing: bool) -> Outcome {
    let mut joined = root.to_path_buf();
    for seg in rel.segments() {
        joined.push(seg);
    }
    // Fast path: no symbolic link anywhere on the path, so the validated names alone keep it
    // inside the root. Otherwise resolve it, check where it leads, and open exactly that.
    let (file, target, direct) = match open_no_symlinks(&joined) {
        NoFollow::Opened(file) => (file, joined.clone(), true),
        NoFollow::Missing => return Outcome::Refused(Refusal::NotFound),
        NoFollow::Symlink => {
            let target = match confine(root, &joined) {
                Ok(t) => t,
                Err(r) => return Outcome::Refused(r),
            };
            match open_resolved(&target) {
                Some(file) => (file, target, false),
                None => return Outcome::Refused(Refusal::NotFound),
            }
        }
    };
    // Look at the open handle: what is checked is what is sent.
    let Ok(meta) = file.metadata() else {
        return Outcome::Refused(Refusal::NotFound);
    };
    if meta.is_dir() {
        if !listing {
            return Outcome::Refused(Refusal::NotFound);
        }
        if !rel.dir {
            return Outcome::AddSlash;
        }
        return Outcome::Listing(list_dir(root, &target));
    }
    if rel.dir || !meta.is_file() {
        // `file.txt/` names a folder that does not exist; FIFOs and devices are never served.
        return Outcome::Refused(Refusal::NotFound);
    }
    let name = rel.last().to_owned();
    let siblings = |c: Coding| {
        let mut p = joined.clone().into_os_string();
        p.push(c.suffix());
        let p = PathBuf::from(p);
        // One stat for the common case of no sibling; the full check only for a symlink.
        let lmeta = std::fs::symlink_metadata(&p).ok()?;
        if direct && lmeta.is_file() {
            return Some(p);
        }
        if !is_regular(&p) {
            return None;
        }
        confine(root, &p).ok()
    };
    let open_sibling = |p: &Path| {
        let file = match open_no_symlinks(p) {
            NoFollow::Opened(f) => f,
            _ => open_resolved(p).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?,
        };
        let meta = file.metadata()?;
        if meta.is_file() {
            Ok((file, meta))
        } else {
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    };
    let (reply, body) = serve_open(file, meta, &name, siblings, open_sibling, ask, policy);
    Outcome::Reply(reply, body)
}

fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Serves an open file, or its precompressed sibling when the client takes it (blocking).
/// `sibling` names the `.br`/`.gz` file next to it when that exists and may be served.
fn serve_open(
    file: File,
    meta: Metadata,
    name: &str,
    sibling: impl Fn(Coding) -> Option<PathBuf>,
    open: impl Fn(&Path) -> io::Result<(File, Metadata)>,
    ask: &Ask,
    policy: Policy,
) -> (Reply, Body) {
    let br = sibling(Coding::Br);
    let gz = sibling(Coding::Gzip);
    let (has_br, has_gz) = (br.is_some(), gz.is_some());
    let mut chosen = (file, meta, None);
    if has_br || has_gz {
        let pick = pick_coding(ask.accept_encoding.as_deref(), |c| match c {
            Coding::Br => has_br,
            Coding::Gzip => has_gz,
        });
        let path = match pick {
            Some(Coding::Br) => br,
            Some(Coding::Gzip) => gz,
            None => None,
        };
        if let Some(Ok((f, m))) = path.map(|p| open(&p)) {
            chosen = (f, m, pick);
        }
    }
    let (file, meta, coding) = chosen;
    let rep = Rep {
        len: meta.len(),
        etag: disk_etag(&meta, coding),
        modified: meta.modified().ok().and_then(whole_seconds),
        content_type: if policy.media {
            media_content_type(name)
        } else {
            content_type(name)
        },
        coding,
        vary: has_br || has_gz,
    };
    let plan = decide(&rep, ask);
    let reply = Reply::new(&rep, plan, ask.head, policy);
    let body = disk_body(file, &reply.pieces);
    (reply, body)
}

/// Entries of a directory that may be shown: not hidden, not leading out of the root.
fn list_dir(root: &Path, dir: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten().take(MAX_LISTING) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(target) = confine(root, &entry.path()) else {
            continue;
        };
        match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => out.push((name, true)),
            Ok(m) if m.is_file() => out.push((name, false)),
            _ => {}
        }
    }
    out.sort();
    out
}

fn listing_page(url_path: &str, entries: &[(String, bool)], policy: Policy) -> Resp {
    let title = html_escape(&percent_encoding::percent_decode_str(url_path).decode_utf8_lossy());
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if url_path != "/media/" {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in entries {
        let href = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let slash = if *is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{href}{slash}\">{}{slash}</a></li>\n",
            html_escape(name)
        ));
    }
    html.push_str("</ul></body></html>\n");
    let mut r = response::with_body(StatusCode::OK, "text/html; charset=utf-8", html);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(policy.cache_control),
    );
    r
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Small site files kept in memory.
// ---------------------------------------------------------------------------------------------

/// Site files up to this size may be kept in memory.
const CACHED_FILE_MAX: u64 = 64 * 1024;
/// At most this many files and bytes are kept (a site is a few dozen files).
const CACHED_FILES_MAX: usize = 512;
const CACHED_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// The small files of a `--www` folder, kept in memory between requests. Whether anything changed
/// on disk is told by an inotify instance ([`DiskWatch`]): on the HTTPS threads by their reactor's
/// record of its readiness ([`DiskWatch::pending_here`]; a `poll` per request before, 3 % of the
/// server's CPU for a 1 KiB page), which replaced a `stat` of the file and of its folder (two path
/// walks, about 15 %); those had replaced the `open`, `fstat`, two sibling `stat`s, `pread` and
/// `close` of a fresh read.
///
/// An answer from memory is exactly what a fresh read would give, and any change on disk is seen
/// by the very next request: the kernel queues the event before the call that made the change
/// returns, and a request that finds an event pending drops everything kept before it answers.
/// Watched before a file is read: the file itself (writes through any hard link), every folder
/// from the site root down to it (names replaced, `.br`/`.gz` siblings appearing), and the name
/// of each folder above the root in its parent (the root swapped, or a link on the way). Only
/// files reached without symbolic links (`openat2` with `RESOLVE_NO_SYMLINKS`, or one `openat`
/// with `O_NOFOLLOW` per name where `openat2` is missing) are kept. Where
/// inotify is not available, or cannot see every change (a network or user-space file system,
/// see `disk_watch::sees_every_change`), nothing is kept and every request reads the disk.
pub struct SmallFiles {
    /// `None`: no inotify here, so nothing is kept.
    watch: Option<DiskWatch>,
    kept: std::sync::RwLock<Kept>,
    /// `generation + 1` of the generation in which the root's ancestors were last watched (0:
    /// never). After any change they are watched again, by path: a folder swapped in above the
    /// root is a new inode whose names no watch covers yet.
    ancestors_watched: AtomicU64,
}

#[derive(Default)]
struct Kept {
    /// Moves on every change seen, so an entry read before a change is never stored after it.
    generation: u64,
    /// By the path relative to the root (`vendor/marked.min.js`). foldhash (already built for
    /// governor) instead of SipHash: hashing the name cost about 170 instructions of a GET. Only
    /// files that exist are stored, so the client cannot fill the map with colliding names.
    files: HashMap<String, Arc<Cached>, foldhash::fast::RandomState>,
}

struct Cached {
    /// `None`: the file was looked at and is not kept (too large, or has a sibling); it is looked
    /// at again after the next change.
    content: Option<Kept200>,
}

/// A kept file: what the validators and ranges need, its bytes, and the headers of the plain
/// `200` (most requests), built once: the per-request formatting of the `ETag`, the date and the
/// content type showed in profiles.
struct Kept200 {
    rep: Rep,
    bytes: Bytes,
    whole: HeaderMap,
    /// The file's caching policy (from its name), for the answers other than the plain `200`.
    policy: Policy,
}

impl SmallFiles {
    /// For the `--www` folder `dir` (the embedded files need none of this).
    pub fn new(dir: Option<&Path>) -> SmallFiles {
        let watched = dir.filter(|d| {
            let local = crate::disk_watch::sees_every_change(d);
            if !local {
                tracing::info!(
                    dir = %d.display(),
                    "site files are read from disk on every request: this is a network or user-space file system, where inotify does not see every change"
                );
            }
            local
        });
        let watch = match watched.map(|_| DiskWatch::new()).transpose() {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("site files are read from disk on every request: inotify is not available ({e})");
                None
            }
        };
        SmallFiles {
            watch,
            kept: Default::default(),
            ancestors_watched: AtomicU64::new(0),
        }
    }

    /// The answer for `rel` below `root` from memory, filling the entry when the file may be
    /// kept (its plain `200` headers then carry `security`'s headers already). `None`: serve it
    /// from disk as usual.
    fn serve(
        &self,
        root: &Path,
        rel: &RelPath,
        ask: &Ask,
        security: &crate::security::SecurityHeaders,
    ) -> Option<Resp> {
        let name = rel.as_str();
        let watch = self.watch.as_ref()?;
        if watch.pending_here() {
            self.forget_if_changed(watch);
        }
        let (generation, known) = {
            let kept = self.kept.read().ok()?;
            (kept.generation, kept.files.get(name).cloned())
        };
        let entry = match known {
            Some(entry) => entry,
            None => {
                if self.ancestors_watched.load(Ordering::Acquire) != generation + 1 {
                    watch_ancestors(watch, root)?;
                    self.ancestors_watched
                        .store(generation + 1, Ordering::Release);
                }
                let mut cached = fill(watch, root, rel, site_policy(name))?;
                if let Some(kept) = cached.content.as_mut() {
                    security.apply(&mut kept.whole);
                }
                let entry = Arc::new(cached);
                self.keep(watch, generation, name, entry.clone());
                entry
            }
        };
        let kept = entry.content.as_ref()?;
        let plan = decide(&kept.rep, ask);
        if plan == Plan::Whole {
            if ask.head {
                let mut resp = Response::new(response::empty());
                *resp.headers_mut() = kept.whole.clone();
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(kept.rep.len));
                return Some(resp);
            }
            let mut resp = Response::new(response::full(kept.bytes.clone()));
            *resp.headers_mut() = kept.whole.clone();
            return Some(resp);
        }
        let reply = Reply::new(&kept.rep, plan, ask.head, kept.policy);
        let body = memory_body(kept.bytes.clone(), &reply.pieces);
        Some(reply.into_response(body))
    }

    /// Drops every kept file (SIGHUP), so the next request of each reads it from disk again:
    /// for a change the watch could not see (a file system that does not report every change).
    pub fn forget_all(&self) -> usize {
        let Ok(mut kept) = self.kept.write() else {
            return 0;
        };
        let dropped = kept.files.len();
        kept.generation += 1;
        kept.files.clear();
        dropped
    }

    /// Reads the queued events under the write lock, so no request answers from memory between
    /// the events being read and the memory being dropped.
    fn forget_if_changed(&self, watch: &DiskWatch) {
        let Ok(mut kept) = self.kept.write() else {
            return;
        };
        if watch.drain() {
            kept.generation += 1;
            kept.files.clear();
        }
    }

    fn keep(&self, watch: &DiskWatch, generation: u64, name: &str, entry: Arc<Cached>) {
        let Ok(mut kept) = self.kept.write() else {
            return;
        };
        if watch.pending() && watch.drain() {
            kept.generation += 1;
            kept.files.clear();
        }
        // Something changed since this entry was read: it may be stale, so it is not stored.
        if kept.generation != generation {
            return;
        }
        let bytes: u64 = kept
            .files
            .values()
            .filter_map(|c| c.content.as_ref())
            .map(|k| k.rep.len)
            .sum();
        let adding = entry.content.as_ref().map_or(0, |k| k.rep.len);
        if kept.files.len() >= CACHED_FILES_MAX || bytes + adding > CACHED_BYTES_MAX {
            // Full: start again rather than track ages (a site has far fewer files than this).
            kept.files.clear();
        }
        kept.files.insert(name.to_string(), entry);
    }
}

/// Watches the name of each folder above `root` in its parent (the root or a folder above it
/// renamed, replaced or swapped for a link). `None` when a watch cannot be added.
fn watch_ancestors(watch: &DiskWatch, root: &Path) -> Option<()> {
    let root = std::path::absolute(root).ok()?;
    let mut above = root.as_path();
    while let (Some(parent), Some(own)) = (above.parent(), above.file_name()) {
        watch.watch_name(parent, own).ok()?;
        above = parent;
    }
    Some(())
}

/// Watches what a kept file depends on, then reads it. `None`: not kept and not remembered
/// (missing, not a plain file reached without links, or a watch could not be added).
fn fill(watch: &DiskWatch, root: &Path, rel: &RelPath, policy: Policy) -> Option<Cached> {
    let mut path = std::path::absolute(root).ok()?;
    watch.watch(&path).ok()?;
    if rel.as_str().is_empty() {
        return None;
    }
    // Each folder on the way, then the file itself.
    for seg in rel.segments() {
        path.push(seg);
        watch.watch(&path).ok()?;
    }
    read_small(&path, rel.as_str(), policy)
}

/// Reads a file for [`SmallFiles`], or says why it is not kept. `None`: not even a negative entry
/// (missing, or not a plain file reached without links).
fn read_small(path: &Path, name: &str, policy: Policy) -> Option<Cached> {
    let NoFollow::Opened(file) = open_no_symlinks(path) else {
        return None;
    };
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let has_sibling = [Coding::Br, Coding::Gzip].iter().any(|c| {
        let mut p = path.as_os_str().to_owned();
        p.push(c.suffix());
        // Anything with that name (even a link or a folder) sends the request to the full path.
        std::fs::symlink_metadata(PathBuf::from(p)).is_ok()
    });
    if has_sibling || meta.len() > CACHED_FILE_MAX {
        return Some(Cached { content: None });
    }
    let mut content = vec![0; meta.len() as usize];
    file.read_exact_at(&mut content, 0).ok()?;
    let rep = Rep {
        len: meta.len(),
        etag: disk_etag(&meta, None),
        modified: meta.modified().ok().and_then(whole_seconds),
        content_type: content_type(name),
        coding: None,
        vary: false,
    };
    let mut whole = Reply::new(&rep, Plan::Whole, false, policy)
        .into_response(response::empty())
        .into_parts()
        .0
        .headers;
    // Each answer copies this map (and drops the copy), so it holds as few shared values as it
    // can. hyper writes the length of a body it holds in full itself (HTTP/1.1 straight into the
    // head, HTTP/2 into the map it sends); the answer to HEAD, with no body, gets it back in
    // `serve`. The content type is one of a fixed set, kept as static text.
    whole.remove(header::CONTENT_LENGTH);
    if let Some(kind) = whole.get(header::CONTENT_TYPE).and_then(static_text) {
        whole.insert(header::CONTENT_TYPE, kind);
    }
    Some(Cached {
        content: Some(Kept200 {
            rep,
            bytes: Bytes::from(content),
            whole,
            policy,
        }),
    })
}

// ---------------------------------------------------------------------------------------------
// Representations and the decision what to send.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Br,
    Gzip,
}

impl Coding {
    fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
    fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// What is known about the bytes that would be sent.
struct Rep {
    len: u64,
    /// Opaque tag, without quotes.
    etag: String,
    /// Whole seconds (HTTP dates have no finer resolution).
    modified: Option<SystemTime>,
    content_type: String,
    coding: Option<Coding>,
    /// Precompressed siblings exist, so the answer depends on `Accept-Encoding`.
    vary: bool,
}

/// The request headers that matter, copied so the decision can run on a blocking thread.
#[derive(Debug, Default, Clone)]
pub struct Ask {
    head: bool,
    accept_encoding: Option<String>,
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    if_unmodified_since: Option<String>,
    range: Option<String>,
    if_range: Option<String>,
}

/// The request fields an [`Ask`] copies, in the order of its members.
const ASKED: [HeaderName; 7] = [
    header::ACCEPT_ENCODING,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

impl Ask {
    /// One pass over the request's fields, not a lookup for each field asked about: most requests
    /// carry none of them, and each lookup hashed its name.
    pub fn new(method: &Method, headers: &HeaderMap) -> Ask {
        let mut found: [Option<String>; 7] = Default::default();
        let mut unreadable = [false; 7];
        for (name, value) in headers {
            let Some(i) = ASKED.iter().position(|a| a == name) else {
                continue;
            };
            // Repeated fields are joined as a list; a date sent twice then fails to parse and is
            // ignored, as RFC 9110 asks. A field with a value that is not text counts as absent.
            match (value.to_str(), &mut found[i]) {
                (Err(_), _) => unreadable[i] = true,
                (Ok(v), Some(list)) => {
                    list.push_str(", ");
                    list.push_str(v);
                }
                (Ok(v), slot @ None) => *slot = Some(v.to_owned()),
            }
        }
        for (slot, bad) in found.iter_mut().zip(unreadable) {
            if bad {
                *slot = None;
            }
        }
        let [accept_encoding, if_match, if_none_match, if_modified_since, if_unmodified_since, range, if_range] =
            found;
        Ask {
            head: *method == Method::HEAD,
            accept_encoding,
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
            range,
            if_range,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Plan {
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
    Whole,
    /// Inclusive byte ranges, in the order asked; one → a plain `206`, several → multipart.
    Ranges(Vec<(u64, u64)>),
}

/// RFC 9110 §13.2.2: preconditions first, then the range.
fn decide(rep: &Rep, ask: &Ask) -> Plan {
    if let Some(list) = &ask.if_match {
        if !etag_list_matches(list, &rep.etag, true) {
            return Plan::PreconditionFailed;
        }
    } else if let (Some(date), Some(modified)) = (&ask.if_unmodified_since, rep.modified) {
        if httpdate::parse_http_date(date).is_ok_and(|d| modified > d) {
            return Plan::PreconditionFailed;
        }
    }
    if let Some(list) = &ask.if_none_match {
        if etag_list_matches(list, &rep.etag, false) {
            return Plan::NotModified;
        }
    } else if let (Some(date), Some(modified)) = (&ask.if_modified_since, rep.modified) {
        if httpdate::parse_http_date(date).is_ok_and(|d| modified <= d) {
            return Plan::NotModified;
        }
    }
    // Range requests are defined for GET only.
    let Some(range) = ask.range.as_deref().filter(|_| !ask.head) else {
        return Plan::Whole;
    };
    if let Some(cond) = &ask.if_range {
        if !if_range_holds(cond, rep) {
            return Plan::Whole;
        }
    }
    match parse_ranges(range, rep.len) {
        Ranges::Ignore => Plan::Whole,
        Ranges::Unsatisfiable => Plan::Unsatisfiable,
        Ranges::Satisfiable(ranges) => {
            if ranges.len() > 1 && (ranges.len() > MAX_RANGES || overlapping(&ranges)) {
                // RFC 9110 §14.2 allows ignoring many or overlapping ranges; the whole file
                // costs less than many copies of the same bytes.
                Plan::Whole
            } else {
                Plan::Ranges(ranges)
            }
        }
    }
}

fn overlapping(ranges: &[(u64, u64)]) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).any(|w| w[1].0 <= w[0].1)
}

/// Entity tags in a list header (`"a", W/"b"`): (weak, opaque tag). Stops at the first malformed
/// element.
fn parse_etags(list: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let weak = match rest.strip_prefix("W/") {
            Some(r) => {
                rest = r;
                true
            }
            None => false,
        };
        let Some(r) = rest.strip_prefix('"') else {
            break;
        };
        let Some(end) = r.find('"') else {
            break;
        };
        out.push((weak, &r[..end]));
        rest = &r[end + 1..];
    }
    out
}

/// `If-Match` uses the strong comparison, `If-None-Match` the weak one (RFC 9110 §8.8.3.2).
fn etag_list_matches(list: &str, current: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    parse_etags(list)
        .into_iter()
        .any(|(weak, tag)| !(strong && weak) && tag == current)
}

/// `If-Range`: an entity tag (strong comparison) or the exact `Last-Modified` date.
fn if_range_holds(cond: &str, rep: &Rep) -> bool {
    let cond = cond.trim();
    if cond.starts_with('"') {
        return parse_etags(cond) == [(false, rep.etag.as_str())];
    }
    if cond.starts_with("W/") {
        return false;
    }
    match (httpdate::parse_http_date(cond), rep.modified) {
        (Ok(date), Some(modified)) => date == modified,
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ranges {
    /// Not a byte range set we understand: send the whole file.
    Ignore,
    Unsatisfiable,
    Satisfiable(Vec<(u64, u64)>),
}

/// Parses `bytes=0-99, 200-, -50` against a length (RFC 9110 §14.1.2).
fn parse_ranges(value: &str, len: u64) -> Ranges {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return Ranges::Ignore;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranges::Ignore;
    }
    let number = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // All digits but too large: as far beyond the end as can be.
        Some(s.parse().unwrap_or(u64::MAX))
    };
    let mut out = Vec::new();
    let mut any = false;
    for spec in set.split(',') {
        let spec = spec.trim();
        if spec.is_empty() {
            continue;
        }
        any = true;
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Ignore;
        };
        let (first, last) = (first.trim(), last.trim());
        if first.is_empty() {
            let Some(suffix) = number(last) else {
                return Ranges::Ignore;
            };
            if suffix > 0 && len > 0 {
                out.push((len.saturating_sub(suffix), len - 1));
            }
            continue;
        }
        let Some(first) = number(first) else {
            return Ranges::Ignore;
        };
        let last = if last.is_empty() {
            None
        } else {
            match number(last) {
                Some(l) if l >= first => Some(l),
                _ => return Ranges::Ignore,
            }
        };
        if first < len {
            out.push((first, last.map_or(len - 1, |l| l.min(len - 1))));
        }
    }
    if !any {
        Ranges::Ignore
    } else if out.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Satisfiable(out)
    }
}

/// The precompressed coding to send, if any: the highest `q` among the available ones, `br`
/// before `gzip` on a tie, never one with `q=0`, and not one the client likes less than
/// `identity` when it says so.
fn pick_coding(accept: Option<&str>, available: impl Fn(Coding) -> bool) -> Option<Coding> {
    let accept = accept?;
    let (mut br, mut gzip, mut identity, mut star) = (None, None, None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
        }
        match name.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "identity" => identity = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let floor = identity.or(star).unwrap_or(0.0);
    let mut best: Option<(Coding, f32)> = None;
    for (coding, q) in [(Coding::Br, br.or(star)), (Coding::Gzip, gzip.or(star))] {
        let Some(q) = q else { continue };
        if q <= 0.0 || q < floor || !available(coding) {
            continue;
        }
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// `Content-Type` from the extension; text gets `charset=utf-8`.
pub fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// The `Content-Type` of a `/media/` file. JavaScript and CSS go out as plain text: with
/// `nosniff` a browser then refuses them as a script, module, worker or stylesheet, so a file
/// written into the media folder never runs in a page of this site even though the site's
/// `script-src 'self'` names the whole origin (a CSP source cannot name paths by origin alone,
/// and the site's host names are not known in advance).
pub fn media_content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    if is_script_or_style(mime.essence_str()) {
        "text/plain; charset=utf-8".to_string()
    } else {
        content_type(name)
    }
}

fn is_script_or_style(essence: &str) -> bool {
    essence == "text/css"
        || ["javascript", "ecmascript", "jscript", "livescript"]
            .iter()
            .any(|k| essence.contains(k))
}

/// Whether a `/media/` file is shown in the browser or saved (`Content-Disposition: attachment`):
/// only types a browser displays without running anything of the file's in the page (raster
/// images, audio, video, PDF, plain text, JSON). HTML, XHTML, SVG, XML, JavaScript and anything
/// unknown are saved. `<img>`, `<video>` and `<audio>` ignore the header, so the viewer still
/// shows an SVG.
fn shown_inline(name: &str) -> bool {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    match mime.type_().as_str() {
        "image" => !essence.contains("svg") && !essence.ends_with("+xml"),
        "audio" | "video" => !essence.ends_with("+xml"),
        _ => matches!(
            essence,
            "application/pdf" | "text/plain" | "application/json"
        ),
    }
}

fn is_pdf(resp: &Resp) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/pdf"))
}

/// The same text as a static value, for values drawn from a fixed set (content types, from
/// `mime_guess`'s table): each distinct text is kept once for the life of the process, so copying
/// the value touches no reference count. `None` for a value that is not plain text.
fn static_text(value: &HeaderValue) -> Option<HeaderValue> {
    static TEXTS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let text = value.to_str().ok()?;
    let mut texts = TEXTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let kept: &'static str = match texts.get(text) {
        Some(kept) => kept,
        None => {
            let kept: &'static str = Box::leak(text.to_owned().into_boxed_str());
            texts.insert(kept);
            kept
        }
    };
    // Valid: `to_str` accepted it, and it allows less than a header value may hold.
    Some(HeaderValue::from_static(kept))
}

/// The policy of a site file, by its name (see [`site_cache_control`]). A kept file remembers its
/// own, so a request answered from memory does not look at the name again.
fn site_policy(name: &str) -> Policy {
    Policy {
        cache_control: site_cache_control(name),
        media: false,
    }
}

/// Hashed asset names (a hex run of 8+ characters with a digit, like `app.3f2a9c1b.js`) never
/// change content, so they may be cached for a year; everything else revalidates.
pub fn site_cache_control(name: &str) -> &'static str {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    let hashed = stem.split(['.', '-', '_']).any(|part| {
        part.len() >= 8
            && part.bytes().all(|b| b.is_ascii_hexdigit())
            && part.bytes().any(|b| b.is_ascii_digit())
    });
    if hashed && !file.ends_with(".html") {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

/// A strong tag from what changes when the file does: inode, length, modification time in
/// nanoseconds, and the coding of the sibling.
fn disk_etag(meta: &Metadata, coding: Option<Coding>) -> String {
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let suffix = coding.map_or(String::new(), |c| format!("-{}", c.token()));
    format!("{:x}-{:x}-{:x}{suffix}", meta.ino(), meta.len(), nanos)
}

fn whole_seconds(t: SystemTime) -> Option<SystemTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

// ---------------------------------------------------------------------------------------------
// The answer.
// ---------------------------------------------------------------------------------------------

/// A piece of a body: literal bytes (multipart headers) or a range of the file `[start, end)`.
#[derive(Debug, Clone)]
enum Piece {
    Lit(Bytes),
    Range(u64, u64),
}

/// Status, headers and the pieces of the body, before the bytes are fetched.
struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_length: Option<u64>,
    pieces: Vec<Piece>,
    json: Option<serde_json::Value>,
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Reply {
    fn new(rep: &Rep, plan: Plan, head: bool, policy: Policy) -> Reply {
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

    fn into_response(self, body: Body) -> Resp {
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

fn memory_body(content: Bytes, pieces: &[Piece]) -> Body {
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
fn disk_body(file: File, pieces: &[Piece]) -> Body {
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
                    let start = all.len();
                    all.resize(start + (b - a) as usize, 0);
                    if let Err(e) = file.read_exact_at(&mut all[start..], *a) {
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

/// A body that fails at once, so the connection is cut instead of sending a short file.
fn error_body(e: io::Error) -> Body {
    tracing::warn!("a file being sent could not be read: {e}");
    let failed = futures_util::stream::once(async move { Err::<Frame<Bytes>, BoxError>(e.into()) });
    StreamBody::new(failed).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_per_rfc_9110() {
        use Ranges::*;
        assert_eq!(parse_ranges("bytes=0-9", 100), Satisfiable(vec![(0, 9)]));
        assert_eq!(parse_ranges("bytes=90-", 100), Satisfiable(vec![(90, 99)]));
        assert_eq!(parse_ranges("bytes=-10", 100), Satisfiable(vec![(90, 99)]));
        assert_eq!(parse_ranges("bytes=-500", 100), Satisfiable(vec![(0, 99)]));
        assert_eq!(
            parse_ranges("bytes=50-500", 100),
            Satisfiable(vec![(50, 99)])
        );
        assert_eq!(
            parse_ranges("BYTES = 0-0 , 2-3,", 100),
            Satisfiable(vec![(0, 0), (2, 3)])
        );
        assert_eq!(parse_ranges("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_ranges("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(
            parse_ranges("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
        assert_eq!(
            parse_ranges("bytes=200-300,0-1", 100),
            Satisfiable(vec![(0, 1)])
        );
        assert_eq!(parse_ranges("bytes=5-1", 100), Ignore);
        assert_eq!(parse_ranges("bytes=a-b", 100), Ignore);
        assert_eq!(parse_ranges("items=0-1", 100), Ignore);
        assert_eq!(parse_ranges("bytes=", 100), Ignore);
        assert_eq!(parse_ranges("bytes=1", 100), Ignore);
        assert_eq!(parse_ranges("bytes=-1-2", 100), Ignore);
    }

    #[test]
    fn etag_lists_compare_weakly_or_strongly() {
        assert!(etag_list_matches("\"a\"", "a", true));
        assert!(etag_list_matches("W/\"a\"", "a", false));
        assert!(!etag_list_matches("W/\"a\"", "a", true));
        assert!(etag_list_matches("\"x\", W/\"a\"", "a", false));
        assert!(etag_list_matches("\"x,y\",\"a\"", "a", false));
        assert!(etag_list_matches(" * ", "a", true));
        assert!(!etag_list_matches("\"b\"", "a", false));
        assert!(!etag_list_matches("a", "a", false));
        assert!(!etag_list_matches("\"a", "a", false));
    }

    #[test]
    fn accept_encoding_picks_highest_q_and_respects_zero() {
        let all = |_: Coding| true;
        assert_eq!(
            pick_coding(Some("gzip, deflate, br"), all),
            Some(Coding::Br)
        );
        assert_eq!(pick_coding(Some("br;q=0.5, gzip"), all), Some(Coding::Gzip));
        assert_eq!(pick_coding(Some("br;q=0, gzip;q=0"), all), None);
        assert_eq!(pick_coding(Some("*"), all), Some(Coding::Br));
        assert_eq!(pick_coding(Some("*;q=0"), all), None);
        assert_eq!(pick_coding(Some("*, br;q=0"), all), Some(Coding::Gzip));
        assert_eq!(pick_coding(Some("identity"), all), None);
        assert_eq!(pick_coding(Some("gzip;q=0.4, identity;q=0.5"), all), None);
        assert_eq!(pick_coding(Some("GZIP"), all), Some(Coding::Gzip));
        assert_eq!(pick_coding(Some("br"), |c| c == Coding::Gzip), None);
        assert_eq!(pick_coding(None, all), None);
    }

    #[test]
    fn ask_copies_the_fields_that_matter_joining_repeats_and_dropping_unreadable_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example"));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"b\""));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        h.append(header::IF_MATCH, HeaderValue::from_static("\"a\""));
        h.append(header::IF_MATCH, HeaderValue::from_bytes(b"\xff").unwrap());
        let ask = Ask::new(&Method::HEAD, &h);
        assert!(ask.head);
        assert_eq!(ask.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(ask.if_none_match.as_deref(), Some("\"a\", \"b\""));
        assert_eq!(ask.accept_encoding.as_deref(), Some("br"));
        assert_eq!(ask.if_match, None);
        assert_eq!(ask.if_range, None);
        assert_eq!(ask.if_modified_since, None);
        assert_eq!(ask.if_unmodified_since, None);
        let plain = Ask::new(&Method::GET, &HeaderMap::new());
        assert!(!plain.head && plain.accept_encoding.is_none() && plain.range.is_none());
    }

    #[test]
    fn the_walk_without_openat2_refuses_links_as_openat2_does() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("a")).unwrap();
        std::fs::write(root.join("a/b.txt"), b"bee").unwrap();
        std::os::unix::fs::symlink(root.join("a/b.txt"), root.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("ldir")).unwrap();
        let kind = |n: NoFollow| match n {
            NoFollow::Opened(mut f) => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut f, &mut text).unwrap();
                text
            }
            NoFollow::Symlink => "link".into(),
            NoFollow::Missing => "missing".into(),
        };
        for (rel, expected) in [
            ("a/b.txt", "bee"),
            ("a/../a/b.txt", "bee"),
            ("link.txt", "link"),
            ("ldir/b.txt", "link"),
            ("a/missing.txt", "missing"),
            ("nothing/b.txt", "missing"),
            ("a/b.txt/c", "missing"),
        ] {
            let path = root.join(rel);
            assert_eq!(kind(open_walk(&path)), expected, "{rel}");
            if !NO_OPENAT2.load(Ordering::Relaxed) {
                assert_eq!(kind(open_no_symlinks(&path)), expected, "{rel} (openat2)");
            }
        }
    }

    #[test]
    fn rel_paths_refuse_everything_that_could_leave_the_root() {
        use Refusal::*;
        let ok = |s: &str| parse_rel(s).map(|r| r.segments().collect::<Vec<_>>().join("|"));
        assert_eq!(ok("a/b%20c.mp4"), Ok("a|b c.mp4".into()));
        assert!(parse_rel("").unwrap().dir);
        assert!(parse_rel("sub/").unwrap().dir);
        // Without a `%` the path is taken as it is; with one it is decoded once.
        assert_eq!(ok("a/b/c.txt"), Ok("a|b|c.txt".into()));
        assert_eq!(ok("%41b/c%25"), Ok("Ab|c%".into()));
        assert_eq!(ok("100%"), Ok("100%".into()));
        let root = parse_rel("").unwrap();
        assert_eq!((root.segments().count(), root.last()), (0, ""));
        let sub = parse_rel("a/b%20c/").unwrap();
        assert_eq!((sub.as_str(), sub.last(), sub.dir), ("a/b c", "b c", true));
        let file = parse_rel("a/b.txt").unwrap();
        assert_eq!(
            (file.as_str(), file.last(), file.dir),
            ("a/b.txt", "b.txt", false)
        );
        for bad in [
            "..",
            "a/../b",
            "%2e%2e/x",
            "%2E./x",
            "a%2fb",
            "a%2Fb",
            "a%5cb",
            "a\\b",
            "a%00b",
            "/etc/passwd",
            "%2fetc",
            "a//b",
            "./a",
            "a/./b",
            "%ff",
            "a%0ab",
            "a%5Cb",
            "%2E%2E/x",
            "x\u{1}y",
            "a/\u{7f}",
        ] {
            assert_eq!(parse_rel(bad), Err(BadRequest), "{bad}");
        }
        assert_eq!(parse_rel(".env"), Err(NotFound));
        assert_eq!(parse_rel("a/.git/config"), Err(NotFound));
    }

    #[test]
    fn the_one_pass_rel_path_answers_as_the_general_rules_do() {
        let answer = |r: Result<RelPath, Refusal>| r.map(|p| (p.path, p.dir));
        // Every path of up to six of these characters: names, dots, slashes, a backslash and
        // control characters, in every order.
        let chars = ['a', '.', '/', '\\', '\u{1}', '\u{7f}'];
        let mut paths = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..6 {
            last = last
                .iter()
                .flat_map(|p| chars.iter().map(move |c| format!("{p}{c}")))
                .collect();
            paths.extend(last.iter().cloned());
        }
        let mut compared = 0;
        for p in &paths {
            let fast = plain_rel(p).map(answer);
            assert_eq!(fast, Some(answer(parse_rel_general(p))), "{p:?}");
            compared += 1;
        }
        assert_eq!(compared, 55_987);
        // The paths it leaves to the general rules.
        assert!(plain_rel("a%20b").is_none());
        assert!(plain_rel("caf\u{e9}").is_none());
    }

    #[test]
    fn hashed_names_are_immutable_and_html_revalidates() {
        assert_eq!(site_cache_control("app.3f2a9c1b.js"), CACHE_IMMUTABLE);
        assert_eq!(site_cache_control("vendor/x-0123abcd.css"), CACHE_IMMUTABLE);
        assert_eq!(site_cache_control("app.js"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("deadbeefcafe.js"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("index.html"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("page.3f2a9c1b.html"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("highlight.min.js"), CACHE_REVALIDATE);
    }

    #[test]
    fn text_types_carry_utf8() {
        assert_eq!(content_type("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("a.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a.mp4"), "video/mp4");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
    }
}
