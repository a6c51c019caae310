//! Limits on work in progress: in-flight requests and open SSE streams, per subject and
//! in total, held through RAII permits.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::config::ConcurrencyConfig;
use crate::decision::{LimitKey, Tier};
use crate::tier::PrehashedKeys;

/// The kind of work a permit reserves a slot for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// A request being forwarded, until its response ends.
    Request,
    /// An open SSE stream (`subscriptions/listen` or a legacy GET).
    Stream,
}

impl SlotKind {
    fn index(self) -> usize {
        match self {
            SlotKind::Request => 0,
            SlotKind::Stream => 1,
        }
    }

    /// Returns the tier reported when this kind of slot is exhausted.
    pub fn tier(self) -> Tier {
        match self {
            SlotKind::Request => Tier::InFlight,
            SlotKind::Stream => Tier::Streams,
        }
    }
}

/// Counters shared by the limiter and its permits.
pub(crate) struct ConcurrencyState {
    totals: [AtomicU32; 2],
    max_totals: [Option<u32>; 2],
    per_subject: [DashMap<u64, u32, PrehashedKeys>; 2],
    max_per_subject: [Option<u32>; 2],
    pub(crate) limited: [AtomicU64; 2],
}

impl ConcurrencyState {
    pub(crate) fn new(config: &ConcurrencyConfig) -> Self {
        Self {
            totals: [AtomicU32::new(0), AtomicU32::new(0)],
            max_totals: [
                config.in_flight_total.map(|max| max.get()),
                config.streams_total.map(|max| max.get()),
            ],
            per_subject: [
                DashMap::with_hasher(PrehashedKeys::default()),
                DashMap::with_hasher(PrehashedKeys::default()),
            ],
            max_per_subject: [
                config.in_flight_per_subject.map(|max| max.get()),
                config.streams_per_subject.map(|max| max.get()),
            ],
            limited: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Takes one slot of `kind` in total and for `subject` (a keyed hash), or returns the
    /// key of the limit that is full.
    pub(crate) fn try_acquire(
        self: &Arc<Self>,
        kind: SlotKind,
        subject: Option<u64>,
    ) -> Result<Permit, LimitKey> {
        let slot = kind.index();

        // The total is an atomic counter: take a slot, give it back if that overshot.
        let previous = self.totals[slot].fetch_add(1, Ordering::AcqRel);
        if let Some(max) = self.max_totals[slot]
            && previous >= max
        {
            self.totals[slot].fetch_sub(1, Ordering::AcqRel);
            self.limited[slot].fetch_add(1, Ordering::Relaxed);
            return Err(LimitKey::Global);
        }

        // Per-subject counts live under the map's shard lock and vanish at zero, so the
        // map contains only subjects with work in progress.
        let subject = match (subject, self.max_per_subject[slot]) {
            (Some(key), Some(max)) => {
                let mut count = self.per_subject[slot].entry(key).or_insert(0);
                if *count >= max {
                    drop(count);
                    self.totals[slot].fetch_sub(1, Ordering::AcqRel);
                    self.limited[slot].fetch_add(1, Ordering::Relaxed);
                    return Err(LimitKey::Subject { hash: key });
                }
                *count += 1;
                Some(key)
            }
            _ => None,
        };

        Ok(Permit {
            state: Arc::clone(self),
            kind,
            subject,
        })
    }

    /// Decrements a subject's count and removes it at zero.
    fn release_subject(&self, slot: usize, key: u64) {
        if let Entry::Occupied(mut entry) = self.per_subject[slot].entry(key) {
            *entry.get_mut() = entry.get().saturating_sub(1);
            if *entry.get() == 0 {
                entry.remove();
            }
        }
    }

    /// Returns the slots of `kind` in use.
    pub(crate) fn in_use(&self, kind: SlotKind) -> u32 {
        self.totals[kind.index()].load(Ordering::Acquire)
    }

    /// Returns the subjects holding slots of `kind`.
    pub(crate) fn subjects(&self, kind: SlotKind) -> usize {
        self.per_subject[kind.index()].len()
    }
}

/// A held concurrency slot; dropping it frees the slot.
pub struct Permit {
    state: Arc<ConcurrencyState>,
    kind: SlotKind,
    subject: Option<u64>,
}

impl Permit {
    /// Returns the kind of work the permit reserves a slot for.
    pub fn kind(&self) -> SlotKind {
        self.kind
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("kind", &self.kind)
            .field("per_subject", &self.subject.is_some())
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let slot = self.kind.index();
        if let Some(key) = self.subject {
            self.state.release_subject(slot, key);
        }
        self.state.totals[slot].fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn state(total: u32, per_subject: u32) -> Arc<ConcurrencyState> {
        Arc::new(ConcurrencyState::new(&ConcurrencyConfig {
            in_flight_total: NonZeroU32::new(total),
            in_flight_per_subject: NonZeroU32::new(per_subject),
            streams_total: NonZeroU32::new(1),
            streams_per_subject: None,
        }))
    }

    #[test]
    fn permits_release_on_drop() {
        let state = state(2, 5);
        let first = state.try_acquire(SlotKind::Request, None).unwrap();
        let second = state.try_acquire(SlotKind::Request, None).unwrap();
        assert_eq!(
            state.try_acquire(SlotKind::Request, None).unwrap_err(),
            LimitKey::Global
        );
        assert_eq!(state.in_use(SlotKind::Request), 2);
        drop(first);
        assert_eq!(state.in_use(SlotKind::Request), 1);
        let third = state.try_acquire(SlotKind::Request, None).unwrap();
        drop((second, third));
        assert_eq!(state.in_use(SlotKind::Request), 0);
    }

    #[test]
    fn subject_limit_is_per_subject() {
        let state = state(10, 1);
        let alice = state.try_acquire(SlotKind::Request, Some(1)).unwrap();
        assert_eq!(
            state.try_acquire(SlotKind::Request, Some(1)).unwrap_err(),
            LimitKey::Subject { hash: 1 }
        );
        let bob = state.try_acquire(SlotKind::Request, Some(2)).unwrap();
        assert_eq!(state.in_use(SlotKind::Request), 2);
        assert_eq!(state.subjects(SlotKind::Request), 2);
        drop(alice);
        drop(bob);
        assert_eq!(state.subjects(SlotKind::Request), 0);
        assert_eq!(state.in_use(SlotKind::Request), 0);
        assert!(state.try_acquire(SlotKind::Request, Some(1)).is_ok());
    }

    #[test]
    fn streams_and_requests_are_separate() {
        let state = state(1, 1);
        let _request = state.try_acquire(SlotKind::Request, Some(1)).unwrap();
        let stream = state.try_acquire(SlotKind::Stream, Some(1)).unwrap();
        assert_eq!(stream.kind(), SlotKind::Stream);
        assert!(state.try_acquire(SlotKind::Stream, Some(2)).is_err());
    }
}
