//! What one collection of a reader holds, as plain data: sums and gauges keyed by family
//! and attributes. The renderer and the carry-over work on this, not on SDK types.

use std::collections::HashMap;

use opentelemetry::{KeyValue, StringValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};

use super::packed::{self, Unpack};
use crate::metric::Metric;

/// A series' attributes: (key, value) strings sorted by key (then value), in one string
/// in the packed format of `telemetry::packed` (issue 13: a `Vec` of `String` pairs cost a
/// scrape about 330 bytes per series in copies of what the SDK had collected; a string and
/// where each pair ends cost about 80 more; a collected point whose attributes the SDK
/// holds packed and sorted, as the event counters' are, now shares the SDK's string).
/// Compared and hashed as that string, which is one string for one sequence of pairs;
/// ordered as the sequence of its pairs.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Attrs(StringValue);

impl Default for Attrs {
    fn default() -> Attrs {
        Attrs(StringValue::from(""))
    }
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
        let text = packed::encode(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())));
        Attrs(StringValue::from(text))
    }

    /// The attributes of a packed value (`telemetry::packed`): its string, shared (only
    /// sets in key order are packed, each key once, so it is the sorted one).
    fn from_packed(packed: &StringValue) -> Attrs {
        debug_assert!({
            let mut u = Unpack::new(packed.as_str());
            let pairs: Vec<_> = u.by_ref().collect();
            u.is_whole() && pairs.windows(2).all(|w| w[0].0 < w[1].0)
        });
        Attrs(packed.clone())
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
        Pairs(Unpack::new(self.0.as_str()))
    }

    /// The value of `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The packed string (`telemetry::packed`): each key and value after its length.
    pub(crate) fn packed(&self) -> &str {
        self.0.as_str()
    }

    /// How many pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.0.as_str().is_empty()
    }
}

/// The pairs of an [`Attrs`], in order.
#[derive(Clone)]
pub struct Pairs<'a>(Unpack<'a>);

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        self.0.next()
    }
}

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

/// The attributes of a point, unpacked (see `telemetry::packed`): a packed set the SDK
/// holds is shared, not copied.
pub(crate) fn attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> Attrs {
    point_attrs(kvs).0
}

/// [`attrs`], and whether they were one packed set: such a set never holds
/// `otel.metric.overflow` (`packed::pack` leaves it as it is), so whether a series is an
/// overflow series is known without reading its string (issue 13: reading the string of
/// each of 600k series for that took a tenth of a scrape).
fn point_attrs<'a>(kvs: impl Iterator<Item = &'a KeyValue>) -> (Attrs, bool) {
    let mut kvs = kvs.peekable();
    if let Some(kv) = kvs.next_if(|kv| kv.key.as_str() == packed::KEY) {
        if let (Value::String(s), None) = (&kv.value, kvs.peek()) {
            return (Attrs::from_packed(s), true);
        }
        let pairs: Vec<_> = packed::pairs(std::iter::once(kv).chain(kvs)).collect();
        return (Attrs::from_pairs(pairs), false);
    }
    let pairs: Vec<(&str, std::borrow::Cow<'_, str>)> = packed::pairs(kvs).collect();
    (Attrs::from_pairs(pairs), false)
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
    /// The sum of the `sums` of overflow series (see [`Attrs::is_overflow`]).
    pub(crate) overflowed: u64,
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
                                let (a, packed) = point_attrs(p.attributes());
                                if !packed && a.is_overflow() {
                                    c.overflowed = c.overflowed.saturating_add(p.value());
                                }
                                c.sums.push(((family, a), p.value()));
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
            mut sums,
            sums_f64,
            gauges,
            overflowed,
        } = other;
        self.overflowed = self.overflowed.saturating_add(overflowed);
        if self.sums.is_empty() {
            self.sums = sums;
        } else if !overlap {
            // The smaller into the larger: the event counters' sums (one per series) were
            // copied into a new vector after the own counters' few (issue 13: 24 MiB more
            // at the peak of a 600k-series scrape). Their order means nothing.
            if sums.len() > self.sums.len() {
                std::mem::swap(&mut self.sums, &mut sums);
            }
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
            assert_eq!(a.iter().count(), case.len());
        }
        let a = Attrs::from_pairs([("user", "root"), ("ip", "192.0.2.1")]);
        assert_eq!(a.get("user"), Some("root"));
        assert_eq!(a.get("stream"), None);
        assert!(!a.is_overflow());
        assert!(Attrs::overflow().is_overflow());
        assert_eq!(Attrs::overflow().get("otel.metric.overflow"), Some("true"));
    }

    /// Guards the sharing of the SDK's packed string (issue 13: a copy per point of a
    /// collection), and that a set not packed still becomes the sorted series.
    #[test]
    fn a_packed_set_is_shared_and_others_sorted() {
        let kv = |pairs: &[(&'static str, &str)]| {
            let kvs: Vec<KeyValue> = pairs
                .iter()
                .map(|(k, v)| KeyValue::new(*k, v.to_string()))
                .collect();
            packed::pack(&kvs).unwrap()
        };
        let sorted = kv(&[("filter", "f"), ("ip", "192.0.2.1"), ("user", "root")]);
        let a = attrs(std::iter::once(&sorted));
        assert_eq!(
            a,
            attrs_of(&[("user", "root"), ("filter", "f"), ("ip", "192.0.2.1")])
        );
        let Value::String(s) = &sorted.value else {
            panic!("packed as a string")
        };
        assert_eq!(a.0.as_str().as_ptr(), s.as_str().as_ptr(), "not shared");
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [("filter", "f"), ("ip", "192.0.2.1"), ("user", "root")]
        );
        // Not packed, or packed beside another attribute: read as they are.
        let plain = [KeyValue::new("type", "start"), KeyValue::new("stream", "s")];
        assert_eq!(
            attrs(plain.iter()),
            attrs_of(&[("stream", "s"), ("type", "start")])
        );
        let both = [sorted.clone(), KeyValue::new("zone", "z")];
        assert_eq!(
            attrs(both.iter()),
            attrs_of(&[
                ("filter", "f"),
                ("ip", "192.0.2.1"),
                ("user", "root"),
                ("zone", "z")
            ])
        );
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
