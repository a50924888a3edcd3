//! What one collection of a reader holds, as plain data: sums and gauges keyed by family
//! and attributes. The renderer and the carry-over work on this, not on SDK types.

use std::collections::HashMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

use crate::metric::Metric;

/// A series' attributes: (key, value) strings sorted by key (then value), kept in two
/// allocations whatever their number: the keys and values one after the other in one
/// string, and where each ends (issue 13: a `Vec` of `String` pairs cost a scrape about
/// 330 bytes per series in copies of what the SDK had collected, more than the SDK's own
/// output; this costs the text and 8 bytes per pair). Compared, hashed and ordered as the
/// sequence of its pairs.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Every key and value, in order: key 0, value 0, key 1, ...
    text: Box<str>,
    /// Where each key and value of `text` ends (2 per pair).
    ends: Box<[u32]>,
}

impl Attrs {
    /// No attributes.
    pub fn new() -> Attrs {
        Attrs::default()
    }

    /// From pairs in any order: sorted by key, then value.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Attrs {
        let mut pairs: Vec<(K, V)> = pairs.into_iter().collect();
        pairs.sort_unstable_by(|a, b| {
            (a.0.as_ref(), a.1.as_ref()).cmp(&(b.0.as_ref(), b.1.as_ref()))
        });
        let size = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut text = String::with_capacity(size);
        let mut ends = Vec::with_capacity(pairs.len() * 2);
        for (k, v) in &pairs {
            for part in [k.as_ref(), v.as_ref()] {
                text.push_str(part);
                // Saturating: a series' text is far below 4 GiB (label values are capped
                // at 64 KiB each), and a wrong end only misplaces a label, never panics.
                ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            }
        }
        Attrs {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }

    /// The attributes of an overflow series: `otel.metric.overflow="true"`.
    pub fn overflow() -> Attrs {
        Attrs::from_pairs([(crate::metric::OVERFLOW_KEY, "true")])
    }

    /// Whether these are an overflow series' attributes (they hold `otel.metric.overflow`:
    /// the SDK's overflow series, or one of ours).
    pub fn is_overflow(&self) -> bool {
        self.iter().any(|(k, _)| k == crate::metric::OVERFLOW_KEY)
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> Pairs<'_> {
        Pairs {
            attrs: self,
            next: 0,
        }
    }

    /// Pair `i` (< `len()`).
    fn pair(&self, i: usize) -> (&str, &str) {
        let start = match i {
            0 => 0,
            _ => self.ends[2 * i - 1] as usize,
        };
        let (k, v) = (self.ends[2 * i] as usize, self.ends[2 * i + 1] as usize);
        (
            self.text.get(start..k).unwrap_or(""),
            self.text.get(k..v).unwrap_or(""),
        )
    }

    /// The value of `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.ends.len() / 2
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// The pairs of an [`Attrs`], in order.
#[derive(Clone)]
pub struct Pairs<'a> {
    attrs: &'a Attrs,
    next: usize,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        (self.next < self.attrs.len()).then(|| {
            self.next += 1;
            self.attrs.pair(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.attrs.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Pairs<'_> {}

impl<'a> IntoIterator for &'a Attrs {
    type Item = (&'a str, &'a str);
    type IntoIter = Pairs<'a>;

    fn into_iter(self) -> Pairs<'a> {
        self.iter()
    }
}

/// Sorted, as [`Attrs::from_pairs`].
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Attrs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Attrs {
        Attrs::from_pairs(pairs)
    }
}

impl PartialOrd for Attrs {
    fn partial_cmp(&self, other: &Attrs) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Attrs {
    fn cmp(&self, other: &Attrs) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl std::fmt::Debug for Attrs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Saved as the list of its pairs (`[["ip", "192.0.2.1"], ...]`), as the state file has
/// always had them.
impl serde::Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Attrs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Attrs, D::Error> {
        let pairs: Vec<(String, String)> = serde::Deserialize::deserialize(d)?;
        Ok(Attrs::from_pairs(pairs))
    }
}

/// A series: its metric and attributes.
pub type SeriesKey = (Metric, Attrs);

pub(crate) fn attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> Attrs {
    let pairs: Vec<(&str, std::borrow::Cow<'_, str>)> =
        kvs.map(|kv| (kv.key.as_str(), kv.value.as_str())).collect();
    Attrs::from_pairs(pairs)
}

/// Attributes from (key, value) pairs, sorted by key (for tests).
#[cfg(test)]
pub(crate) fn attrs_of(pairs: &[(&str, &str)]) -> Attrs {
    Attrs::from_pairs(pairs.iter().copied())
}

/// One collection, as plain data.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Collected {
    /// Integer sums (the counters): deltas on a delta reader. One entry per series (the
    /// SDK gives each attribute set once), zeros left out.
    pub sums: Vec<(SeriesKey, u64)>,
    /// Floating sums (CPU time): deltas on a delta reader.
    pub(crate) sums_f64: HashMap<SeriesKey, f64>,
    /// Gauges: the value observed at this collection.
    pub gauges: HashMap<SeriesKey, f64>,
}

impl Collected {
    /// Take everything out of one `ResourceMetrics`. Instruments not in the metric table
    /// are ignored (there are none).
    pub fn from_resource_metrics(rm: &ResourceMetrics) -> Collected {
        let mut c = Collected::default();
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                let Some(family) = Metric::from_otel_name(metric.name()) else {
                    continue;
                };
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        c.sums.reserve(s.data_points().size_hint().0);
                        for p in s.data_points() {
                            if p.value() > 0 {
                                c.sums.push(((family, attrs(p.attributes())), p.value()));
                            }
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            *c.sums_f64
                                .entry((family, attrs(p.attributes())))
                                .or_default() += p.value();
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            c.gauges
                                .insert((family, attrs(p.attributes())), p.value() as f64);
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Gauge(g)) => {
                        for p in g.data_points() {
                            c.gauges.insert((family, attrs(p.attributes())), p.value());
                        }
                    }
                    other => {
                        tracing::debug!(name = metric.name(), ?other, "unexpected metric data");
                    }
                }
            }
        }
        c
    }

    /// Everything one collection of a [`super::SharedReader`] gave: the readers' data
    /// added up, a retired reader's gauges left out, the state gauges kept only as its own
    /// callbacks observed them (see `telemetry::observed`).
    pub fn from_collections(collections: &[super::readers::Collection]) -> Collected {
        let mut all = Collected::default();
        // Only a retired reader shares series with another (the providers' metrics are
        // distinct): otherwise the sums are appended as they are.
        let overlap = collections.iter().any(|c| c.retired);
        for one in collections {
            let mut c = Collected::from_resource_metrics(&one.rm);
            if one.retired {
                c.gauges.clear();
            } else {
                c.gauges
                    .retain(|(m, attrs), _| one.observed.keeps_attrs(*m, attrs));
            }
            all.merge(c, overlap);
        }
        all
    }

    /// Add `other` in: sums added (each series still once if they may `overlap`), gauges
    /// replaced.
    fn merge(&mut self, other: Collected, overlap: bool) {
        let Collected {
            sums,
            sums_f64,
            gauges,
        } = other;
        if self.sums.is_empty() {
            self.sums = sums;
        } else if !overlap {
            self.sums.extend(sums);
        } else if !sums.is_empty() {
            // Only the providers of a reload share series: rare, so a map is fine.
            let mut by_key: HashMap<SeriesKey, u64> = std::mem::take(&mut self.sums)
                .into_iter()
                .collect::<HashMap<_, _>>();
            merge_sums(&mut by_key, sums);
            self.sums = by_key.into_iter().collect();
        }
        for (k, v) in sums_f64 {
            *self.sums_f64.entry(k).or_default() += v;
        }
        self.gauges.extend(gauges);
    }
}

/// Add `from` into `into`.
pub(crate) fn merge_sums(
    into: &mut HashMap<SeriesKey, u64>,
    from: impl IntoIterator<Item = (SeriesKey, u64)>,
) {
    for (k, v) in from {
        // Saturating: a count of u64::MAX plus 2 stays at u64::MAX (issue 8: it wrapped).
        let c = into.entry(k).or_default();
        *c = c.saturating_add(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Attrs` replaced: a vector of `String` pairs, sorted.
    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = v
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        v.sort();
        v
    }

    fn owned(a: &Attrs) -> Vec<(String, String)> {
        a.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CASES: [&[(&str, &str)]; 6] = [
        &[],
        &[("ip", "192.0.2.1")],
        &[("user", "root"), ("ip", "192.0.2.1"), ("stream", "ssh")],
        // Empty keys and values, a NUL, multi-byte characters: nothing is a separator.
        &[("", ""), ("k", ""), ("", "v"), ("a\0b", "é…\0")],
        &[("ip", "b"), ("ip", "a")],
        &[
            ("ua", "Mozilla/5.0 (X11; Linux x86_64)"),
            ("ip", "2001:db8::1"),
        ],
    ];

    #[test]
    fn pairs_come_back_sorted_and_whole() {
        for case in CASES {
            let a = Attrs::from_pairs(case.iter().copied());
            assert_eq!(owned(&a), pairs(case), "{case:?}");
            assert_eq!(a.len(), case.len());
            assert_eq!(a.is_empty(), case.is_empty());
            assert_eq!(a.iter().len(), case.len());
        }
        let a = Attrs::from_pairs([("user", "root"), ("ip", "192.0.2.1")]);
        assert_eq!(a.get("user"), Some("root"));
        assert_eq!(a.get("stream"), None);
        assert!(!a.is_overflow());
        assert!(Attrs::overflow().is_overflow());
        assert_eq!(Attrs::overflow().get("otel.metric.overflow"), Some("true"));
    }

    /// Guards the change from `Vec<(String, String)>` (issue 13): equality, hashing and
    /// order are those of the pairs, so that maps, sorted outputs and the state file see
    /// no difference.
    #[test]
    fn equal_ordered_and_saved_as_the_pairs_were() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |a: &Attrs| {
            let mut h = DefaultHasher::new();
            a.hash(&mut h);
            h.finish()
        };
        for x in CASES {
            let a = Attrs::from_pairs(x.iter().copied());
            let reversed = Attrs::from_pairs(x.iter().rev().copied());
            assert_eq!(a, reversed);
            assert_eq!(hash(&a), hash(&reversed));
            for y in CASES {
                let b = Attrs::from_pairs(y.iter().copied());
                assert_eq!(a.cmp(&b), pairs(x).cmp(&pairs(y)), "{x:?} vs {y:?}");
                assert_eq!(a == b, pairs(x) == pairs(y), "{x:?} vs {y:?}");
            }
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, serde_json::to_string(&pairs(x)).unwrap());
            assert_eq!(serde_json::from_str::<Attrs>(&json).unwrap(), a);
        }
        // A state file's pairs in another order load as the same series.
        let saved: Attrs = serde_json::from_str(r#"[["user","root"],["ip","192.0.2.1"]]"#).unwrap();
        assert_eq!(
            saved,
            Attrs::from_pairs([("ip", "192.0.2.1"), ("user", "root")])
        );
    }
}
