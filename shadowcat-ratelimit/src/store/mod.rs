//! Storage of keyed GCRA state.
//!
//! Each keyed tier keeps one theoretical arrival time (TAT) per key in a [`KeyedStore`].
//! Keys are 64-bit keyed hashes computed by the limiter, and TATs are nanoseconds since
//! the limiter's epoch, with 0 meaning "no state". The limiter is generic over the store,
//! so the check path makes no dynamic calls.
//!
//! NOTE: only the in-memory store exists. A shared store for several proxy replicas
//! (Redis, running the GCRA test and update for all of a request's keys in one Lua script,
//! failing open or closed by configuration) would implement this trait.

pub(crate) mod memory;

pub use memory::InMemoryStore;

use std::num::NonZeroUsize;

/// The state of one key, read without changing anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// The key is tracked; its TAT is `None` when it has never been charged.
    Tracked(Option<u64>),
    /// The key is not tracked and there is room to track it.
    Absent,
    /// The key is not tracked and the store already tracks its maximum number of keys.
    AbsentAtCapacity,
}

/// Keyed GCRA state with a cap on tracked keys.
pub trait KeyedStore: Send + Sync {
    /// Builds an empty store that tracks at most about `max_keys` keys.
    ///
    /// Threads inserting at the same moment may each add one key past the cap.
    fn with_max_keys(max_keys: NonZeroUsize) -> Self
    where
        Self: Sized;

    /// Reads the state of `key` without inserting it.
    fn peek(&self, key: u64) -> Peek;

    /// Updates the TAT of `key` atomically with `f`.
    ///
    /// `f` receives the current TAT (`None` for a new key) and returns a value and the new
    /// TAT, or an error, in which case nothing is stored. `f` may run more than once when
    /// other threads update the same key. Returns `None`, and does not call `f`, when the
    /// key is absent and either `insert` is false or the store is at its cap.
    fn update<T, E, F>(&self, key: u64, insert: bool, f: F) -> Option<Result<T, E>>
    where
        F: Fn(Option<u64>) -> Result<(T, u64), E>;

    /// Removes every key whose TAT is at or before `drop_below`, that is every bucket that
    /// is full at that instant.
    fn retain_recent(&self, drop_below: u64);

    /// Releases memory freed by [`KeyedStore::retain_recent`], where the store can.
    fn shrink_to_fit(&self);

    /// Returns the number of tracked keys.
    fn len(&self) -> usize;

    /// Returns true when no key is tracked.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
