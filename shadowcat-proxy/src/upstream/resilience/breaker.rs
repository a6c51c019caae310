//! A circuit breaker for one upstream replica.
//!
//! The breaker trips when, within the rolling `window`, at least `min_requests` outcomes
//! were recorded and at least `failure_threshold` of them were failures. It then stays
//! open for a jittered, exponentially growing duration, admits `half_open_probes` probe
//! requests, and closes once every probe succeeded.

use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::config::BreakerConfig;
use super::{Clock, RollingCounts, SystemClock};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Requests pass and their outcomes are counted.
    Closed,
    /// Requests fail fast until the open period ends.
    Open,
    /// A bounded number of probe requests pass; the rest fail fast.
    HalfOpen,
}

impl BreakerState {
    /// Returns the state's lowercase name, as used in audit records and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of breaker state, for `circuit.opened`, `circuit.half_open` and
/// `circuit.closed` audit records and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state before the change.
    pub from: BreakerState,
    /// The state after the change.
    pub to: BreakerState,
    /// How long the breaker stays open, set only when `to` is [`BreakerState::Open`].
    pub open_for: Option<Duration>,
    /// The failures that opened the breaker: those in the window when it tripped from
    /// closed, 1 for a failed half-open probe, 0 when `to` is not open.
    pub failures: u32,
}

/// A callback run on every state change, after the breaker's lock is released.
pub type TransitionListener = Box<dyn Fn(Transition) + Send + Sync>;

/// The error returned when the breaker rejects a request without trying the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit open, retry after {retry_after:?}")]
pub struct BreakerOpen {
    /// When a retry may be admitted: the rest of the open period, or `open_base` while
    /// half-open probes are in flight.
    pub retry_after: Duration,
}

/// The result of one request sent upstream, as the breaker classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// The connection could not be established.
    ConnectError,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// The upstream did not respond in time.
    Timeout,
    /// The upstream responded with this HTTP status code.
    Status(u16),
    /// The upstream responded 200 with a JSON-RPC error object in the body.
    JsonRpcError,
}

/// Returns whether `outcome` counts against the replica's health.
///
/// Connect errors, resets, timeouts and HTTP 5xx are failures. Every 4xx, including 429,
/// is the client's problem or deliberate back-pressure, and a JSON-RPC error inside a 200
/// is an application-level result, so none of them count.
pub fn is_failure(outcome: &UpstreamOutcome) -> bool {
    match outcome {
        UpstreamOutcome::ConnectError | UpstreamOutcome::Reset | UpstreamOutcome::Timeout => true,
        UpstreamOutcome::Status(status) => (500..=599).contains(status),
        UpstreamOutcome::JsonRpcError => false,
    }
}

const SUCCESSES: usize = 0;
const FAILURES: usize = 1;

/// A circuit breaker for one upstream replica.
///
/// # Performance
///
/// In the closed state, [`CircuitBreaker::try_acquire`] and the outcome call each take
/// one short `parking_lot` lock and never allocate.
pub struct CircuitBreaker<C: Clock = SystemClock> {
    config: BreakerConfig,
    clock: C,
    listener: Option<TransitionListener>,
    inner: Mutex<Inner>,
}

struct Inner {
    state: BreakerState,
    /// Bumped on every transition, so a permit issued before one cannot count after it.
    epoch: u64,
    counts: RollingCounts<2>,
    open_until: Instant,
    /// Trips since the breaker last closed; drives the exponential backoff.
    trips: u32,
    probes_out: u32,
    probe_successes: u32,
    rng: SmallRng,
}

/// Identifies the admission a permit or replica guard holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    epoch: u64,
    pub(super) probe: bool,
}

impl CircuitBreaker<SystemClock> {
    /// Creates a closed breaker on the system clock.
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, SystemClock, None, rand::random())
    }
}

impl<C: Clock> CircuitBreaker<C> {
    /// Creates a closed breaker on `clock`, calling `listener` on every transition and
    /// drawing backoff jitter from a generator seeded with `seed`.
    pub fn with_clock(
        config: BreakerConfig,
        clock: C,
        listener: Option<TransitionListener>,
        seed: u64,
    ) -> Self {
        let now = clock.now();
        let inner = Inner {
            state: BreakerState::Closed,
            epoch: 0,
            counts: RollingCounts::new(now, config.window),
            open_until: now,
            trips: 0,
            probes_out: 0,
            probe_successes: 0,
            rng: SmallRng::seed_from_u64(seed),
        };
        Self {
            config,
            clock,
            listener,
            inner: Mutex::new(inner),
        }
    }

    /// Returns the configuration the breaker was built with.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Returns the current state.
    ///
    /// An open breaker whose open period has ended still reports `Open` until the next
    /// [`CircuitBreaker::try_acquire`] moves it to half-open.
    pub fn state(&self) -> BreakerState {
        self.inner.lock().state
    }

    /// Admits a request, or rejects it while the breaker is open or all half-open probes
    /// are out.
    ///
    /// # Errors
    ///
    /// Returns [`BreakerOpen`] with a retry hint when the request must fail fast.
    pub fn try_acquire(&self) -> Result<BreakerPermit<'_, C>, BreakerOpen> {
        let ticket = self.acquire_ticket()?;
        Ok(BreakerPermit {
            breaker: self,
            ticket,
            finished: false,
        })
    }

    /// Returns `Ok` when [`CircuitBreaker::try_acquire`] would admit a request now, or the
    /// retry hint it would return, without changing any state.
    pub fn check(&self) -> Result<(), BreakerOpen> {
        let now = self.clock.now();
        let inner = self.inner.lock();
        match inner.state {
            BreakerState::Closed => Ok(()),
            BreakerState::Open if now >= inner.open_until => Ok(()),
            BreakerState::Open => Err(BreakerOpen {
                retry_after: inner.open_until - now,
            }),
            BreakerState::HalfOpen if inner.probes_out < self.config.half_open_probes.get() => {
                Ok(())
            }
            BreakerState::HalfOpen => Err(self.probes_busy()),
        }
    }

    pub(super) fn acquire_ticket(&self) -> Result<Ticket, BreakerOpen> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();

        let mut transition = None;
        match inner.state {
            BreakerState::Closed => {
                return Ok(Ticket {
                    epoch: inner.epoch,
                    probe: false,
                });
            }
            BreakerState::Open if now < inner.open_until => {
                return Err(BreakerOpen {
                    retry_after: inner.open_until - now,
                });
            }
            BreakerState::Open => {
                transition = Some(inner.enter(BreakerState::HalfOpen, None));
            }
            BreakerState::HalfOpen => {}
        }

        // Half-open: admit a probe while fewer than `half_open_probes` are out.
        let result = if inner.probes_out < self.config.half_open_probes.get() {
            inner.probes_out += 1;
            Ok(Ticket {
                epoch: inner.epoch,
                probe: true,
            })
        } else {
            Err(self.probes_busy())
        };
        drop(inner);

        self.notify(transition);
        result
    }

    fn probes_busy(&self) -> BreakerOpen {
        // NOTE: the probes' own latency is unknown, so the hint is a guess.
        BreakerOpen {
            retry_after: self.config.open_base,
        }
    }

    /// Records the outcome of an admitted request: `Some(true)` for a failure,
    /// `Some(false)` for a success and `None` for a request that ended without one.
    pub(super) fn complete(&self, ticket: Ticket, failed: Option<bool>) -> Option<Transition> {
        let now = self.clock.now();
        let mut inner = self.inner.lock();
        if ticket.epoch != inner.epoch {
            return None;
        }

        let transition = if ticket.probe {
            self.complete_probe(&mut inner, now, failed)
        } else {
            self.complete_closed(&mut inner, now, failed)
        };
        drop(inner);

        self.notify(transition);
        transition
    }

    fn complete_closed(
        &self,
        inner: &mut Inner,
        now: Instant,
        failed: Option<bool>,
    ) -> Option<Transition> {
        match failed {
            None => None,
            Some(false) => {
                inner.counts.add(now, SUCCESSES, 1);
                None
            }
            Some(true) => {
                inner.counts.add(now, FAILURES, 1);
                let failures = inner.counts.total(now, FAILURES);
                let requests = failures + inner.counts.total(now, SUCCESSES);
                let tripped = failures >= u64::from(self.config.failure_threshold.get())
                    && requests >= u64::from(self.config.min_requests.get());
                let failures = u32::try_from(failures).unwrap_or(u32::MAX);
                tripped.then(|| self.open(inner, now, failures))
            }
        }
    }

    fn complete_probe(
        &self,
        inner: &mut Inner,
        now: Instant,
        failed: Option<bool>,
    ) -> Option<Transition> {
        inner.probes_out -= 1;
        match failed {
            None => None,
            Some(true) => Some(self.open(inner, now, 1)),
            Some(false) => {
                inner.probe_successes += 1;
                if inner.probe_successes < self.config.half_open_probes.get() {
                    return None;
                }
                inner.trips = 0;
                Some(inner.enter(BreakerState::Closed, None))
            }
        }
    }

    /// Opens the breaker for the next backoff step.
    fn open(&self, inner: &mut Inner, now: Instant, failures: u32) -> Transition {
        inner.trips = inner.trips.saturating_add(1);
        let open_for = self.open_duration(inner.trips, &mut inner.rng);
        inner.open_until = now + open_for;
        let mut transition = inner.enter(BreakerState::Open, Some(open_for));
        transition.failures = failures;
        transition
    }

    /// Computes `open_base * 2^(trips - 1)`, capped at `open_max`, then shortened by a
    /// random fraction of at most `jitter`, so the result lies in
    /// `[(1 - jitter) * capped, capped]`.
    fn open_duration(&self, trips: u32, rng: &mut SmallRng) -> Duration {
        let doublings = trips.saturating_sub(1).min(31);
        let scaled = self
            .config
            .open_base
            .checked_mul(1_u32 << doublings)
            .unwrap_or(self.config.open_max);
        let capped = scaled.min(self.config.open_max);

        if self.config.jitter <= 0.0 {
            return capped;
        }
        let cut = rng.random_range(0.0..self.config.jitter);
        capped.mul_f64(1.0 - cut)
    }

    fn notify(&self, transition: Option<Transition>) {
        if let (Some(listener), Some(transition)) = (&self.listener, transition) {
            listener(transition);
        }
    }
}

impl Inner {
    fn enter(&mut self, to: BreakerState, open_for: Option<Duration>) -> Transition {
        let from = self.state;
        self.state = to;
        self.epoch = self.epoch.wrapping_add(1);
        self.counts.clear();
        self.probes_out = 0;
        self.probe_successes = 0;
        Transition {
            from,
            to,
            open_for,
            failures: 0,
        }
    }
}

impl<C: Clock> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("state", &self.state())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Admission of one request through a [`CircuitBreaker`].
///
/// Call [`BreakerPermit::success`] or [`BreakerPermit::failure`] once the outcome is
/// known. Dropping the permit without either, for example when the request was
/// cancelled, records nothing and frees a half-open probe slot.
#[must_use = "a permit records nothing unless `success` or `failure` is called"]
pub struct BreakerPermit<'a, C: Clock = SystemClock> {
    breaker: &'a CircuitBreaker<C>,
    ticket: Ticket,
    finished: bool,
}

impl<C: Clock> BreakerPermit<'_, C> {
    /// Returns whether this permit is a half-open probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.probe
    }

    /// Records a success and returns the state change it caused, if any.
    pub fn success(mut self) -> Option<Transition> {
        self.finished = true;
        self.breaker.complete(self.ticket, Some(false))
    }

    /// Records a failure and returns the state change it caused, if any.
    pub fn failure(mut self) -> Option<Transition> {
        self.finished = true;
        self.breaker.complete(self.ticket, Some(true))
    }

    /// Records `outcome`, classified by [`is_failure`], and returns the state change it
    /// caused, if any.
    pub fn record(self, outcome: &UpstreamOutcome) -> Option<Transition> {
        if is_failure(outcome) {
            self.failure()
        } else {
            self.success()
        }
    }
}

impl<C: Clock> Drop for BreakerPermit<'_, C> {
    fn drop(&mut self) {
        if !self.finished {
            self.breaker.complete(self.ticket, None);
        }
    }
}

impl<C: Clock> fmt::Debug for BreakerPermit<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerPermit")
            .field("probe", &self.ticket.probe)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::upstream::resilience::ManualClock;
    use std::num::NonZeroU32;

    fn config(threshold: u32, min_requests: u32, probes: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold: NonZeroU32::new(threshold).unwrap(),
            min_requests: NonZeroU32::new(min_requests).unwrap(),
            window: Duration::from_secs(10),
            open_base: Duration::from_secs(1),
            open_max: Duration::from_secs(60),
            jitter: 0.0,
            half_open_probes: NonZeroU32::new(probes).unwrap(),
        }
    }

    fn breaker(config: BreakerConfig) -> (CircuitBreaker<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        (
            CircuitBreaker::with_clock(config, clock.clone(), None, 7),
            clock,
        )
    }

    fn fail(breaker: &CircuitBreaker<ManualClock>) -> Option<Transition> {
        breaker.try_acquire().unwrap().failure()
    }

    /// Opens the breaker and returns the open period of that trip.
    fn trip(breaker: &CircuitBreaker<ManualClock>) -> Duration {
        loop {
            if let Some(transition) = fail(breaker) {
                return transition.open_for.unwrap();
            }
        }
    }

    #[test]
    fn classifier_counts_only_transport_errors_and_5xx() {
        let cases = [
            (UpstreamOutcome::ConnectError, true),
            (UpstreamOutcome::Reset, true),
            (UpstreamOutcome::Timeout, true),
            (UpstreamOutcome::Status(500), true),
            (UpstreamOutcome::Status(503), true),
            (UpstreamOutcome::Status(599), true),
            (UpstreamOutcome::Status(200), false),
            (UpstreamOutcome::Status(400), false),
            (UpstreamOutcome::Status(404), false),
            (UpstreamOutcome::Status(429), false),
            (UpstreamOutcome::Status(499), false),
            (UpstreamOutcome::JsonRpcError, false),
        ];
        for (outcome, expected) in cases {
            assert_eq!(is_failure(&outcome), expected, "{outcome:?}");
        }
    }

    #[test]
    fn opens_at_failure_threshold() {
        let (breaker, _clock) = breaker(config(5, 5, 1));
        for _ in 0..4 {
            assert_eq!(fail(&breaker), None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);

        let transition = fail(&breaker).expect("the fifth failure trips the breaker");
        assert_eq!(transition.from, BreakerState::Closed);
        assert_eq!(transition.to, BreakerState::Open);
        assert_eq!(transition.open_for, Some(Duration::from_secs(1)));
        assert_eq!(breaker.state(), BreakerState::Open);

        let rejected = breaker.try_acquire().unwrap_err();
        assert_eq!(rejected.retry_after, Duration::from_secs(1));
    }

    #[test]
    fn stays_closed_below_min_requests() {
        let (breaker, _clock) = breaker(config(3, 10, 1));
        for _ in 0..9 {
            assert_eq!(fail(&breaker), None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(fail(&breaker).is_some());
    }

    #[test]
    fn failures_leave_the_window() {
        let (breaker, clock) = breaker(config(5, 5, 1));
        for _ in 0..4 {
            fail(&breaker);
        }
        clock.advance(Duration::from_secs(11));
        for _ in 0..4 {
            assert_eq!(fail(&breaker), None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn client_errors_never_open() {
        let (breaker, _clock) = breaker(config(5, 5, 1));
        for status in [404, 429] {
            for _ in 0..20 {
                let permit = breaker.try_acquire().unwrap();
                assert_eq!(permit.record(&UpstreamOutcome::Status(status)), None);
            }
        }
        for _ in 0..20 {
            let permit = breaker.try_acquire().unwrap();
            assert_eq!(permit.record(&UpstreamOutcome::JsonRpcError), None);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_exactly_the_probes() {
        let (breaker, clock) = breaker(config(1, 1, 2));
        trip(&breaker);
        clock.advance(Duration::from_secs(1));

        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..100)
                .map(|_| scope.spawn(|| breaker.try_acquire()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let admitted: Vec<_> = outcomes.into_iter().filter_map(Result::ok).collect();
        assert_eq!(admitted.len(), 2);
        assert!(admitted.iter().all(BreakerPermit::is_probe));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);

        let rejected = breaker.try_acquire().unwrap_err();
        assert_eq!(rejected.retry_after, Duration::from_secs(1));

        let mut admitted = admitted.into_iter();
        assert_eq!(admitted.next().unwrap().success(), None);
        let closed = admitted
            .next()
            .unwrap()
            .success()
            .expect("both probes passed");
        assert_eq!(closed.from, BreakerState::HalfOpen);
        assert_eq!(closed.to, BreakerState::Closed);
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn successful_probe_closes() {
        let (breaker, clock) = breaker(config(1, 1, 1));
        trip(&breaker);
        clock.advance(Duration::from_millis(999));
        assert!(breaker.try_acquire().is_err());

        clock.advance(Duration::from_millis(1));
        let probe = breaker.try_acquire().unwrap();
        assert!(probe.is_probe());
        assert!(breaker.try_acquire().is_err());

        let transition = probe.success().unwrap();
        assert_eq!(transition.to, BreakerState::Closed);
        assert!(!breaker.try_acquire().unwrap().is_probe());
    }

    #[test]
    fn failed_probe_backs_off_further() {
        let (breaker, clock) = breaker(config(1, 1, 1));
        assert_eq!(trip(&breaker), Duration::from_secs(1));

        for expected in [2, 4, 8] {
            clock.advance(breaker.check().unwrap_err().retry_after);
            let transition = breaker.try_acquire().unwrap().failure().unwrap();
            assert_eq!(transition.from, BreakerState::HalfOpen);
            assert_eq!(transition.to, BreakerState::Open);
            assert_eq!(transition.open_for, Some(Duration::from_secs(expected)));
        }

        // Closing resets the backoff to `open_base`.
        clock.advance(Duration::from_secs(8));
        breaker.try_acquire().unwrap().success().unwrap();
        assert_eq!(trip(&breaker), Duration::from_secs(1));
    }

    #[test]
    fn backoff_stops_at_open_max() {
        let mut config = config(1, 1, 1);
        config.open_max = Duration::from_secs(5);
        let (breaker, clock) = breaker(config);
        trip(&breaker);
        let mut last = Duration::ZERO;
        for _ in 0..40 {
            clock.advance(breaker.check().unwrap_err().retry_after);
            last = breaker
                .try_acquire()
                .unwrap()
                .failure()
                .unwrap()
                .open_for
                .unwrap();
        }
        assert_eq!(last, Duration::from_secs(5));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let mut config = config(1, 1, 1);
        config.open_base = Duration::from_secs(10);
        config.jitter = 0.5;
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..200 {
            let clock = ManualClock::new();
            let breaker = CircuitBreaker::with_clock(config.clone(), clock, None, seed);
            let open_for = breaker
                .try_acquire()
                .unwrap()
                .failure()
                .unwrap()
                .open_for
                .unwrap();
            assert!(open_for >= Duration::from_secs(5), "{open_for:?}");
            assert!(open_for <= Duration::from_secs(10), "{open_for:?}");
            seen.insert(open_for);
        }
        assert!(seen.len() > 100, "only {} distinct periods", seen.len());
    }

    #[test]
    fn cancelled_probe_frees_its_slot() {
        let (breaker, clock) = breaker(config(1, 1, 1));
        trip(&breaker);
        clock.advance(Duration::from_secs(1));

        drop(breaker.try_acquire().unwrap());
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let probe = breaker.try_acquire().expect("the slot was freed");
        assert!(probe.is_probe());
    }

    #[test]
    fn stale_permit_is_ignored() {
        let (breaker, clock) = breaker(config(1, 1, 1));
        let stale = breaker.try_acquire().unwrap();
        trip(&breaker);
        clock.advance(Duration::from_secs(1));
        let probe = breaker.try_acquire().unwrap();

        assert_eq!(stale.failure(), None);
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        assert_eq!(probe.success().unwrap().to, BreakerState::Closed);
    }

    #[test]
    fn listener_sees_every_transition() {
        let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let listener: TransitionListener = Box::new(move |t: Transition| sink.lock().push(t.to));
        let clock = ManualClock::new();
        let breaker = CircuitBreaker::with_clock(config(1, 1, 1), clock.clone(), Some(listener), 1);

        trip(&breaker);
        clock.advance(Duration::from_secs(1));
        breaker.try_acquire().unwrap().success();

        assert_eq!(
            *seen.lock(),
            [
                BreakerState::Open,
                BreakerState::HalfOpen,
                BreakerState::Closed
            ]
        );
    }
}
