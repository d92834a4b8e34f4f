//! systemd's service notifications (`Type=notify` in `config/hermes-edge.service`): `READY=1` once
//! every listener is bound (so `systemctl start` returns when the server answers, and units
//! ordered after it start then), `RELOADING=1` … `READY=1` around a SIGHUP reload, `STOPPING=1`
//! at SIGTERM, and the watchdog when the unit asks for one (`WatchdogSec=`). Without
//! `NOTIFY_SOCKET` (not started by systemd) each call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// Serving: every listener is bound.
pub(crate) fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A SIGHUP reload begins (`ready` again when it is done).
pub(crate) fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutting down: requests in flight get the grace period.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// Pets systemd's watchdog at half its interval while the runtime runs, when the unit set one.
pub(crate) fn spawn_watchdog() {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return;
    }
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}
