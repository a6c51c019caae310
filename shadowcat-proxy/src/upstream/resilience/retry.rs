//! A retry budget, so retries cannot multiply the load on an upstream that is already
//! failing, and the rule for which MCP requests may be sent twice.

use std::fmt;

use parking_lot::Mutex;

use super::config::RetryConfig;
use super::{Clock, RollingCounts, SystemClock};

const REQUESTS: usize = 0;
const RETRIES: usize = 1;

/// Methods that change nothing on the server, so sending them twice is harmless.
const IDEMPOTENT_METHODS: [&str; 8] = [
    "tools/list",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "ping",
    "server/discover",
];

/// Returns whether a failed request may be sent again.
///
/// A request may be retried when the connection failed before any byte of it was sent,
/// or when its JSON-RPC `method` is read-only. `tools/call` is retried only in the first
/// case, because a tool may have acted before the failure.
pub fn is_retry_safe(method: &str, sent_any_byte: bool) -> bool {
    !sent_any_byte || IDEMPOTENT_METHODS.contains(&method)
}

/// Limits retries to a share of recent requests plus a small steady allowance.
///
/// Within the rolling window, retries may reach
/// `budget_ratio * requests + min_per_second * window_seconds`.
pub struct RetryBudget<C: Clock = SystemClock> {
    config: RetryConfig,
    clock: C,
    /// The retries allowed per window regardless of traffic.
    floor: f64,
    counts: Mutex<RollingCounts<2>>,
}

impl RetryBudget<SystemClock> {
    /// Creates an empty budget on the system clock.
    pub fn new(config: RetryConfig) -> Self {
        Self::with_clock(config, SystemClock)
    }
}

impl<C: Clock> RetryBudget<C> {
    /// Creates an empty budget on `clock`.
    pub fn with_clock(config: RetryConfig, clock: C) -> Self {
        let floor = f64::from(config.min_per_second) * config.window.as_secs_f64();
        let counts = Mutex::new(RollingCounts::new(clock.now(), config.window));
        Self {
            config,
            clock,
            floor,
            counts,
        }
    }

    /// Counts one original request, which grows the budget by `budget_ratio`.
    pub fn record_request(&self) {
        self.counts.lock().add(self.clock.now(), REQUESTS, 1);
    }

    /// Takes one retry from the budget, or returns `false` when the budget is spent.
    ///
    /// The check and the withdrawal happen under one lock, so concurrent callers cannot
    /// overdraw the budget.
    pub fn try_retry(&self) -> bool {
        let now = self.clock.now();
        let mut counts = self.counts.lock();
        let requests = counts.total(now, REQUESTS) as f64;
        let retries = counts.total(now, RETRIES) as f64;
        let allowed = self.config.budget_ratio * requests + self.floor;
        if retries + 1.0 > allowed {
            return false;
        }
        counts.add(now, RETRIES, 1);
        true
    }
}

impl<C: Clock> fmt::Debug for RetryBudget<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::resilience::ManualClock;

    fn budget(ratio: f64, min_per_second: u32) -> (RetryBudget<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let config = RetryConfig {
            budget_ratio: ratio,
            min_per_second,
            window: Duration::from_secs(10),
        };
        (RetryBudget::with_clock(config, clock.clone()), clock)
    }

    fn retries_granted(budget: &RetryBudget<ManualClock>, attempts: usize) -> usize {
        (0..attempts).filter(|_| budget.try_retry()).count()
    }

    #[test]
    fn ratio_caps_retries() {
        let (budget, _clock) = budget(0.2, 0);
        for _ in 0..100 {
            budget.record_request();
        }
        assert_eq!(retries_granted(&budget, 1000), 20);
    }

    #[test]
    fn floor_allows_retries_without_traffic() {
        let (budget, _clock) = budget(0.2, 1);
        assert_eq!(retries_granted(&budget, 100), 10);
    }

    #[test]
    fn budget_refills_after_window() {
        let (budget, clock) = budget(0.5, 0);
        for _ in 0..10 {
            budget.record_request();
        }
        assert_eq!(retries_granted(&budget, 100), 5);

        clock.advance(Duration::from_secs(11));
        assert!(!budget.try_retry(), "old requests left the window");
        for _ in 0..4 {
            budget.record_request();
        }
        assert_eq!(retries_granted(&budget, 100), 2);
    }

    #[test]
    fn retry_safety_by_method() {
        let idempotent = [
            "tools/list",
            "prompts/list",
            "prompts/get",
            "resources/list",
            "resources/templates/list",
            "resources/read",
            "ping",
            "server/discover",
        ];
        for method in idempotent {
            assert!(is_retry_safe(method, true), "{method}");
            assert!(is_retry_safe(method, false), "{method}");
        }
        for method in ["tools/call", "completion/complete", "logging/setLevel"] {
            assert!(!is_retry_safe(method, true), "{method}");
            assert!(
                is_retry_safe(method, false),
                "{method} before any byte was sent"
            );
        }
    }
}
