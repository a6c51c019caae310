//! Wall-clock time for file rotation, replaceable in tests.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time. The writer reads it to decide hourly and daily rotation.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Returns the current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only through [`ManualClock::set`] and [`ManualClock::advance`], for
/// tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    micros_since_epoch: AtomicU64,
}

impl ManualClock {
    /// Builds a clock that reads `start`.
    pub fn new(start: SystemTime) -> Self {
        let clock = Self::default();
        clock.set(start);
        clock
    }

    /// Moves the clock to `time`. Times before 1970 read as the epoch.
    pub fn set(&self, time: SystemTime) {
        let micros = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        self.micros_since_epoch
            .store(u64::try_from(micros).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    /// Moves the clock forward by `step`.
    pub fn advance(&self, step: Duration) {
        let micros = u64::try_from(step.as_micros()).unwrap_or(u64::MAX);
        self.micros_since_epoch.fetch_add(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.micros_since_epoch.load(Ordering::SeqCst))
    }
}
