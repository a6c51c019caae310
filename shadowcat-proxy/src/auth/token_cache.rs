//! A bounded cache of validated tokens, keyed by the token's SHA-256.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use shadowcat_core::Principal;

/// SHA-256 of a token: the cache never stores the token itself.
pub(crate) type TokenDigest = [u8; 32];

struct Entry {
    principal: Arc<Principal>,
    /// Unix time at which the entry stops being served.
    expires_at: Duration,
    /// Insertion number, to match the eviction queue against the map.
    sequence: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<TokenDigest, Entry>,
    /// Insertion order, oldest first. May contain digests already removed from `entries`.
    order: VecDeque<(TokenDigest, u64)>,
    next_sequence: u64,
}

/// Validated tokens with their principals.
///
/// An entry is served only before its expiry, which the caller sets no later than the
/// token's `exp`. When the cache is full, expired entries go first, then the oldest.
pub(crate) struct TokenCache {
    max_entries: usize,
    inner: RwLock<Inner>,
}

impl TokenCache {
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            max_entries,
            inner: RwLock::new(Inner::default()),
        }
    }

    /// Returns the cached principal if the entry has not expired at `now`.
    pub(crate) fn get(&self, digest: &TokenDigest, now: Duration) -> Option<Arc<Principal>> {
        let inner = self.inner.read();
        let entry = inner.entries.get(digest)?;
        (now < entry.expires_at).then(|| Arc::clone(&entry.principal))
    }

    /// Stores a principal until `expires_at` (Unix time).
    pub(crate) fn insert(
        &self,
        digest: TokenDigest,
        principal: Arc<Principal>,
        expires_at: Duration,
        now: Duration,
    ) {
        if self.max_entries == 0 || expires_at <= now {
            return;
        }
        let mut inner = self.inner.write();
        if inner.entries.len() >= self.max_entries && !inner.entries.contains_key(&digest) {
            inner.entries.retain(|_, entry| now < entry.expires_at);
            while inner.entries.len() >= self.max_entries {
                let Some((oldest, sequence)) = inner.order.pop_front() else {
                    break;
                };
                if inner
                    .entries
                    .get(&oldest)
                    .is_some_and(|e| e.sequence == sequence)
                {
                    inner.entries.remove(&oldest);
                }
            }
        }

        let sequence = inner.next_sequence;
        inner.next_sequence += 1;
        inner.entries.insert(
            digest,
            Entry {
                principal,
                expires_at,
                sequence,
            },
        );
        inner.order.push_back((digest, sequence));

        // Drop queue slots of replaced or expired entries so the queue stays bounded.
        if inner.order.len() > self.max_entries.saturating_mul(2) {
            let Inner { entries, order, .. } = &mut *inner;
            order.retain(|(digest, sequence)| {
                entries.get(digest).is_some_and(|e| e.sequence == *sequence)
            });
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.read().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> TokenDigest {
        [n; 32]
    }

    fn principal(name: &str) -> Arc<Principal> {
        let mut principal = Principal::anonymous();
        principal.subject = name.to_owned();
        Arc::new(principal)
    }

    const NOW: Duration = Duration::from_secs(1_000);

    #[test]
    fn entry_is_not_served_at_expiry() {
        let cache = TokenCache::new(4);
        cache.insert(
            digest(1),
            principal("a"),
            NOW + Duration::from_secs(10),
            NOW,
        );
        assert!(
            cache
                .get(&digest(1), NOW + Duration::from_secs(9))
                .is_some()
        );
        assert!(
            cache
                .get(&digest(1), NOW + Duration::from_secs(10))
                .is_none()
        );
    }

    #[test]
    fn full_cache_evicts_oldest() {
        let cache = TokenCache::new(2);
        let later = NOW + Duration::from_secs(60);
        cache.insert(digest(1), principal("a"), later, NOW);
        cache.insert(digest(2), principal("b"), later, NOW);
        cache.insert(digest(3), principal("c"), later, NOW);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&digest(1), NOW).is_none());
        assert!(cache.get(&digest(3), NOW).is_some());
    }

    #[test]
    fn full_cache_evicts_expired_first() {
        let cache = TokenCache::new(2);
        cache.insert(
            digest(1),
            principal("a"),
            NOW + Duration::from_secs(600),
            NOW,
        );
        cache.insert(digest(2), principal("b"), NOW + Duration::from_secs(5), NOW);
        let later = NOW + Duration::from_secs(10);
        cache.insert(
            digest(3),
            principal("c"),
            later + Duration::from_secs(60),
            later,
        );
        assert!(cache.get(&digest(1), later).is_some());
        assert!(cache.get(&digest(3), later).is_some());
    }

    #[test]
    fn queue_stays_bounded_under_reinserts() {
        let cache = TokenCache::new(2);
        for round in 0..100u64 {
            let now = NOW + Duration::from_secs(round);
            cache.insert(
                digest(1),
                principal("a"),
                now + Duration::from_secs(60),
                now,
            );
        }
        assert!(cache.inner.read().order.len() <= 4);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn zero_capacity_stores_nothing() {
        let cache = TokenCache::new(0);
        cache.insert(
            digest(1),
            principal("a"),
            NOW + Duration::from_secs(60),
            NOW,
        );
        assert!(cache.get(&digest(1), NOW).is_none());
    }
}
