//! The [`RateLimiter`] trait and its multi-tier GCRA implementation.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use shadowcat_core::{AuthMethod, CallContext, Principal, SessionId};

use crate::clock::{Clock, DefaultClock, Epoch};
use crate::coalesce::Coalescer;
use crate::concurrency::{ConcurrencyState, Permit, SlotKind};
use crate::config::{KeyedTierConfig, RateLimitConfig};
use crate::decision::{
    Allowed, CoalescedHits, CostTooHigh, Decision, LimitKey, LimitReason, Limited, OverflowNotice,
    Policy, Tier, TierStatus,
};
use crate::error::RateLimitError;
use crate::metrics::{Counters, MetricsSnapshot, TierMetrics};
use crate::store::{InMemoryStore, KeyedStore};
use crate::tier::{CellRef, Cost, KeyHasher, Probe, SmallBuf, TierState, Weights, domain};

/// Rejection entries the audit coalescer tracks before keys share one entry per tier.
const AUDIT_MAX_ENTRIES: usize = 65_536;

/// `Retry-After` given for concurrency limits: the limiter cannot know when a slot frees,
/// so this is a hint, not a promise.
const CONCURRENCY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A rate limiter the proxy calls once per request, after authentication.
///
/// `check` is synchronous. With the in-memory store it does no I/O and takes no lock
/// across tiers, so it can run inline on the request path.
pub trait RateLimiter: Send + Sync {
    /// Computes what `ctx` costs on each tier, from its JSON-RPC messages and the
    /// configured weights.
    fn cost(&self, ctx: &CallContext) -> Cost;

    /// Charges `cost` to every tier that applies to `ctx`, or to none of them when any
    /// tier rejects.
    fn check(&self, ctx: &CallContext, cost: &Cost) -> Decision;

    /// Returns the current metrics.
    fn snapshot(&self) -> MetricsSnapshot;
}

/// What a [`Charge`] names, to build a [`LimitKey`] only when a request is rejected.
#[derive(Debug, Clone, Copy, Default)]
enum Label {
    #[default]
    Global,
    Ip(IpNet),
    Subject,
    Session(SessionId),
    Route,
    Method(u32),
    Target(u32),
}

/// One bucket to test and charge.
#[derive(Debug, Clone, Copy, Default)]
struct Charge {
    tier: usize,
    key: u64,
    cost: u32,
    label: Label,
    /// Test only: the bucket must have room for `cost`, but is not charged.
    probe_only: bool,
}

/// A charge that was applied, kept so it can be refunded.
#[derive(Debug, Clone, Copy, Default)]
struct Refund {
    tier: usize,
    cell: CellRef,
    cost: u32,
}

/// The default [`RateLimiter`]: GCRA tiers checked together, plus concurrency limits,
/// pre-authentication and session-creation budgets.
///
/// # All or nothing
///
/// A check charges the buckets of a request in tier order (`ip`, `subject`, `session`,
/// `route`, `mcp_method`, `tool`, `global`), each with one compare-and-swap that tests
/// and charges together. When a bucket rejects, the buckets already charged are refunded
/// and the remaining ones are only tested, to find the binding tier. A refunded bucket
/// behaves exactly as if it had never been charged. For the few nanoseconds in between,
/// a concurrent request may see the charge and be rejected. A new key that was charged
/// and refunded stays tracked, with a full bucket, until the next `evict_idle`.
/// Per-client tiers come first, so a client flooding its own `ip`, `subject` or `session`
/// limit touches no shared bucket.
///
/// # Performance
///
/// A check of a single request hashes each key once (SipHash-1-3) and does one map read
/// and one compare-and-swap per tier, with no allocation and no lock held across tiers.
/// Batches with more than 4 distinct methods or targets allocate once. The `limiter`
/// bench compares a check with raw governor checks.
pub struct MultiTierLimiter<C: Clock = DefaultClock, S: KeyedStore = InMemoryStore> {
    epoch: Epoch<C>,
    keys: KeyHasher,
    weights: Weights,
    tiers: [Option<TierState<S>>; Tier::COUNT],
    concurrency: Arc<ConcurrencyState>,
    coalescer: Coalescer,
    counters: Counters,
    evict_interval: Duration,
}

impl MultiTierLimiter<DefaultClock, InMemoryStore> {
    /// Builds a limiter on the default clock and the in-memory store.
    ///
    /// # Errors
    ///
    /// Returns [`RateLimitError::InvalidConfig`] when overrides are configured on a tier
    /// that does not support them (only `subject`, `mcp_method` and `tool` do).
    pub fn new(config: &RateLimitConfig) -> Result<Self, RateLimitError> {
        Self::build(config, DefaultClock::default())
    }
}

impl<C: Clock> MultiTierLimiter<C, InMemoryStore> {
    /// Builds a limiter on `clock` and the in-memory store; tests pass a
    /// [`FakeRelativeClock`](crate::FakeRelativeClock).
    ///
    /// # Errors
    ///
    /// As [`MultiTierLimiter::new`].
    pub fn with_clock(config: &RateLimitConfig, clock: C) -> Result<Self, RateLimitError> {
        Self::build(config, clock)
    }
}

impl<C: Clock, S: KeyedStore> MultiTierLimiter<C, S> {
    /// Builds a limiter on `clock` and the store type `S`.
    ///
    /// # Errors
    ///
    /// As [`MultiTierLimiter::new`].
    pub fn build(config: &RateLimitConfig, clock: C) -> Result<Self, RateLimitError> {
        let keys = KeyHasher::new(config.ipv6_prefix);
        let mut tiers: [Option<TierState<S>>; Tier::COUNT] = std::array::from_fn(|_| None);

        if let Some(quota) = &config.tiers.global {
            tiers[Tier::Global.index()] = Some(TierState::single(Tier::Global, quota));
        }
        let keyed = [
            (Tier::Ip, &config.tiers.ip, None),
            (Tier::Subject, &config.tiers.subject, Some(domain::SUBJECT)),
            (Tier::Session, &config.tiers.session, None),
            (Tier::Route, &config.tiers.route, None),
            (
                Tier::McpMethod,
                &config.tiers.mcp_method,
                Some(domain::METHOD),
            ),
            (Tier::Tool, &config.tiers.tool, Some(domain::TOOL_NAME)),
        ];
        for (tier, tier_config, override_domain) in keyed {
            if let Some(tier_config) = tier_config {
                tiers[tier.index()] = Some(Self::keyed_tier(
                    config,
                    &keys,
                    tier,
                    tier_config,
                    override_domain,
                )?);
            }
        }

        let budgets = [
            (Tier::PreAuth, &config.pre_auth),
            (Tier::AuthFailure, &config.auth_failures),
            (Tier::SessionCreateIp, &config.sessions.ip),
            (Tier::SessionCreateSubject, &config.sessions.subject),
        ];
        for (tier, quota) in budgets {
            if let Some(quota) = quota {
                tiers[tier.index()] = Some(TierState::keyed(
                    tier,
                    quota,
                    config.max_keys_per_tier,
                    config.overflow,
                ));
            }
        }

        let mut weights = Weights::default();
        for (method, weight) in &config.weights.methods {
            let key = keys.hash(domain::METHOD, method);
            weights.methods.insert(key, weight.get());
        }
        for (tool, weight) in &config.weights.tools {
            let key = keys.hash(domain::TOOL_NAME, tool);
            weights.tools.insert(key, weight.get());
        }

        let audit_window = u64::try_from(config.audit_window.as_nanos()).unwrap_or(u64::MAX);
        let audit_entries =
            std::num::NonZeroUsize::new(AUDIT_MAX_ENTRIES).unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(Self {
            epoch: Epoch::new(clock),
            keys,
            weights,
            tiers,
            concurrency: Arc::new(ConcurrencyState::new(&config.concurrency)),
            coalescer: Coalescer::new(audit_window, audit_entries),
            counters: Counters::default(),
            evict_interval: config.evict_interval,
        })
    }

    fn keyed_tier(
        config: &RateLimitConfig,
        keys: &KeyHasher,
        tier: Tier,
        tier_config: &KeyedTierConfig,
        override_domain: Option<u8>,
    ) -> Result<TierState<S>, RateLimitError> {
        let max_keys = tier_config.max_keys.unwrap_or(config.max_keys_per_tier);
        let mut state = TierState::keyed(tier, &tier_config.quota(), max_keys, config.overflow);
        if tier_config.overrides.is_empty() {
            return Ok(state);
        }

        let Some(domain) = override_domain else {
            return Err(RateLimitError::InvalidConfig {
                field: format!("tiers.{tier}.overrides"),
                value: format!("{:?}", tier_config.overrides.keys().collect::<Vec<_>>()),
                reason: "overrides are supported on the subject, mcp_method and tool tiers only",
            });
        };
        for (name, quota) in &tier_config.overrides {
            state.add_override(keys.hash(domain, name), quota);
        }
        Ok(state)
    }

    fn has_tier(&self, tier: Tier) -> bool {
        self.tiers[tier.index()].is_some()
    }

    /// Checks the cost of `ctx` computed by [`RateLimiter::cost`].
    pub fn check_request(&self, ctx: &CallContext) -> Decision {
        let cost = self.cost(ctx);
        self.check(ctx, &cost)
    }

    /// Checks and charges the pre-authentication budget of `client_ip`, before any
    /// credential is examined.
    ///
    /// Also rejects an address that has used up its `auth_failures` budget, without
    /// charging that budget. Requests that later fail authentication should be reported
    /// with [`MultiTierLimiter::record_auth_failure`]. Returns an allowed decision when
    /// neither budget is configured.
    pub fn check_pre_auth(&self, client_ip: IpAddr) -> Decision {
        let (net, key) = self.keys.ip_key(client_ip);
        let mut charges = SmallBuf::<Charge, 2>::new();
        if self.has_tier(Tier::PreAuth) {
            charges.push(Charge {
                tier: Tier::PreAuth.index(),
                key,
                cost: 1,
                label: Label::Ip(net),
                probe_only: false,
            });
        }
        if self.has_tier(Tier::AuthFailure) {
            charges.push(Charge {
                tier: Tier::AuthFailure.index(),
                key,
                cost: 1,
                label: Label::Ip(net),
                probe_only: true,
            });
        }
        self.evaluate(&charges, None)
    }

    /// Charges one failed authentication to `client_ip`.
    ///
    /// Returns [`Decision::Limited`] when the address had already used its budget (it is
    /// then rejected before authentication until the budget refills), so the caller can
    /// audit the event.
    pub fn record_auth_failure(&self, client_ip: IpAddr) -> Decision {
        let mut charges = SmallBuf::<Charge, 1>::new();
        if self.has_tier(Tier::AuthFailure) {
            let (net, key) = self.keys.ip_key(client_ip);
            charges.push(Charge {
                tier: Tier::AuthFailure.index(),
                key,
                cost: 1,
                label: Label::Ip(net),
                probe_only: false,
            });
        }
        self.evaluate(&charges, None)
    }

    /// Checks and charges the budget for creating one legacy session (`initialize`), per
    /// client IP and per verified subject.
    pub fn check_session_creation(
        &self,
        client_ip: IpAddr,
        principal: Option<&Principal>,
    ) -> Decision {
        let mut charges = SmallBuf::<Charge, 2>::new();
        if self.has_tier(Tier::SessionCreateIp) {
            let (net, key) = self.keys.ip_key(client_ip);
            charges.push(Charge {
                tier: Tier::SessionCreateIp.index(),
                key,
                cost: 1,
                label: Label::Ip(net),
                probe_only: false,
            });
        }
        if self.has_tier(Tier::SessionCreateSubject)
            && let Some(subject) = verified_subject(principal)
        {
            charges.push(Charge {
                tier: Tier::SessionCreateSubject.index(),
                key: self.keys.hash(domain::SUBJECT, subject),
                cost: 1,
                label: Label::Subject,
                probe_only: false,
            });
        }
        self.evaluate(&charges, None)
    }

    /// Takes a concurrency slot of `kind` in total and for the verified subject of
    /// `principal`; the slot is freed when the [`Permit`] is dropped.
    ///
    /// # Errors
    ///
    /// Returns [`Limited`] with reason [`LimitReason::Concurrency`] when a limit is full.
    /// Its `retry_after` is one second, a hint, because the limiter cannot know when a
    /// slot frees.
    pub fn try_acquire(
        &self,
        kind: SlotKind,
        principal: Option<&Principal>,
    ) -> Result<Permit, Limited> {
        let subject = verified_subject(principal).map(|s| self.keys.hash(domain::SUBJECT, s));
        self.concurrency.try_acquire(kind, subject).map_err(|key| {
            let now = self.epoch.now();
            let audit_key = coalesce_key(kind.tier(), key_hash(&key));
            Limited {
                tier: kind.tier(),
                key,
                policy: None,
                retry_after: CONCURRENCY_RETRY_AFTER,
                reason: LimitReason::Concurrency,
                audit: self.audit(audit_key, kind.tier(), now),
            }
        })
    }

    /// Drops every tracked key whose bucket is full again, then releases the memory.
    ///
    /// A full bucket behaves exactly like an untracked key, so eviction never grants a
    /// client more than it had. The proxy calls this every
    /// [`evict_interval`](MultiTierLimiter::evict_interval).
    pub fn evict_idle(&self) {
        let now = self.epoch.now();
        for tier in self.tiers.iter().flatten() {
            tier.evict_idle(now);
        }
        self.coalescer.evict_idle(now);
    }

    /// Returns the configured eviction interval.
    pub fn evict_interval(&self) -> Duration {
        self.evict_interval
    }

    /// Returns true when a pre-authentication budget (`pre_auth` or `auth_failures`) is
    /// configured.
    pub fn has_pre_auth(&self) -> bool {
        self.has_tier(Tier::PreAuth) || self.has_tier(Tier::AuthFailure)
    }

    /// Returns the audit id of a client address: `ip:` and the keyed hash of its group, as
    /// in [`LimitKey`]'s `Display` form.
    pub fn ip_audit_id(&self, client_ip: IpAddr) -> String {
        let (net, hash) = self.keys.ip_key(client_ip);
        LimitKey::Ip { net, hash }.to_string()
    }

    /// Returns the audit id of a subject: `subject:` and its keyed hash.
    pub fn subject_audit_id(&self, subject: &str) -> String {
        let hash = self.keys.hash(domain::SUBJECT, subject);
        LimitKey::Subject { hash }.to_string()
    }

    // === check core ===

    /// Applies every charge, or none of them.
    fn evaluate<const N: usize>(
        &self,
        charges: &SmallBuf<Charge, N>,
        ctx: Option<&CallContext>,
    ) -> Decision {
        Counters::count(&self.counters.checks);
        let now = self.epoch.now();

        // Charge the buckets in order, each with one compare-and-swap that also tests it.
        let mut refunds = SmallBuf::<Refund, N>::new();
        let mut tightest: Option<TierStatus> = None;
        let mut overflow = None;
        for (position, charge) in charges.iter().enumerate() {
            let Some(tier) = self.tiers[charge.tier].as_ref() else {
                continue;
            };
            let outcome = if charge.probe_only {
                match tier.probe(charge.key, charge.cost, now) {
                    Probe::Pass => continue,
                    failed => Err(failed),
                }
            } else {
                tier.apply(charge.key, charge.cost, now)
            };
            let applied = match outcome {
                Ok(applied) => applied,
                Err(failed) => {
                    self.refund_all(&refunds);
                    return self.reject(charges, position, failed, now, ctx);
                }
            };

            refunds.push(Refund {
                tier: charge.tier,
                cell: applied.cell,
                cost: charge.cost,
            });
            let status = TierStatus {
                tier: tier.tier,
                policy: applied.gcra.policy(),
                remaining: applied.gcra.remaining(applied.tat, now),
                reset: applied.gcra.reset(applied.tat, now),
            };
            if tightest.is_none_or(|current| tighter(&status, &current)) {
                tightest = Some(status);
            }
            if overflow.is_none() && tier.is_overflow(applied.cell) {
                overflow = self.overflow_notice(tier.tier, now);
            }
        }

        Counters::count(&self.counters.allowed);
        Decision::Allowed(Allowed { tightest, overflow })
    }

    /// Builds the rejection once the charge at `position` failed with `failed` and every
    /// earlier charge was refunded.
    ///
    /// The later buckets are only tested, never charged, so the decision can name the
    /// binding tier: a cost that can never pass wins, else the longest wait, so that
    /// retrying after it passes every tier.
    fn reject<const N: usize>(
        &self,
        charges: &SmallBuf<Charge, N>,
        position: usize,
        failed: Probe,
        now: u64,
        ctx: Option<&CallContext>,
    ) -> Decision {
        let mut binding = None;
        for (index, charge) in charges.iter().enumerate().skip(position) {
            let Some(tier) = self.tiers[charge.tier].as_ref() else {
                continue;
            };
            let probe = if index == position {
                failed
            } else {
                tier.probe(charge.key, charge.cost, now)
            };
            let (wait, reason, overflow) = match probe {
                Probe::Pass => continue,
                Probe::TooCostly(policy) => return self.cost_too_high(charge, policy, ctx),
                Probe::Wait { wait, overflow } => (wait, LimitReason::Rate, overflow),
                Probe::AtCapacity => (self.evict_interval_nanos(), LimitReason::KeyCapacity, false),
            };
            if binding.is_none_or(|(_, longest, _, _)| wait > longest) {
                binding = Some((*charge, wait, reason, overflow));
            }
        }

        // The failed charge's tier exists, because `evaluate` skips absent tiers, and its
        // probe is never `Pass`, so `binding` is always set here.
        let (charge, wait, reason, overflow) =
            binding.unwrap_or((Charge::default(), 0, LimitReason::Rate, false));
        Decision::Limited(self.limited(&charge, wait, reason, overflow, now, ctx))
    }

    fn refund_all<const N: usize>(&self, refunds: &SmallBuf<Refund, N>) {
        for refund in refunds.iter() {
            if let Some(tier) = self.tiers[refund.tier].as_ref() {
                tier.refund(refund.cell, refund.cost);
            }
        }
    }

    fn evict_interval_nanos(&self) -> u64 {
        u64::try_from(self.evict_interval.as_nanos()).unwrap_or(u64::MAX)
    }

    fn limited(
        &self,
        charge: &Charge,
        wait: u64,
        reason: LimitReason,
        overflow: bool,
        now: u64,
        ctx: Option<&CallContext>,
    ) -> Limited {
        let tier = Tier::ALL[charge.tier];
        let state = self.tiers[charge.tier].as_ref();
        if let Some(state) = state {
            Counters::count(&state.counters.limited);
        }
        let (key, audit_key) = if overflow {
            (LimitKey::Overflow, coalesce_key(tier, OVERFLOW_SLOT))
        } else {
            (self.limit_key(charge, ctx), coalesce_key(tier, charge.key))
        };
        Limited {
            tier,
            key,
            policy: state.map(|state| state.policy(charge.key)),
            retry_after: Duration::from_nanos(wait),
            reason,
            audit: self.audit(audit_key, tier, now),
        }
    }

    fn cost_too_high(
        &self,
        charge: &Charge,
        policy: Policy,
        ctx: Option<&CallContext>,
    ) -> Decision {
        if let Some(state) = self.tiers[charge.tier].as_ref() {
            Counters::count(&state.counters.cost_too_high);
        }
        Decision::CostTooHigh(CostTooHigh {
            tier: Tier::ALL[charge.tier],
            key: self.limit_key(charge, ctx),
            policy,
            cost: charge.cost,
        })
    }

    fn audit(&self, key: u64, tier: Tier, now: u64) -> Option<CoalescedHits> {
        let shared = coalesce_key(tier, OVERFLOW_SLOT);
        self.coalescer
            .observe(key, shared, now)
            .map(|suppressed| CoalescedHits { suppressed })
    }

    fn overflow_notice(&self, tier: Tier, now: u64) -> Option<OverflowNotice> {
        let key = coalesce_key(tier, OVERFLOW_NOTICE_SLOT);
        self.coalescer
            .observe(key, key, now)
            .map(|suppressed| OverflowNotice { tier, suppressed })
    }

    fn limit_key(&self, charge: &Charge, ctx: Option<&CallContext>) -> LimitKey {
        let message =
            |index: u32| ctx.and_then(|ctx| ctx.messages.get(usize::try_from(index).ok()?));
        match charge.label {
            Label::Global => LimitKey::Global,
            Label::Ip(net) => LimitKey::Ip {
                net,
                hash: charge.key,
            },
            Label::Subject => LimitKey::Subject { hash: charge.key },
            Label::Session(id) => LimitKey::Session(id),
            Label::Route => match ctx {
                Some(ctx) => LimitKey::Route {
                    method: ctx.http_method,
                    path: ctx.route.as_ref().into(),
                },
                None => LimitKey::Global,
            },
            Label::Method(index) => {
                let method = message(index).and_then(|m| m.method.as_deref());
                LimitKey::Method(method.unwrap_or_default().into())
            }
            Label::Target(index) => {
                let message = message(index);
                LimitKey::Target {
                    method: message
                        .and_then(|m| m.method.as_deref())
                        .unwrap_or_default()
                        .into(),
                    name: message
                        .and_then(|m| m.target.as_deref())
                        .unwrap_or_default()
                        .into(),
                }
            }
        }
    }

    /// Builds the list of buckets the request touches, cheapest-to-reject tiers first.
    fn charges(&self, ctx: &CallContext, cost: &Cost) -> SmallBuf<Charge, 10> {
        let mut charges = SmallBuf::new();
        let mut push = |tier: Tier, key: u64, cost: u32, label: Label| {
            if cost > 0 && self.has_tier(tier) {
                charges.push(Charge {
                    tier: tier.index(),
                    key,
                    cost,
                    label,
                    probe_only: false,
                });
            }
        };

        if self.has_tier(Tier::Ip) {
            let (net, key) = self.keys.ip_key(ctx.client_ip);
            push(Tier::Ip, key, cost.traffic, Label::Ip(net));
        }
        if self.has_tier(Tier::Subject)
            && let Some(subject) = verified_subject(ctx.principal.as_deref())
        {
            let key = self.keys.hash(domain::SUBJECT, subject);
            push(Tier::Subject, key, cost.calls, Label::Subject);
        }
        if self.has_tier(Tier::Session)
            && let Some(session) = ctx.session_id
        {
            let key = self.keys.hash(domain::SESSION, session.as_bytes());
            push(Tier::Session, key, cost.calls, Label::Session(session));
        }
        if self.has_tier(Tier::Route) {
            let key = self
                .keys
                .hash_pair(domain::ROUTE, ctx.http_method, &ctx.route);
            push(Tier::Route, key, cost.calls, Label::Route);
        }
        for entry in cost.methods.iter() {
            push(
                Tier::McpMethod,
                entry.key,
                entry.cost,
                Label::Method(entry.message),
            );
        }
        for entry in cost.targets.iter() {
            push(
                Tier::Tool,
                entry.key,
                entry.cost,
                Label::Target(entry.message),
            );
        }
        push(Tier::Global, 0, cost.traffic, Label::Global);
        charges
    }
}

impl<C: Clock, S: KeyedStore> RateLimiter for MultiTierLimiter<C, S> {
    fn cost(&self, ctx: &CallContext) -> Cost {
        Cost::compute(
            ctx,
            &self.keys,
            &self.weights,
            self.has_tier(Tier::McpMethod),
            self.has_tier(Tier::Tool),
        )
    }

    fn check(&self, ctx: &CallContext, cost: &Cost) -> Decision {
        let charges = self.charges(ctx, cost);
        self.evaluate(&charges, Some(ctx))
    }

    fn snapshot(&self) -> MetricsSnapshot {
        use std::sync::atomic::Ordering::Relaxed;

        let mut tiers: Vec<TierMetrics> = self
            .tiers
            .iter()
            .flatten()
            .map(|tier| TierMetrics {
                tier: tier.tier,
                limited: tier.counters.limited.load(Relaxed),
                cost_too_high: tier.counters.cost_too_high.load(Relaxed),
                overflow: tier.counters.overflow.load(Relaxed),
                tracked_keys: tier.tracked_keys(),
            })
            .collect();
        for (index, kind) in [SlotKind::Request, SlotKind::Stream]
            .into_iter()
            .enumerate()
        {
            tiers.push(TierMetrics {
                tier: kind.tier(),
                limited: self.concurrency.limited[index].load(Relaxed),
                cost_too_high: 0,
                overflow: 0,
                tracked_keys: self.concurrency.subjects(kind),
            });
        }

        MetricsSnapshot {
            checks: self.counters.checks.load(Relaxed),
            allowed: self.counters.allowed.load(Relaxed),
            tiers,
            in_flight: self.concurrency.in_use(SlotKind::Request),
            streams: self.concurrency.in_use(SlotKind::Stream),
            audit_suppressed: self.coalescer.suppressed_total(),
        }
    }
}

/// Slot ids in the coalescer that no real key hash is expected to take.
const OVERFLOW_SLOT: u64 = 0x6f76_6572_666c_6f77;
const OVERFLOW_NOTICE_SLOT: u64 = 0x6e6f_7469_6365_0000;

/// Mixes the tier into a key hash, so equal keys of different tiers coalesce apart.
fn coalesce_key(tier: Tier, key: u64) -> u64 {
    let salt = (tier.index() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    key ^ salt
}

fn key_hash(key: &LimitKey) -> u64 {
    match key {
        LimitKey::Subject { hash } | LimitKey::Ip { hash, .. } => *hash,
        _ => 0,
    }
}

/// Returns the subject of a principal that proved who it is; anonymous callers are limited
/// by IP only.
fn verified_subject(principal: Option<&Principal>) -> Option<&str> {
    principal
        .filter(|principal| principal.method != AuthMethod::Anonymous)
        .map(|principal| principal.subject.as_str())
}

/// Orders statuses by remaining budget, then by the longer reset.
fn tighter(candidate: &TierStatus, current: &TierStatus) -> bool {
    (candidate.remaining, std::cmp::Reverse(candidate.reset))
        < (current.remaining, std::cmp::Reverse(current.reset))
}
