//! Exponential backoff with jitter, capped, for reconnecting after failures. Pure: the caller
//! passes the random draw in, so tests are exact.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

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
