//! The small files of a `--www` folder kept in memory between requests, and how they are dropped
//! when anything they depend on changes on disk (an inotify watch, `disk_watch.rs`).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Response};

use super::conditional::{decide, Ask, Plan};
use super::path::{open_no_symlinks, NoFollow, RelPath};
use super::reply::{memory_body, Reply};
use super::representation::{content_type, disk_etag, site_policy, whole_seconds, Coding, Rep};
use super::Policy;
use crate::disk_watch::DiskWatch;
use crate::response::{self, Resp};

/// Site files up to this size may be kept in memory.
const CACHED_FILE_MAX: u64 = 64 * 1024;
/// At most this many files and bytes are kept (a site is a few dozen files).
const CACHED_FILES_MAX: usize = 512;
const CACHED_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// The small files of a `--www` folder, kept in memory between requests. Whether anything changed
/// on disk is told by an inotify instance ([`DiskWatch`]): on the HTTPS threads by their reactor's
/// record of its readiness ([`DiskWatch::pending_here`]; a `poll` per request before), which
/// replaced a `stat` of the file and of its folder (two path walks); those had replaced the `open`,
/// `fstat`, two sibling `stat`s, `pread` and `close` of a fresh read (measured, see
/// bench/README.md).
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
pub(crate) struct SmallFiles {
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
    /// governor) instead of SipHash: hashing the name showed in profiles of a GET. Only files that
    /// exist are stored, so the client cannot fill the map with colliding names.
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
    pub(crate) fn new(dir: Option<&Path>) -> SmallFiles {
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
    pub(super) fn serve(
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
    pub(crate) fn forget_all(&self) -> usize {
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
