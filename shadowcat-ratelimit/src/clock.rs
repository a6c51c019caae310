//! Time sources.
//!
//! The limiter reads time through governor's [`Clock`](governor::clock::Clock) trait, so
//! production code uses the fast TSC-based [`QuantaClock`] and tests use
//! [`FakeRelativeClock`], which only moves when a test advances it.

use governor::clock::Reference;
pub use governor::clock::{FakeRelativeClock, QuantaClock};

/// A time source the limiter can share across threads.
///
/// Implemented for every governor clock that is `Send + Sync`.
pub trait Clock: governor::clock::Clock + Send + Sync + 'static {}

impl<T> Clock for T where T: governor::clock::Clock + Send + Sync + 'static {}

/// The clock used when none is given.
pub type DefaultClock = QuantaClock;

/// A clock and the instant the limiter was built; GCRA state is kept in nanoseconds since
/// that instant.
pub(crate) struct Epoch<C: Clock> {
    clock: C,
    start: C::Instant,
}

impl<C: Clock> Epoch<C> {
    pub(crate) fn new(clock: C) -> Self {
        let start = clock.now();
        Self { clock, start }
    }

    /// Returns the nanoseconds elapsed since the limiter was built.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.clock.now().duration_since(self.start).as_u64()
    }
}
