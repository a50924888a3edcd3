//! A map with bounded memory for caches and recent-history lookups: two generations, each
//! of at most `capacity / 2` entries and, optionally, half a byte budget (each entry weighs
//! what its caller says it keeps alive). Inserting into a full young generation retires the
//! old one. Lookups see both; a hit in the old generation is promoted. Recently used keys
//! survive, memory never exceeds `capacity` entries (nor the budget), every operation is
//! O(1).
//!
//! Keys come from log lines, which attackers write: the hash is std's SipHash-1-3 with
//! random keys (`RandomState`), made to resist chosen collisions. Its cost stays small
//! because each operation hashes its key once, for both generations (the [`Hashed`] form
//! lets a caller hash once for a lookup and the update that follows it). A retired
//! generation is cleared in place and reused, so the tables are not reallocated and
//! regrown at each rotation.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

struct Slot<K, V> {
    key: K,
    value: V,
    /// What the caller said this entry keeps alive, in bytes (0 without a budget).
    weight: usize,
}

pub(crate) struct BoundedMap<K, V> {
    young: HashTable<Slot<K, V>>,
    old: HashTable<Slot<K, V>>,
    /// Sum of the weights in `young`.
    young_weight: usize,
    /// Entries per generation.
    half: usize,
    /// Weight per generation.
    half_weight: usize,
    hasher: RandomState,
    /// Entries dropped to stay within the bounds since [`Self::take_evicted`].
    evicted: Evicted,
}

/// Entries a [`BoundedMap`] dropped to stay within its bounds, by the bound that was
/// reached: its entry count (ordinary turnover) or its byte budget (long values).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Evicted {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

impl Evicted {
    pub(crate) fn add(&mut self, other: Evicted) {
        self.entries += other.entries;
        self.bytes += other.bytes;
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0 && self.bytes == 0
    }
}

impl<K, V> std::fmt::Debug for BoundedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedMap")
            .field("young", &self.young.len())
            .field("old", &self.old.len())
            .field("young_weight", &self.young_weight)
            .field("half", &self.half)
            .field("half_weight", &self.half_weight)
            .finish()
    }
}

/// A key's hash in one map, to look it up and then update it without hashing it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hashed(u64);

/// Where [`BoundedMap::find`] found an entry (valid until the map changes otherwise).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Found(usize);

impl<K: Hash + Eq, V> BoundedMap<K, V> {
    /// A map that keeps at most `capacity` entries (at least 2).
    #[cfg(test)]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_budget(capacity, usize::MAX)
    }

    /// A map that keeps at most `capacity` entries (at least 2) whose weights add up to at
    /// most `budget` (an entry heavier than half of it is kept alone in its generation).
    pub(crate) fn with_budget(capacity: usize, budget: usize) -> Self {
        BoundedMap {
            young: HashTable::new(),
            old: HashTable::new(),
            young_weight: 0,
            half: (capacity / 2).max(1),
            half_weight: budget / 2,
            hasher: RandomState::new(),
            evicted: Evicted::default(),
        }
    }

    /// Hash `key` for [`Self::find`], [`Self::insert_absent`] and [`Self::insert_hashed`].
    pub(crate) fn hash<Q>(&self, key: &Q) -> Hashed
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Hashed(self.hasher.hash_one(key))
    }

    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let found = self.find(self.hash(key), key)?;
        self.at(found).map(|(_, v)| v)
    }

    /// Look up `key` (hashed by [`Self::hash`]) and promote it into the young generation:
    /// where it is now, for [`Self::at`] and [`Self::replace_at`] until the next change of
    /// this map.
    pub(crate) fn find<Q>(&mut self, hash: Hashed, key: &Q) -> Option<Found>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let eq = |s: &Slot<K, V>| s.key.borrow() == key;
        match self.young.find_bucket_index(hash.0, eq) {
            Some(i) => Some(Found(i)),
            None => {
                let (slot, _) = self.old.find_entry(hash.0, eq).ok()?.remove();
                Some(Found(self.insert_new(hash, slot)))
            }
        }
    }

    /// The entry [`Self::find`] found.
    pub(crate) fn at(&self, found: Found) -> Option<(&K, &V)> {
        self.young.get_bucket(found.0).map(|s| (&s.key, &s.value))
    }

    /// Replace the value of the entry [`Self::find`] found.
    pub(crate) fn replace_at(&mut self, found: Found, value: V, weight: usize) {
        if let Some(slot) = self.young.get_bucket_mut(found.0) {
            slot.value = value;
            self.young_weight = self.young_weight - slot.weight + weight;
            slot.weight = weight;
        }
    }

    /// Insert `key`, which [`Self::find`] just did not find.
    pub(crate) fn insert_absent(&mut self, hash: Hashed, key: K, value: V, weight: usize) {
        self.insert_new(hash, Slot { key, value, weight });
    }

    #[cfg(test)]
    pub(crate) fn insert(&mut self, key: K, value: V) {
        let hash = self.hash(&key);
        self.insert_hashed(hash, key, value, 0);
    }

    /// Insert or replace the entry of `key` (hashed by [`Self::hash`]), weighing `weight`.
    pub(crate) fn insert_hashed(&mut self, hash: Hashed, key: K, value: V, weight: usize) {
        if let Some(slot) = self.young.find_mut(hash.0, |s| s.key == key) {
            slot.value = value;
            self.young_weight = self.young_weight - slot.weight + weight;
            slot.weight = weight;
            return;
        }
        // An entry of the old generation is left there: the young one shadows it, and both
        // generations stay within their bounds.
        self.insert_new(hash, Slot { key, value, weight });
    }

    /// Insert a key that is not in the young generation; the bucket it went to.
    fn insert_new(&mut self, hash: Hashed, slot: Slot<K, V>) -> usize {
        let full = self.young.len() >= self.half;
        if full
            || (!self.young.is_empty()
                && self.young_weight.saturating_add(slot.weight) > self.half_weight)
        {
            let dropped = self.old.len() as u64;
            match full {
                true => self.evicted.entries += dropped,
                false => self.evicted.bytes += dropped,
            }
            self.old.clear();
            std::mem::swap(&mut self.young, &mut self.old);
            self.young_weight = 0;
        }
        self.young_weight += slot.weight;
        let hasher = &self.hasher;
        self.young
            .insert_unique(hash.0, slot, |s| hasher.hash_one(&s.key))
            .bucket_index()
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// The entries dropped since the last call, by the bound that was reached.
    pub(crate) fn take_evicted(&mut self) -> Evicted {
        std::mem::take(&mut self.evicted)
    }

    /// Move the young generation to the old one (whose entries are dropped, uncounted):
    /// restoring a saved map puts its old generation back first, then retires it.
    pub(crate) fn retire(&mut self) {
        self.old.clear();
        std::mem::swap(&mut self.young, &mut self.old);
        self.young_weight = 0;
    }

    /// The young generation's values.
    pub(crate) fn young_values(&self) -> impl Iterator<Item = &V> {
        self.young.iter().map(|s| &s.value)
    }

    /// The old generation's values.
    pub(crate) fn old_values(&self) -> impl Iterator<Item = &V> {
        self.old.iter().map(|s| &s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_exceeds_capacity_and_keeps_recent() {
        let mut m = BoundedMap::new(10);
        for i in 0..1000 {
            m.insert(i, i * 2);
            assert!(m.len() <= 10);
        }
        assert_eq!(m.get(&999), Some(&1998));
        assert_eq!(m.get(&0), None);
    }

    #[test]
    fn hit_in_old_generation_is_promoted() {
        let mut m = BoundedMap::new(4);
        m.insert("a", 1);
        m.insert("b", 2);
        m.insert("c", 3); // retires {a, b}
        assert_eq!(m.get("a"), Some(&1)); // promoted into young {c, a}
        m.insert("d", 4); // retires {c, a}; young {d}
        m.insert("e", 5); // young {d, e}
        assert_eq!(m.get("a"), Some(&1));
        assert_eq!(m.get("b"), None);
    }

    #[test]
    fn reinsert_updates_value() {
        let mut m = BoundedMap::new(4);
        m.insert("a", 1);
        m.insert("b", 2);
        m.insert("c", 3);
        m.insert("a", 9);
        assert_eq!(m.get("a"), Some(&9));
        assert!(m.len() <= 4);
    }

    #[test]
    fn a_key_in_both_generations_reads_as_its_young_value() {
        let mut m = BoundedMap::new(4);
        m.insert("a", 1);
        m.insert("b", 2);
        m.insert("c", 3); // retires {a, b}
        m.insert("a", 9); // young {c, a}; the old a is shadowed
        assert_eq!(m.get("a"), Some(&9));
        m.insert("d", 4); // retires {c, a=9}; the shadowed a=1 goes with its generation
        assert_eq!(m.get("a"), Some(&9));
        assert!(m.len() <= 4);
    }

    /// Guards the byte budget (issue 8): heavy entries rotate generations before the
    /// entry count does, and the weights kept never exceed the budget.
    #[test]
    fn weights_are_bounded_by_the_budget() {
        let mut m: BoundedMap<u32, ()> = BoundedMap::with_budget(1000, 100);
        for i in 0..50 {
            let h = m.hash(&i);
            m.insert_hashed(h, i, (), 20);
            let kept: usize = m.young.iter().chain(m.old.iter()).map(|s| s.weight).sum();
            assert!(kept <= 100, "{kept} bytes kept");
        }
        // Two generations of at most 50 bytes: two entries of 20 each.
        assert_eq!(m.len(), 4);
        assert!(m.get(&49).is_some() && m.get(&48).is_some());
        // Replacing an entry replaces its weight.
        let h = m.hash(&49);
        m.insert_hashed(h, 49, (), 5);
        assert_eq!(
            m.young_weight,
            m.young.iter().map(|s| s.weight).sum::<usize>()
        );
    }

    /// Guards the eviction counts (issue 8): entries dropped by the count bound and by the
    /// byte budget are told apart.
    #[test]
    fn evictions_are_counted_by_bound() {
        let mut m: BoundedMap<u32, ()> = BoundedMap::with_budget(1000, 100);
        for i in 0..4 {
            let h = m.hash(&i);
            m.insert_hashed(h, i, (), 10);
        }
        // A heavy entry retires {0..3} (nothing dropped yet), the next one drops them.
        for (i, w) in [(9, 60), (10, 1)] {
            let h = m.hash(&i);
            m.insert_hashed(h, i, (), w);
        }
        assert_eq!(
            m.take_evicted(),
            Evicted {
                entries: 0,
                bytes: 4
            }
        );
        let mut m: BoundedMap<u32, ()> = BoundedMap::new(4);
        for i in 0..6 {
            m.insert(i, ());
        }
        // Retired at 2, {0, 1} dropped at 4.
        assert_eq!(
            m.take_evicted(),
            Evicted {
                entries: 2,
                bytes: 0
            }
        );
        assert!(m.take_evicted().is_empty());
    }

    #[test]
    fn an_entry_heavier_than_the_budget_is_kept_alone() {
        let mut m: BoundedMap<u32, ()> = BoundedMap::with_budget(1000, 10);
        let h = m.hash(&1);
        m.insert_hashed(h, 1, (), 1_000);
        assert!(m.get(&1).is_some());
        let h = m.hash(&2);
        m.insert_hashed(h, 2, (), 1);
        assert_eq!(m.young.len(), 1, "the heavy entry was retired");
        let h = m.hash(&3);
        m.insert_hashed(h, 3, (), 1_000);
        assert!(m.get(&1).is_none() && m.get(&3).is_some());
    }

    #[test]
    fn find_gives_the_stored_key_and_replaces_in_place() {
        let mut m: BoundedMap<std::sync::Arc<str>, u8> = BoundedMap::with_budget(4, 100);
        let k: std::sync::Arc<str> = "1.2.3.4".into();
        let h = m.hash("1.2.3.4");
        assert!(m.find(h, "1.2.3.4").is_none());
        m.insert_absent(h, k.clone(), 1, 7);
        m.insert("b".into(), 2);
        m.insert("c".into(), 3); // retires {1.2.3.4, b}
        let found = m
            .find(h, "1.2.3.4")
            .expect("promoted from the old generation");
        assert!(std::sync::Arc::ptr_eq(m.at(found).unwrap().0, &k));
        m.replace_at(found, 9, 3);
        assert_eq!(m.get("1.2.3.4"), Some(&9));
        assert_eq!(m.young_weight, 3);
    }
}
