//! systemd integration (`Type=notify`): the server tells the socket in `NOTIFY_SOCKET` that it is
//! ready once it listens, that it reloads on SIGHUP (and is ready again), and that it stops on
//! SIGTERM.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// The next notification, within `secs`.
fn next(sock: &UnixDatagram, secs: u64) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(secs)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn signal(s: &Server, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(s.pid() as i32).unwrap();
    // A signal to the child this test started.
    assert_eq!(rustix::process::kill_process(pid, sig), Ok(()));
}

#[tokio::test]
async fn systemd_is_told_ready_after_listening_reloading_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mut s =
        Server::start_with(Start::default().env("NOTIFY_SOCKET", path.display().to_string()));

    let ready = next(&sock, 10);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=serving on "), "{ready}");
    // Ready means serving: the listener answers.
    let c = s.client();
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Its connection closes while this test's runtime still runs (the waits below block it).
    drop((r, c));
    tokio::time::sleep(Duration::from_millis(300)).await;

    signal(&s, rustix::process::Signal::HUP);
    let reloading = next(&sock, 10);
    assert!(reloading.lines().any(|l| l == "RELOADING=1"), "{reloading}");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let again = next(&sock, 10);
    assert!(again.lines().any(|l| l == "READY=1"), "{again}");

    let stopping_at = Instant::now();
    s.terminate();
    let stopping = next(&sock, 10);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    assert!(stopping_at.elapsed() < Duration::from_secs(5));
    assert!(s.wait_exit(40).is_some_and(|st| st.success()));
}
