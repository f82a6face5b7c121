//! The one retry policy of journal consumers.

use std::time::{Duration, SystemTime};

/// Exponential backoff with jitter: the first retry after about [`Backoff::FIRST`], doubling
/// per failure in a row up to [`Backoff::MAX`], back to the start after a success.
///
/// Each delay is drawn from the upper half of its step (`[step/2, step]`): the half that is
/// random keeps consumers that failed together (a full disk, a bucket outage) from retrying in
/// lockstep, the half that is not keeps a failing consumer from spinning.
#[derive(Debug, Clone)]
pub struct Backoff {
    failures: u32,
    state: u64,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(30);

    /// A policy whose jitter is seeded by `seed` (consumers pass their name, so two consumers
    /// draw different delays) and the clock.
    pub fn new(seed: &str) -> Self {
        let clock = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        // FNV-1a of the seed, mixed with the clock; never zero (xorshift would stay at zero).
        let mut state = seed
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
        state ^= clock;
        Self { failures: 0, state: state | 1 }
    }

    /// Failures in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Counts a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let step = Self::FIRST.saturating_mul(2u32.saturating_pow(self.failures)).min(Self::MAX);
        self.failures = self.failures.saturating_add(1);
        // xorshift64: plenty for jitter, and no dependency for it.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        let half = step / 2;
        let extra = self.state % (half.as_nanos() as u64).max(1);
        half + Duration::from_nanos(extra)
    }

    /// A success: the next failure waits the first step again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_within_bounds_caps_and_resets() {
        let mut backoff = Backoff::new("test");
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        assert_eq!(backoff.failures(), 12);
        for (n, delay) in delays.iter().enumerate() {
            let step = Backoff::FIRST.saturating_mul(1 << n).min(Backoff::MAX);
            assert!(*delay >= step / 2 && *delay <= step, "delay {n} = {delay:?}, step {step:?}");
        }
        assert!(delays[11] >= Backoff::MAX / 2, "capped at the maximum step");
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.next_delay() <= Backoff::FIRST);
    }

    #[test]
    fn jitter_differs_between_seeds() {
        let draws = |seed: &str| {
            let mut backoff = Backoff::new(seed);
            (0..8).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(draws("event-history"), draws("lake-writer"));
    }

    #[test]
    fn capped_delays_spread_over_the_whole_upper_half() {
        let mut backoff = Backoff::new("capped");
        let capped: Vec<Duration> = (0..60).map(|_| backoff.next_delay()).skip(20).collect();
        let three_quarters = Backoff::MAX / 4 * 3;
        assert!(capped.iter().any(|delay| *delay > three_quarters), "{capped:?}");
        assert!(capped.iter().any(|delay| *delay < three_quarters), "{capped:?}");
    }
}
