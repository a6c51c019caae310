//! The generic cell rate algorithm on one theoretical arrival time (TAT).
//!
//! All times are nanoseconds since the limiter's epoch. `t` is the emission interval
//! (`per / requests`) and `tau` the tolerance (`t * (burst - 1)`), as in governor's
//! `Gcra`. A bucket whose TAT is at or before `now` is full, which is why a missing key
//! and a key whose TAT has passed behave the same and eviction of such keys is safe.

use std::time::Duration;

use crate::config::QuotaConfig;
use crate::decision::Policy;

/// GCRA parameters of one quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    t: u64,
    tau: u64,
    burst: u32,
    policy: Policy,
}

impl Gcra {
    pub(crate) fn new(quota: &QuotaConfig) -> Self {
        // governor's Quota does the same division and keeps at least one nanosecond.
        let interval = governor::Quota::with_period(quota.interval())
            .map(|q| q.allow_burst(quota.burst).replenish_interval())
            .unwrap_or(Duration::from_nanos(1));
        let t = u64::try_from(interval.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let burst = quota.burst.get();
        Self {
            t,
            tau: t.saturating_mul(u64::from(burst) - 1),
            burst,
            policy: quota.policy(),
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        self.policy
    }

    /// Returns true if `cost` cells can ever pass, that is `cost <= burst`.
    pub(crate) fn fits(&self, cost: u32) -> bool {
        cost <= self.burst
    }

    /// Tests `cost` cells at `now` against `tat` (`None` for an untracked key).
    ///
    /// Returns the new TAT when they conform, or the wait in nanoseconds until they would.
    /// The caller checks [`Gcra::fits`] first.
    #[inline]
    pub(crate) fn test(&self, tat: Option<u64>, now: u64, cost: u32) -> Result<u64, u64> {
        let tat = tat.unwrap_or(now);
        let weight = self.t.saturating_mul(u64::from(cost));

        // The last of the `cost` cells arrives at tat + weight - t; it conforms when that is
        // no later than now + tau.
        let earliest = tat.saturating_add(weight - self.t).saturating_sub(self.tau);
        if now < earliest {
            return Err(earliest - now);
        }
        Ok(tat.max(now).saturating_add(weight))
    }

    /// Returns the TAT after giving back `cost` cells charged earlier.
    #[inline]
    pub(crate) fn refund(&self, tat: u64, cost: u32) -> u64 {
        tat.saturating_sub(self.t.saturating_mul(u64::from(cost)))
    }

    /// Returns the whole cells a bucket with `tat` admits at `now`, from 0 to `burst`.
    pub(crate) fn remaining(&self, tat: u64, now: u64) -> u32 {
        let used = tat.saturating_sub(now);
        let available = (self.tau + self.t).saturating_sub(used) / self.t;
        u32::try_from(available).unwrap_or(u32::MAX).min(self.burst)
    }

    /// Returns the time until a bucket with `tat` is full again.
    pub(crate) fn reset(&self, tat: u64, now: u64) -> Duration {
        Duration::from_nanos(tat.saturating_sub(now))
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::config::Period;

    fn gcra(requests: u32, secs: u64, burst: u32) -> Gcra {
        Gcra::new(&QuotaConfig::new(
            NonZeroU32::new(requests).unwrap(),
            Period::from_secs(secs).unwrap(),
            NonZeroU32::new(burst).unwrap(),
        ))
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn full_bucket_admits_burst_then_waits_one_interval() {
        // 60 per minute with a burst of 3: three at once, then one per second.
        let gcra = gcra(60, 60, 3);
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(gcra.test(tat, 0, 1).unwrap());
        }
        assert_eq!(gcra.test(tat, 0, 1), Err(SECOND));
        assert!(gcra.test(tat, SECOND, 1).is_ok());
    }

    #[test]
    fn weighted_cost_uses_several_cells() {
        let gcra = gcra(60, 60, 5);
        let tat = gcra.test(None, 0, 5).unwrap();
        assert_eq!(gcra.remaining(tat, 0), 0);
        assert_eq!(gcra.test(Some(tat), 0, 2), Err(2 * SECOND));
        assert_eq!(gcra.remaining(tat, 2 * SECOND), 2);
    }

    #[test]
    fn remaining_and_reset_track_tat() {
        let gcra = gcra(10, 10, 4);
        let tat = gcra.test(None, 0, 1).unwrap();
        assert_eq!(gcra.remaining(tat, 0), 3);
        assert_eq!(gcra.reset(tat, 0), Duration::from_secs(1));
        assert_eq!(gcra.remaining(tat, 5 * SECOND), 4);
        assert_eq!(gcra.reset(tat, 5 * SECOND), Duration::ZERO);
    }

    #[test]
    fn refund_restores_behaviour() {
        let gcra = gcra(10, 10, 4);
        let before = gcra.test(None, 0, 2).unwrap();
        let charged = gcra.test(Some(before), 0, 1).unwrap();
        assert_eq!(gcra.refund(charged, 1), before);
    }

    #[test]
    fn fits_compares_with_burst() {
        let gcra = gcra(10, 10, 4);
        assert!(gcra.fits(4));
        assert!(!gcra.fits(5));
    }
}
