//! The default store: governor's DashMap state store, keyed by prehashed `u64` keys.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::mapref::entry::Entry;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};

use super::{KeyedStore, Peek};
use crate::tier::PrehashedKeys;

/// In-process keyed GCRA state: one `AtomicU64` per key in a sharded `DashMap`.
///
/// # Performance
///
/// A key costs one 16-byte map entry plus the map's control byte and spare capacity; the
/// `limiter` bench measures the total per tracked key.
pub struct InMemoryStore {
    map: DashMapStateStore<u64, PrehashedKeys>,
    tracked: AtomicUsize,
    max_keys: usize,
}

impl InMemoryStore {
    fn set_new(state: &InMemoryState, tat: u64) {
        let _ = state.measure_and_replace(&NotKeyed::NonKey, |_| {
            Ok::<((), Nanos), ()>(((), Nanos::from(tat)))
        });
    }
}

/// Reads a TAT without changing it: the closure rejects, so nothing is written.
pub(crate) fn read_tat(state: &InMemoryState) -> Option<u64> {
    let read = state.measure_and_replace(&NotKeyed::NonKey, |tat| {
        Err::<((), Nanos), Option<Nanos>>(tat)
    });
    match read {
        Ok(()) => None,
        Err(tat) => tat.map(Nanos::as_u64),
    }
}

/// Updates a TAT with compare-and-swap; `f` follows [`KeyedStore::update`].
pub(crate) fn update_tat<T, E, F>(state: &InMemoryState, f: F) -> Result<T, E>
where
    F: Fn(Option<u64>) -> Result<(T, u64), E>,
{
    state.measure_and_replace(&NotKeyed::NonKey, |tat| {
        f(tat.map(Nanos::as_u64)).map(|(value, next)| (value, Nanos::from(next)))
    })
}

impl KeyedStore for InMemoryStore {
    fn with_max_keys(max_keys: NonZeroUsize) -> Self {
        Self {
            map: DashMapStateStore::with_hasher(PrehashedKeys::default()),
            tracked: AtomicUsize::new(0),
            max_keys: max_keys.get(),
        }
    }

    fn peek(&self, key: u64) -> Peek {
        if let Some(state) = self.map.get(&key) {
            return Peek::Tracked(read_tat(&state));
        }
        if self.tracked.load(Ordering::Relaxed) >= self.max_keys {
            Peek::AbsentAtCapacity
        } else {
            Peek::Absent
        }
    }

    fn update<T, E, F>(&self, key: u64, insert: bool, f: F) -> Option<Result<T, E>>
    where
        F: Fn(Option<u64>) -> Result<(T, u64), E>,
    {
        if let Some(state) = self.map.get(&key) {
            return Some(update_tat(&state, f));
        }
        if !insert || self.tracked.load(Ordering::Relaxed) >= self.max_keys {
            return None;
        }

        match self.map.entry(key) {
            Entry::Occupied(entry) => Some(update_tat(entry.get(), f)),
            Entry::Vacant(entry) => {
                // Decide before inserting, so a rejected update leaves no key behind. The
                // shard stays write-locked, so no other thread reads the key in between.
                let (value, tat) = match f(None) {
                    Ok(result) => result,
                    Err(error) => return Some(Err(error)),
                };
                let state = entry.insert(InMemoryState::default());
                Self::set_new(&state, tat);
                self.tracked.fetch_add(1, Ordering::Relaxed);
                Some(Ok(value))
            }
        }
    }

    fn retain_recent(&self, drop_below: u64) {
        ShrinkableKeyedStateStore::retain_recent(&self.map, Nanos::from(drop_below));
        self.tracked.store(self.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.map);
    }

    fn len(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max: usize) -> InMemoryStore {
        InMemoryStore::with_max_keys(NonZeroUsize::new(max).unwrap())
    }

    fn charge(store: &InMemoryStore, key: u64, tat: u64) -> Option<Result<(), ()>> {
        store.update(key, true, |_| Ok(((), tat)))
    }

    #[test]
    fn peek_does_not_insert() {
        let store = store(4);
        assert_eq!(store.peek(7), Peek::Absent);
        assert_eq!(store.len(), 0);
        assert_eq!(charge(&store, 7, 100), Some(Ok(())));
        assert_eq!(store.peek(7), Peek::Tracked(Some(100)));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn rejected_update_inserts_nothing() {
        let store = store(4);
        let result: Option<Result<(), &str>> = store.update(9, true, |_| Err("no"));
        assert_eq!(result, Some(Err("no")));
        assert_eq!(store.peek(9), Peek::Absent);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn cap_stops_new_keys() {
        let store = store(2);
        assert!(charge(&store, 1, 10).is_some());
        assert!(charge(&store, 2, 10).is_some());
        assert_eq!(store.peek(3), Peek::AbsentAtCapacity);
        assert_eq!(charge(&store, 3, 10), None);
        assert_eq!(charge(&store, 1, 20), Some(Ok(())));
    }

    #[test]
    fn update_without_insert_skips_absent_keys() {
        let store = store(2);
        let result: Option<Result<(), ()>> = store.update(5, false, |_| Ok(((), 1)));
        assert_eq!(result, None);
        assert_eq!(store.len(), 0);
    }

    #[test]
    fn retain_drops_only_full_buckets() {
        let store = store(8);
        charge(&store, 1, 100);
        charge(&store, 2, 300);
        store.retain_recent(200);
        store.shrink_to_fit();
        assert_eq!(store.peek(1), Peek::Absent);
        assert_eq!(store.peek(2), Peek::Tracked(Some(300)));
        assert_eq!(store.len(), 1);
    }
}
