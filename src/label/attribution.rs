//! Which pattern values an action belongs to. reaction logs an action's command, not the
//! match that caused it (a `ban` runs right after its match; an `unban` 48 hours later).
//! The command shows the values of the patterns its template uses (`<ip>`); the others come
//! from the most recent match of the same filter that agrees with what the command shows,
//! kept in a bounded memory.

use std::sync::Arc;

use crate::bounded::{BoundedMap, Evicted, Found, Hashed};

/// A match's pattern values, in the filter's pattern order. Each value is shared: between
/// the memory's keys and tuples, and with the attributes recorded from it.
pub(crate) type Values = Arc<[Arc<str>]>;

/// Where an action's values came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// All from the logged command.
    Command,
    /// Some from the command, the rest from a remembered match that agrees.
    Memory,
    /// The command shows none: the filter's most recent match.
    LastMatch,
    /// Nothing known: empty values.
    None,
}

/// Recent matches of one filter.
#[derive(Debug)]
pub(crate) struct Recent {
    /// One map per pattern: a value → the most recent tuple with that value at that place.
    /// Each entry weighs the bytes of its tuple's values, so that long values (60 KB user
    /// agents) cannot make the memory large (issue 8).
    by_value: Vec<BoundedMap<Arc<str>, Values>>,
    last: Option<Values>,
    /// Per pattern, while remembering: the value's hash and where its map has it.
    scratch: Vec<(Hashed, Option<Found>)>,
    capacity: usize,
    budget: usize,
}

/// What an entry weighs against the byte budget: the bytes of the values it keeps alive.
fn weight(values: &[Arc<str>]) -> usize {
    values.iter().map(|v| v.len()).sum()
}

impl Recent {
    /// Remember about `capacity` distinct matches of `patterns` values, whose values add up
    /// to about `budget` bytes at most.
    pub(crate) fn new(capacity: usize, patterns: usize, budget: usize) -> Recent {
        Recent {
            by_value: (0..patterns)
                .map(|_| BoundedMap::with_budget(capacity, budget / patterns))
                .collect(),
            last: None,
            scratch: Vec::with_capacity(patterns),
            capacity,
            budget,
        }
    }

    /// Remember a match; its values, shared with the memory. Each value is hashed once and
    /// looked up once in its pattern's map; a tuple already remembered is reused, and a map
    /// that already leads to it is left alone.
    pub(crate) fn remember<S: AsRef<str>>(&mut self, values: &[S]) -> Values {
        if let Some(last) = &self.last {
            if same(last, values) {
                // The same values again (a burst from one IP): every key already leads to them.
                return last.clone();
            }
        }
        if values.len() != self.by_value.len() {
            // The filter's patterns changed (reaction's configuration was reloaded): what
            // was remembered no longer fits.
            *self = Recent::new(self.capacity, values.len(), self.budget);
        }
        self.scratch.clear();
        let mut tuple: Option<Values> = None;
        for (map, v) in self.by_value.iter_mut().zip(values) {
            let v = v.as_ref();
            let hash = map.hash(v);
            let found = map.find(hash, v);
            if tuple.is_none() {
                if let Some((_, t)) = found.and_then(|f| map.at(f)) {
                    if same(t, values) {
                        tuple = Some(t.clone());
                    }
                }
            }
            self.scratch.push((hash, found));
        }
        let tuple = match tuple {
            Some(t) => t,
            // New values: each one a value already remembered shares (the same user name
            // for many IPs), the others new.
            None => self
                .by_value
                .iter()
                .zip(values)
                .zip(&self.scratch)
                .map(
                    |((map, v), (_, found))| match found.and_then(|f| map.at(f)) {
                        Some((k, _)) => k.clone(),
                        None => Arc::from(v.as_ref()),
                    },
                )
                .collect(),
        };
        let w = weight(&tuple);
        for (i, (map, (hash, found))) in self.by_value.iter_mut().zip(&self.scratch).enumerate() {
            match found {
                Some(f) => {
                    if !map.at(*f).is_some_and(|(_, t)| Arc::ptr_eq(t, &tuple)) {
                        map.replace_at(*f, tuple.clone(), w);
                    }
                }
                None => map.insert_absent(*hash, tuple[i].clone(), tuple.clone(), w),
            }
        }
        self.last = Some(tuple.clone());
        tuple
    }

    /// Entries dropped since the last call, by the bound that was reached.
    pub(crate) fn take_evicted(&mut self) -> Evicted {
        let mut all = Evicted::default();
        for map in &mut self.by_value {
            all.add(map.take_evicted());
        }
        all
    }

    /// Remembered tuples, most recent generations first (for splitting `show` keys).
    pub(crate) fn tuples(&self) -> impl Iterator<Item = &[Arc<str>]> {
        let young = self.by_value.iter().flat_map(|m| m.young_values());
        let old = self.by_value.iter().flat_map(|m| m.old_values());
        young.chain(old).map(|t| &t[..])
    }

    /// Complete `known` (one slot per pattern, None where the command does not show it).
    pub(crate) fn attribute(&mut self, known: Vec<Option<String>>) -> (Values, Source) {
        if known.iter().all(Option::is_some) {
            return (
                known
                    .into_iter()
                    .map(|v| Arc::from(v.unwrap_or_default()))
                    .collect(),
                Source::Command,
            );
        }
        let first = known
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.as_ref().map(|v| (i, v)));
        let candidate = match first {
            Some((i, v)) => self
                .by_value
                .get_mut(i)
                .and_then(|map| map.get(v.as_str()))
                .filter(|t| {
                    t.len() == known.len()
                        && known
                            .iter()
                            .zip(t.iter())
                            .all(|(k, t)| k.as_ref().is_none_or(|k| **k == **t))
                })
                .cloned()
                .map(|t| (t, Source::Memory)),
            None => self
                .last
                .clone()
                .filter(|t| t.len() == known.len())
                .map(|t| (t, Source::LastMatch)),
        };
        match candidate {
            Some(found) => found,
            None => (
                known
                    .into_iter()
                    .map(|v| Arc::from(v.unwrap_or_default()))
                    .collect(),
                Source::None,
            ),
        }
    }
}

/// Whether a remembered tuple holds exactly `values`.
fn same<S: AsRef<str>>(tuple: &[Arc<str>], values: &[S]) -> bool {
    tuple.len() == values.len() && tuple.iter().zip(values).all(|(t, v)| **t == *v.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: usize = 1 << 20;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn strings(v: &Values) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn attribute(r: &mut Recent, known: &[Option<&str>]) -> (Vec<String>, Source) {
        let (v, source) = r.attribute(known.iter().map(|k| k.map(str::to_string)).collect());
        (strings(&v), source)
    }

    #[test]
    fn unban_after_other_matches_takes_its_own_values() {
        let mut r = Recent::new(100, 2, BUDGET);
        r.remember(&s(&["1.1.1.1", "alice"]));
        r.remember(&s(&["2.2.2.2", "bob"]));
        r.remember(&s(&["3.3.3.3", "carol"]));
        // the command shows the ip only
        assert_eq!(
            attribute(&mut r, &[Some("1.1.1.1"), None]),
            (s(&["1.1.1.1", "alice"]), Source::Memory)
        );
    }

    #[test]
    fn command_with_all_values() {
        let mut r = Recent::new(100, 1, BUDGET);
        assert_eq!(
            attribute(&mut r, &[Some("9.9.9.9")]),
            (s(&["9.9.9.9"]), Source::Command)
        );
    }

    #[test]
    fn no_agreeing_match_gives_empty_labels() {
        let mut r = Recent::new(100, 2, BUDGET);
        r.remember(&s(&["2.2.2.2", "bob"]));
        assert_eq!(
            attribute(&mut r, &[Some("1.1.1.1"), None]),
            (s(&["1.1.1.1", ""]), Source::None)
        );
    }

    #[test]
    fn command_without_values_takes_last_match() {
        let mut r = Recent::new(100, 1, BUDGET);
        assert_eq!(attribute(&mut r, &[None]), (s(&[""]), Source::None));
        r.remember(&s(&["1.1.1.1"]));
        r.remember(&s(&["2.2.2.2"]));
        assert_eq!(
            attribute(&mut r, &[None]),
            (s(&["2.2.2.2"]), Source::LastMatch)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Recent::new(10, 1, BUDGET);
        for i in 0..1000 {
            r.remember(&[format!("10.0.{}.{}", i / 256, i % 256)]);
        }
        assert!(r.tuples().count() <= 10);
        assert_eq!(attribute(&mut r, &[Some("10.0.0.1")]).1, Source::Command);
    }

    /// Guards the byte budget (issue 8): long values are remembered for fewer matches, so
    /// the values kept stay within the budget, and ordinary ones are unaffected.
    #[test]
    fn long_values_are_bounded_in_bytes() {
        let mut r = Recent::new(10_000, 2, 1 << 20);
        let ua = "x".repeat(60 * 1024);
        for i in 0..1000 {
            r.remember(&[format!("10.0.{}.{}", i / 256, i % 256), format!("{ua}{i}")]);
        }
        // Distinct long values still referenced by the memory.
        let bytes: usize = r
            .tuples()
            .flat_map(|t| t.iter())
            .filter(|v| v.len() > 100)
            .map(|v| v.as_ptr())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            * ua.len();
        assert!(bytes <= 1 << 20, "{bytes} bytes of values kept");
        // The most recent match is still there.
        assert_eq!(
            attribute(&mut r, &[Some("10.0.3.231"), None]).0[1],
            format!("{ua}999")
        );
        // Short values: all 1000 kept.
        let mut r = Recent::new(10_000, 2, 1 << 20);
        for i in 0..1000 {
            r.remember(&[format!("10.0.{}.{}", i / 256, i % 256), "root".to_string()]);
        }
        assert_eq!(
            attribute(&mut r, &[Some("10.0.0.0"), None]),
            (s(&["10.0.0.0", "root"]), Source::Memory)
        );
    }

    /// Guards the sharing that keeps series small: a value already remembered is not
    /// copied again, and the same match gives the same tuple.
    #[test]
    fn values_are_shared() {
        let mut r = Recent::new(100, 2, BUDGET);
        let a = r.remember(&s(&["1.1.1.1", "root"]));
        let b = r.remember(&s(&["2.2.2.2", "root"]));
        assert!(Arc::ptr_eq(&a[1], &b[1]), "one \"root\" for both");
        let c = r.remember(&s(&["1.1.1.1", "root"]));
        assert!(Arc::ptr_eq(&a, &c), "the remembered tuple is reused");
        // ... and the user's map leads to it again.
        assert_eq!(
            attribute(&mut r, &[None, Some("root")]),
            (s(&["1.1.1.1", "root"]), Source::Memory)
        );
    }

    #[test]
    fn a_new_pattern_count_starts_over() {
        let mut r = Recent::new(100, 1, BUDGET);
        r.remember(&s(&["1.1.1.1"]));
        let v = r.remember(&s(&["1.1.1.1", "root"]));
        assert_eq!(strings(&v), s(&["1.1.1.1", "root"]));
        assert_eq!(
            attribute(&mut r, &[Some("1.1.1.1"), None]),
            (s(&["1.1.1.1", "root"]), Source::Memory)
        );
    }
}
