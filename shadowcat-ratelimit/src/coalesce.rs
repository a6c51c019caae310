//! Coalescing of repeated rejections, so a flood yields one audit record per window.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;

use crate::tier::PrehashedKeys;

/// Window state of one (tier, key) pair.
struct Window {
    /// Start of the current window, in nanoseconds since the limiter's epoch.
    start: AtomicU64,
    /// Events since the last one that was reported.
    suppressed: AtomicU64,
}

/// Decides which events of a (tier, key) pair should be audited: the first in each
/// window, carrying the number suppressed since the previous report.
///
/// The table is capped. Once it is full, new pairs share one slot per tier, so a spray
/// of distinct keys still yields at most one report per tier and window.
pub(crate) struct Coalescer {
    windows: DashMap<u64, Window, PrehashedKeys>,
    /// Entries in `windows`, kept apart so the hot rejection path reads one atomic.
    entries: AtomicUsize,
    window: u64,
    max_entries: usize,
    suppressed_total: AtomicU64,
}

impl Coalescer {
    pub(crate) fn new(window_nanos: u64, max_entries: NonZeroUsize) -> Self {
        Self {
            windows: DashMap::with_hasher(PrehashedKeys::default()),
            entries: AtomicUsize::new(0),
            window: window_nanos.max(1),
            max_entries: max_entries.get(),
            suppressed_total: AtomicU64::new(0),
        }
    }

    /// Records one event for `key` (a hash that already includes the tier) at `now`.
    ///
    /// Returns `Some(suppressed)` when the caller should report it, `None` when it is
    /// folded into the next report. `shared_key` is used instead of `key` once the table
    /// is full.
    pub(crate) fn observe(&self, key: u64, shared_key: u64, now: u64) -> Option<u64> {
        if let Some(window) = self.windows.get(&key) {
            return self.observe_existing(&window, now);
        }
        let key = if self.entries.load(Ordering::Relaxed) >= self.max_entries {
            shared_key
        } else {
            key
        };

        match self.windows.entry(key) {
            Entry::Occupied(entry) => self.observe_existing(entry.get(), now),
            Entry::Vacant(entry) => {
                self.entries.fetch_add(1, Ordering::Relaxed);
                entry.insert(Window {
                    start: AtomicU64::new(now),
                    suppressed: AtomicU64::new(0),
                });
                Some(0)
            }
        }
    }

    fn observe_existing(&self, window: &Window, now: u64) -> Option<u64> {
        let start = window.start.load(Ordering::Acquire);
        let expired = now.saturating_sub(start) >= self.window;
        if expired
            && window
                .start
                .compare_exchange(start, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(window.suppressed.swap(0, Ordering::AcqRel));
        }
        window.suppressed.fetch_add(1, Ordering::AcqRel);
        self.suppressed_total.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Forgets pairs whose window has ended and that suppressed nothing since their last
    /// report, so the next event for them is reported at once, as it would be anyway.
    ///
    /// Pairs idle for two windows are forgotten even with suppressed events, so stale
    /// entries cannot fill the table. Those events stay counted in `suppressed_total`.
    pub(crate) fn evict_idle(&self, now: u64) {
        self.windows.retain(|_, window| {
            let age = now.saturating_sub(window.start.load(Ordering::Acquire));
            let pending = window.suppressed.load(Ordering::Acquire) > 0;
            age < self.window || (pending && age < self.window.saturating_mul(2))
        });
        self.windows.shrink_to_fit();
        self.entries.store(self.windows.len(), Ordering::Relaxed);
    }

    /// Returns the events folded into later reports since the limiter was built.
    pub(crate) fn suppressed_total(&self) -> u64 {
        self.suppressed_total.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 1_000;

    fn coalescer(max: usize) -> Coalescer {
        Coalescer::new(WINDOW, NonZeroUsize::new(max).unwrap())
    }

    #[test]
    fn first_event_reports_then_suppresses() {
        let coalescer = coalescer(8);
        assert_eq!(coalescer.observe(1, 0, 0), Some(0));
        assert_eq!(coalescer.observe(1, 0, 10), None);
        assert_eq!(coalescer.observe(1, 0, 20), None);
        assert_eq!(coalescer.observe(1, 0, WINDOW + 5), Some(2));
        assert_eq!(coalescer.observe(1, 0, WINDOW + 6), None);
        assert_eq!(coalescer.suppressed_total(), 3);
    }

    #[test]
    fn keys_have_separate_windows() {
        let coalescer = coalescer(8);
        assert_eq!(coalescer.observe(1, 0, 0), Some(0));
        assert_eq!(coalescer.observe(2, 0, 0), Some(0));
    }

    #[test]
    fn full_table_shares_one_slot() {
        let coalescer = coalescer(2);
        assert_eq!(coalescer.observe(1, 99, 0), Some(0));
        assert_eq!(coalescer.observe(2, 99, 0), Some(0));
        assert_eq!(coalescer.observe(3, 99, 0), Some(0));
        assert_eq!(coalescer.observe(4, 99, 0), None);
        assert_eq!(coalescer.observe(5, 99, 0), None);
    }

    #[test]
    fn eviction_drops_stale_pending_counts() {
        let coalescer = coalescer(8);
        coalescer.observe(1, 0, 0);
        coalescer.observe(1, 0, 1);
        coalescer.evict_idle(WINDOW * 2);
        assert_eq!(coalescer.observe(1, 0, WINDOW * 2), Some(0));
        assert_eq!(coalescer.suppressed_total(), 1);
    }

    #[test]
    fn eviction_keeps_pending_counts() {
        let coalescer = coalescer(8);
        coalescer.observe(1, 0, 0);
        coalescer.observe(2, 0, 0);
        coalescer.observe(2, 0, 1);
        coalescer.evict_idle(WINDOW + WINDOW / 2);
        assert_eq!(coalescer.observe(2, 0, WINDOW + WINDOW / 2), Some(1));
        assert_eq!(coalescer.observe(1, 0, WINDOW + WINDOW / 2), Some(0));
    }
}
