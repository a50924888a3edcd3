//! Which pattern values an action belongs to. reaction logs an action's command, not the
//! match that caused it (a `ban` runs right after its match; an `unban` 48 hours later).
//! The command shows the values of the patterns its template uses (`<ip>`); the others come
//! from the most recent match of the same filter that agrees with what the command shows,
//! kept in a bounded memory.
//!
//! The memory survives restarts: a [`Snapshot`] of it is taken with each checkpoint's
//! position and saved in the state file as [`SavedMemory`] (see `state`); a restart within
//! `state.recall` restores it before reading the source again from that position, so every
//! action is attributed as it would have been without the restart.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

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

/// A filter's memory at one moment, sharing its values with the memory (cheap to take: a
/// clone of each entry's `Arc`); saved as a [`SavedMemory`].
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// Per pattern: the tuples its map leads to, (old generation, young generation).
    maps: Vec<(Vec<Values>, Vec<Values>)>,
    last: Option<Values>,
}

/// A filter's memory as the state file holds it: its distinct tuples once, and per pattern
/// the tuples its map leads to, by index (the key of an entry of pattern `i` is its tuple's
/// value `i`), old generation first. Checked by [`SavedMemory::check`] when it is read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedMemory {
    /// `stream.filter`.
    pub filter: String,
    pub tuples: Vec<Vec<String>>,
    pub maps: Vec<SavedMap>,
    pub last: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedMap {
    pub old: Vec<usize>,
    pub young: Vec<usize>,
}

impl Snapshot {
    /// As saved, for the filter `filter`.
    pub(crate) fn to_saved(&self, filter: &str) -> SavedMemory {
        let mut index: HashMap<*const [Arc<str>], usize> = HashMap::new();
        let mut tuples: Vec<Vec<String>> = Vec::new();
        let mut at = |t: &Values| -> usize {
            *index.entry(Arc::as_ptr(t)).or_insert_with(|| {
                tuples.push(t.iter().map(|v| v.to_string()).collect());
                tuples.len() - 1
            })
        };
        let maps = self
            .maps
            .iter()
            .map(|(old, young)| SavedMap {
                old: old.iter().map(&mut at).collect(),
                young: young.iter().map(&mut at).collect(),
            })
            .collect();
        let last = self.last.as_ref().map(&mut at);
        SavedMemory {
            filter: filter.to_string(),
            tuples,
            maps,
            last,
        }
    }
}

impl SavedMemory {
    /// Whether it can be restored: one value per pattern in every tuple, indices in range.
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.maps.len();
        if n == 0 {
            return Err(format!("memory of {:?}: no pattern", self.filter));
        }
        if let Some(t) = self.tuples.iter().find(|t| t.len() != n) {
            return Err(format!(
                "memory of {:?}: a match of {} values for {n} patterns",
                self.filter,
                t.len()
            ));
        }
        let len = self.tuples.len();
        let indices = self
            .maps
            .iter()
            .flat_map(|m| m.old.iter().chain(&m.young))
            .chain(&self.last);
        if let Some(i) = indices.into_iter().find(|i| **i >= len) {
            return Err(format!("memory of {:?}: match {i} of {len}", self.filter));
        }
        Ok(())
    }
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

    /// What it holds now (see [`Snapshot`]).
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            maps: self
                .by_value
                .iter()
                .map(|m| {
                    (
                        m.old_values().cloned().collect(),
                        m.young_values().cloned().collect(),
                    )
                })
                .collect(),
            last: self.last.clone(),
        }
    }

    /// A memory holding what `saved` (checked by [`SavedMemory::check`]) held, within this
    /// run's bounds: the same generations, so it answers as the saved one did. Equal values
    /// are shared again.
    pub(crate) fn restore(capacity: usize, budget: usize, saved: &SavedMemory) -> Recent {
        let patterns = saved.maps.len();
        let mut r = Recent::new(capacity, patterns, budget);
        let mut interned: HashMap<&str, Arc<str>> = HashMap::new();
        let tuples: Vec<Values> = saved
            .tuples
            .iter()
            .map(|t| {
                t.iter()
                    .map(|v| {
                        interned
                            .entry(v.as_str())
                            .or_insert_with(|| Arc::from(v.as_str()))
                            .clone()
                    })
                    .collect()
            })
            .collect();
        let get = |i: usize| tuples.get(i).filter(|t| t.len() == patterns);
        for (p, (map, saved)) in r.by_value.iter_mut().zip(&saved.maps).enumerate() {
            let put = |map: &mut BoundedMap<Arc<str>, Values>, i: usize| {
                if let Some(t) = get(i) {
                    let hash = map.hash(&*t[p]);
                    map.insert_hashed(hash, t[p].clone(), t.clone(), weight(t));
                }
            };
            for i in &saved.old {
                put(map, *i);
            }
            map.retire();
            for i in &saved.young {
                put(map, *i);
            }
            // Not evictions of this run: the bounds may be smaller than when it was saved.
            map.take_evicted();
        }
        r.last = saved.last.and_then(get).cloned();
        r
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

    /// Everything `attribute` can answer, for a set of questions.
    fn answers(r: &mut Recent, questions: &[Vec<Option<&str>>]) -> Vec<(Vec<String>, Source)> {
        questions.iter().map(|q| attribute(r, q)).collect()
    }

    /// Guards issue 10 item 1: a restored memory answers as the saved one did, generations
    /// and the last match included, also through the state file's text.
    #[test]
    fn a_restored_memory_answers_as_the_saved_one() {
        let mut r = Recent::new(6, 2, BUDGET);
        for i in 0..10 {
            r.remember(&[format!("10.0.0.{i}"), format!("u{}", i % 3)]);
        }
        r.remember(&s(&["10.0.0.2", "root"]));
        let saved = r.snapshot().to_saved("ssh.failedlogin");
        saved.check().unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        let back: SavedMemory = serde_json::from_str(&text).unwrap();
        assert_eq!(back, saved);
        let mut restored = Recent::restore(6, BUDGET, &back);
        let mut questions: Vec<Vec<Option<&str>>> = vec![vec![None, None]];
        let ips: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}")).collect();
        for ip in &ips {
            questions.push(vec![Some(ip), None]);
        }
        for u in ["u0", "u1", "u2", "root"] {
            questions.push(vec![None, Some(u)]);
        }
        assert_eq!(
            answers(&mut restored, &questions),
            answers(&mut r, &questions)
        );
        // Values are shared again: one "root".
        let t = restored.remember(&s(&["10.0.0.99", "root"]));
        let u = restored.remember(&s(&["10.0.0.98", "root"]));
        assert!(Arc::ptr_eq(&t[1], &u[1]));
        // Smaller bounds in the new run: kept within them.
        let smaller = Recent::restore(2, BUDGET, &back);
        assert!(smaller.by_value.iter().all(|m| m.len() <= 2));
    }

    #[test]
    fn a_saved_memory_that_does_not_fit_is_refused() {
        let mut r = Recent::new(6, 2, BUDGET);
        r.remember(&s(&["1.1.1.1", "root"]));
        let good = r.snapshot().to_saved("f");
        let mut bad = good.clone();
        bad.tuples[0].pop();
        assert!(bad.check().unwrap_err().contains("1 values for 2 patterns"));
        let mut bad = good.clone();
        bad.maps[1].young.push(7);
        assert!(bad.check().unwrap_err().contains("match 7 of 1"));
        let mut bad = good.clone();
        bad.maps.clear();
        assert!(bad.check().is_err());
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
