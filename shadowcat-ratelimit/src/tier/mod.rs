//! One rate tier: its quota, its keyed state, its overrides and its overflow bucket.

mod cost;
mod gcra;
mod key;

pub use cost::Cost;
pub(crate) use cost::{SmallBuf, Weights};
pub(crate) use key::{KeyHasher, PrehashedKeys, domain};

use gcra::Gcra;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::state::InMemoryState;

use crate::config::{OverflowMode, QuotaConfig};
use crate::decision::{Policy, Tier};
use crate::store::memory::{read_tat, update_tat};
use crate::store::{KeyedStore, Peek};

/// The bucket a charge lands in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CellRef {
    /// The tier's single cell: the global bucket, or a keyed tier's overflow bucket.
    #[default]
    Shared,
    /// An override bucket.
    Override(u64),
    /// A tracked key in the store.
    Key(u64),
}

/// The result of testing a charge without applying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The charge conforms now.
    Pass,
    /// The charge conforms after `wait` nanoseconds; `overflow` is set when the bucket
    /// is the tier's shared overflow bucket.
    Wait { wait: u64, overflow: bool },
    /// The cost exceeds the bucket's burst.
    TooCostly(Policy),
    /// The key is new, the tier is at its key cap and rejects new keys.
    AtCapacity,
}

/// A charge that was applied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Applied {
    pub(crate) cell: CellRef,
    pub(crate) tat: u64,
    pub(crate) gcra: Gcra,
}

struct Override {
    gcra: Gcra,
    cell: InMemoryState,
}

/// Counters of one tier.
#[derive(Default)]
pub(crate) struct TierCounters {
    pub(crate) limited: AtomicU64,
    pub(crate) cost_too_high: AtomicU64,
    pub(crate) overflow: AtomicU64,
}

/// One configured tier.
pub(crate) struct TierState<S> {
    pub(crate) tier: Tier,
    gcra: Gcra,
    keyed: bool,
    store: S,
    shared: InMemoryState,
    overrides: HashMap<u64, Override, PrehashedKeys>,
    overflow: OverflowMode,
    pub(crate) counters: TierCounters,
}

impl<S: KeyedStore> TierState<S> {
    /// Builds a tier with one bucket for everyone.
    pub(crate) fn single(tier: Tier, quota: &QuotaConfig) -> Self {
        Self::build(tier, quota, false, NonZeroUsize::MIN, OverflowMode::Shared)
    }

    /// Builds a tier with one bucket per key.
    pub(crate) fn keyed(
        tier: Tier,
        quota: &QuotaConfig,
        max_keys: NonZeroUsize,
        overflow: OverflowMode,
    ) -> Self {
        Self::build(tier, quota, true, max_keys, overflow)
    }

    fn build(
        tier: Tier,
        quota: &QuotaConfig,
        keyed: bool,
        max_keys: NonZeroUsize,
        overflow: OverflowMode,
    ) -> Self {
        Self {
            tier,
            gcra: Gcra::new(quota),
            keyed,
            store: S::with_max_keys(max_keys),
            shared: InMemoryState::default(),
            overrides: HashMap::default(),
            overflow,
            counters: TierCounters::default(),
        }
    }

    /// Gives `key` its own quota.
    pub(crate) fn add_override(&mut self, key: u64, quota: &QuotaConfig) {
        let entry = Override {
            gcra: Gcra::new(quota),
            cell: InMemoryState::default(),
        };
        self.overrides.insert(key, entry);
    }

    /// Returns the override bucket of `key`, skipping the map lookup on the usual tier
    /// without overrides.
    #[inline]
    fn override_for(&self, key: u64) -> Option<&Override> {
        if self.overrides.is_empty() {
            return None;
        }
        self.overrides.get(&key)
    }

    /// Returns the policy that applies to `key`.
    pub(crate) fn policy(&self, key: u64) -> Policy {
        match self.override_for(key) {
            Some(entry) => entry.gcra.policy(),
            None => self.gcra.policy(),
        }
    }

    /// Tests `cost` for `key` at `now` without changing any state.
    pub(crate) fn probe(&self, key: u64, cost: u32, now: u64) -> Probe {
        let (gcra, tat, overflow) = if !self.keyed {
            (&self.gcra, read_tat(&self.shared), false)
        } else if let Some(entry) = self.override_for(key) {
            (&entry.gcra, read_tat(&entry.cell), false)
        } else {
            match self.store.peek(key) {
                Peek::Tracked(tat) => (&self.gcra, tat, false),
                Peek::Absent => (&self.gcra, None, false),
                Peek::AbsentAtCapacity => match self.overflow {
                    OverflowMode::Shared => (&self.gcra, read_tat(&self.shared), true),
                    OverflowMode::Reject => return Probe::AtCapacity,
                },
            }
        };

        if !gcra.fits(cost) {
            return Probe::TooCostly(gcra.policy());
        }
        match gcra.test(tat, now, cost) {
            Ok(_) => Probe::Pass,
            Err(wait) => Probe::Wait { wait, overflow },
        }
    }

    /// Tests `cost` for `key` at `now` and charges it if it conforms, in one
    /// compare-and-swap. On failure nothing is charged and the error gives the cause.
    pub(crate) fn apply(&self, key: u64, cost: u32, now: u64) -> Result<Applied, Probe> {
        let test = |gcra: &Gcra, overflow: bool| {
            let gcra = *gcra;
            move |tat: Option<u64>| {
                if !gcra.fits(cost) {
                    return Err(Probe::TooCostly(gcra.policy()));
                }
                match gcra.test(tat, now, cost) {
                    Ok(next) => Ok((next, next)),
                    Err(wait) => Err(Probe::Wait { wait, overflow }),
                }
            }
        };

        if !self.keyed {
            let tat = update_tat(&self.shared, test(&self.gcra, false))?;
            return Ok(self.applied(CellRef::Shared, tat, self.gcra));
        }
        if let Some(entry) = self.override_for(key) {
            let tat = update_tat(&entry.cell, test(&entry.gcra, false))?;
            return Ok(self.applied(CellRef::Override(key), tat, entry.gcra));
        }
        if let Some(result) = self.store.update(key, true, test(&self.gcra, false)) {
            return Ok(self.applied(CellRef::Key(key), result?, self.gcra));
        }

        // The store is at its cap and does not track this key.
        match self.overflow {
            OverflowMode::Shared => {
                let tat = update_tat(&self.shared, test(&self.gcra, true))?;
                self.counters.overflow.fetch_add(1, Ordering::Relaxed);
                Ok(self.applied(CellRef::Shared, tat, self.gcra))
            }
            OverflowMode::Reject => Err(Probe::AtCapacity),
        }
    }

    fn applied(&self, cell: CellRef, tat: u64, gcra: Gcra) -> Applied {
        Applied { cell, tat, gcra }
    }

    /// Gives back `cost` charged to `cell` by [`TierState::apply`].
    pub(crate) fn refund(&self, cell: CellRef, cost: u32) {
        let give_back = |gcra: Gcra| {
            move |tat: Option<u64>| -> Result<((), u64), ()> {
                match tat {
                    Some(tat) => Ok(((), gcra.refund(tat, cost))),
                    None => Err(()),
                }
            }
        };
        let _ = match cell {
            CellRef::Shared => update_tat(&self.shared, give_back(self.gcra)),
            CellRef::Override(key) => match self.overrides.get(&key) {
                Some(entry) => update_tat(&entry.cell, give_back(entry.gcra)),
                None => Err(()),
            },
            CellRef::Key(key) => self
                .store
                .update(key, false, give_back(self.gcra))
                .unwrap_or(Err(())),
        };
    }

    /// Returns true when `cell` is this tier's overflow bucket.
    pub(crate) fn is_overflow(&self, cell: CellRef) -> bool {
        self.keyed && cell == CellRef::Shared
    }

    /// Drops keys whose bucket is full at `now`, then releases the memory.
    pub(crate) fn evict_idle(&self, now: u64) {
        if self.keyed {
            self.store.retain_recent(now);
            self.store.shrink_to_fit();
        }
    }

    /// Returns the number of tracked keys.
    pub(crate) fn tracked_keys(&self) -> usize {
        if self.keyed { self.store.len() } else { 1 }
    }
}
