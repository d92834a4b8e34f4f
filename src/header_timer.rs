//! The timer behind HTTP/1.1's header-read timeout (which is also the keep-alive idle limit), one
//! per connection.
//!
//! hyper starts that timeout every time it waits for a request head and drops it once the head
//! has arrived: with tokio's timer that is a timer-wheel insert and removal (each under the time
//! driver's lock) on every request of a keep-alive connection, which showed as about half a
//! microsecond per request in the 1 KiB benchmark. Here each connection keeps one tokio sleep
//! that is moved only when it goes off: each request's deadline is just remembered, and when the
//! sleep fires for an earlier request's deadline it is moved to the current one instead of
//! ending anything. Deadlines are honoured exactly as before; the cost is one wake-up of the
//! connection per timeout period while it is busy.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// One tokio sleep for a run of deadlines that only move later (one per request of a connection,
/// or one per idle spell): armed at the first, and moved only when it goes off early.
#[derive(Default)]
pub struct MovingSleep {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl MovingSleep {
    /// Ready once `at` has passed; until then the task of `cx` is woken when the sleep goes off.
    pub fn poll_until(&mut self, at: tokio::time::Instant, cx: &mut Context<'_>) -> Poll<()> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        if at < sleep.deadline() {
            // Never with one fixed timeout (later requests have later deadlines); kept correct.
            sleep.as_mut().reset(at);
        }
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // It went off at or after this deadline: the time is up.
                Poll::Ready(()) if sleep.deadline() >= at => return Poll::Ready(()),
                // It went off for an earlier deadline: move it to this one.
                Poll::Ready(()) => sleep.as_mut().reset(at),
            }
        }
    }
}

/// Give to `http1().timer(...)` of one connection's builder.
#[derive(Clone, Default)]
pub struct ConnTimer {
    armed: Arc<Mutex<MovingSleep>>,
}

impl Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(Deadline {
            at: tokio::time::Instant::from_std(deadline),
            armed: self.armed.clone(),
        })
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<Deadline>() {
            Some(mut d) => d.at = tokio::time::Instant::from_std(new_deadline),
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One deadline handed to hyper; ready once the connection's sleep has gone off at or after it.
struct Deadline {
    at: tokio::time::Instant,
    armed: Arc<Mutex<MovingSleep>>,
}

impl Sleep for Deadline {}

impl Future for Deadline {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let at = self.at;
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        armed.poll_until(at, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls once (paused tokio time: hyper's deadlines come from the same clock).
    fn pending(sleep: &mut Pin<Box<dyn Sleep>>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        sleep.as_mut().poll(&mut cx).is_pending()
    }

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_ends_at_its_own_time_even_when_an_earlier_one_armed_the_sleep() {
        let timer = ConnTimer::default();
        // The first request's deadline arms the sleep at +10 s, then its head arrives.
        let mut first = timer.sleep_until(now() + Duration::from_secs(10));
        assert!(pending(&mut first));
        drop(first);
        // The next request waits from +4 s: its deadline is +14 s, not +10 s.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let second = timer.sleep_until(now() + Duration::from_secs(10));
        let waited = tokio::time::Instant::now();
        second.await;
        assert_eq!(waited.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_the_deadline_of_the_same_sleep() {
        let timer = ConnTimer::default();
        let mut sleep = timer.sleep_until(now() + Duration::from_secs(10));
        assert!(pending(&mut sleep));
        timer.reset(&mut sleep, now() + Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        sleep.await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
