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
//! The request path, step by step, and the file that does each (the entry points the router
//! calls are [`route_file`] in this file and, as they read the `App`, `routes::media` and
//! `routes::site`):
//!
//! 1. **Resolve the path** (`path.rs`): only `GET` and `HEAD`; the raw URL path is decoded once and
//!    checked name by name ([`parse_rel`]), refusing anything that could leave the root.
//! 2. **Confine it under the root** (`path.rs`): the path is opened without following any symbolic
//!    link (`openat2` with `RESOLVE_NO_SYMLINKS`, or one `openat` per name); when there is a link
//!    on the way, it is resolved and must lead inside the canonical root (`confine`).
//! 3. **Open** (this file, `serve_under` and `serve_open`): the open handle's metadata decides; a
//!    folder gets a listing (`listing.rs`) or `404`, a regular file is described (`Content-Type`,
//!    `ETag`, `Last-Modified`, the `.br`/`.gz` sibling chosen by `Accept-Encoding`:
//!    `representation.rs`). A small `--www` file may be answered from memory instead
//!    (`small_cache.rs`), after the same checks.
//! 4. **Conditional request** (`conditional.rs`): `If-Match`, `If-Unmodified-Since`,
//!    `If-None-Match`, `If-Modified-Since`, in the order of RFC 9110 §13.2.2 → `412` or `304`.
//! 5. **Range** (`range.rs`, asked by `conditional::decide`): `Range` under `If-Range` → one
//!    range, several, or `416`.
//! 6. **Reply** (`reply.rs`): status, headers and the body, from memory or streamed from disk.
//!    `/media/` answers then get their own headers (`media.rs`): the sandbox CSP,
//!    `Content-Disposition: attachment` for what a browser would run, scripts and styles as text.
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
//! Memory: files larger than `reply::SMALL` stream from disk in `reply::CHUNK` reads, one at a time, only
//! when the connection asks for more, so memory stays flat whatever the size. A client that goes
//! away simply drops the body; that is not an error.
//!
//! Threads: opening a file, its metadata and a body up to `reply::SMALL` are done on the request's own
//! thread, as nginx does by default: on a local disk these are page-cache operations of a few
//! microseconds, and a hop to the blocking pool per request cost a large share of the CPU of a
//! 100 KiB asset (measured, see bench/README.md; more under HTTP/2, where hundreds of streams
//! each took a pool thread). Larger
//! bodies stream chunk by chunk from the blocking pool, so a big download never holds a worker.
//! A media folder on slow network storage would stall a worker per request; serve it through
//! nginx or move it to a local disk.

mod conditional;
mod listing;
mod media;
mod path;
mod range;
mod reply;
mod representation;
pub(crate) mod routes;
mod small_cache;

use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use http::{header, HeaderValue, Method, Request, StatusCode};

use crate::response::{self, Body, Resp};

use conditional::{decide, Ask};
use listing::{list_dir, listing_page};
pub(crate) use media::MEDIA_PDF_CSP;
pub(crate) use path::Refusal;
use path::{confine, open_no_symlinks, open_regular, open_resolved, parse_rel, NoFollow, RelPath};
use reply::{disk_body, memory_body, Reply};
use representation::{
    content_type, disk_etag, pick_coding, site_policy, whole_seconds, Coding, Rep,
};
pub(crate) use small_cache::SmallFiles;

/// `/media/` behind the login.
pub(crate) const CACHE_PRIVATE: &str = "private, max-age=0, must-revalidate";
/// `/media/` when `media.public = true`.
pub(crate) const CACHE_PUBLIC: &str = "public, max-age=0, must-revalidate";
/// Site files whose name carries a content hash (`app.3f2a9c1b.js`).
pub(crate) const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// HTML and every other site file: cache, but revalidate with the `ETag` each time.
pub(crate) const CACHE_REVALIDATE: &str = "no-cache";

/// How responses of one kind of file are cached and typed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub cache_control: &'static str,
    /// `/media/`: types a browser would run as script or style are sent as text (see
    /// `media::media_content_type`).
    pub media: bool,
}

// ---------------------------------------------------------------------------------------------
// Entry points used by the router.
// ---------------------------------------------------------------------------------------------

/// Whether a raw URL path belongs to `/media/` (including `/media` itself).
pub(crate) fn is_media(path: &str) -> bool {
    path == "/media" || path.starts_with("/media/")
}

/// The folder of the accounts' own files under `/media/` (`chat::attachments`).
pub(crate) const USERS_DIR: &str = "users";

/// Whose a `/media/` path is: `Some(None)` for the accounts' folder itself (`/media/users/`),
/// `Some(Some(id))` for anything under `/media/users/<id>/`, `None` for the rest of `/media/`
/// (and for a path the file engine refuses anyway). Decided on the path as the engine decodes it,
/// so no spelling (`%73`, `//`) reaches an account's folder past this check.
pub(crate) fn media_owner(path: &str) -> Option<Option<String>> {
    let raw = path.strip_prefix("/media/")?;
    let rel = parse_rel(raw).ok()?;
    let mut names = rel.segments();
    if names.next()? != USERS_DIR {
        return None;
    }
    Some(names.next().map(str::to_string))
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
            media::disposition(&mut resp, rel.last());
            resp
        }
        Outcome::Refused(refusal) => refusal.response(),
        Outcome::AddSlash => {
            response::redirect(StatusCode::PERMANENT_REDIRECT, &format!("{path}/"))
        }
        Outcome::Listing(entries) => listing_page(path, &entries, policy),
    }
}

/// A custom page of `[[routes]]`: one file named by the administrator, with the full semantics and
/// `no-cache`. `Err` when the file cannot be opened.
pub(crate) async fn route_file<B>(req: &Request<B>, file: &Path) -> io::Result<Resp> {
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
// Steps 2 and 3 for a file below a root: confine, open, describe, then decide and reply.
// ---------------------------------------------------------------------------------------------

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
            media::media_content_type(name)
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
