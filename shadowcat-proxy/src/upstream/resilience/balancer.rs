//! A load balancer over the replicas of one upstream group.
//!
//! Each replica has a weight, an in-flight counter, an EWMA of observed latency, a
//! [`CircuitBreaker`] and passive outlier detection. Replicas whose breaker rejects
//! requests, that an active health check marked unhealthy, or that were ejected after
//! consecutive failures get no traffic.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::breaker::{CircuitBreaker, Ticket, Transition, UpstreamOutcome, is_failure};
use super::config::{BalancePolicy, BreakerConfig, UpstreamConfig};
use super::{Clock, SystemClock};

/// Balancer settings shared by all replicas of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct BalancerConfig {
    /// The policy that chooses a replica.
    pub policy: BalancePolicy,
    /// Consecutive failed requests that eject a replica. Defaults to 5.
    pub eject_after_failures: NonZeroU32,
    /// The time an ejected replica gets no traffic. Defaults to 30s.
    pub eject_for: Duration,
    /// The weight of the newest latency sample in the EWMA, in `(0, 1]`. Defaults to 0.3.
    pub ewma_alpha: f64,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            policy: BalancePolicy::default(),
            eject_after_failures: NonZeroU32::new(5).expect("5 is not zero"),
            eject_for: Duration::from_secs(30),
            ewma_alpha: 0.3,
        }
    }
}

impl BalancerConfig {
    /// Takes the policy and outlier settings from an `[[upstreams]]` entry.
    pub fn from_upstream(upstream: &UpstreamConfig) -> Self {
        Self {
            policy: upstream.policy,
            eject_after_failures: upstream.health.eject_after_failures,
            eject_for: upstream.health.eject_for,
            ..Self::default()
        }
    }
}

/// The static description of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaSpec {
    /// The replica's share of traffic relative to the others.
    pub weight: NonZeroU32,
}

impl ReplicaSpec {
    /// Describes a replica with `weight`.
    pub fn new(weight: NonZeroU32) -> Self {
        Self { weight }
    }
}

impl Default for ReplicaSpec {
    fn default() -> Self {
        Self::new(NonZeroU32::MIN)
    }
}

/// The error returned when no replica can take a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no upstream replica available")]
pub struct NoReplica {
    /// The shortest wait until an open breaker or an ejection ends, for a `Retry-After`
    /// header; `None` when every replica was excluded or marked unhealthy.
    pub retry_after: Option<Duration>,
}

/// A callback run on every breaker state change with the replica's index.
pub type ReplicaTransitionListener = Arc<dyn Fn(usize, Transition) + Send + Sync>;

/// A load balancer over the replicas of one upstream group.
///
/// Clones share the same replicas and counters.
pub struct Balancer<C: Clock + Clone = SystemClock> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: Clock> {
    config: BalancerConfig,
    clock: C,
    replicas: Vec<Replica<C>>,
    rng: Mutex<SmallRng>,
    /// The running weights of smooth weighted round robin, one per replica.
    round_robin: Mutex<Vec<i64>>,
}

struct Replica<C: Clock> {
    weight: u32,
    in_flight: AtomicU32,
    /// The latency EWMA in seconds as `f64` bits; 0 until the first observation.
    ewma_bits: AtomicU64,
    breaker: CircuitBreaker<C>,
    marked_unhealthy: AtomicBool,
    outlier: Mutex<Outlier>,
}

#[derive(Debug, Default)]
struct Outlier {
    consecutive_failures: u32,
    ejected_until: Option<Instant>,
}

impl Balancer<SystemClock> {
    /// Creates a balancer on the system clock with one breaker per replica.
    pub fn new(config: BalancerConfig, breaker: BreakerConfig, replicas: Vec<ReplicaSpec>) -> Self {
        Self::with_clock(config, breaker, replicas, SystemClock, rand::random(), None)
    }
}

impl<C: Clock + Clone> Balancer<C> {
    /// Creates a balancer on `clock`, drawing randomness from a generator seeded with
    /// `seed` and calling `listener` on every breaker state change.
    pub fn with_clock(
        config: BalancerConfig,
        breaker: BreakerConfig,
        replicas: Vec<ReplicaSpec>,
        clock: C,
        seed: u64,
        listener: Option<ReplicaTransitionListener>,
    ) -> Self {
        let replicas: Vec<Replica<C>> = replicas
            .into_iter()
            .enumerate()
            .map(|(index, spec)| {
                let replica_listener = listener.clone().map(|listener| {
                    Box::new(move |transition| listener(index, transition))
                        as super::TransitionListener
                });
                let breaker_seed = seed.wrapping_add(index as u64 + 1);
                Replica {
                    weight: spec.weight.get(),
                    in_flight: AtomicU32::new(0),
                    ewma_bits: AtomicU64::new(0),
                    breaker: CircuitBreaker::with_clock(
                        breaker.clone(),
                        clock.clone(),
                        replica_listener,
                        breaker_seed,
                    ),
                    marked_unhealthy: AtomicBool::new(false),
                    outlier: Mutex::new(Outlier::default()),
                }
            })
            .collect();

        let round_robin = Mutex::new(vec![0; replicas.len()]);
        let shared = Shared {
            config,
            clock,
            replicas,
            rng: Mutex::new(SmallRng::seed_from_u64(seed)),
            round_robin,
        };
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Returns the number of replicas.
    pub fn len(&self) -> usize {
        self.shared.replicas.len()
    }

    /// Returns whether the balancer has no replicas.
    pub fn is_empty(&self) -> bool {
        self.shared.replicas.is_empty()
    }

    /// Returns the breaker of replica `index`.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn breaker(&self, index: usize) -> &CircuitBreaker<C> {
        &self.shared.replicas[index].breaker
    }

    /// Returns the requests in flight on replica `index`.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn in_flight(&self, index: usize) -> u32 {
        self.shared.replicas[index]
            .in_flight
            .load(Ordering::Relaxed)
    }

    /// Returns the latency EWMA of replica `index`, or `None` before the first
    /// observation.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn latency_ewma(&self, index: usize) -> Option<Duration> {
        let seconds = self.shared.replicas[index].ewma_seconds();
        (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
    }

    /// Marks replica `index` healthy or unhealthy, as an active health check decides.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn set_healthy(&self, index: usize, healthy: bool) {
        let replica = &self.shared.replicas[index];
        replica.marked_unhealthy.store(!healthy, Ordering::Relaxed);
    }

    /// Returns whether replica `index` is ejected after consecutive failures.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn is_ejected(&self, index: usize) -> bool {
        let now = self.shared.clock.now();
        let outlier = self.shared.replicas[index].outlier.lock();
        outlier.ejected_until.is_some_and(|until| now < until)
    }

    /// Chooses a replica by the configured policy and admits the request through its
    /// breaker. `exclude` skips one replica, such as the one a failed attempt used.
    ///
    /// # Errors
    ///
    /// Returns [`NoReplica`] with the shortest known wait when no replica can take the
    /// request.
    pub fn pick(&self, exclude: Option<usize>) -> Result<ReplicaGuard<C>, NoReplica> {
        let shared = &*self.shared;
        let now = shared.clock.now();

        let chosen = match shared.config.policy {
            BalancePolicy::P2c => shared.choose_p2c(now, exclude),
            BalancePolicy::RoundRobin => shared.choose_round_robin(now, exclude),
            BalancePolicy::LeastRequests => shared.choose_least_requests(now, exclude),
        };

        // The breaker may have changed since the eligibility check, so a rejected choice
        // falls back to every other eligible replica in turn.
        let start = chosen.unwrap_or(0);
        for offset in 0..shared.replicas.len() {
            let index = (start + offset) % shared.replicas.len();
            if offset > 0 && shared.availability(index, now, exclude).is_err() {
                continue;
            }
            if offset == 0 && chosen.is_none() {
                continue;
            }
            if let Ok(ticket) = shared.replicas[index].breaker.acquire_ticket() {
                return Ok(self.admit(index, ticket));
            }
        }

        Err(NoReplica {
            retry_after: shared.shortest_wait(now, exclude),
        })
    }

    /// Admits a request to replica `index` through its breaker alone, for requests bound
    /// to one replica such as those of a legacy session. Health marks and ejection do
    /// not apply: the request has nowhere else to go.
    ///
    /// # Errors
    ///
    /// Returns [`NoReplica`] with the breaker's retry hint while it rejects requests.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn acquire(&self, index: usize) -> Result<ReplicaGuard<C>, NoReplica> {
        match self.shared.replicas[index].breaker.acquire_ticket() {
            Ok(ticket) => Ok(self.admit(index, ticket)),
            Err(open) => Err(NoReplica {
                retry_after: Some(open.retry_after),
            }),
        }
    }

    /// Returns whether replica `index` may take new requests now: not marked unhealthy,
    /// not ejected, and its breaker admitting requests.
    ///
    /// # Panics
    ///
    /// Panics when `index` is out of range.
    pub fn is_available(&self, index: usize) -> bool {
        let now = self.shared.clock.now();
        self.shared.availability(index, now, None).is_ok()
    }

    fn admit(&self, index: usize, ticket: Ticket) -> ReplicaGuard<C> {
        self.shared.replicas[index]
            .in_flight
            .fetch_add(1, Ordering::Relaxed);
        ReplicaGuard {
            shared: Arc::clone(&self.shared),
            index,
            ticket,
            finished: false,
        }
    }
}

impl<C: Clock + Clone> Clone for Balancer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<C: Clock + Clone> fmt::Debug for Balancer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("config", &self.shared.config)
            .field("replicas", &self.shared.replicas.len())
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl<C: Clock> Shared<C> {
    /// Returns `Ok` when replica `index` may take a request now, or the wait until it may
    /// (`None` when unknown).
    fn availability(
        &self,
        index: usize,
        now: Instant,
        exclude: Option<usize>,
    ) -> Result<(), Option<Duration>> {
        if exclude == Some(index) {
            return Err(None);
        }
        let replica = &self.replicas[index];
        if replica.marked_unhealthy.load(Ordering::Relaxed) {
            return Err(None);
        }
        if let Some(until) = replica.outlier.lock().ejected_until
            && now < until
        {
            return Err(Some(until - now));
        }
        replica
            .breaker
            .check()
            .map_err(|open| Some(open.retry_after))
    }

    fn shortest_wait(&self, now: Instant, exclude: Option<usize>) -> Option<Duration> {
        (0..self.replicas.len())
            .filter_map(|index| self.availability(index, now, exclude).err().flatten())
            .min()
    }

    /// Samples two distinct eligible replicas and returns the one with the lower cost.
    fn choose_p2c(&self, now: Instant, exclude: Option<usize>) -> Option<usize> {
        let eligible = (0..self.replicas.len())
            .filter(|&index| self.availability(index, now, exclude).is_ok())
            .count();
        if eligible == 0 {
            return None;
        }

        let (first, second) = {
            let mut rng = self.rng.lock();
            let first = rng.random_range(0..eligible);
            let mut second = rng.random_range(0..eligible.max(2) - 1);
            if second >= first {
                second += 1;
            }
            (first, second)
        };

        let mut nth_eligible = (0..self.replicas.len())
            .filter(|&index| self.availability(index, now, exclude).is_ok())
            .enumerate();
        let a = nth_eligible.find(|&(n, _)| n == first.min(second))?.1;
        let b = nth_eligible
            .find(|&(n, _)| n == first.max(second))
            .map(|(_, index)| index);
        let Some(b) = b else {
            return Some(a);
        };

        // Order the pair as sampled, so equal costs split evenly between the two.
        let (a, b) = if first < second { (a, b) } else { (b, a) };
        if self.replicas[b].cost() < self.replicas[a].cost() {
            Some(b)
        } else {
            Some(a)
        }
    }

    /// Smooth weighted round robin: each eligible replica gains its weight, the largest
    /// running weight wins and pays back the sum of the weights.
    fn choose_round_robin(&self, now: Instant, exclude: Option<usize>) -> Option<usize> {
        let mut running = self.round_robin.lock();
        let mut total = 0_i64;
        let mut best: Option<usize> = None;
        for (index, replica) in self.replicas.iter().enumerate() {
            if self.availability(index, now, exclude).is_err() {
                continue;
            }
            let weight = i64::from(replica.weight);
            running[index] += weight;
            total += weight;
            if best.is_none_or(|best| running[index] > running[best]) {
                best = Some(index);
            }
        }
        let best = best?;
        running[best] -= total;
        Some(best)
    }

    /// Chooses the eligible replica with the fewest in-flight requests per unit of
    /// weight, scanning from a random start so ties spread out.
    fn choose_least_requests(&self, now: Instant, exclude: Option<usize>) -> Option<usize> {
        let count = self.replicas.len();
        if count == 0 {
            return None;
        }
        let start = self.rng.lock().random_range(0..count);
        let mut best: Option<usize> = None;
        for offset in 0..count {
            let index = (start + offset) % count;
            if self.availability(index, now, exclude).is_err() {
                continue;
            }
            let fewer = best.is_none_or(|best| {
                let candidate = &self.replicas[index];
                let current = &self.replicas[best];
                // Compare in_flight / weight without division.
                u64::from(candidate.in_flight.load(Ordering::Relaxed)) * u64::from(current.weight)
                    < u64::from(current.in_flight.load(Ordering::Relaxed))
                        * u64::from(candidate.weight)
            });
            if fewer {
                best = Some(index);
            }
        }
        best
    }
}

impl<C: Clock> Replica<C> {
    fn ewma_seconds(&self) -> f64 {
        f64::from_bits(self.ewma_bits.load(Ordering::Relaxed))
    }

    /// Computes the power-of-two-choices cost: latency EWMA times (in-flight + 1), per unit of
    /// weight. A replica with no observations costs 0, so it is tried soon.
    fn cost(&self) -> f64 {
        let in_flight = f64::from(self.in_flight.load(Ordering::Relaxed));
        self.ewma_seconds() * (in_flight + 1.0) / f64::from(self.weight)
    }

    fn observe(&self, latency: Duration, alpha: f64) {
        let sample = latency.as_secs_f64();
        let _ = self
            .ewma_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let current = f64::from_bits(bits);
                let next = if current > 0.0 {
                    current + alpha * (sample - current)
                } else {
                    sample
                };
                Some(next.to_bits())
            });
    }
}

/// One request admitted to a replica.
///
/// The guard counts the request as in flight until dropped. Call
/// [`ReplicaGuard::success`] or [`ReplicaGuard::failure`] with the outcome. Dropping the
/// guard without either, for example when the request was cancelled, records nothing.
#[must_use = "a guard records nothing unless `success` or `failure` is called"]
pub struct ReplicaGuard<C: Clock + Clone = SystemClock> {
    shared: Arc<Shared<C>>,
    index: usize,
    ticket: Ticket,
    finished: bool,
}

impl<C: Clock + Clone> ReplicaGuard<C> {
    /// Returns the index of the chosen replica, in the order the replicas were given.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Returns whether this request is a half-open probe of the replica's breaker.
    pub fn is_probe(&self) -> bool {
        self.ticket.probe
    }

    /// Adds a latency sample to the replica's EWMA.
    pub fn observe(&self, latency: Duration) {
        let alpha = self.shared.config.ewma_alpha;
        self.shared.replicas[self.index].observe(latency, alpha);
    }

    /// Records a success and returns the breaker state change it caused, if any.
    pub fn success(mut self) -> Option<Transition> {
        self.finished = true;
        let replica = &self.shared.replicas[self.index];
        replica.outlier.lock().consecutive_failures = 0;
        replica.breaker.complete(self.ticket, Some(false))
    }

    /// Records a failure and returns the breaker state change it caused, if any.
    ///
    /// After `eject_after_failures` consecutive failures the replica is ejected for
    /// `eject_for`.
    pub fn failure(mut self) -> Option<Transition> {
        self.finished = true;
        let replica = &self.shared.replicas[self.index];
        {
            let mut outlier = replica.outlier.lock();
            outlier.consecutive_failures += 1;
            if outlier.consecutive_failures >= self.shared.config.eject_after_failures.get() {
                outlier.consecutive_failures = 0;
                outlier.ejected_until =
                    Some(self.shared.clock.now() + self.shared.config.eject_for);
            }
        }
        replica.breaker.complete(self.ticket, Some(true))
    }

    /// Records `outcome`, classified by [`is_failure`], and returns the breaker state
    /// change it caused, if any.
    pub fn record(self, outcome: &UpstreamOutcome) -> Option<Transition> {
        if is_failure(outcome) {
            self.failure()
        } else {
            self.success()
        }
    }
}

impl<C: Clock + Clone> Drop for ReplicaGuard<C> {
    fn drop(&mut self) {
        let replica = &self.shared.replicas[self.index];
        replica.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.finished {
            replica.breaker.complete(self.ticket, None);
        }
    }
}

impl<C: Clock + Clone> fmt::Debug for ReplicaGuard<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplicaGuard")
            .field("index", &self.index)
            .field("probe", &self.ticket.probe)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::resilience::BreakerState;
    use crate::upstream::resilience::ManualClock;

    fn weights(weights: &[u32]) -> Vec<ReplicaSpec> {
        weights
            .iter()
            .map(|&weight| ReplicaSpec::new(NonZeroU32::new(weight).unwrap()))
            .collect()
    }

    fn breaker_config() -> BreakerConfig {
        BreakerConfig {
            jitter: 0.0,
            open_base: Duration::from_secs(5),
            ..BreakerConfig::default()
        }
    }

    fn balancer(
        policy: BalancePolicy,
        specs: Vec<ReplicaSpec>,
    ) -> (Balancer<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let config = BalancerConfig {
            policy,
            eject_after_failures: NonZeroU32::new(100).unwrap(),
            ..BalancerConfig::default()
        };
        let balancer =
            Balancer::with_clock(config, breaker_config(), specs, clock.clone(), 42, None);
        (balancer, clock)
    }

    /// Picks `iterations` times, finishing each request at once, and counts per replica.
    fn count_picks(balancer: &Balancer<ManualClock>, iterations: usize) -> Vec<usize> {
        let mut counts = vec![0; balancer.len()];
        for _ in 0..iterations {
            let guard = balancer.pick(None).unwrap();
            counts[guard.index()] += 1;
            guard.success();
        }
        counts
    }

    /// Opens the breaker of replica `index` with failures sent to it alone.
    fn open_replica(balancer: &Balancer<ManualClock>, index: usize) {
        while balancer.breaker(index).state() != BreakerState::Open {
            let guard = balancer.pick(None).unwrap();
            if guard.index() == index {
                guard.failure();
            } else {
                guard.success();
            }
        }
    }

    #[test]
    fn round_robin_follows_weights() {
        let (balancer, _clock) = balancer(BalancePolicy::RoundRobin, weights(&[1, 2, 3]));
        assert_eq!(count_picks(&balancer, 600), [100, 200, 300]);
    }

    #[test]
    fn round_robin_interleaves() {
        let (balancer, _clock) = balancer(BalancePolicy::RoundRobin, weights(&[1, 1, 1]));
        let order: Vec<_> = (0..6)
            .map(|_| balancer.pick(None).unwrap().index())
            .collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn p2c_spreads_equal_replicas() {
        let (balancer, _clock) = balancer(BalancePolicy::P2c, weights(&[1, 1, 1]));
        let counts = count_picks(&balancer, 3000);
        for count in counts {
            assert!((800..1200).contains(&count), "{count} of 3000");
        }
    }

    #[test]
    fn p2c_prefers_faster_replica() {
        let (balancer, _clock) = balancer(BalancePolicy::P2c, weights(&[1, 1, 1]));
        // Teach the balancer latencies: replica 2 is ten times faster.
        for _ in 0..30 {
            let guard = balancer.pick(None).unwrap();
            let latency = if guard.index() == 2 { 10 } else { 100 };
            guard.observe(Duration::from_millis(latency));
            guard.success();
        }
        assert!(balancer.latency_ewma(2).unwrap() < Duration::from_millis(20));

        let counts = count_picks(&balancer, 3000);
        // Replica 2 wins whenever it is sampled, which is two pairs out of three.
        assert!(counts[2] > 1800, "{counts:?}");
        assert!(counts[0] < 700, "{counts:?}");
        assert!(counts[1] < 700, "{counts:?}");
    }

    #[test]
    fn p2c_weighs_in_flight() {
        let (balancer, _clock) = balancer(BalancePolicy::P2c, weights(&[1, 1]));
        for index in 0..2 {
            let guard = balancer.pick(Some(1 - index)).unwrap();
            guard.observe(Duration::from_millis(10));
            guard.success();
        }
        let held = balancer.pick(None).unwrap();
        let busy = held.index();
        for _ in 0..50 {
            let guard = balancer.pick(None).unwrap();
            assert_ne!(guard.index(), busy);
        }
        assert_eq!(balancer.in_flight(busy), 1);
    }

    #[test]
    fn least_requests_fills_evenly() {
        let (balancer, _clock) = balancer(BalancePolicy::LeastRequests, weights(&[1, 1, 2]));
        let held: Vec<_> = (0..8).map(|_| balancer.pick(None).unwrap()).collect();
        assert_eq!(balancer.in_flight(0), 2);
        assert_eq!(balancer.in_flight(1), 2);
        assert_eq!(balancer.in_flight(2), 4);
        drop(held);
        assert_eq!(balancer.in_flight(2), 0);
    }

    #[test]
    fn skips_open_replicas() {
        for policy in [
            BalancePolicy::P2c,
            BalancePolicy::RoundRobin,
            BalancePolicy::LeastRequests,
        ] {
            let (balancer, _clock) = balancer(policy, weights(&[1, 1, 1]));
            open_replica(&balancer, 1);
            let counts = count_picks(&balancer, 300);
            assert_eq!(counts[1], 0, "{policy:?}: {counts:?}");
            assert!(counts[0] > 0, "{policy:?}: {counts:?}");
            assert!(counts[2] > 0, "{policy:?}: {counts:?}");
        }
    }

    #[test]
    fn honors_exclude() {
        let (balancer, _clock) = balancer(BalancePolicy::P2c, weights(&[1, 1]));
        for _ in 0..100 {
            assert_eq!(balancer.pick(Some(0)).unwrap().index(), 1);
        }

        let (single, _clock) = balancer_single();
        let none = single.pick(Some(0)).unwrap_err();
        assert_eq!(none.retry_after, None);
    }

    fn balancer_single() -> (Balancer<ManualClock>, ManualClock) {
        balancer(BalancePolicy::RoundRobin, weights(&[1]))
    }

    #[test]
    fn all_open_returns_shortest_wait() {
        let (balancer, clock) = balancer(BalancePolicy::P2c, weights(&[1, 1]));
        open_replica(&balancer, 0);
        clock.advance(Duration::from_secs(2));
        open_replica(&balancer, 1);

        let none = balancer.pick(None).unwrap_err();
        assert_eq!(none.retry_after, Some(Duration::from_secs(3)));

        // After the shorter wait, replica 0 takes a probe.
        clock.advance(Duration::from_secs(3));
        let probe = balancer.pick(None).unwrap();
        assert_eq!(probe.index(), 0);
        assert!(probe.is_probe());
    }

    #[test]
    fn skips_unhealthy_replicas() {
        let (balancer, _clock) = balancer(BalancePolicy::RoundRobin, weights(&[1, 1]));
        balancer.set_healthy(0, false);
        assert_eq!(count_picks(&balancer, 10), [0, 10]);
        balancer.set_healthy(1, false);
        assert_eq!(balancer.pick(None).unwrap_err().retry_after, None);
        balancer.set_healthy(0, true);
        assert_eq!(count_picks(&balancer, 10), [10, 0]);
    }

    #[test]
    fn ejects_after_consecutive_failures() {
        let clock = ManualClock::new();
        let config = BalancerConfig {
            policy: BalancePolicy::RoundRobin,
            eject_after_failures: NonZeroU32::new(5).unwrap(),
            eject_for: Duration::from_secs(30),
            ..BalancerConfig::default()
        };
        let breaker = BreakerConfig {
            failure_threshold: NonZeroU32::new(50).unwrap(),
            min_requests: NonZeroU32::new(50).unwrap(),
            ..breaker_config()
        };
        let balancer =
            Balancer::with_clock(config, breaker, weights(&[1, 1]), clock.clone(), 1, None);

        // A success in between resets the streak.
        for _ in 0..4 {
            balancer.pick(Some(1)).unwrap().failure();
        }
        balancer.pick(Some(1)).unwrap().success();
        for _ in 0..4 {
            balancer.pick(Some(1)).unwrap().failure();
        }
        assert!(!balancer.is_ejected(0));

        balancer.pick(Some(1)).unwrap().failure();
        assert!(balancer.is_ejected(0));
        assert_eq!(balancer.breaker(0).state(), BreakerState::Closed);
        assert_eq!(count_picks_any(&balancer, 10), [0, 10]);
        let none = balancer.pick(Some(1)).unwrap_err();
        assert_eq!(none.retry_after, Some(Duration::from_secs(30)));

        clock.advance(Duration::from_secs(30));
        assert!(!balancer.is_ejected(0));
        assert_eq!(balancer.pick(Some(1)).unwrap().index(), 0);
    }

    fn count_picks_any(balancer: &Balancer<ManualClock>, iterations: usize) -> Vec<usize> {
        let mut counts = vec![0; balancer.len()];
        for _ in 0..iterations {
            counts[balancer.pick(None).unwrap().index()] += 1;
        }
        counts
    }

    #[test]
    fn listener_names_the_replica() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let listener: ReplicaTransitionListener =
            Arc::new(move |index, transition: Transition| sink.lock().push((index, transition.to)));
        let clock = ManualClock::new();
        let balancer = Balancer::with_clock(
            BalancerConfig::default(),
            breaker_config(),
            weights(&[1, 1]),
            clock,
            3,
            Some(listener),
        );
        for _ in 0..5 {
            balancer.pick(Some(0)).unwrap().failure();
        }
        assert_eq!(*seen.lock(), [(1, BreakerState::Open)]);
    }

    #[test]
    fn cancelled_guard_releases_in_flight() {
        let (balancer, _clock) = balancer(BalancePolicy::P2c, weights(&[1]));
        let guard = balancer.pick(None).unwrap();
        assert_eq!(balancer.in_flight(0), 1);
        drop(guard);
        assert_eq!(balancer.in_flight(0), 0);
    }
}
