//! Exponential backoff with jitter, capped, for reconnecting after failures (pure: the caller
//! passes the random draw in, so tests are exact), and the one retry loop built on it.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            failures: 0,
        }
    }

    /// The delay before the next attempt, after one more failure. `jitter` in [0, 1) spreads
    /// the delay over its upper half, so many clients do not reconnect in lockstep.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let exponent = self.failures.min(16);
        self.failures = self.failures.saturating_add(1);
        let full = self.first.saturating_mul(1u32 << exponent).min(self.cap);
        full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Tries `attempt` until it succeeds, waiting the backoff's next delay after each failure,
/// which `failed` is told of with that delay; the backoff is reset by a success. `None`: the
/// work was cancelled first. Every reconnect loop of the daemon is this loop.
pub async fn retry<T, E, Fut>(
    backoff: &mut Backoff,
    cancel: &CancellationToken,
    mut attempt: impl FnMut() -> Fut,
    mut failed: impl FnMut(&E, Duration),
) -> Option<T>
where
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return None,
            r = attempt() => r,
        };
        match result {
            Ok(value) => {
                backoff.reset();
                return Some(value);
            }
            Err(e) => {
                let delay = backoff.next_delay(rand::random());
                failed(&e, delay);
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retry_waits_the_backoff_between_failures_and_resets_it_after_success() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(300));
        let cancel = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let mut tries = 0;
        let mut delays = Vec::new();
        let got = retry(
            &mut backoff,
            &cancel,
            || {
                tries += 1;
                let now = tries;
                async move { if now < 4 { Err("refused") } else { Ok(now) } }
            },
            |_: &&str, delay| delays.push(delay),
        )
        .await;
        assert_eq!(got, Some(4));
        // Three failures: 1-2 s, 2-4 s, 4-8 s, slept on the paused clock in full.
        assert_eq!(delays.len(), 3);
        for (delay, full) in delays.iter().zip([2u64, 4, 8]) {
            assert!(*delay >= Duration::from_secs(full) / 2 && *delay <= Duration::from_secs(full));
        }
        // The paused clock's timers have millisecond resolution.
        let slept = delays.iter().sum::<Duration>();
        let elapsed = started.elapsed();
        assert!(
            elapsed >= slept && elapsed <= slept + Duration::from_millis(3),
            "{elapsed:?} for {slept:?}"
        );
        // Reset by the success: the next failure waits the first delay again.
        assert!(backoff.next_delay(0.0) == Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_ends_when_cancelled_during_a_wait() {
        let mut backoff = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            stop.cancel();
        });
        let started = tokio::time::Instant::now();
        let got: Option<()> = retry(
            &mut backoff,
            &cancel,
            || async { Err::<(), _>("down") },
            |_, _| {},
        )
        .await;
        assert_eq!(got, None);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let delays: Vec<u64> = (0..9).map(|_| b.next_delay(0.999_999).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 3, 7, 15, 31, 59, 59, 59]);
        assert_eq!(b.next_delay(0.0), Duration::from_secs(30));
        b.reset();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(500));
    }
}
