//! Request costs per tier.

use std::collections::HashMap;

use shadowcat_core::{CallContext, MessageKind};

use super::key::{KeyHasher, PrehashedKeys, domain};

/// A fixed inline buffer that spills to the heap only past `N` items, so the common
/// single-request check allocates nothing.
#[derive(Debug, Clone)]
pub(crate) struct SmallBuf<T: Copy + Default, const N: usize> {
    inline: [T; N],
    len: usize,
    spill: Vec<T>,
}

impl<T: Copy + Default, const N: usize> SmallBuf<T, N> {
    pub(crate) fn new() -> Self {
        Self {
            inline: [T::default(); N],
            len: 0,
            spill: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, item: T) {
        if self.len < N {
            self.inline[self.len] = item;
            self.len += 1;
        } else {
            self.spill.push(item);
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.inline[..self.len]
            .iter_mut()
            .chain(self.spill.iter_mut())
    }
}

/// The cost of the calls that share one key of a per-call tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyCost {
    /// Keyed hash of the method or target name.
    pub(crate) key: u64,
    /// Sum of the weights of the requests with this key.
    pub(crate) cost: u32,
    /// Index of the first message with this key, to name it in a rejection.
    pub(crate) message: u32,
}

/// Adds `cost` to `key`, merging with an earlier entry for the same key.
fn add_key_cost<const N: usize>(
    costs: &mut SmallBuf<KeyCost, N>,
    key: u64,
    cost: u32,
    message: u32,
) {
    if let Some(entry) = costs.iter_mut().find(|entry| entry.key == key) {
        entry.cost = entry.cost.saturating_add(cost);
        return;
    }
    costs.push(KeyCost { key, cost, message });
}

/// The weight tables of one limiter, keyed by the same hashes as the tiers.
#[derive(Debug, Clone, Default)]
pub(crate) struct Weights {
    pub(crate) methods: HashMap<u64, u32, PrehashedKeys>,
    pub(crate) tools: HashMap<u64, u32, PrehashedKeys>,
}

/// The cost of one HTTP request on each tier, built by
/// [`RateLimiter::cost`](crate::RateLimiter::cost) from the request's JSON-RPC messages.
///
/// - `ip` and `global` count every message: a request counts its weight, a
///   notification or a response counts 1. A request with no body (GET, DELETE) counts 1.
/// - `subject`, `session` and `route` count the weights of requests only; notifications
///   and responses cost 0. A request with no body counts 1.
/// - `mcp_method` and `tool` charge each method or target its own sum: a batch that calls
///   tool A three times and tool B twice charges A 3 and B 2.
///
/// A request's weight is the configured weight of its tool, prompt or resource, else the
/// configured weight of its method, else 1. A `Cost` contains keyed hashes, so it is only
/// meaningful to the limiter that built it.
#[derive(Debug, Clone)]
pub struct Cost {
    pub(crate) traffic: u32,
    pub(crate) calls: u32,
    pub(crate) methods: SmallBuf<KeyCost, 4>,
    pub(crate) targets: SmallBuf<KeyCost, 4>,
}

impl Cost {
    /// Returns the cost on the `ip` and `global` tiers.
    pub fn traffic(&self) -> u32 {
        self.traffic
    }

    /// Returns the cost on the `subject`, `session` and `route` tiers.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// Returns the per-method costs on the `mcp_method` tier, one per distinct method.
    pub fn method_costs(&self) -> impl Iterator<Item = u32> + '_ {
        self.methods.iter().map(|entry| entry.cost)
    }

    /// Returns the per-target costs on the `tool` tier, one per distinct target.
    pub fn target_costs(&self) -> impl Iterator<Item = u32> + '_ {
        self.targets.iter().map(|entry| entry.cost)
    }

    /// Computes the cost of `ctx`. `methods` and `targets` are false when those tiers are
    /// off, so their keys are not collected.
    pub(crate) fn compute(
        ctx: &CallContext,
        keys: &KeyHasher,
        weights: &Weights,
        methods: bool,
        targets: bool,
    ) -> Self {
        let mut cost = Cost {
            traffic: 0,
            calls: 0,
            methods: SmallBuf::new(),
            targets: SmallBuf::new(),
        };
        if ctx.messages.is_empty() {
            cost.traffic = 1;
            cost.calls = 1;
            return cost;
        }

        let hash_methods = methods || !weights.methods.is_empty();
        let hash_targets = targets || !weights.tools.is_empty();
        for (index, message) in ctx.messages.iter().enumerate() {
            if message.kind != MessageKind::Request {
                cost.traffic = cost.traffic.saturating_add(1);
                continue;
            }

            let method = message.method.as_deref().unwrap_or_default();
            let method_key = hash_methods.then(|| keys.hash(domain::METHOD, method));
            let target_key = match (&message.target, hash_targets) {
                (Some(target), true) => Some(keys.hash(domain::TOOL_NAME, target.as_str())),
                _ => None,
            };
            let weight = target_key
                .and_then(|key| weights.tools.get(&key).copied())
                .or_else(|| method_key.and_then(|key| weights.methods.get(&key).copied()))
                .unwrap_or(1);

            cost.traffic = cost.traffic.saturating_add(weight);
            cost.calls = cost.calls.saturating_add(weight);
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if let (true, Some(key)) = (methods, method_key) {
                add_key_cost(&mut cost.methods, key, weight, index);
            }
            if let (true, Some(key)) = (targets, target_key) {
                add_key_cost(&mut cost.targets, key, weight, index);
            }
        }
        cost
    }
}
