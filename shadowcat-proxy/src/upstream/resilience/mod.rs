//! Building blocks for choosing an upstream replica: circuit breakers, a load balancer,
//! a retry budget and the `[[upstreams]]` configuration they are built from.
//!
//! The pieces are synchronous and cheap, so the async request path calls them directly:
//!
//! ```
//! use std::time::Duration;
//! use shadowcat_proxy::upstream::resilience::{
//!     Balancer, BalancerConfig, BreakerConfig, ReplicaSpec, RetryBudget, RetryConfig,
//!     UpstreamOutcome, is_failure,
//! };
//!
//! let balancer = Balancer::new(
//!     BalancerConfig::default(),
//!     BreakerConfig::default(),
//!     vec![ReplicaSpec::default(), ReplicaSpec::default()],
//! );
//! let budget = RetryBudget::new(RetryConfig::default());
//!
//! budget.record_request();
//! let guard = balancer.pick(None).expect("both replicas are closed");
//! let outcome = UpstreamOutcome::Status(200);
//! guard.observe(Duration::from_millis(12));
//! if is_failure(&outcome) {
//!     guard.failure();
//! } else {
//!     guard.success();
//! }
//! ```

mod balancer;
mod breaker;
mod config;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use self::balancer::{
    Balancer, BalancerConfig, NoReplica, ReplicaGuard, ReplicaSpec, ReplicaTransitionListener,
};
pub use self::breaker::{
    BreakerOpen, BreakerPermit, BreakerState, CircuitBreaker, Transition, TransitionListener,
    UpstreamOutcome, is_failure,
};
pub use self::config::{
    BalancePolicy, BreakerConfig, ConfigError, HealthConfig, MemberConfig, RetryConfig,
    UpstreamConfig,
};
pub use self::retry::{RetryBudget, is_retry_safe};

/// A source of monotonic time, injectable so tests move time by hand.
pub trait Clock: Send + Sync + 'static {
    /// Returns the current instant.
    fn now(&self) -> Instant;
}

/// The operating system's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Tokio's clock: the system's monotonic time, or the runtime's paused time in tests
/// that pause it.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A clock chosen at run time and shared by every breaker, balancer and budget of the
/// proxy.
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    /// Wraps `clock`.
    pub fn new(clock: impl Clock) -> Self {
        Self(Arc::new(clock))
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        Self::new(TokioClock)
    }
}

impl Clock for SharedClock {
    fn now(&self) -> Instant {
        self.0.now()
    }
}

impl std::fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedClock")
    }
}

/// A clock that moves only when [`ManualClock::advance`] is called.
///
/// Clones share the same time, so a test keeps one handle and gives clones to the
/// components under test.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    elapsed_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// Creates a clock that reads the current instant until advanced.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            elapsed_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
    }
}

/// Counts events in a rolling window split into a fixed number of buckets.
///
/// An event leaves the window between `window - window / BUCKETS` and `window` after it
/// was recorded, depending on where in its bucket it fell.
#[derive(Debug)]
struct RollingCounts<const N: usize> {
    origin: Instant,
    bucket_width: Duration,
    /// The absolute index of the newest bucket, counted from `origin`.
    newest: u64,
    buckets: [[u64; N]; BUCKETS],
}

/// The number of buckets in every rolling window.
const BUCKETS: usize = 10;

impl<const N: usize> RollingCounts<N> {
    fn new(now: Instant, window: Duration) -> Self {
        let bucket_width = (window / BUCKETS as u32).max(Duration::from_millis(1));
        Self {
            origin: now,
            bucket_width,
            newest: 0,
            buckets: [[0; N]; BUCKETS],
        }
    }

    /// Drops the buckets that fell out of the window and returns the current bucket.
    fn advance(&mut self, now: Instant) -> &mut [u64; N] {
        let elapsed = now.saturating_duration_since(self.origin);
        let index =
            u64::try_from(elapsed.as_nanos() / self.bucket_width.as_nanos()).unwrap_or(u64::MAX);
        if index > self.newest {
            let stale = (index - self.newest).min(BUCKETS as u64);
            for step in 1..=stale {
                let slot = ((self.newest + step) % BUCKETS as u64) as usize;
                self.buckets[slot] = [0; N];
            }
            self.newest = index;
        }
        &mut self.buckets[(self.newest % BUCKETS as u64) as usize]
    }

    fn add(&mut self, now: Instant, counter: usize, amount: u64) {
        self.advance(now)[counter] += amount;
    }

    fn total(&mut self, now: Instant, counter: usize) -> u64 {
        self.advance(now);
        self.buckets.iter().map(|bucket| bucket[counter]).sum()
    }

    fn clear(&mut self) {
        self.buckets = [[0; N]; BUCKETS];
    }
}
