//! The only `unsafe` of the program, for the three calls no safe wrapper offers: the allocator's
//! tunables, `TCP_DEFER_ACCEPT` (neither rustix nor socket2 has it), and registering a descriptor
//! with tokio's reactor (safe only as long as the descriptor stays open, which the type cannot
//! check). Everything else that talks to the kernel goes through rustix's safe wrappers; the crate
//! denies `unsafe_code` everywhere but here (Cargo.toml, `[lints.rust]`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Keeps large blocks out of the heap arenas and lets a burst's freed memory stay at the top of
/// the heap (see `main` for why). Call it before any other thread exists.
pub(crate) fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator tunable; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 4 << 20);
    }
}

/// Sets `TCP_DEFER_ACCEPT` on a listening socket to `secs` seconds.
pub(crate) fn set_tcp_defer_accept(socket: BorrowedFd<'_>, secs: libc::c_int) -> io::Result<()> {
    // SAFETY: a live socket descriptor and an int option of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Registers `fd` with the current runtime's reactor for readiness to read. `None` when the
/// reactor refuses it. Must be called within a runtime that has its I/O driver.
pub(crate) fn register_readable(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` stays open, and names the same open file description, for as long as
    // it lives; the `AsyncFd` owns it, and nothing here swaps it through `AsyncFd::get_mut`.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE).ok() }
}
