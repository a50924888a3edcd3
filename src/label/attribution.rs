//! Which pattern values an action belongs to. reaction logs an action's command, not the
//! match that caused it (a `ban` runs right after its match; an `unban` 48 hours later).
//! The command shows the values of the patterns its template uses (`<ip>`); the others come
//! from the most recent match of the same filter that agrees with what the command shows,
//! kept in a bounded memory.

use std::sync::Arc;

use crate::bounded::BoundedMap;

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
#[derive(Debug, Clone)]
pub(crate) struct Recent {
    /// (pattern index, value) → the most recent full value tuple with that value there.
    by_value: BoundedMap<(usize, String), Arc<[String]>>,
    last: Option<Arc<[String]>>,
}

impl Recent {
    /// Remember about `capacity` distinct matches.
    pub(crate) fn new(capacity: usize, patterns: usize) -> Recent {
        Recent {
            by_value: BoundedMap::new(capacity.max(1) * patterns.max(1)),
            last: None,
        }
    }

    pub(crate) fn remember(&mut self, values: &[String]) {
        if self.last.as_deref() == Some(values) {
            // The same values again (a burst from one IP): every key already leads to them.
            return;
        }
        let tuple: Arc<[String]> = values.into();
        for (i, v) in values.iter().enumerate() {
            self.by_value.insert((i, v.clone()), tuple.clone());
        }
        self.last = Some(tuple);
    }

    /// Remembered tuples, most recent generation first (for splitting `show` keys).
    pub(crate) fn tuples(&self) -> impl Iterator<Item = &[String]> {
        self.by_value.values().map(|t| &t[..])
    }

    /// Complete `known` (one slot per pattern, None where the command does not show it).
    pub(crate) fn attribute(&mut self, known: Vec<Option<String>>) -> (Vec<String>, Source) {
        if known.iter().all(Option::is_some) {
            return (
                known.into_iter().map(Option::unwrap_or_default).collect(),
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
                .get(&(i, v.clone()))
                .filter(|t| {
                    t.len() == known.len()
                        && known
                            .iter()
                            .zip(t.iter())
                            .all(|(k, t)| k.as_ref().is_none_or(|k| k == t))
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
            Some((t, source)) => (t.to_vec(), source),
            None => (
                known.into_iter().map(Option::unwrap_or_default).collect(),
                Source::None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn unban_after_other_matches_takes_its_own_values() {
        let mut r = Recent::new(100, 2);
        r.remember(&s(&["1.1.1.1", "alice"]));
        r.remember(&s(&["2.2.2.2", "bob"]));
        r.remember(&s(&["3.3.3.3", "carol"]));
        // the command shows the ip only
        let (v, src) = r.attribute(vec![Some("1.1.1.1".into()), None]);
        assert_eq!(v, s(&["1.1.1.1", "alice"]));
        assert_eq!(src, Source::Memory);
    }

    #[test]
    fn command_with_all_values() {
        let mut r = Recent::new(100, 1);
        let (v, src) = r.attribute(vec![Some("9.9.9.9".into())]);
        assert_eq!((v, src), (s(&["9.9.9.9"]), Source::Command));
    }

    #[test]
    fn no_agreeing_match_gives_empty_labels() {
        let mut r = Recent::new(100, 2);
        r.remember(&s(&["2.2.2.2", "bob"]));
        let (v, src) = r.attribute(vec![Some("1.1.1.1".into()), None]);
        assert_eq!(v, s(&["1.1.1.1", ""]));
        assert_eq!(src, Source::None);
    }

    #[test]
    fn command_without_values_takes_last_match() {
        let mut r = Recent::new(100, 1);
        assert_eq!(r.attribute(vec![None]), (s(&[""]), Source::None));
        r.remember(&s(&["1.1.1.1"]));
        r.remember(&s(&["2.2.2.2"]));
        assert_eq!(
            r.attribute(vec![None]),
            (s(&["2.2.2.2"]), Source::LastMatch)
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut r = Recent::new(10, 1);
        for i in 0..1000 {
            r.remember(&[format!("10.0.{}.{}", i / 256, i % 256)]);
        }
        assert!(r.tuples().count() <= 10);
        assert_eq!(
            r.attribute(vec![Some("10.0.0.1".into())]).1,
            Source::Command
        );
    }
}
