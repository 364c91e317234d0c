//! When to try a message again: exponential backoff with jitter, up to a
//! maximum age after which the remaining recipients bounce.

/// The retry policy, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    /// The first retry comes this long after the first attempt.
    pub base_ms: u64,
    /// Intervals stop growing here.
    pub max_interval_ms: u64,
    /// A message older than this is not retried again.
    pub max_age_ms: u64,
}

impl RetrySchedule {
    /// The time of the next attempt after `attempts` failed ones, or None
    /// when the message has outlived its maximum age. `jitter` in [0, 1)
    /// spreads retries by up to ±20 % so a burst does not come back as one.
    pub fn next_attempt(&self, attempts: u32, received_ms: u64, now_ms: u64, jitter: f64) -> Option<u64> {
        let expires = received_ms.saturating_add(self.max_age_ms);
        if now_ms >= expires {
            return None;
        }
        let growth = 1u64.checked_shl(attempts.min(30)).unwrap_or(u64::MAX);
        let interval = self.base_ms.saturating_mul(growth).min(self.max_interval_ms);
        let factor = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        let interval = ((interval as f64) * factor) as u64;
        // The last try falls at the expiry time rather than after it.
        Some(now_ms.saturating_add(interval.max(1)).min(expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: RetrySchedule = RetrySchedule {
        base_ms: 60_000,
        max_interval_ms: 3_600_000,
        max_age_ms: 5 * 86_400_000,
    };

    #[test]
    fn grows_exponentially_with_jitter_then_caps() {
        assert_eq!(S.next_attempt(0, 0, 1_000, 0.5), Some(61_000));
        assert_eq!(S.next_attempt(1, 0, 1_000, 0.5), Some(121_000));
        assert_eq!(S.next_attempt(0, 0, 0, 0.0), Some(48_000));
        assert_eq!(S.next_attempt(0, 0, 0, 0.999_999), Some(71_999));
        assert_eq!(S.next_attempt(40, 0, 0, 0.5), Some(3_600_000));
    }

    #[test]
    fn stops_at_the_maximum_age() {
        let age = S.max_age_ms;
        assert_eq!(S.next_attempt(3, 0, age, 0.5), None);
        assert_eq!(S.next_attempt(10, 0, age - 10, 0.5), Some(age));
    }
}
