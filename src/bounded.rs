//! A map with bounded memory for caches and recent-history lookups: two generations of at
//! most `capacity / 2` entries each. Inserting into a full young generation retires the
//! old one. Lookups see both; a hit in the old generation is promoted. Recently used keys
//! survive, memory never exceeds `capacity` entries, every operation is O(1).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug, Clone)]
pub(crate) struct BoundedMap<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
    half: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedMap<K, V> {
    /// A map that keeps at most `capacity` entries (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        BoundedMap {
            young: HashMap::new(),
            old: HashMap::new(),
            half: (capacity / 2).max(1),
        }
    }

    pub(crate) fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.young.contains_key(key) {
            return self.young.get(key);
        }
        let (k, v) = self.old.remove_entry(key)?;
        self.insert(k.clone(), v);
        self.young.get(key)
    }

    pub(crate) fn insert(&mut self, key: K, value: V) {
        if self.young.len() >= self.half && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.old.remove(&key);
        self.young.insert(key, value);
    }

    /// Number of entries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Every entry, young generation first.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.young.values().chain(self.old.values())
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
}
