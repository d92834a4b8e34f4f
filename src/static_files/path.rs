//! Steps 1 and 2 of a request: the URL path, decoded once and checked name by name
//! ([`parse_rel`]), and the file it names, opened so that it cannot lie outside the root: without
//! following any symbolic link ([`open_no_symlinks`]), or, when a link is on the way, resolved and
//! checked against the canonical root first ([`confine`]).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use http::StatusCode;
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::response::{self, Resp};

/// Why a path is refused. Never says more than the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The path is malformed or tries to leave its folder (`400`).
    BadRequest,
    /// Nothing to serve there, or not to this client (`404`).
    NotFound,
}

impl Refusal {
    pub(crate) fn response(self) -> Resp {
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

/// A URL path below a root, checked and decoded: the names to join (kept as one `/`-separated
/// string, so a request for a site file allocates once rather than once per name), and whether it
/// ended in `/`.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RelPath {
    /// The decoded names joined by `/`, without the trailing one; empty for the root itself.
    path: String,
    pub dir: bool,
}

impl RelPath {
    /// The names from the root down; none for the root itself.
    pub(super) fn segments(&self) -> impl Iterator<Item = &str> {
        self.path.split('/').filter(|_| !self.path.is_empty())
    }

    /// The decoded path relative to the root, `a/b.txt`; empty for the root itself.
    pub(super) fn as_str(&self) -> &str {
        &self.path
    }

    /// The last name (the file's own); empty for the root itself.
    pub(super) fn last(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }
}

/// Decodes a raw (still percent-encoded) URL path relative to a root, refusing anything that could
/// name a place outside it or a hidden file. Decodes exactly once.
pub(super) fn parse_rel(raw: &str) -> Result<RelPath, Refusal> {
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
pub(super) fn confine(root: &Path, path: &Path) -> Result<PathBuf, Refusal> {
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
pub(super) fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
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

pub(super) enum NoFollow {
    Opened(File),
    /// A symbolic link is on the way (or the kernel cannot tell): resolve and check first.
    Symlink,
    Missing,
}

/// Set when the kernel has no `openat2` (before Linux 5.6) or a sandbox forbids it.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `path` for reading, refusing every symbolic link on the way, in one system call
/// (`openat2` with `RESOLVE_NO_SYMLINKS`).
pub(super) fn open_no_symlinks(path: &Path) -> NoFollow {
    use std::os::unix::ffi::OsStrExt;
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return open_walk(path);
    }
    let Ok(cpath) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return NoFollow::Missing;
    };
    let opened = fs::openat2(
        fs::CWD,
        cpath.as_c_str(),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS,
    );
    match opened {
        Ok(fd) => NoFollow::Opened(File::from(fd)),
        Err(Errno::LOOP) => NoFollow::Symlink,
        Err(Errno::NOSYS | Errno::PERM | Errno::TOOBIG | Errno::INVAL) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            open_walk(path)
        }
        Err(_) => NoFollow::Missing,
    }
}

/// [`open_no_symlinks`] where `openat2` is missing (Linux before 5.6, some sandboxes, valgrind):
/// one `openat` per name, each with `O_NOFOLLOW`, so a link anywhere on the way is refused as it
/// would be there. Before, such a system resolved every path in full and kept no site file in
/// memory.
fn open_walk(path: &Path) -> NoFollow {
    use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let start: &[u8] = if path.is_absolute() { b"/" } else { b"." };
    let open = |dir: BorrowedFd<'_>, name: &[u8], flags: OFlags| -> Result<OwnedFd, Errno> {
        let name = std::ffi::CString::new(name).map_err(|_| Errno::NOENT)?;
        fs::openat(dir, name.as_c_str(), flags | OFlags::CLOEXEC, Mode::empty())
    };
    let Ok(mut dir) = open(fs::CWD, start, OFlags::PATH | OFlags::DIRECTORY) else {
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
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW
        } else {
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW
        };
        match open(dir.as_fd(), name, flags) {
            Ok(fd) if last => return NoFollow::Opened(File::from(fd)),
            Ok(fd) => dir = fd,
            Err(Errno::NOENT) => return NoFollow::Missing,
            // A link gives ELOOP as the file, and ENOTDIR as a folder on the way (O_PATH opens
            // the link itself, which is no folder): ask what it is.
            Err(_) => {
                return if is_link_at(dir.as_fd(), name) {
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
fn is_link_at(dir: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else {
        return false;
    };
    fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

/// Opens a canonical path (no symlinks in it by construction); a symlink swapped in after the
/// check is refused.
pub(super) fn open_resolved(path: &Path) -> Option<File> {
    match open_no_symlinks(path) {
        NoFollow::Opened(f) => Some(f),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
