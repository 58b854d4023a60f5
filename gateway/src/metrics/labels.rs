//! The per-request series handles, cached by what identifies them within one generation
//! (port, rule and backend by address, endpoint, status code, reason), so that a request
//! finds its counters under a shared read lock without building label strings. The cache
//! belongs to the newest generation seen; it is emptied when a newer one shows up (the
//! series themselves live on in the registry), and requests of an older generation resolve
//! their handles the slow way.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};

/// Most entries kept for one generation: a bound on memory if codes or endpoints are many.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// A cache of `V` by `K`, for one generation at a time.
#[derive(Debug)]
pub struct LabelCache<K, V> {
    inner: RwLock<Generation<K, V>>,
}

#[derive(Debug)]
struct Generation<K, V> {
    number: u64,
    entries: HashMap<K, V>,
}

impl<K: Hash + Eq, V> Default for LabelCache<K, V> {
    fn default() -> Self {
        LabelCache {
            inner: RwLock::new(Generation {
                number: 0,
                entries: HashMap::new(),
            }),
        }
    }
}

impl<K: Hash + Eq, V> LabelCache<K, V> {
    /// Runs `apply` on the value for `key` of generation `number`, made by `make` on a miss.
    /// The fast path is a read lock and a hash lookup; `make` runs without any lock held.
    pub fn with<R>(
        &self,
        number: u64,
        key: K,
        make: impl FnOnce() -> V,
        apply: impl FnOnce(&V) -> R,
    ) -> R {
        {
            let g = self.inner.read().unwrap_or_else(PoisonError::into_inner);
            if g.number == number {
                if let Some(v) = g.entries.get(&key) {
                    return apply(v);
                }
            } else if g.number > number {
                // A request of a retired generation: its keys may collide with the new ones.
                drop(g);
                return apply(&make());
            }
        }
        let value = make();
        let out = apply(&value);
        let mut g = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        if g.number < number {
            g.number = number;
            g.entries.clear();
        }
        if g.number == number && g.entries.len() < MAX_ENTRIES {
            g.entries.insert(key, value);
        }
        out
    }

    /// Entries cached for the current generation.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_hit_does_not_make_again() {
        let cache: LabelCache<u32, String> = LabelCache::default();
        let made = Cell::new(0);
        let make = || {
            made.set(made.get() + 1);
            "labels".to_string()
        };
        for _ in 0..5 {
            let len = cache.with(1, 7, make, |v| v.len());
            assert_eq!(len, 6);
        }
        assert_eq!(made.get(), 1);
        cache.with(1, 8, make, |_| ());
        assert_eq!(made.get(), 2);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn a_newer_generation_empties_the_cache_and_an_older_one_bypasses_it() {
        let cache: LabelCache<u32, &'static str> = LabelCache::default();
        assert_eq!(cache.with(1, 7, || "gen1", |v| *v), "gen1");
        // Same key, newer generation: a different value (the address now names another rule).
        assert_eq!(cache.with(2, 7, || "gen2", |v| *v), "gen2");
        assert_eq!(cache.len(), 1);
        // A request still on generation 1 gets its own labels, and the cache keeps gen 2's.
        assert_eq!(cache.with(1, 7, || "gen1 again", |v| *v), "gen1 again");
        assert_eq!(cache.with(2, 7, || "unused", |v| *v), "gen2");
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache: LabelCache<usize, usize> = LabelCache::default();
        for k in 0..MAX_ENTRIES + 10 {
            assert_eq!(cache.with(1, k, || k * 2, |v| *v), k * 2);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
    }
}
