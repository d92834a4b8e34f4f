//! Tells whether anything changed on disk under the paths it watches, without touching those
//! paths: a Linux `inotify` instance asked whether the kernel has queued an event, with one `poll`
//! of zero timeout or, on a request's own single-threaded runtime, by the readiness its reactor
//! recorded (`pending_here`).
//!
//! Why: the small site files are answered from memory (`static_files::SmallFiles`); checking them with a
//! `stat` of the file and of its folder on every request (two path walks) was a large share of the
//! server's CPU for a small page (bench/README.md). The kernel queues an inotify event before the system call that
//! changed the file returns, so a request that arrives after a change finds the event pending and
//! the memory is dropped before it answers: the next request still sees every change.
//!
//! What is watched is up to the caller: folders (every change of a name in them, and of the files
//! in them), files (writes through any hard link), and folders where only one name matters (the
//! ancestors of the site root, so swapping the root or a link above it is seen).

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::runtime::{Handle, RuntimeFlavor};

/// What a folder watched for one name (`watch_name`) is asked for: names made, removed, moved and
/// attribute changes, but not the writes to the files beside that name. A log file written next
/// to the site folder queued an event on every write, so each request read events, and a fast
/// enough writer kept the reads going until the drain gave up and dropped every kept file.
const NAME_CHANGES: WatchFlags = WatchFlags::ATTRIB
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::CREATE)
    .union(WatchFlags::DELETE)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::MOVE_SELF);

/// Every event that means a name, a content or an attribute changed.
const CHANGES: WatchFlags = NAME_CHANGES
    .union(WatchFlags::MODIFY)
    .union(WatchFlags::CLOSE_WRITE);

/// The fixed part of `struct inotify_event`: wd, mask, cookie, len.
const EVENT_HEAD: usize = 16;

pub(crate) struct DiskWatch {
    fd: OwnedFd,
    /// Watch descriptor → the one name that matters in that folder (`None`: every event does).
    watches: Mutex<HashMap<i32, Option<OsString>>>,
    /// Tells this watch's registrations with the runtimes apart from other watches'.
    id: u64,
}

/// The next [`DiskWatch::id`].
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// A copy of a watch's descriptor registered with one runtime's reactor, which then keeps its
/// readiness as part of the `epoll` turns it makes anyway. `fd` is `None` when the registration
/// failed (the copy or `epoll_ctl` refused): that runtime then asks the kernel each time, and does
/// not try to register again on every request.
struct Registration {
    watch: u64,
    runtime: tokio::runtime::Id,
    fd: Option<AsyncFd<OwnedFd>>,
}

thread_local! {
    /// This thread's registrations (see [`DiskWatch::pending_here`]).
    static REGISTERED: RefCell<Vec<Registration>> = const { RefCell::new(Vec::new()) };
}

impl DiskWatch {
    /// A new, empty watch. Fails where inotify is missing or its instance limit is reached.
    pub(crate) fn new() -> io::Result<DiskWatch> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        Ok(DiskWatch {
            fd,
            watches: Mutex::new(HashMap::new()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Watches `path` (a file or folder, not followed if it is a link) for every change.
    pub(crate) fn watch(&self, path: &Path) -> io::Result<()> {
        self.add(path, None)
    }

    /// Watches the folder `dir` for changes to the entry `name` only.
    pub(crate) fn watch_name(&self, dir: &Path, name: &OsStr) -> io::Result<()> {
        self.add(dir, Some(name.to_os_string()))
    }

    fn add(&self, path: &Path, only: Option<OsString>) -> io::Result<()> {
        let cpath = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
        let wanted = if only.is_some() {
            NAME_CHANGES
        } else {
            CHANGES
        };
        // IN_MASK_ADD: a folder reached both ways keeps the wider mask.
        let wd = inotify::add_watch(
            &self.fd,
            cpath.as_c_str(),
            wanted | WatchFlags::DONT_FOLLOW | WatchFlags::MASK_ADD,
        )?;
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        match watches.get_mut(&wd) {
            // The same inode reached again: the widest interest wins.
            Some(existing) if *existing != only => *existing = None,
            Some(_) => {}
            None => {
                watches.insert(wd, only);
            }
        }
        Ok(())
    }

    /// Whether events wait to be read (one `poll` with zero timeout; nothing is consumed).
    pub(crate) fn pending(&self) -> bool {
        let mut pfd = [PollFd::new(&self.fd, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // An error here cannot be told apart from a change: say "changed" and let the caller
        // start afresh, which is always correct.
        !matches!(rustix::event::poll(&mut pfd, Some(&now)), Ok(0))
    }

    /// [`pending`](Self::pending) for a request being answered on a single-threaded runtime,
    /// mostly without a system call: the descriptor is registered with that runtime's reactor,
    /// and its readiness there is read: a `poll` system call per request showed in profiles of small
    /// pages.
    ///
    /// Why the next request still sees every change: the kernel queues the event, and puts the
    /// descriptor on the reactor's `epoll` ready list, before the system call that changed the
    /// file returns. A request sent after that reaches the connection through the same reactor
    /// (tokio clears a socket's readiness once a read comes back short, so the next request's
    /// bytes are only read after a turn reports them), and the turn that reports its socket has
    /// already reported the watch, which was on the ready list first; the turn records every
    /// readiness before it runs any task. A multi-threaded runtime may run a woken task while its
    /// turn is still recording, so there the `poll` is kept, as it is on the first call on a
    /// thread (before the reactor has looked at the new registration) and outside a runtime.
    pub(crate) fn pending_here(&self) -> bool {
        let Ok(handle) = Handle::try_current() else {
            return self.pending();
        };
        if handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return self.pending();
        }
        let runtime = handle.id();
        REGISTERED.with(|cell| {
            let Ok(mut regs) = cell.try_borrow_mut() else {
                return self.pending();
            };
            let Some(i) = regs
                .iter()
                .position(|r| r.watch == self.id && r.runtime == runtime)
            else {
                // A copy of the descriptor shares its queue; the reactor sees it from its next turn.
                // (Every runtime of the server is built with its I/O driver, which this needs.)
                let fd = self
                    .fd
                    .try_clone()
                    .ok()
                    .and_then(crate::sys::register_readable);
                regs.push(Registration {
                    watch: self.id,
                    runtime,
                    fd,
                });
                return self.pending();
            };
            let Some(fd) = &regs[i].fd else {
                return self.pending();
            };
            match fd.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
                Poll::Pending => false,
                Poll::Ready(Ok(_)) => true,
                // The runtime is shutting down: forget the registration.
                Poll::Ready(Err(_)) => {
                    regs.swap_remove(i);
                    self.pending()
                }
            }
        })
    }

    /// Reads every queued event. `true` when any of them is a change that matters (or events
    /// were lost to a full queue, or reading failed, where "changed" is the safe answer).
    ///
    /// Once the queue is read to its end, this thread's registration is marked not ready. Its
    /// readiness is taken before the reads, so an event the reactor reports while they run is
    /// not cleared with it. Other threads' registrations stay ready until their own next drain,
    /// which finds the queue empty (one extra read each).
    pub(crate) fn drain(&self) -> bool {
        let runtime = Handle::try_current().ok().map(|h| h.id());
        REGISTERED.with(|cell| {
            let regs = cell.try_borrow().ok();
            let ready: Option<AsyncFdReadyGuard<'_, OwnedFd>> = regs.as_ref().and_then(|regs| {
                let r = regs
                    .iter()
                    .find(|r| r.watch == self.id && Some(r.runtime) == runtime)?;
                match r
                    .fd
                    .as_ref()?
                    .poll_read_ready(&mut Context::from_waker(Waker::noop()))
                {
                    Poll::Ready(Ok(guard)) => Some(guard),
                    _ => None,
                }
            });
            let (changed, emptied) = self.read_queue();
            if let (true, Some(mut guard)) = (emptied, ready) {
                guard.clear_ready();
            }
            changed
        })
    }

    /// Reads the queued events: whether any is a change that matters, and whether the queue was
    /// read to its end.
    fn read_queue(&self) -> (bool, bool) {
        // An event is at most 16 + 256 bytes (a NAME_MAX name): a few fit in each read.
        let mut buf = [0u8; 4096];
        let mut changed = false;
        for _ in 0..1024 {
            let n = match rustix::io::read(&self.fd, &mut buf) {
                Ok(n) => n,
                Err(err) => {
                    return match io::Error::from(err).kind() {
                        io::ErrorKind::WouldBlock => (changed, true),
                        io::ErrorKind::Interrupted => continue,
                        _ => (true, false),
                    };
                }
            };
            if n == 0 {
                return (changed, true);
            }
            let got = n.min(buf.len());
            changed |= self.judge(&buf[..got]);
        }
        (true, false)
    }

    /// Whether a buffer of events holds a change that matters; forgets removed watches.
    fn judge(&self, mut events: &[u8]) -> bool {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        let mut changed = false;
        while events.len() >= EVENT_HEAD {
            let word = |i: usize| {
                let mut w = [0u8; 4];
                w.copy_from_slice(&events[i..i + 4]);
                w
            };
            let wd = i32::from_ne_bytes(word(0));
            let mask = u32::from_ne_bytes(word(4));
            let len = u32::from_ne_bytes(word(12)) as usize;
            let Some(name_bytes) = events.get(EVENT_HEAD..EVENT_HEAD + len) else {
                return true;
            };
            // The name is NUL-padded.
            let end = name_bytes
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(name_bytes.len());
            let name = &name_bytes[..end];
            events = &events[EVENT_HEAD + len..];

            if mask & libc::IN_Q_OVERFLOW != 0 {
                changed = true;
                continue;
            }
            if mask & libc::IN_IGNORED != 0 {
                // The watched thing is gone (deleted, or its file system unmounted).
                watches.remove(&wd);
                changed = true;
                continue;
            }
            changed |= match watches.get(&wd) {
                Some(Some(only)) => {
                    mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0
                        || name == only.as_bytes()
                }
                // Every event of a fully watched path, and any of a watch we no longer know.
                _ => true,
            };
        }
        changed || !events.is_empty()
    }
}

/// Whether inotify sees every change to files below `path`: not on network and user-space file
/// systems (NFS, SMB, 9p as in WSL's `/mnt/c`, FUSE, Ceph, AFS, VirtualBox shared folders...),
/// where another machine (or the host) can change files without this kernel queueing an event.
pub(crate) fn sees_every_change(path: &Path) -> bool {
    const REMOTE: [i64; 13] = [
        0x6969,     // NFS
        0x517B,     // SMB
        0xFF534D42, // CIFS
        0xFE534D42, // SMB2
        0x65735546, // FUSE
        0x01021997, // 9p (WSL 2 /mnt/c, QEMU shares)
        0x00C36400, // Ceph
        0x5346414F, // AFS
        0x73757245, // Coda
        0x564C,     // NCP
        0x01161970, // GFS2
        0x7461636F, // OCFS2
        0x786F4256, // VirtualBox shared folders
    ];
    // A path with a NUL in it is refused as well.
    let Ok(st) = rustix::fs::statfs(path) else {
        return false;
    };
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets.
    let kind = st.f_type as i64;
    !REMOTE.contains(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settle(w: &DiskWatch) -> bool {
        w.pending() && w.drain()
    }

    #[test]
    fn changes_of_watched_names_are_pending_before_the_change_returns() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("site");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("a.txt");
        std::fs::write(&file, b"one").unwrap();
        let w = DiskWatch::new().unwrap();
        w.watch(&dir).unwrap();
        w.watch(&file).unwrap();
        w.watch_name(tmp.path(), OsStr::new("site")).unwrap();
        assert!(!w.pending());

        // Reading does not count as a change.
        assert_eq!(std::fs::read(&file).unwrap(), b"one");
        assert!(!w.pending());

        std::fs::write(&file, b"two").unwrap();
        assert!(settle(&w));
        assert!(!w.pending());

        std::fs::write(dir.join("a.txt.gz"), b"x").unwrap();
        assert!(settle(&w));

        // Another name beside the root does not matter; the root's own name does. Writes to a
        // file beside it are not even queued (a busy log file there kept every request reading).
        let beside = tmp.path().join("other");
        std::fs::write(&beside, b"x").unwrap();
        assert!(w.pending());
        assert!(!w.drain());
        for _ in 0..3 {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&beside)
                .unwrap();
            std::io::Write::write_all(&mut f, b"log line\n").unwrap();
        }
        assert!(!w.pending());
        std::fs::rename(&dir, tmp.path().join("old")).unwrap();
        assert!(settle(&w));
    }

    #[test]
    fn a_folder_watched_for_a_name_and_in_full_keeps_the_full_watch() {
        let tmp = tempfile::tempdir().unwrap();
        let w = DiskWatch::new().unwrap();
        w.watch(tmp.path()).unwrap();
        w.watch_name(tmp.path(), OsStr::new("site")).unwrap();
        std::fs::write(tmp.path().join("f"), b"one").unwrap();
        assert!(settle(&w));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(tmp.path().join("f"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"two").unwrap();
        assert!(settle(&w));
    }

    #[test]
    fn local_folders_are_trusted_and_missing_ones_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(sees_every_change(tmp.path()));
        assert!(!sees_every_change(&tmp.path().join("missing")));
    }

    #[test]
    fn a_write_through_another_hard_link_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let inside = tmp.path().join("in");
        let outside = tmp.path().join("out");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(inside.join("f"), b"one").unwrap();
        std::fs::hard_link(inside.join("f"), outside.join("g")).unwrap();
        let w = DiskWatch::new().unwrap();
        w.watch(&inside).unwrap();
        w.watch(&inside.join("f")).unwrap();
        std::fs::write(outside.join("g"), b"two").unwrap();
        assert!(settle(&w));
    }
}

#[cfg(test)]
mod reactor_tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    fn current_thread() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A connection whose reads go through the reactor as hyper's do (`AsyncRead`).
    async fn connection() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    /// A file with some text in a fresh folder, watched.
    fn watched_file() -> (tempfile::TempDir, std::path::PathBuf, DiskWatch) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.txt");
        std::fs::write(&file, b"zero").unwrap();
        let w = DiskWatch::new().unwrap();
        w.watch(&file).unwrap();
        (tmp, file, w)
    }

    /// The client sends a byte and the server reads it: one "request".
    async fn request(client: &mut TcpStream, server: &mut TcpStream) {
        client.write_all(b"x").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
    }

    #[test]
    fn a_change_is_seen_by_the_next_request_on_a_single_threaded_runtime() {
        let (_tmp, file, w) = watched_file();
        current_thread().block_on(async {
            let (mut client, mut server) = connection().await;
            // The first call registers the descriptor and still asks the kernel.
            assert!(!w.pending_here());
            for round in 0..5 {
                request(&mut client, &mut server).await;
                assert!(!w.pending_here(), "round {round}: nothing changed");
                std::fs::write(&file, format!("version {round}")).unwrap();
                request(&mut client, &mut server).await;
                assert!(
                    w.pending_here(),
                    "round {round}: changed before the request"
                );
                assert!(w.drain());
                assert!(!w.pending_here(), "round {round}: the drain cleared it");
            }
        });
    }

    #[test]
    fn each_runtime_keeps_its_own_readiness_until_its_own_drain() {
        let (_tmp, file, w) = watched_file();
        let turn = || tokio::time::sleep(std::time::Duration::from_millis(2));
        let (a, b) = (current_thread(), current_thread());
        a.block_on(async { assert!(!w.pending_here()) });
        b.block_on(async { assert!(!w.pending_here()) });
        let drained_on_a = || {
            a.block_on(async {
                turn().await;
                assert!(w.pending_here());
                assert!(w.drain());
                assert!(!w.pending_here());
            })
        };
        // b's reactor reports the event before a reads the queue: b stays ready until its own
        // drain, which reads nothing, and is clear after it.
        std::fs::write(&file, b"one").unwrap();
        b.block_on(async { turn().await });
        drained_on_a();
        b.block_on(async {
            assert!(w.pending_here());
            assert!(!w.drain());
            assert!(!w.pending_here());
        });
        // b's next turn comes after a read the queue: epoll looks at the queue again when it
        // reports, finds it empty, and b is never made ready.
        std::fs::write(&file, b"two").unwrap();
        drained_on_a();
        b.block_on(async {
            turn().await;
            assert!(!w.pending_here());
        });
    }

    #[test]
    fn a_multi_threaded_runtime_and_no_runtime_ask_the_kernel_every_time() {
        let (_tmp, file, w) = watched_file();
        assert!(!w.pending_here());
        std::fs::write(&file, b"one").unwrap();
        assert!(w.pending_here());
        assert!(w.drain());
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        multi.block_on(async {
            assert!(!w.pending_here());
            std::fs::write(&file, b"two").unwrap();
            // No reactor turn in between: only the kernel can tell.
            assert!(w.pending_here());
            assert!(w.drain());
            assert!(!w.pending_here());
        });
    }
}
